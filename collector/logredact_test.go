package collector

import (
	"bytes"
	"encoding/base64"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagepull/imagepull_exporter/collector/config"
	"github.com/imagepull/imagepull_exporter/probe"
)

// Every secret of the running configuration, in every form a log line could
// carry it, is redacted at every level and in every kind of attribute.
func TestRedactingHandler(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte("file-pass-5678\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dockerCfg := filepath.Join(dir, "config.json")
	hubAuth := base64.StdEncoding.EncodeToString([]byte("hubuser:hub-token-9abc"))
	if err := os.WriteFile(dockerCfg, []byte(`{"auths":{"other.example.com":{"auth":"`+hubAuth+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{Modules: map[string]probe.Module{
		"static": {Auth: probe.AuthConfig{Username: "alice", Password: "inline-pass-1234"}},
		"file":   {Auth: probe.AuthConfig{Username: "bob", PasswordFile: pwFile}},
		"docker": {Auth: probe.AuthConfig{DockerConfig: dockerCfg}},
	}}
	secrets := []string{
		"inline-pass-1234", "file-pass-5678", "hub-token-9abc", hubAuth,
		base64.StdEncoding.EncodeToString([]byte("alice:inline-pass-1234")),
		base64.StdEncoding.EncodeToString([]byte("bob:file-pass-5678")),
		"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl",
	}

	var buf bytes.Buffer
	h := NewRedactingHandler(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h.SetSecrets(cfg)
	logger := slog.New(h)
	with := logger.With("module_password", "inline-pass-1234").WithGroup("g")
	logger.Debug("probe failed: registry said inline-pass-1234", "err", "401: echoed Basic "+base64.StdEncoding.EncodeToString([]byte("alice:inline-pass-1234")))
	logger.Info("x", "err", errors.New("password file holds file-pass-5678"))
	logger.Warn("y", slog.Group("reply", "body", `{"token":"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"}`))
	logger.Error("z", "values", []string{"hub-token-9abc", hubAuth})
	with.Info("w", "header", "Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl")
	out := buf.String()
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Errorf("the log shows %q:\n%s", s, out)
		}
	}
	if n := strings.Count(out, probe.Redacted); n < 7 {
		t.Errorf("%d redactions, want at least 7 (one per secret logged):\n%s", n, out)
	}
	// What is not secret stays readable.
	for _, want := range []string{"probe failed: registry said", "password file holds", "level=DEBUG", "level=ERROR"} {
		if !strings.Contains(out, want) {
			t.Errorf("the log lost %q:\n%s", want, out)
		}
	}
}
