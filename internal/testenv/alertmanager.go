package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"
)

// AlertmanagerOptions configures StartAlertmanager.
type AlertmanagerOptions struct {
	// Config is the alertmanager.yml text, e.g. a route to a Webhook's URL
	// with short group_wait/group_interval so notifications come quickly.
	Config string
	// Addr is the listen address; empty picks a free loopback port.
	Addr string
	// ExtraArgs are appended to alertmanager's flags.
	ExtraArgs []string
}

// Alertmanager is a real Alertmanager (Debian's 0.25) on loopback with
// temporary storage and clustering off.
type Alertmanager struct {
	// URL is http://ADDR, without a trailing slash: Prometheus'
	// alerting.alertmanagers static target is Addr.
	URL string
	// Addr is the listen address, host:port.
	Addr string
	// Dir holds alertmanager.yml, the storage and the log.
	Dir string
	// Process is the server process.
	Process *Process

	client *http.Client
}

// AlertmanagerBin returns the Alertmanager binary: upstream calls it
// alertmanager, Debian's package prometheus-alertmanager.
func AlertmanagerBin(t testing.TB) string {
	t.Helper()
	SkipShort(t, "alertmanager")
	for _, name := range []string{"alertmanager", "prometheus-alertmanager"} {
		if p, ok := findBin(t, name); ok {
			return p
		}
	}
	t.Fatal("testenv: alertmanager (Debian: prometheus-alertmanager) not found in bin/ or PATH; run `make deps` (scripts/install-deps.sh) to install it")
	return ""
}

// StartAlertmanager writes the config, starts alertmanager and waits until
// /-/ready answers 200. It is stopped by t.Cleanup.
func StartAlertmanager(t testing.TB, opts AlertmanagerOptions) *Alertmanager {
	t.Helper()
	bin := AlertmanagerBin(t)
	dir := t.TempDir()
	addr := opts.Addr
	if addr == "" {
		addr = FreeAddr(t)
	}
	cfgFile := filepath.Join(dir, "alertmanager.yml")
	writeFile(t, cfgFile, opts.Config, 0o644)
	args := append([]string{
		"--config.file=" + cfgFile,
		"--storage.path=" + filepath.Join(dir, "data"),
		"--web.listen-address=" + addr,
		// Empty disables the gossip cluster: no peer port, no waiting
		// for peers before sending notifications.
		"--cluster.listen-address=",
	}, opts.ExtraArgs...)
	a := &Alertmanager{
		URL: "http://" + addr, Addr: addr, Dir: dir,
		Process: StartProcess(t, "alertmanager", bin, args, nil, dir),
		client:  &http.Client{Timeout: 10 * time.Second},
	}
	t.Cleanup(a.client.CloseIdleConnections)
	a.Process.WaitHTTP(a.URL+"/-/ready", http.StatusOK, time.Minute, nil)
	return a
}

// PostableAlert is an alert as clients (Prometheus, amtool) post it to
// /api/v2/alerts. A zero EndsAt means "firing until further notice"; an
// EndsAt in the past resolves it.
type PostableAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt,omitzero"`
	EndsAt       time.Time         `json:"endsAt,omitzero"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// PostAlerts posts alerts to Alertmanager's API, as Prometheus would.
func (a *Alertmanager) PostAlerts(t testing.TB, alerts ...PostableAlert) {
	t.Helper()
	body, err := json.Marshal(alerts)
	if err != nil {
		t.Fatalf("testenv: encode alerts: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, a.URL+"/api/v2/alerts", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		t.Fatalf("testenv: post alerts: %v", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("testenv: post alerts: %s: %s", resp.Status, msg)
	}
}

// AMAlert is an alert as Alertmanager's GET /api/v2/alerts reports it.
type AMAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	StartsAt    time.Time         `json:"startsAt"`
	EndsAt      time.Time         `json:"endsAt"`
	Fingerprint string            `json:"fingerprint"`
	Status      struct {
		State       string   `json:"state"` // active, suppressed, unprocessed
		InhibitedBy []string `json:"inhibitedBy"`
		SilencedBy  []string `json:"silencedBy"`
	} `json:"status"`
}

// Alerts returns every alert Alertmanager holds, inhibited and silenced
// ones included (their Status says so): how a test proves an inhibition.
func (a *Alertmanager) Alerts(t testing.TB) []AMAlert {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, a.URL+"/api/v2/alerts", nil)
	resp, err := a.client.Do(req)
	if err != nil {
		t.Fatalf("testenv: get alerts: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("testenv: get alerts: %s %v: %s", resp.Status, err, body)
	}
	var out []AMAlert
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("testenv: decode alerts: %v", fmt.Errorf("%w: %s", err, body))
	}
	return out
}
