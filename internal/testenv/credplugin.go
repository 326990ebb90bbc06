package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// credPluginPackage is the test credential provider plugin
// (internal/testenv/credplugin): a real program speaking the kubelet's exec
// API through k8s.io/kubelet's published types.
const credPluginPackage = "github.com/imagepull/imagepull_exporter/internal/testenv/credplugin"

var credPlugin struct {
	once sync.Once
	path string
	err  error
}

// CredentialPlugin builds the test credential provider plugin once per
// test binary (go build, from Go's cache when warm) and installs it into
// binDir under each of names, the provider names of a
// CredentialProviderConfig (the kubelet runs binDir/NAME). Under -short it
// skips the test.
func CredentialPlugin(t testing.TB, binDir string, names ...string) {
	t.Helper()
	SkipShort(t, "the credential provider plugin built with go build")
	credPlugin.once.Do(func() {
		dir, err := os.MkdirTemp("", "imagepull-credplugin-")
		if err != nil {
			credPlugin.err = err
			return
		}
		credPlugin.path = filepath.Join(dir, "credplugin")
		cmd := exec.Command("go", "build", "-o", credPlugin.path, credPluginPackage)
		_, self, _, _ := runtime.Caller(0)
		cmd.Dir = filepath.Dir(self)
		if out, err := cmd.CombinedOutput(); err != nil {
			credPlugin.err = fmt.Errorf("go build %s: %w\n%s", credPluginPackage, err, out)
		}
	})
	if credPlugin.err != nil {
		t.Fatalf("testenv: %v", credPlugin.err)
	}
	b, err := os.ReadFile(credPlugin.path)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(binDir, n), b, 0o755); err != nil {
			t.Fatalf("testenv: install credential plugin %s: %v", n, err)
		}
	}
}

// CredentialPluginRuns returns the images the test plugin was run for, in
// order, from its CREDPLUGIN_DIR.
func CredentialPluginRuns(t testing.TB, stateDir string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(stateDir, "runs"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return strings.Fields(string(b))
}
