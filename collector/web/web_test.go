package web

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imagepull/imagepull_exporter/collector"
	"github.com/imagepull/imagepull_exporter/collector/config"
	"github.com/imagepull/imagepull_exporter/internal/testenv"
	"github.com/imagepull/imagepull_exporter/probe"
)

// localModule probes the plain-HTTP loopback registries of these tests.
var localModule = probe.Module{Timeout: 10 * time.Second, Interval: time.Hour,
	AuthCheckInterval: time.Hour, PlainHTTP: true}

// testConfig builds a configuration with the modules "local" and
// "default" and no targets.
func testConfig() *config.Config {
	return &config.Config{Modules: map[string]probe.Module{"local": localModule, config.DefaultModuleName: probe.DefaultModule}}
}

func get(t *testing.T, h http.Handler, target string, header ...string) (int, string, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	body, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, rec.Header().Get("Content-Type"), string(body)
}

func TestProbeHandler(t *testing.T) {
	reg := testenv.StartMemRegistry(t, testenv.NewMemRegistryHandler())
	digest := testenv.PushRandom(t, reg.Host, "demo/app:v1")
	cfg := testConfig()
	h := NewProbeHandler(ProbeHandlerOptions{Config: func() *config.Config { return cfg }})
	q := func(v url.Values) string { return "/probe?" + v.Encode() }

	image := reg.Host + "/demo/app:v1"
	code, _, body := get(t, h, q(url.Values{"target": {image}, "module": {"local"}}))
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	labels := `reference="v1",registry="` + reg.Host + `",repository="demo/app",target="` + image + `"`
	for _, want := range []string{
		`imagepull_probe_success{` + labels + `} 1`,
		`imagepull_manifest_info{digest="` + digest.String() + `",media_type="application/vnd.docker.distribution.manifest.v2+json",` + labels + `} 1`,
		`imagepull_probes_total{` + labels[:len(labels)-len(`,target="`+image+`"`)] + `,result="success",target="` + image + `"} 1`,
		`imagepull_registry_requests_total{code="200",kind="manifest_head",registry="` + reg.Host + `"} 1`,
		`imagepull_registry_requests_total{code="200",kind="ping",registry="` + reg.Host + `"} 1`,
		`imagepull_probe_failure_reason{reason="not_found",` + labels + `} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/probe output lacks %s\n%s", want, body)
		}
	}
	// Exporter-wide series belong to /metrics, not to a probe.
	for _, unwanted := range []string{"imagepull_exporter_targets", "imagepull_probe_budget_exhausted_total"} {
		if strings.Contains(body, unwanted) {
			t.Errorf("/probe output has %s", unwanted)
		}
	}

	// A missing tag is a failed probe, not a failed request.
	code, _, body = get(t, h, q(url.Values{"target": {reg.Host + "/demo/app:nope"}, "module": {"local"}}))
	if code != http.StatusOK || !strings.Contains(body, `imagepull_probe_failure_reason{reason="not_found",reference="nope"`) ||
		!strings.Contains(body, `imagepull_probe_success{reference="nope"`) {
		t.Errorf("missing tag: status %d\n%s", code, body)
	}
	if !strings.Contains(body, `reason="not_found",reference="nope",registry="`+reg.Host+`",repository="demo/app",target="`+reg.Host+`/demo/app:nope"} 1`) {
		t.Errorf("missing tag: not_found is not 1\n%s", body)
	}

	for _, c := range []struct {
		query, header, want string
		code                int
	}{
		{"/probe", "", "missing target parameter", 400},
		{q(url.Values{"target": {"Not/A/Valid:Ref:"}}), "", "bad target: invalid image reference", 400},
		{q(url.Values{"target": {image}, "module": {"nope"}}), "", `unknown module "nope" (defined: default, local)`, 400},
		{q(url.Values{"target": {image}, "module": {"local"}}), "soon", `bad X-Prometheus-Scrape-Timeout-Seconds "soon"`, 400},
	} {
		var hdr []string
		if c.header != "" {
			hdr = []string{"X-Prometheus-Scrape-Timeout-Seconds", c.header}
		}
		code, _, body := get(t, h, c.query, hdr...)
		if code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("GET %s: %d %q, want %d with %q", c.query, code, body, c.code, c.want)
		}
	}
}

func TestProbeHandlerDebug(t *testing.T) {
	reg := testenv.StartMemRegistry(t, testenv.NewMemRegistryHandler())
	digest := testenv.PushRandom(t, reg.Host, "demo/app:v1")
	cfg := testConfig()
	// The module carries a password. This registry allows anonymous
	// access, so it is never sent; the page must not show it anyway (it
	// prints the module, not its credentials). The real-registry
	// end-to-end test covers a password that is sent.
	m := cfg.Modules["local"]
	m.Auth = probe.AuthConfig{Username: "alice", Password: "s3cret-module-pass", Registries: []string{reg.Host}}
	cfg.Modules["local"] = m
	h := NewProbeHandler(ProbeHandlerOptions{Config: func() *config.Config { return cfg }})
	code, ctype, body := get(t, h, "/probe?debug=true&module=local&target="+url.QueryEscape(reg.Host+"/demo/app:v1"),
		"X-Prometheus-Scrape-Timeout-Seconds", "4")
	if code != 200 || !strings.HasPrefix(ctype, "text/plain") {
		t.Fatalf("status %d, content type %q", code, ctype)
	}
	for _, want := range []string{
		`Probe of ` + reg.Host + `/demo/app:v1 with module "local", timeout 3.5s`,
		"1. ping GET http://" + reg.Host + "/v2/ -> 200",
		"2. manifest_head HEAD http://" + reg.Host + "/v2/demo/app/manifests/v1 -> 200",
		"result:      success",
		"digest:      " + digest.String(),
		"imagepull_probe_success{",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("debug output lacks %q\n%s", want, body)
		}
	}
	if strings.Contains(body, "s3cret-module-pass") {
		t.Errorf("debug output shows the module password:\n%s", body)
	}
}

func TestProbeHandlerBudget(t *testing.T) {
	reg := testenv.StartMemRegistry(t, testenv.NewMemRegistryHandler())
	testenv.PushRandom(t, reg.Host, "demo/app:v1")
	cfg := testConfig()
	frozen := time.Now()
	// 10 a minute, of which /probe may send 2.
	budget := collector.NewRequestBudget(10, func() time.Time { return frozen })
	h := NewProbeHandler(ProbeHandlerOptions{Config: func() *config.Config { return cfg }, Sender: collector.NewSender(budget)})
	target := "/probe?module=local&target=" + url.QueryEscape(reg.Host+"/demo/app:v1")
	// Each /probe is cold: ping + HEAD = 2 requests, the whole /probe share.
	if code, _, body := get(t, h, target); code != 200 {
		t.Fatalf("first probe: %d %s", code, body)
	}
	code, _, body := get(t, h, target)
	if code != http.StatusTooManyRequests || !strings.Contains(body, "/probe share of registry "+reg.Host+"'s request budget is spent") {
		t.Errorf("second probe: %d %q, want 429", code, body)
	}
	// /probe callers may name any registry: their refusals are answered,
	// not counted, so they cannot create counter series.
	if ex := budget.Exhausted(); len(ex) != 0 {
		t.Errorf("exhausted after a /probe refusal = %+v, want none", ex)
	}
	// The scheduled probes still have the rest...
	if !budget.Take(reg.Host) {
		t.Fatal("Take after /probe spent its share = false; the rest is the scheduler's")
	}
	// ...and their own refusals of the same registry are counted.
	budget.Charge(reg.Host, 8)
	if budget.Take(reg.Host) {
		t.Fatal("Take after the budget was spent = true")
	}
	if ex := budget.Exhausted(); len(ex) != 1 || ex[0].Count != 1 || ex[0].Registry != reg.Host {
		t.Errorf("exhausted after a scheduled refusal = %+v", ex)
	}
}

// serveFrom is get with the request coming from client's address.
func serveFrom(h http.Handler, client, target string) (int, string) {
	req := httptest.NewRequest(http.MethodGet, target, nil)
	req.RemoteAddr = client
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

// Issue 9: a /probe loop against one registry must not spend the budget
// the scheduler needs. Thirty seconds of a fake budget clock, /probe called
// thirty times a second against a real (in-process) registry, scheduled
// probes through the same Sender twice a second (the whole 60/min rate):
// at least 80% of the scheduled probes run.
func TestProbeFloodLeavesScheduledRate(t *testing.T) {
	reg := testenv.StartMemRegistry(t, testenv.NewMemRegistryHandler())
	testenv.PushRandom(t, reg.Host, "demo/app:v1")
	ref, err := probe.ParseReference(reg.Host + "/demo/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	now := time.Now()
	budget := collector.NewRequestBudget(60, func() time.Time { return now })
	sender := collector.NewSender(budget)
	h := NewProbeHandler(ProbeHandlerOptions{Config: func() *config.Config { return cfg }, Sender: sender, ClientRate: -1})
	scheduled := probe.NewProber(probe.ProberOptions{})
	defer scheduled.Close()
	target := "/probe?module=local&target=" + url.QueryEscape(ref.String())

	var run, flooded int
	for step := 0; step < 300; step++ { // 100 ms steps
		for i := 0; i < 3; i++ {
			if code, _ := serveFrom(h, fmt.Sprintf("198.51.100.%d:4000", i), target); code == http.StatusOK {
				flooded++
			}
		}
		if step%5 == 0 {
			_, ok := sender.Do(context.Background(), collector.Send{Purpose: collector.PurposeScheduled, Registry: ref.Registry},
				func(ctx context.Context) probe.Result {
					return scheduled.Probe(ctx, probe.Target{Ref: ref, ModuleName: "local", Module: localModule})
				})
			if ok {
				run++
			}
		}
		now = now.Add(100 * time.Millisecond)
	}
	skipped := 0
	for _, e := range budget.Exhausted() {
		skipped += int(e.Count)
	}
	t.Logf("scheduled: %d run, %d skipped; /probe: %d of 900 answered 200", run, skipped, flooded)
	if run+skipped != 60 || run < 48 {
		t.Errorf("scheduled probes during a /probe flood: %d run, %d skipped; want at least 80%% of 60 run", run, skipped)
	}
	if flooded == 0 {
		t.Error("no /probe got through: it should have its share")
	}
}

// Issue 9: eight slow /probe calls held the semaphore and everyone else got
// 503 at once, or (with a queue) would wait for as long as they take. Now
// a caller waits at most half its timeout for a slot, and the scheduler,
// which has its own concurrency bound, goes on probing.
func TestProbeSlowCallsDoNotBlockOthers(t *testing.T) {
	slow := testenv.StartMemRegistry(t, testenv.NewMemRegistryHandler())
	testenv.PushRandom(t, slow.Host, "demo/app:v1")
	fast := testenv.StartMemRegistry(t, testenv.NewMemRegistryHandler())
	testenv.PushRandom(t, fast.Host, "demo/app:v1")

	mod := localModule
	mod.Timeout = 2 * time.Second
	cfg := &config.Config{Modules: map[string]probe.Module{"local": mod}}
	fastRef, err := probe.ParseReference(fast.Host + "/demo/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Targets = []config.TargetConfig{{Name: "fast", Image: fastRef.String(), Module: "local", Interval: 200 * time.Millisecond, Ref: fastRef}}
	sched := collector.NewScheduler(collector.SchedulerOptions{})
	sched.ApplyConfig(cfg)
	h := NewProbeHandler(ProbeHandlerOptions{Config: func() *config.Config { return cfg }, Sender: sched.Sender()})

	release := slow.Hold()
	defer release()
	target := "/probe?module=local&target=" + url.QueryEscape(slow.Host+"/demo/app:v1")
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Go(func() { serveFrom(h, "192.0.2.1:5000", target) })
	}
	testenv.WaitFor(t, "the /probe slots to fill", func() bool { return slow.Count(http.MethodGet, "/v2/") >= DefaultProbeConcurrency })

	start := time.Now()
	code, body := serveFrom(h, "192.0.2.2:5000", target)
	waited := time.Since(start)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "--web.probe-concurrency") {
		t.Errorf("ninth caller: %d %q, want 503 naming --web.probe-concurrency", code, body)
	}
	if waited > mod.Timeout {
		t.Errorf("ninth caller waited %s, want at most half the %s timeout", waited, mod.Timeout)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sched.Run(ctx) }()
	testenv.WaitFor(t, "a scheduled probe while /probe is saturated", func() bool {
		for _, ts := range sched.Snapshot().Targets {
			if ts.Name == "fast" && ts.Successes > 0 {
				return true
			}
		}
		return false
	})
	cancel()
	<-done
	release()
	wg.Wait()
}

// The per-client limit answers 429 to the client that exceeds it, by its
// connection address (X-Forwarded-For is not honoured), and not to others.
func TestProbeClientLimit(t *testing.T) {
	reg := testenv.StartMemRegistry(t, testenv.NewMemRegistryHandler())
	testenv.PushRandom(t, reg.Host, "demo/app:v1")
	cfg := testConfig()
	now := time.Now()
	// 6 a minute: a burst of one, one more every ten seconds.
	h := NewProbeHandler(ProbeHandlerOptions{Config: func() *config.Config { return cfg }, ClientRate: 6,
		Now: func() time.Time { return now }})
	target := "/probe?module=local&target=" + url.QueryEscape(reg.Host+"/demo/app:v1")
	if code, body := serveFrom(h, "192.0.2.1:1000", target); code != http.StatusOK {
		t.Fatalf("first request: %d %s", code, body)
	}
	req := httptest.NewRequest(http.MethodGet, target, nil)
	req.RemoteAddr = "192.0.2.1:1001"
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusTooManyRequests || !strings.Contains(rec.Body.String(), "--web.probe-client-rate") {
		t.Errorf("second request of the same address (with X-Forwarded-For): %d %q, want 429", rec.Code, rec.Body.String())
	}
	if code, body := serveFrom(h, "192.0.2.2:1000", target); code != http.StatusOK {
		t.Errorf("another client: %d %s, want 200", code, body)
	}
	// One IPv6 host holds its /64.
	if code, _ := serveFrom(h, "[2001:db8::1]:1000", target); code != http.StatusOK {
		t.Errorf("first IPv6 request: %d", code)
	}
	if code, _ := serveFrom(h, "[2001:db8::2]:1000", target); code != http.StatusTooManyRequests {
		t.Errorf("same /64: %d, want 429", code)
	}
	now = now.Add(10 * time.Second)
	if code, body := serveFrom(h, "192.0.2.1:1000", target); code != http.StatusOK {
		t.Errorf("after ten seconds: %d %s, want 200", code, body)
	}
}

func TestProbeTimeout(t *testing.T) {
	for _, c := range []struct {
		module time.Duration
		header string
		want   time.Duration
	}{
		{10 * time.Second, "", 10 * time.Second},
		{10 * time.Second, "15", 10 * time.Second},
		{10 * time.Second, "5", 4500 * time.Millisecond},
		{10 * time.Second, "0.8", 400 * time.Millisecond}, // too short for the offset: half
	} {
		got, err := probeTimeout(c.module, c.header)
		if err != nil || got != c.want {
			t.Errorf("probeTimeout(%s, %q) = %s, %v; want %s", c.module, c.header, got, err, c.want)
		}
	}
	for _, bad := range []string{"x", "-1", "0", "1e9"} {
		if _, err := probeTimeout(time.Second, bad); err == nil {
			t.Errorf("probeTimeout(%q) accepted", bad)
		}
	}
}

// WriteRedacted redacts with the module's secrets as the probe read them
// (a password file with more than one trailing newline) and by shape; the
// rule itself is tested in probe (TestRedactor).
func TestWriteRedacted(t *testing.T) {
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("file-pass-1234\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m := probe.Module{Auth: probe.AuthConfig{Username: "bob", PasswordFile: pwFile}}
	echoed := base64.StdEncoding.EncodeToString([]byte("bob:file-pass-1234"))
	res := probe.Result{Reason: probe.ReasonUnauthorized, Error: "said file-pass-1234, then " + echoed,
		Requests: []probe.Request{{Kind: probe.KindToken, Method: "GET", URL: "https://r/token",
			Header: map[string][]string{"< Www-Authenticate": {`Bearer realm="x",error="file-pass-1234"`}}}}}
	var b strings.Builder
	WriteRedacted(&b, res, m, true)
	if out := b.String(); strings.Contains(out, "file-pass-1234") || strings.Contains(out, echoed) ||
		!strings.Contains(out, "said <redacted>, then <redacted>") {
		t.Errorf("WriteRedacted leaks or does not redact:\n%s", out)
	}
}

// fixedJoin is a JoinView with a fixed answer (collector/kube's own tests
// check the summary against the join).
type fixedJoin collector.JoinSummary

func (j fixedJoin) JoinSummary(int) collector.JoinSummary { return collector.JoinSummary(j) }

func TestStatusPage(t *testing.T) {
	t0 := time.Unix(1_750_000_000, 0)
	ref := func(image string) probe.Reference {
		r, err := probe.ParseReference(image)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	quay, hub := ref("quay.io/prometheus/busybox:latest"), ref("docker.io/ratelimitpreview/test:latest")
	private := ref("registry.example.com/team/app:v1")
	elsewhere := ref("ghcr.io/acme/tool:v2")
	const pw = "status-page-secret-pw"
	cfg := &config.Config{Modules: map[string]probe.Module{
		"local": localModule,
		// Credentials bound to registry.example.com: /probe refuses them
		// for ghcr.io, so that row gets no debug link.
		"creds": {Timeout: time.Second, Interval: time.Minute, Auth: probe.AuthConfig{Username: "alice", Password: pw,
			Registries: []string{"registry.example.com"}}},
	}}
	snap := collector.Snapshot{
		Sources: map[string]int{collector.SourceConfig: 4, collector.SourceDiscovered: 1},
		Targets: []collector.TargetStatus{
			{Name: "a-pending", Source: collector.SourceConfig, Ref: ref("ghcr.io/containerd/busybox:1.36"), Module: "local", Interval: time.Minute},
			collector.StatusOf("b-quay", collector.SourceConfig, "local", time.Minute,
				probe.Result{Ref: quay, Start: t0.Add(-time.Hour), Reason: probe.ReasonTimeout, Error: "earlier failure"},
				probe.Result{Ref: quay, Start: t0, Success: true,
					Digest: "sha256:0123456789abcdef0123", Phases: map[probe.Phase]time.Duration{probe.PhaseTotal: 123 * time.Millisecond}}),
			collector.StatusOf("c-hub<script>", collector.SourceConfig, "local", time.Minute, probe.Result{Ref: hub, Start: t0,
				Reason: probe.ReasonRateLimited, Error: "429 TOOMANYREQUESTS <b>you</b> sent " + pw,
				Phases:    map[probe.Phase]time.Duration{probe.PhaseTotal: 45 * time.Millisecond},
				RateLimit: &probe.RateLimit{Limit: 100, Remaining: 0, Source: "203.0.113.7"}}),
			collector.StatusOf("d-private", collector.SourceDiscovered, "default", time.Minute, probe.Result{Ref: private, Start: t0,
				Reason: probe.ReasonNoCredentials, Error: "manifest HEAD: 401 (" + probe.NoCredentialsHint + ")",
				Phases: map[probe.Phase]time.Duration{probe.PhaseTotal: 9 * time.Millisecond}}),
			func() collector.TargetStatus {
				st := collector.StatusOf("f-secrets", collector.SourceDiscovered, "local", time.Minute, probe.Result{Ref: quay, Start: t0, Success: true,
					Phases: map[probe.Phase]time.Duration{probe.PhaseTotal: time.Millisecond}})
				st.PullSecrets = true
				return st
			}(),
			collector.StatusOf("e-elsewhere", collector.SourceConfig, "creds", time.Minute, probe.Result{Ref: elsewhere, Start: t0,
				Reason: probe.ReasonConnect, Error: "ping: connection refused",
				Phases: map[probe.Phase]time.Duration{probe.PhaseTotal: 2 * time.Millisecond}}),
		},
		Registries: []collector.RegistryStatus{
			{Registry: "docker.io", RegistryHealth: probe.RegistryHealth{Probed: true, Reason: probe.ReasonRateLimited}},
			{Registry: "registry.example.com", RegistryHealth: probe.RegistryHealth{Probed: true, Up: true}},
		},
		RateLimits: []collector.RateLimitStatus{{Registry: "docker.io", RateLimit: probe.RateLimit{Limit: 100, Remaining: 0, Source: "203.0.113.7"}, Updated: t0}},
	}
	join := fixedJoin{Synced: true, Containers: 4, Blocked: []collector.BlockedCount{
		{Registry: "docker.io", Cause: "rate_limited", Containers: 3}, {Registry: "ghcr.io", Cause: "registry_ok", Containers: 1}},
		Namespaces: []collector.NamespaceCount{{Namespace: "shop<i>", Containers: 3}}, MoreNamespaces: 1}
	opts := StatusPageOptions{Snapshot: func() collector.Snapshot { return snap }, Version: "imagepull_exporter, version 1.2.3",
		Now: func() time.Time { return t0.Add(90 * time.Second) }, Config: func() *config.Config { return cfg },
		ProbeEndpoint: true, Join: join}
	h := NewStatusPage(opts)

	code, ctype, body := get(t, h, "/")
	if code != 200 || !strings.HasPrefix(ctype, "text/html") {
		t.Fatalf("status %d %s", code, ctype)
	}
	// Failures first, then no credentials, pending, ok; by name within.
	var order []string
	for _, m := range regexp.MustCompile(`<tr data-target="([^"]*)" data-result="([^"]*)">`).FindAllStringSubmatch(body, -1) {
		order = append(order, m[1]+"="+m[2])
	}
	if want := []string{"c-hub&lt;script&gt;=failed", "e-elsewhere=failed", "d-private=no_credentials", "a-pending=pending", "b-quay=ok", "f-secrets=ok"}; !reflect.DeepEqual(order, want) {
		t.Errorf("row order %q, want %q", order, want)
	}
	for _, want := range []string{
		`<td><a href="logs?target=b-quay">b-quay</a></td>`, `<code>quay.io/prometheus/busybox:latest</code>`, `<td class="ok">ok</td>`,
		`<td class="num">123ms</td>`, `<td>1m30s ago</td>`, `<code title="sha256:0123456789abcdef0123">0123456789ab</code>`,
		// The error is on the page, escaped and redacted, not in a tooltip.
		`<td class="reason">rate_limited<div class="error">429 TOOMANYREQUESTS &lt;b&gt;you&lt;/b&gt; sent &lt;redacted&gt;</div></td>`,
		`<a href="logs?target=c-hub%3Cscript%3E">c-hub&lt;script&gt;</a>`, `<td class="failed">failed</td>`,
		`<td>0/100 (203.0.113.7)</td>`,
		`<td class="pending">pending</td>`, `<td>never</td>`,
		`<span id="summary-targets">6 targets (4 configured, 1 discovered)</span>`, `<a href="metrics">Metrics</a><a href="config">Configuration</a>`, `version 1.2.3`,
		// No credentials is not a failure: its own class; the hint is in
		// the error already, so not repeated.
		`<td class="no_credentials">no credentials</td>`,
		`<td class="reason">no_credentials<div class="error">manifest HEAD: 401 (` + probe.NoCredentialsHint + `)</div></td>`,
		`<span class="failed" id="summary-failed">2 failed</span>`, `<span class="no_credentials" id="summary-no_credentials">1 without credentials</span>`,
		`<tr data-registry="docker.io"><td><code>docker.io</code></td><td class="down">down</td><td>rate_limited</td></tr>`,
		`<tr data-registry="registry.example.com"><td><code>registry.example.com</code></td><td class="up">up</td><td></td></tr>`,
		// Links: the last failure's requests, and a debug probe.
		`<a class="logs" href="logs?target=b-quay">last failure&#39;s requests</a><a class="debug" href="probe?target=quay.io%2Fprometheus%2Fbusybox%3Alatest&amp;module=local&amp;debug=true">debug probe</a>`,
		`<a class="logs" href="logs?target=a-pending">requests</a><a class="debug" href="probe?target=ghcr.io%2Fcontainerd%2Fbusybox%3A1.36&amp;module=local&amp;debug=true">debug probe</a>`,
		`<a class="debug" href="probe?target=registry.example.com%2Fteam%2Fapp%3Av1&amp;module=default&amp;debug=true">debug probe</a>`,
		`<a class="debug" href="probe?target=quay.io%2Fprometheus%2Fbusybox%3Alatest&amp;module=local&amp;debug=true">debug probe (the module&#39;s credentials, not the pods&#39; pull secrets)</a>`,
		`<span class="small">no debug probe: module &#34;creds&#34;&#39;s credentials are not bound to ghcr.io, so /probe refuses it (the scheduled probe runs anonymously)</span>`,
		// The Kubernetes section.
		`<p>4 containers wait on an image pull.</p>`,
		`<tr><td><code>docker.io</code></td><td>rate_limited</td><td class="num">3</td></tr>`,
		`<tr><td>shop&lt;i&gt;</td><td class="num">3</td></tr>`, `and 1 more namespaces.`,
		// Refresh: the script, and a meta refresh without it.
		`<body data-refresh-seconds="10">`, `<noscript><meta http-equiv="refresh" content="10"></noscript>`, `<script src="status.js"></script>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("status page lacks %s", want)
		}
	}
	if strings.Contains(body, "<script>") || strings.Contains(body, "<b>") || strings.Contains(body, "<i>") {
		t.Error("status page does not escape")
	}
	if strings.Contains(body, pw) {
		t.Error("status page shows a module's password")
	}
	csp := httptest.NewRecorder()
	h.ServeHTTP(csp, httptest.NewRequest(http.MethodGet, "/", nil))
	if p := csp.Header().Get("Content-Security-Policy"); !strings.Contains(p, "default-src 'none'; script-src 'self'") || !strings.Contains(p, "style-src 'sha256-") {
		t.Errorf("Content-Security-Policy %q", p)
	}
	if _, _, body := get(t, h, "/?refresh=2"); !strings.Contains(body, `<body data-refresh-seconds="2">`) {
		t.Error("?refresh=2 does not set the refresh")
	}
	if _, _, body := get(t, h, "/?refresh=0"); !strings.Contains(body, `<body data-refresh-seconds="10">`) {
		t.Error("?refresh=0 is not refused")
	}

	// status.json carries the same, for the script and for scripts.
	code, ctype, body = get(t, h, "/status.json")
	if code != 200 || ctype != "application/json" {
		t.Fatalf("/status.json: %d %s", code, ctype)
	}
	var doc struct {
		Schema     int
		Summary    map[string]int
		Targets    []map[string]any
		Kubernetes struct {
			Synced     bool
			Containers int
			Blocked    []map[string]any
		}
		ProbeEndpoint bool `json:"probe_endpoint"`
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Schema != 1 || doc.Summary["failed"] != 2 || doc.Summary["ok"] != 2 || len(doc.Targets) != 6 || !doc.ProbeEndpoint ||
		doc.Targets[0]["name"] != "c-hub<script>" || doc.Targets[0]["error"] != "429 TOOMANYREQUESTS <b>you</b> sent <redacted>" ||
		doc.Targets[4]["debug_url"] != "probe?target=quay.io%2Fprometheus%2Fbusybox%3Alatest&module=local&debug=true" ||
		!doc.Kubernetes.Synced || doc.Kubernetes.Containers != 4 || len(doc.Kubernetes.Blocked) != 2 {
		t.Errorf("/status.json:\n%s", body)
	}
	if strings.Contains(body, "<script>") || strings.Contains(body, pw) {
		t.Errorf("/status.json is not escaped for HTML, or shows a password:\n%s", body)
	}
	if code, ctype, body := get(t, h, "/status.js"); code != 200 || !strings.HasPrefix(ctype, "text/javascript") || !strings.Contains(body, `fetch("status.json"`) {
		t.Errorf("/status.js: %d %s", code, ctype)
	}

	// Without /probe, no debug links and no probe link; without the join,
	// no Kubernetes section.
	opts.ProbeEndpoint, opts.Join = false, nil
	_, _, body = get(t, NewStatusPage(opts), "/")
	for _, unwanted := range []string{`class="debug"`, `no debug probe`, `href="probe?`, `id="kubernetes"`} {
		if strings.Contains(body, unwanted) {
			t.Errorf("without /probe and the join, the page has %s", unwanted)
		}
	}
	if code, _, _ := get(t, h, "/nope"); code != 404 {
		t.Errorf("/nope: %d", code)
	}
}

// A failed scheduled probe can be read afterwards: /logs shows the latest
// probe and the latest failure of a target with their request logs, and
// the status page links each row to it.
func TestLogs(t *testing.T) {
	reg := testenv.StartMemRegistry(t, testenv.NewMemRegistryHandler())
	image := reg.Host + "/demo/app:v1"
	ref, err := probe.ParseReference(image)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	m := cfg.Modules["local"]
	m.Auth = probe.AuthConfig{Username: "alice", Password: "s3cret-logs-pass", Registries: []string{ref.Registry}}
	cfg.Modules["local"] = m
	cfg.Targets = []config.TargetConfig{{Name: "app", Image: image, Module: "local", Interval: 200 * time.Millisecond, Ref: ref}}
	prober := probe.NewProber(probe.ProberOptions{})
	defer prober.Close()
	s := collector.NewScheduler(collector.SchedulerOptions{Prober: prober})
	s.ApplyConfig(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	defer func() { cancel(); <-done }()

	h := NewLogs(LogsOptions{Snapshot: s.Snapshot, Config: func() *config.Config { return cfg }})
	state := func() collector.TargetStatus { return s.Snapshot().Targets[0] }
	// The tag does not exist yet: the first probe fails with not_found.
	testenv.WaitFor(t, "a failed probe", func() bool { return state().Failures > 0 })
	code, ctype, body := get(t, h, "/logs?target=app")
	if code != 200 || !strings.HasPrefix(ctype, "text/plain") {
		t.Fatalf("/logs: %d %s %s", code, ctype, body)
	}
	for _, want := range []string{
		"Target app: " + image + `, module "local"`,
		"Latest probe (failed)",
		"FAILED, reason not_found",
		"manifest_head HEAD http://" + reg.Host + "/v2/demo/app/manifests/v1 -> 404",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/logs after a failure lacks %q:\n%s", want, body)
		}
	}

	// Push the tag: the next probe succeeds, and the failure stays readable.
	digest := testenv.PushRandom(t, reg.Host, "demo/app:v1")
	testenv.WaitFor(t, "a successful probe", func() bool { st := state(); return st.Last != nil && st.Last.Success })
	_, _, body = get(t, h, "/logs?target=app")
	for _, want := range []string{
		"Latest probe, ",
		"digest:      " + digest.String(),
		"Latest failure, ",
		"FAILED, reason not_found",
		"-> 404",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/logs after a recovery lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "s3cret-logs-pass") {
		t.Errorf("/logs shows the module password:\n%s", body)
	}

	for _, c := range []struct {
		query string
		code  int
		want  string
	}{
		{"/logs", 400, "missing target parameter"},
		{"/logs?target=nope", 404, `no target "nope"`},
	} {
		if code, _, body := get(t, h, c.query); code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("GET %s: %d %q, want %d with %q", c.query, code, body, c.code, c.want)
		}
	}

	page := NewStatusPage(StatusPageOptions{Snapshot: s.Snapshot})
	if _, _, body := get(t, page, "/"); !strings.Contains(body, `<a href="logs?target=app"`) {
		t.Errorf("the status page does not link the row to /logs:\n%s", body)
	}
}

// /status.json's shape is documented in README.md's "Status page" section:
// every field of it, nested ones included.
func TestReadmeDocumentsStatusJSON(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\n### Status page\n")
	if i < 0 {
		t.Fatal(`README.md has no "### Status page" section`)
	}
	sec := s[i:]
	if j := strings.Index(sec[1:], "\n## "); j > 0 {
		sec = sec[:j]
	}
	seen := map[reflect.Type]bool{}
	var walk func(reflect.Type)
	walk = func(typ reflect.Type) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || seen[typ] {
			return
		}
		seen[typ] = true
		for i := range typ.NumField() {
			name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
			if name == "" || name == "-" {
				continue
			}
			if !strings.Contains(sec, "`"+name+"`") {
				t.Errorf("/status.json field %q is not in README.md's Status page section", name)
			}
			walk(typ.Field(i).Type)
		}
	}
	walk(reflect.TypeFor[statusPage]())
	if len(seen) < 5 {
		t.Fatalf("walked %d types", len(seen))
	}
}
