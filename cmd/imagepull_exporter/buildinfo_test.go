package main

import (
	"archive/zip"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/imagepull/imagepull_exporter/internal/testenv"
)

func TestVersionFromBuildInfo(t *testing.T) {
	settings := func(kv ...string) []debug.BuildSetting {
		var s []debug.BuildSetting
		for i := 0; i+1 < len(kv); i += 2 {
			s = append(s, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return s
	}
	const rev = "0123456789abcdef0123456789abcdef01234567"
	for _, c := range []struct {
		name                 string
		stampedVer, stampRev string
		main                 string
		settings             []debug.BuildSetting
		ver, rev             string
	}{
		{"the Makefile's ldflags win", "v1.2.3-4-gabc", "feed", "v9.9.9", settings("vcs.revision", rev), "v1.2.3-4-gabc", "feed"},
		{"go install …@v1.2.3", "", "", "v1.2.3", nil, "v1.2.3", ""},
		{"go build at a tag", "", "", "v1.2.3", settings("vcs.revision", rev, "vcs.modified", "false"), "v1.2.3", rev},
		{"go build, modified checkout", "", "", "v1.2.4-0.20250102150405-0123456789ab+dirty", settings("vcs.revision", rev, "vcs.modified", "true"),
			"v1.2.4-0.20250102150405-0123456789ab+dirty", rev + "-modified"},
		{"go install …@commit", "", "", "v0.0.0-20250102150405-0123456789ab", nil, "v0.0.0-20250102150405-0123456789ab", "0123456789ab"},
		{"go install …@commit after a tag", "", "", "v1.2.4-0.20250102150405-0123456789ab", nil, "v1.2.4-0.20250102150405-0123456789ab", "0123456789ab"},
		{"go run, no VCS", "", "", "(devel)", nil, "devel", ""},
		{"only the version stamped", "v2.0.0", "", "(devel)", settings("vcs.revision", rev), "v2.0.0", rev},
	} {
		bi := &debug.BuildInfo{Main: debug.Module{Path: "github.com/imagepull/imagepull_exporter", Version: c.main}, Settings: c.settings}
		ver, rev := versionFromBuildInfo(c.stampedVer, c.stampRev, bi)
		if ver != c.ver || rev != c.rev {
			t.Errorf("%s: version %q, revision %q; want %q, %q", c.name, ver, rev, c.ver, c.rev)
		}
	}
}

// TestVersionOfGoBuilds builds the exporter the two ways that bypass the
// Makefile and reads --version and imagepull_exporter_build_info:
//
//   - go build in a git checkout at a tag: the tag and the commit;
//   - go install …@vX from a module proxy (a file:// proxy holding this
//     module at vX; its dependencies come from the module cache): vX.
func TestVersionOfGoBuilds(t *testing.T) {
	testenv.SkipShort(t, "go build of the exporter, twice")
	gitBin := testenv.Bin(t, "git")
	root := testenv.RepoRoot(t)
	// A v0 tag: a v2+ one needs a /vN module path, or Go ignores it.
	const tag = "v0.98.7-buildinfo"
	const modPath = "github.com/imagepull/imagepull_exporter"

	// The module's files as a checkout holds them (tracked and new, not
	// ignored), without the nested tools modules, as a module zip leaves
	// them out.
	out, err := exec.Command(gitBin, "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	var files []string
	for _, f := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		if f == "" || strings.HasPrefix(f, "tools/") || strings.HasPrefix(f, "bin/") {
			continue
		}
		if fi, err := os.Lstat(filepath.Join(root, f)); err != nil || !fi.Mode().IsRegular() {
			continue // deleted in the work tree, or a symlink
		}
		files = append(files, f)
	}

	// Both builds share one GOFLAGS-free environment: the developer's
	// GOFLAGS may carry -buildvcs=false, which is what this test is not.
	env := append(os.Environ(), "GOFLAGS=", "CGO_ENABLED=0", "GOTOOLCHAIN=local")
	goCmd := func(t *testing.T, dir string, extraEnv []string, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir, cmd.Env = dir, append(append([]string(nil), env...), extraEnv...)
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go %v: %v\n%s", args, err, b)
		}
		return string(b)
	}
	versionOf := func(t *testing.T, bin string) string {
		t.Helper()
		b, err := exec.Command(bin, "--version").CombinedOutput()
		if err != nil {
			t.Fatalf("%s --version: %v\n%s", bin, err, b)
		}
		return strings.SplitN(string(b), "\n", 2)[0]
	}

	t.Run("go build in a checkout", func(t *testing.T) {
		dir := t.TempDir()
		copyFiles(t, root, dir, files)
		git := func(args ...string) string {
			t.Helper()
			cmd := exec.Command(gitBin, append([]string{"-c", "user.name=test", "-c", "user.email=test@example.com"}, args...)...)
			cmd.Dir = dir
			b, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("git %v: %v\n%s", args, err, b)
			}
			return strings.TrimSpace(string(b))
		}
		git("init", "-q")
		git("add", "-A")
		git("commit", "-q", "-m", "snapshot")
		git("tag", tag)
		commit := git("rev-parse", "HEAD")
		bin := filepath.Join(t.TempDir(), "imagepull_exporter")
		goCmd(t, dir, nil, "build", "-trimpath", "-buildvcs=true", "-o", bin, "./cmd/imagepull_exporter")
		want := fmt.Sprintf("imagepull_exporter, version %s (branch: , revision: %s)", tag, commit)
		if got := versionOf(t, bin); got != want {
			t.Errorf("--version: %q, want %q", got, want)
		}
		assertBuildInfo(t, bin, `version="`+tag+`"`, `revision="`+commit+`"`)
	})

	t.Run("go install from a module proxy", func(t *testing.T) {
		proxy := t.TempDir()
		writeModuleProxy(t, proxy, root, modPath, tag, files)
		gobin := t.TempDir()
		// A module cache of its own, so that this made-up version of the
		// module never lands in the developer's; the dependencies come
		// from theirs, whose download directory is a module proxy.
		realCache := strings.TrimSpace(goCmd(t, root, nil, "env", "GOMODCACHE"))
		goCmd(t, t.TempDir(), []string{
			"GOPROXY=file://" + filepath.ToSlash(proxy) + ",file://" + filepath.ToSlash(filepath.Join(realCache, "cache", "download")),
			// No checksum database: this machine reaches only the module
			// proxy, and the made-up version is in no database anyway.
			"GOMODCACHE=" + t.TempDir(), "GOSUMDB=off", "GOBIN=" + gobin,
			"GOFLAGS=-trimpath -modcacherw", // -modcacherw: the temporary cache can be removed
		}, "install", modPath+"/cmd/imagepull_exporter@"+tag)
		bin := filepath.Join(gobin, "imagepull_exporter")
		want := fmt.Sprintf("imagepull_exporter, version %s (branch: , revision: unknown)", tag)
		if got := versionOf(t, bin); got != want {
			t.Errorf("--version: %q, want %q", got, want)
		}
		assertBuildInfo(t, bin, `version="`+tag+`"`)
	})
}

func copyFiles(t *testing.T, from, to string, files []string) {
	t.Helper()
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(from, f))
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(to, f)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// writeModuleProxy lays out a GOPROXY directory (the module proxy protocol
// as files) that serves modPath at version with the given files.
func writeModuleProxy(t *testing.T, proxy, root, modPath, version string, files []string) {
	t.Helper()
	dir := filepath.Join(proxy, filepath.FromSlash(modPath), "@v")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	goMod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		"list":            version + "\n",
		version + ".info": fmt.Sprintf(`{"Version":%q,"Time":"2025-01-02T15:04:05Z"}`, version),
		version + ".mod":  string(goMod),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	zf, err := os.Create(filepath.Join(dir, version+".zip"))
	if err != nil {
		t.Fatal(err)
	}
	zw := zip.NewWriter(zf)
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		w, err := zw.Create(modPath + "@" + version + "/" + f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zf.Close(); err != nil {
		t.Fatal(err)
	}
}

// assertBuildInfo starts bin as a server and checks its
// imagepull_exporter_build_info series for the labels.
func assertBuildInfo(t *testing.T, bin string, labels ...string) {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "config.yml")
	writeFile(t, cfg, "targets: []\n")
	addr := testenv.FreeAddr(t)
	cmd := exec.Command(bin, "--web.listen-address="+addr, "--config.file="+cfg)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	e := &exporter{t: t, URL: "http://" + addr, client: &http.Client{Timeout: 10 * time.Second}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if code, _ := e.tryGet("/-/ready"); code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not get ready", bin)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if v, ok := lookup(e.scrape(), "imagepull_exporter_build_info", labels...); !ok || v != 1 {
		_, body := e.get("/metrics")
		t.Errorf("no imagepull_exporter_build_info with %v:\n%s", labels, grepLines(body, "build_info"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
