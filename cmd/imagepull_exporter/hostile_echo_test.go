package main

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// A registry that echoes the credentials it was sent (the Authorization
// header, and the password it decoded from it) in its error replies must
// not get them into any sink of the exporter: the log at debug level, the
// /probe debug page, /logs, the status page and the metrics (issue 9,
// item 6). No real registry echoes credentials, so the hostile registry is
// an httptest server playing one: it challenges for Basic auth and answers
// every authenticated request 401 with the header and the password in its
// body and in a response header.
func TestHostileRegistryEchoesCredentials(t *testing.T) {
	const user, password = "alice", "echo-secret-4321"
	basic := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	var authenticated atomic.Int64
	hostile := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
		w.Header().Set("WWW-Authenticate", `Basic realm="hostile"`)
		auth := r.Header.Get("Authorization")
		if auth == "" {
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
			return
		}
		authenticated.Add(1)
		_, pw, _ := r.BasicAuth()
		w.Header().Set("X-Echo", auth)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintf(w, `{"errors":[{"code":"UNAUTHORIZED","message":"rejected %s (password %s)","detail":%q}]}`, auth, pw, auth)
	}))
	t.Cleanup(hostile.Close)
	host := strings.TrimPrefix(hostile.URL, "http://")

	cfg := filepath.Join(t.TempDir(), "config.yml")
	writeFile(t, cfg, fmt.Sprintf(`modules:
  hostile:
    plain_http: true
    timeout: 2s
    interval: 2s
    auth: {username: %s, password: %q}
targets:
  - {name: echo, image: %s/team/app:v1, module: hostile}
`, user, password, host))
	e := startExporter(t, "--config.file", cfg)
	e.waitFor("the hostile registry probed with the credential", func() bool {
		_, ok := lookup(e.scrape(), "imagepull_probe_success", `target="echo"`)
		return ok && authenticated.Load() > 0
	})

	secrets := []string{password, basic, strings.TrimRight(basic, "=")}
	_, metrics := e.get("/metrics")
	_, debug := e.get("/probe?debug=true&module=hostile&target=" + url.QueryEscape(host+"/team/app:v1"))
	_, logs := e.get("/logs?target=echo")
	_, landing := e.get("/")
	_, statusJSON := e.get("/status.json")
	_, cfgPage := e.get("/config")
	if !strings.Contains(cfgPage, "password: <secret>") {
		t.Errorf("/config does not show the module's password as <secret>:\n%s", cfgPage)
	}
	// The pages must show the failure they are about, or they prove nothing.
	for where, text := range map[string]string{"/probe?debug=true": debug, "/logs": logs} {
		if !strings.Contains(text, "401") || !strings.Contains(text, "rejected") {
			t.Errorf("%s does not show the registry's reply:\n%s", where, text)
		}
	}
	if !strings.Contains(e.log(), "probe failed") {
		t.Errorf("the debug log has no failed probe:\n%s", e.log())
	}
	assertNoSecret(t, "/metrics", metrics, secrets)
	assertNoSecret(t, "/probe?debug=true", debug, secrets)
	assertNoSecret(t, "/logs", logs, secrets)
	assertNoSecret(t, "the status page", landing, secrets)
	assertNoSecret(t, "/status.json", statusJSON, secrets)
	assertNoSecret(t, "/config", cfgPage, secrets)
	assertNoSecret(t, "the debug log", e.log(), secrets)
}
