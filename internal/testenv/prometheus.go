package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// PrometheusOptions configures StartPrometheus.
type PrometheusOptions struct {
	// Config is the prometheus.yml text. Empty means a Prometheus that
	// scrapes itself every second (job "prometheus"). Relative rule_files
	// paths resolve against the directory RuleFiles are written to.
	Config string
	// RuleFiles are written next to the config, by file name, so Config
	// can list them under rule_files. Generated rules in the repository can
	// be listed by absolute path instead.
	RuleFiles map[string]string
	// Addr is the listen address; empty picks a free loopback port. Set it
	// (from FreeAddr) when Config must name Prometheus itself.
	Addr string
	// ExtraArgs are appended to prometheus' flags.
	ExtraArgs []string
}

// Prometheus is a real Prometheus server (Debian's 2.42) on loopback with a
// temporary TSDB and the lifecycle API on (POST /-/reload).
type Prometheus struct {
	// URL is http://ADDR, without a trailing slash.
	URL string
	// Addr is the listen address, host:port.
	Addr string
	// Dir holds prometheus.yml, the rule files, the TSDB and the log.
	Dir string
	// Process is the server process (Stop/Start to simulate an outage).
	Process *Process

	t      testing.TB
	client *http.Client
}

// Sample is one element of a query result: the series' labels (including
// __name__ when the expression keeps it) and its value at the query time.
type Sample struct {
	Metric    map[string]string
	Value     float64
	Timestamp time.Time
}

// QueryResult is the result of an instant query. Type is "vector" (Samples)
// or "scalar" (Scalar).
type QueryResult struct {
	Type    string
	Samples []Sample
	Scalar  float64
}

// Values returns the sample values in result order, for short assertions.
func (r QueryResult) Values() []float64 {
	v := make([]float64, len(r.Samples))
	for i, s := range r.Samples {
		v[i] = s.Value
	}
	return v
}

// String renders the result in PromQL-ish text for failure messages.
func (r QueryResult) String() string {
	if r.Type == "scalar" {
		return fmt.Sprintf("scalar(%g)", r.Scalar)
	}
	var b strings.Builder
	b.WriteString("[")
	for i, s := range r.Samples {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%v => %g", s.Metric, s.Value)
	}
	b.WriteString("]")
	return b.String()
}

const selfScrapeConfig = `global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
- job_name: prometheus
  static_configs:
  - targets: ['%s']
`

// StartPrometheus writes the config and rule files, starts prometheus, and
// waits until /-/ready answers 200. It is stopped by t.Cleanup.
func StartPrometheus(t testing.TB, opts PrometheusOptions) *Prometheus {
	t.Helper()
	bin := Bin(t, "prometheus")
	dir := t.TempDir()
	addr := opts.Addr
	if addr == "" {
		addr = FreeAddr(t)
	}
	cfg := opts.Config
	if cfg == "" {
		cfg = fmt.Sprintf(selfScrapeConfig, addr)
	}
	cfgFile := filepath.Join(dir, "prometheus.yml")
	writeFile(t, cfgFile, cfg, 0o644)
	for name, content := range opts.RuleFiles {
		if name != filepath.Base(name) {
			t.Fatalf("testenv: rule file name %q must be a plain file name", name)
		}
		writeFile(t, filepath.Join(dir, name), content, 0o644)
	}
	args := append([]string{
		"--config.file=" + cfgFile,
		"--storage.tsdb.path=" + filepath.Join(dir, "data"),
		"--web.listen-address=" + addr,
		"--web.enable-lifecycle",
	}, opts.ExtraArgs...)
	p := &Prometheus{
		URL: "http://" + addr, Addr: addr, Dir: dir,
		Process: StartProcess(t, "prometheus", bin, args, nil, dir),
		t:       t,
		client:  &http.Client{Timeout: 10 * time.Second},
	}
	t.Cleanup(p.client.CloseIdleConnections)
	p.Process.WaitHTTP(p.URL+"/-/ready", http.StatusOK, time.Minute, nil)
	return p
}

// Reload asks Prometheus to reread its config and rule files (rewrite them
// under Dir first) and fails the test when the reload is rejected.
func (p *Prometheus) Reload(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, p.URL+"/-/reload", nil)
	resp, err := p.client.Do(req)
	if err != nil {
		t.Fatalf("testenv: prometheus reload: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("testenv: prometheus reload: %s: %s", resp.Status, body)
	}
}

// QueryE runs an instant query at the current time through the HTTP API.
// Errors (bad PromQL, server down) are returned, not fatal, so tests can
// assert on them.
func (p *Prometheus) QueryE(ctx context.Context, query string) (QueryResult, error) {
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := p.api(ctx, "/api/v1/query", url.Values{"query": {query}}, &data); err != nil {
		return QueryResult{}, fmt.Errorf("query %q: %w", query, err)
	}
	res := QueryResult{Type: data.ResultType}
	switch data.ResultType {
	case "vector":
		var vec []struct {
			Metric map[string]string  `json:"metric"`
			Value  [2]json.RawMessage `json:"value"`
		}
		if err := json.Unmarshal(data.Result, &vec); err != nil {
			return res, fmt.Errorf("query %q: decode vector: %w", query, err)
		}
		for _, s := range vec {
			ts, v, err := decodePoint(s.Value)
			if err != nil {
				return res, fmt.Errorf("query %q: %w", query, err)
			}
			res.Samples = append(res.Samples, Sample{Metric: s.Metric, Value: v, Timestamp: ts})
		}
	case "scalar":
		var pt [2]json.RawMessage
		if err := json.Unmarshal(data.Result, &pt); err != nil {
			return res, fmt.Errorf("query %q: decode scalar: %w", query, err)
		}
		_, v, err := decodePoint(pt)
		if err != nil {
			return res, fmt.Errorf("query %q: %w", query, err)
		}
		res.Scalar = v
	default:
		return res, fmt.Errorf("query %q: result type %q, want vector or scalar", query, data.ResultType)
	}
	return res, nil
}

// Query runs an instant query and fails the test on error.
func (p *Prometheus) Query(t testing.TB, query string) QueryResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := p.QueryE(ctx, query)
	if err != nil {
		t.Fatalf("testenv: prometheus: %v", err)
	}
	return r
}

// WaitQuery polls query until ok accepts its result and returns that
// result. It fails the test with the last result or error after timeout:
// a wait for scrapes and rule evaluations, not a timed assertion. Query
// errors count as not yet (the first scrape may not have happened).
func (p *Prometheus) WaitQuery(t testing.TB, query string, timeout time.Duration, ok func(QueryResult) bool) QueryResult {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r, err := p.QueryE(ctx, query)
		cancel()
		if err == nil && ok(r) {
			return r
		}
		if err != nil {
			last = err.Error()
		} else {
			last = r.String()
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: prometheus: %q did not reach the expected result within %s; last: %s", query, timeout, last)
		}
		if p.Process.Exited() {
			t.Fatalf("testenv: prometheus exited while waiting for %q:\n%s", query, p.Process.Output())
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// PromAlert is an alert as Prometheus' /api/v1/alerts reports it.
type PromAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	State       string            `json:"state"` // pending or firing
	Value       string            `json:"value"`
}

// Alerts returns the pending and firing alerts of the loaded rules.
func (p *Prometheus) Alerts(t testing.TB) []PromAlert {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var data struct {
		Alerts []PromAlert `json:"alerts"`
	}
	if err := p.api(ctx, "/api/v1/alerts", nil, &data); err != nil {
		t.Fatalf("testenv: prometheus alerts: %v", err)
	}
	return data.Alerts
}

// api GETs an /api/v1 endpoint and decodes its data field into out.
func (p *Prometheus) api(ctx context.Context, path string, q url.Values, out any) error {
	u := p.URL + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("request: %w", err)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("GET %s: read: %w", path, err)
	}
	var env struct {
		Status    string          `json:"status"`
		Data      json.RawMessage `json:"data"`
		ErrorType string          `json:"errorType"`
		Error     string          `json:"error"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return fmt.Errorf("GET %s: %s: decode: %w", path, resp.Status, err)
	}
	if env.Status != "success" {
		return fmt.Errorf("GET %s: %s: %s: %s", path, resp.Status, env.ErrorType, env.Error)
	}
	if err := json.Unmarshal(env.Data, out); err != nil {
		return fmt.Errorf("GET %s: decode data: %w", path, err)
	}
	return nil
}

// decodePoint decodes Prometheus' [unix_seconds, "value"] pair.
func decodePoint(pt [2]json.RawMessage) (time.Time, float64, error) {
	var ts float64
	if err := json.Unmarshal(pt[0], &ts); err != nil {
		return time.Time{}, 0, fmt.Errorf("decode timestamp: %w", err)
	}
	var s string
	if err := json.Unmarshal(pt[1], &s); err != nil {
		return time.Time{}, 0, fmt.Errorf("decode value: %w", err)
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("parse value %q: %w", s, err)
	}
	return time.UnixMilli(int64(ts * 1000)), v, nil
}
