package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagepull/imagepull_exporter/internal/testenv"
)

// TestCredentialProviderFlags: the exporter binary reads the kubelet's
// credential provider configuration from its flags, refuses a missing
// plugin with the file, line and fix, and probes a registry with the
// credential a real plugin hands out (never printing it).
func TestCredentialProviderFlags(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{Auth: testenv.RegistryAuthBasic,
		Users: map[string]testenv.TokenUser{"cloud": {Password: "plugin-token-7"}}})
	reg.Push(t, "team/app", "v1")
	dir, bin, empty, state := t.TempDir(), t.TempDir(), t.TempDir(), t.TempDir()
	testenv.CredentialPlugin(t, bin, "cloud")
	writeFile(t, filepath.Join(state, "credential"), "cloud:plugin-token-7\n")
	cpConfig := filepath.Join(dir, "credential-providers.yaml")
	writeFile(t, cpConfig, fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
  - name: cloud
    matchImages: [%q]
    defaultCacheDuration: 1h
    apiVersion: credentialprovider.kubelet.k8s.io/v1
    env: [{name: CREDPLUGIN_DIR, value: %q}]
`, reg.Addr, state))
	cfg := filepath.Join(dir, "config.yml")
	writeFile(t, cfg, "modules:\n  plugin:\n    plain_http: true\n    auth: {credential_provider: cloud}\n  default:\n    plain_http: true\n")
	flags := []string{"--kube.credential-provider-config", cpConfig, "--kube.credential-provider-bin-dir", bin}

	for _, module := range []string{"plugin", "default"} { // named, and the node's providers
		stdout, stderr, code := runBinary(t, append([]string{"probe", "--config.file", cfg, "--module", module, reg.Ref("team/app", "v1")}, flags...)...)
		if code != 0 || !strings.Contains(stdout, "sha256:") {
			t.Errorf("probe with module %s: exit %d\n%s%s", module, code, stdout, stderr)
		}
		if strings.Contains(stdout+stderr, "plugin-token-7") {
			t.Errorf("the plugin's credential was printed:\n%s%s", stdout, stderr)
		}
	}
	if runs := testenv.CredentialPluginRuns(t, state); len(runs) != 2 {
		t.Errorf("plugin runs %v, want one per process", runs)
	}

	_, stderr, code := runBinary(t, "--config.check", "--config.file", cfg, "--kube.credential-provider-config", cpConfig, "--kube.credential-provider-bin-dir", empty)
	want := cpConfig + `:4: provider "cloud": the plugin ` + filepath.Join(empty, "cloud") + ` does not exist; install it in --kube.credential-provider-bin-dir (the node's --image-credential-provider-bin-dir, mounted read-only) or fix the name` + "\n"
	if code != 1 || stderr != want {
		t.Errorf("missing plugin: exit %d, stderr %q\nwant exit 1, %q", code, stderr, want)
	}
	_, stderr, code = runBinary(t, "--config.check", "--config.file", cfg)
	if code != 1 || !strings.Contains(stderr, `module "plugin": auth.credential_provider names a kubelet credential provider, but no --kube.credential-provider-config is given`) {
		t.Errorf("credential_provider without the flag: exit %d, stderr %q", code, stderr)
	}
}
