package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/imagepull/imagepull_exporter/internal/testenv"
)

// authSecretParts are the secrets of collector/config's
// testdata/invalid-auth-secret-*.yml, with the forms yaml.v3 shortens them
// to ("SuperSe..."): none may reach a sink of the running exporter.
var authSecretParts = []string{"SuperSe", "SuperSecretKey456", "9876543", "Sb9", `Sup\"er`, "er\\Sec"}

// TestConfigErrorsNeverEchoAuth feeds the exporter every config file whose
// auth: values are malformed (issue 9, item 6) through each way a config
// error leaves the process: the answer of POST /-/reload, the log of a
// SIGHUP and of the reload (at debug level), and --config.check.
func TestConfigErrorsNeverEchoAuth(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(testenv.RepoRoot(t), "collector", "config", "testdata", "invalid-auth-secret-*.yml"))
	if err != nil || len(files) < 8 {
		t.Fatalf("testdata: %v, %d files", err, len(files))
	}
	cfg := filepath.Join(t.TempDir(), "config.yml")
	writeFile(t, cfg, "modules:\n  local: {plain_http: true}\n")
	e := startExporter(t, "--config.file", cfg)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, cfg, string(data))
		code, body := e.post("/-/reload")
		if code != 500 || !strings.Contains(body, cfg+":") {
			t.Errorf("%s: POST /-/reload = %d %q, want 500 naming the file", filepath.Base(f), code, body)
		}
		assertNoSecret(t, filepath.Base(f)+": the reload answer", body, authSecretParts)
		_ = e.cmd.Process.Signal(syscall.SIGHUP)

		_, stderr, code := runBinary(t, "--config.check", "--config.file", f)
		if code != 1 || !strings.Contains(stderr, f+":") {
			t.Errorf("%s: --config.check: exit %d, %q", filepath.Base(f), code, stderr)
		}
		assertNoSecret(t, filepath.Base(f)+": --config.check", stderr, authSecretParts)
	}
	// The last SIGHUP's failure is logged once every earlier one is.
	e.waitFor("every SIGHUP reload logged", func() bool {
		return strings.Count(e.log(), `trigger=SIGHUP`) >= len(files)
	})
	assertNoSecret(t, "the exporter's log", e.log(), authSecretParts)
}

// TestConfigTooLarge: a file over the size cap is refused with an answer
// that says what and why, quickly, and the running config stays.
func TestConfigTooLarge(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "config.yml")
	writeFile(t, cfg, "modules:\n  local: {plain_http: true}\n")
	e := startExporter(t, "--config.file", cfg)
	f, err := os.OpenFile(cfg, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(64 << 20); err != nil { // sparse: cheap to make
		t.Fatal(err)
	}
	f.Close()
	code, body := e.post("/-/reload")
	want := cfg + ": the file is 64.0 MiB (67108864 bytes), over the limit of 16 MiB for a configuration file"
	if code != 500 || !strings.Contains(body, want) {
		t.Errorf("POST /-/reload = %d %q, want 500 with %q", code, body, want)
	}
	if v, _ := lookup(e.scrape(), "imagepull_exporter_config_last_reload_successful"); v != 0 {
		t.Errorf("reload_successful = %v after an oversized file", v)
	}
}
