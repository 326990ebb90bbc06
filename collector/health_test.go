package collector

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imagepull/imagepull_exporter/collector/config"
	"github.com/imagepull/imagepull_exporter/internal/testenv"
	"github.com/imagepull/imagepull_exporter/probe"
)

// Issue 15: registries' own health APIs. No Harbor, Quay, Artifactory or
// Nexus can run here, so every test below runs against a SIMULATION of the
// product's documented behaviour (testenv.ProductSim: its challenge,
// headers, token service and health API, as the product's source or
// documentation describe them) in front of a real distribution registry
// with a real token issuer; what the simulation does not override is the
// real registry's.

// fakeClock is the clock of the prober (token expiry, auth checks) and the
// scheduler (health checks, verdict expiry): tests move it past
// auth_check_interval without sleeping.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// healthModule probes the simulations: auth checks every 15m, probes every
// minute, health auto unless a test says otherwise.
var healthModule = probe.Module{Timeout: 5 * time.Second, Interval: time.Minute,
	AuthCheckInterval: 15 * time.Minute, PlainHTTP: true, Health: probe.HealthAuto}

const (
	pullUser     = "puller"
	pullPassword = "puller-pw-7f3a9c"
)

// tokenRegistry is a real registry with token auth and a pull account,
// holding team/app:v1 and team/web:v1.
func tokenRegistry(t *testing.T) *testenv.Registry {
	t.Helper()
	r := testenv.StartRegistry(t, testenv.RegistryOptions{Auth: testenv.RegistryAuthToken,
		Users: map[string]testenv.TokenUser{pullUser: {Password: pullPassword, Pull: []string{"**"}}}})
	r.Push(t, "team/app", "v1")
	r.Push(t, "team/web", "v1")
	// Tokens outlive the tests' clock steps, as Harbor's (30 minutes by
	// default) outlive a probe interval: a warm probe stays warm until
	// its module's auth_check_interval.
	r.Issuer.SetExpiresIn(3600)
	return r
}

// healthScheduler is a scheduler that is not run (the tests call
// probeOnce) on clock, with cfg applied, whose prober sends ua.
func healthScheduler(t *testing.T, ua string, clock *fakeClock, cfg *config.Config) (*Scheduler, *prometheus.Registry) {
	t.Helper()
	prober := probe.NewProber(probe.ProberOptions{UserAgent: ua, Now: clock.Now})
	t.Cleanup(prober.Close)
	s := NewScheduler(SchedulerOptions{Prober: prober, Now: clock.Now})
	s.ApplyConfig(cfg)
	reg := prometheus.NewRegistry()
	reg.MustRegister(s)
	return s, reg
}

// credModule is m with the pull account's credentials bound to hosts.
func credModule(m probe.Module, hosts ...string) probe.Module {
	m.Auth = probe.AuthConfig{Username: pullUser, Password: pullPassword, Registries: hosts}
	return m
}

func healthConfig(m probe.Module, targets ...config.TargetConfig) *config.Config {
	return &config.Config{Modules: map[string]probe.Module{"local": m}, Targets: targets}
}

func probeAll(s *Scheduler, names ...string) {
	for _, n := range names {
		s.probeOnce(context.Background(), s.runners[n])
	}
}

func lastResult(t *testing.T, s *Scheduler, name string) probe.Result {
	t.Helper()
	st, ok := status(s, name)
	if !ok || st.Last == nil {
		t.Fatalf("target %s has no result", name)
	}
	return *st.Last
}

// healthSamples gathers the health series and the request counters.
func healthSamples(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	return gatherSeries(t, reg, "imagepull_registry_health_up", "imagepull_registry_component_up",
		"imagepull_registry_auth_backend_up", "imagepull_registry_health_checks_total",
		"imagepull_registry_requests_total", "imagepull_probe_failure_reason", "imagepull_registry_up",
		"imagepull_registry_failure_reason")
}

func wantValue(t *testing.T, samples map[string]float64, want float64, metric string, labels ...string) {
	t.Helper()
	ks := series(samples, metric, labels...)
	if len(ks) != 1 {
		t.Errorf("%s%v: want one series, got %v", metric, labels, ks)
		return
	}
	if got := samples[ks[0]]; got != want {
		t.Errorf("%s = %v, want %v", ks[0], got, want)
	}
}

func wantNoSeries(t *testing.T, samples map[string]float64, metric string, labels ...string) {
	t.Helper()
	if ks := series(samples, metric, labels...); len(ks) != 0 {
		t.Errorf("%s%v: want no series, got %v", metric, labels, ks)
	}
}

// TestRegistryHealthProducts, for each product (simulated): the product is
// recognised from what the registry sends the first, cold probe, and one
// health request follows, through the Sender (kind="health"), carrying the
// module's credentials only for Nexus, whose status checks need them. The
// components are exported as the product names them. A warm probe sends
// no health request; after auth_check_interval exactly one more follows.
// When a component is down the registry is unhealthy; when it is one of
// the product's auth backend, imagepull_registry_auth_backend_up says so.
func TestRegistryHealthProducts(t *testing.T) {
	for _, c := range []struct {
		product    string
		components []string // as the product names them
		authDown   string   // a component of its auth backend ("" for Nexus: none)
		otherDown  string   // a component that is not
		creds      bool     // the health request carries the module's credentials
	}{
		{"harbor", []string{"core", "database", "jobservice", "portal", "redis", "registry", "registryctl"}, "database", "jobservice", false},
		{"quay", []string{"auth", "database", "disk_space", "redis", "registry_gunicorn", "service_key", "storage", "web_gunicorn"}, "auth", "storage", false},
		{"artifactory", []string{"jfac", "jfevt", "jffe", "jfmd", "jfrt", "router"}, "jfac", "jffe", false},
		{"nexus", []string{"Available CPUs", "Blob Stores", "DefaultRoleRealm", "File Descriptors", "Lifecycle Phase", "Read-Only Detector", "Scheduler", "Thread Deadlock Detector", "Transactions"}, "", "Blob Stores", true},
	} {
		t.Run(c.product, func(t *testing.T) {
			ua := "imagepull-health-" + c.product
			r := tokenRegistry(t)
			sim := testenv.StartProductSim(t, c.product, r)
			sim.SetMetricsUser(pullUser, pullPassword)
			clock := &fakeClock{t: time.Now()}
			s, reg := healthScheduler(t, ua, clock, healthConfig(credModule(healthModule, sim.Addr),
				tc(t, "app", sim.Ref("team/app", "v1"), 0)))
			regLabel := fmt.Sprintf("registry=%q", sim.Addr)
			prodLabel := fmt.Sprintf("product=%q", c.product)

			probeAll(s, "app")
			res := lastResult(t, s, "app")
			if !res.Success || res.Product != probe.Product(c.product) {
				t.Fatalf("cold probe: success %v, product %q (%s); want a success recognised as %s", res.Success, res.Product, res.Error, c.product)
			}
			hr := sim.HealthRequests()
			if len(hr) != 1 {
				t.Fatalf("health requests after the first probe: %v, want 1", hr)
			}
			if got := hr[0].Authorization != ""; got != c.creds {
				t.Errorf("health request %s carried credentials: %v, want %v", hr[0].Path, got, c.creds)
			}
			samples := healthSamples(t, reg)
			wantValue(t, samples, 1, "imagepull_registry_health_up", regLabel, prodLabel)
			for _, comp := range c.components {
				wantValue(t, samples, 1, "imagepull_registry_component_up", regLabel, prodLabel, fmt.Sprintf("component=%q", comp))
			}
			if n := len(series(samples, "imagepull_registry_component_up", regLabel)); n != len(c.components) {
				t.Errorf("%d component series, want %d", n, len(c.components))
			}
			if c.authDown != "" {
				wantValue(t, samples, 1, "imagepull_registry_auth_backend_up", regLabel, prodLabel)
			} else {
				wantNoSeries(t, samples, "imagepull_registry_auth_backend_up", regLabel)
			}
			wantValue(t, samples, 1, "imagepull_registry_requests_total", regLabel, `kind="health"`, `code="200"`)
			wantValue(t, samples, 1, "imagepull_registry_health_checks_total", regLabel, prodLabel, `result="healthy"`)

			// Warm: one HEAD, no health request.
			clock.Add(time.Minute)
			probeAll(s, "app")
			if n := len(sim.HealthRequests()); n != 1 {
				t.Errorf("health requests after a warm probe: %d, want still 1", n)
			}

			// A component that is not the auth backend goes down.
			sim.SetComponent(c.otherDown, false, "disk full")
			clock.Add(15 * time.Minute)
			probeAll(s, "app")
			if n := len(sim.HealthRequests()); n != 2 {
				t.Fatalf("health requests after auth_check_interval: %d, want 2", n)
			}
			samples = healthSamples(t, reg)
			wantValue(t, samples, 0, "imagepull_registry_health_up", regLabel, prodLabel)
			wantValue(t, samples, 0, "imagepull_registry_component_up", regLabel, fmt.Sprintf("component=%q", c.otherDown))
			if c.authDown != "" {
				wantValue(t, samples, 1, "imagepull_registry_auth_backend_up", regLabel, prodLabel)
				// Then its auth backend.
				sim.SetComponent(c.authDown, false, "connection refused")
				clock.Add(15 * time.Minute)
				probeAll(s, "app")
				samples = healthSamples(t, reg)
				wantValue(t, samples, 0, "imagepull_registry_auth_backend_up", regLabel, prodLabel)
				wantValue(t, samples, 0, "imagepull_registry_component_up", regLabel, fmt.Sprintf("component=%q", c.authDown))
			}
			// Every request the registry saw from the prober is counted,
			// and no health request reached it: the simulation answered.
			logged := testenv.LoggedKindCodes(testenv.FilterUA(r.Fence(t, "fence-"+c.product), ua), r.Issuer.AccessLogBy(ua))
			counted := testenv.CountedKindCodes(healthSamples(t, reg), "imagepull_registry_requests_total", regLabel)
			for k := range counted {
				if k.Kind == "health" {
					delete(counted, k)
				}
			}
			testenv.WantAgreement(t, c.product, counted, logged, testenv.KindCode{Kind: "manifest_head", Code: "200"})
		})
	}
}

// TestRegistryHealthIncident is the incident the project was born from,
// against a simulated Harbor: its database goes down, and from then on
// every login is answered 401 "invalid credentials" while
// /api/v2.0/health says the database is unhealthy. The probes' unauthorized
// must be counted as the registry's server_error, naming the database, in
// the target's reason, in the registry judgement (down, server_error) and
// in the join's cause for node-reported unauthorized; no series says
// unauthorized. The first login refused comes 5 minutes after the last
// health read, a third of auth_check_interval: the refusal itself makes the
// health read due. When the database is back, so is the truth: a refused
// login while Harbor reports itself healthy is unauthorized again.
func TestRegistryHealthIncident(t *testing.T) {
	const ua = "imagepull-health-incident"
	r := tokenRegistry(t)
	sim := testenv.StartProductSim(t, "harbor", r)
	clock := &fakeClock{t: time.Now()}
	s, reg := healthScheduler(t, ua, clock, healthConfig(credModule(healthModule, sim.Addr),
		tc(t, "app", sim.Ref("team/app", "v1"), 0), tc(t, "web", sim.Ref("team/web", "v1"), 0)))
	regLabel := fmt.Sprintf("registry=%q", sim.Addr)

	probeAll(s, "app")
	if res := lastResult(t, s, "app"); !res.Success {
		t.Fatalf("healthy Harbor: %s", res.Error)
	}
	if n := len(sim.HealthRequests()); n != 1 {
		t.Fatalf("health requests: %d, want 1", n)
	}

	// The database dies 5 minutes later.
	clock.Add(5 * time.Minute)
	sim.SetComponent("database", false, `failed to run SQL "SELECT 1": dial tcp 10.96.0.12:5432: connect: connection refused`)
	sim.SetLoginsFail(true)
	// web's first probe is cold: its login is refused. The health read of
	// 5 minutes ago is stale for judging a refusal: one more is sent.
	probeAll(s, "web")
	if n := len(sim.HealthRequests()); n != 2 {
		t.Fatalf("health requests after a refused login: %d, want 2", n)
	}
	res := lastResult(t, s, "web")
	if res.Reason != probe.ReasonServerError || !strings.Contains(res.Error, "database down") || !strings.Contains(res.Error, "harbor reports its auth backend down") {
		t.Errorf("web: reason %q, error %q; want server_error naming the database", res.Reason, res.Error)
	}
	// app's cached token still works: a warm probe succeeds, as real
	// Harbor's registry accepts tokens issued before the outage.
	probeAll(s, "app")
	if res := lastResult(t, s, "app"); !res.Success {
		t.Errorf("app warm probe: %s", res.Error)
	}
	// While the registry answers app, it is up; node-reported
	// unauthorized is the registry's failure all the same.
	if got := s.AttributeCause(sim.Addr, "unauthorized"); got != "server_error" {
		t.Errorf("AttributeCause(unauthorized) = %q, want server_error", got)
	}
	if got := s.AttributeCause(sim.Addr, "not_found"); got != "not_found" {
		t.Errorf("AttributeCause(not_found) = %q, want it unchanged", got)
	}

	// At the next auth check app's login is refused too: every probe
	// fails, the registry is down with server_error, not unauthorized.
	clock.Add(15 * time.Minute)
	probeAll(s, "app", "web")
	for _, name := range []string{"app", "web"} {
		if res := lastResult(t, s, name); res.Reason != probe.ReasonServerError {
			t.Errorf("%s: reason %q (%s), want server_error", name, res.Reason, res.Error)
		}
	}
	if h := s.RegistryHealth(sim.Addr); h.Up || h.Reason != probe.ReasonServerError {
		t.Errorf("registry judgement %+v, want down with server_error", h)
	}
	if got := s.RegistryCause(sim.Addr); got != "server_error" {
		t.Errorf("join cause %q, want server_error", got)
	}
	samples := healthSamples(t, reg)
	wantValue(t, samples, 0, "imagepull_registry_health_up", regLabel)
	wantValue(t, samples, 0, "imagepull_registry_component_up", regLabel, `component="database"`)
	wantValue(t, samples, 0, "imagepull_registry_auth_backend_up", regLabel)
	wantValue(t, samples, 0, "imagepull_registry_up", regLabel)
	wantValue(t, samples, 1, "imagepull_registry_failure_reason", regLabel, `reason="server_error"`)
	wantValue(t, samples, 0, "imagepull_registry_failure_reason", regLabel, `reason="unauthorized"`)
	for _, k := range series(samples, "imagepull_probe_failure_reason", regLabel, `reason="unauthorized"`) {
		if samples[k] != 0 {
			t.Errorf("%s = 1: the dead database is blamed on the credentials", k)
		}
	}

	// The database is back; logins work.
	sim.SetComponent("database", true, "")
	sim.SetLoginsFail(false)
	clock.Add(15 * time.Minute)
	probeAll(s, "app", "web")
	for _, name := range []string{"app", "web"} {
		if res := lastResult(t, s, name); !res.Success {
			t.Errorf("%s after recovery: %s", name, res.Error)
		}
	}
	samples = healthSamples(t, reg)
	wantValue(t, samples, 1, "imagepull_registry_health_up", regLabel)
	wantValue(t, samples, 1, "imagepull_registry_auth_backend_up", regLabel)

	// Logins refused while Harbor is healthy: the credentials' fault.
	sim.SetLoginsFail(true)
	clock.Add(15 * time.Minute)
	probeAll(s, "app")
	if res := lastResult(t, s, "app"); res.Reason != probe.ReasonUnauthorized {
		t.Errorf("refused login on a healthy Harbor: reason %q (%s), want unauthorized", res.Reason, res.Error)
	}
	if got := s.AttributeCause(sim.Addr, "unauthorized"); got != "unauthorized" {
		t.Errorf("AttributeCause on a healthy Harbor = %q, want unauthorized", got)
	}
}

// TestRegistryHealthFlapping: a simulated Quay whose components flap
// between health reads. Each read is taken as it comes (no read is
// remembered past the next), a component that is not the auth backend
// never excuses a refused login, and the auth backend excuses it only
// while it is reported down.
func TestRegistryHealthFlapping(t *testing.T) {
	const ua = "imagepull-health-flap"
	r := tokenRegistry(t)
	sim := testenv.StartProductSim(t, "quay", r)
	clock := &fakeClock{t: time.Now()}
	s, reg := healthScheduler(t, ua, clock, healthConfig(credModule(healthModule, sim.Addr),
		tc(t, "app", sim.Ref("team/app", "v1"), 0)))
	regLabel := fmt.Sprintf("registry=%q", sim.Addr)
	sim.SetLoginsFail(true)

	for i, step := range []struct {
		down       string // component reported down at this read ("" none)
		wantReason probe.Reason
		wantUp     float64
		wantAuthUp float64
	}{
		{"redis", probe.ReasonUnauthorized, 0, 1},
		{"", probe.ReasonUnauthorized, 1, 1},
		{"database", probe.ReasonServerError, 0, 0},
		{"", probe.ReasonUnauthorized, 1, 1},
		{"auth", probe.ReasonServerError, 0, 0},
		{"storage", probe.ReasonUnauthorized, 0, 1},
	} {
		for _, c := range []string{"redis", "database", "auth", "storage"} {
			sim.SetComponent(c, c != step.down, "flap")
		}
		clock.Add(15 * time.Minute)
		probeAll(s, "app")
		if n := len(sim.HealthRequests()); n != i+1 {
			t.Fatalf("step %d: %d health reads, want %d", i, n, i+1)
		}
		res := lastResult(t, s, "app")
		if res.Reason != step.wantReason {
			t.Errorf("step %d (%s down): reason %q (%s), want %q", i, step.down, res.Reason, res.Error, step.wantReason)
		}
		samples := healthSamples(t, reg)
		wantValue(t, samples, step.wantUp, "imagepull_registry_health_up", regLabel)
		wantValue(t, samples, step.wantAuthUp, "imagepull_registry_auth_backend_up", regLabel)
	}
	samples := healthSamples(t, reg)
	wantValue(t, samples, 2, "imagepull_registry_health_checks_total", regLabel, `result="healthy"`)
	wantValue(t, samples, 4, "imagepull_registry_health_checks_total", regLabel, `result="unhealthy"`)
}

// TestRegistryHealthNotRecognised: a plain distribution registry is none
// of the products, so under health: auto nothing but the probes' own
// requests reach it, over several auth-check intervals: the registry's and
// its token issuer's access logs hold exactly the requests counted, none
// of kind health, and nothing but the distribution API and the token
// realm was asked. A simulated Harbor under health: none is sent no health
// request either.
func TestRegistryHealthNotRecognised(t *testing.T) {
	const ua = "imagepull-health-unrecognised"
	r := tokenRegistry(t)
	clock := &fakeClock{t: time.Now()}
	s, reg := healthScheduler(t, ua, clock, healthConfig(credModule(healthModule, r.Addr),
		tc(t, "app", r.Ref("team/app", "v1"), 0), tc(t, "web", r.Ref("team/web", "v1"), 0)))
	for i := 0; i < 4; i++ {
		probeAll(s, "app", "web")
		probeAll(s, "app", "web")
		clock.Add(16 * time.Minute)
	}
	if res := lastResult(t, s, "app"); !res.Success || res.Product != "" {
		t.Fatalf("plain registry: success %v, product %q (%s)", res.Success, res.Product, res.Error)
	}
	entries := append(testenv.FilterUA(r.Fence(t, "fence-unrecognised"), ua), r.Issuer.AccessLogBy(ua)...)
	for _, e := range entries {
		path, _, _ := strings.Cut(e.Path, "?")
		if path != "/token" && path != "/v2/" && !strings.HasPrefix(path, "/v2/team/") {
			t.Errorf("request outside the distribution API and the token realm: %s %s", e.Method, e.Path)
		}
	}
	samples := healthSamples(t, reg)
	testenv.WantAgreement(t, "unrecognised registry",
		testenv.CountedKindCodes(samples, "imagepull_registry_requests_total"),
		testenv.LoggedKindCodes(entries),
		testenv.KindCode{Kind: "ping", Code: "401"}, testenv.KindCode{Kind: "token", Code: "200"}, testenv.KindCode{Kind: "manifest_head", Code: "200"})
	wantNoSeries(t, samples, "imagepull_registry_requests_total", `kind="health"`)
	wantNoSeries(t, samples, "imagepull_registry_health_up")
	wantNoSeries(t, samples, "imagepull_registry_health_checks_total")

	// health: none on a registry that says it is Harbor.
	sim := testenv.StartProductSim(t, "harbor", r)
	none := healthModule
	none.Health = probe.HealthNone
	s2, _ := healthScheduler(t, ua+"-none", clock, healthConfig(credModule(none, sim.Addr), tc(t, "app", sim.Ref("team/app", "v1"), 0)))
	for i := 0; i < 3; i++ {
		probeAll(s2, "app")
		clock.Add(16 * time.Minute)
	}
	if res := lastResult(t, s2, "app"); res.Product != probe.ProductHarbor {
		t.Errorf("product %q, want harbor recognised (and left alone)", res.Product)
	}
	if hr := sim.HealthRequests(); len(hr) != 0 {
		t.Errorf("health: none sent health requests: %v", hr)
	}
}

// TestRegistryHealthHostileReplies: a health API (simulated Harbor) that
// answers slowly, hugely, malformed, with a sign-in page, with a proxy's
// 502, or with a thousand components named with control characters. Each
// read is bounded by the module's timeout and 1 MiB, counted (requests and
// checks by result), and never trusted: no verdict, no series, no
// attribution, and the probes go on as before. The thousand components are
// cut to 32, those down first, names printable and at most 64 long.
func TestRegistryHealthHostileReplies(t *testing.T) {
	const ua = "imagepull-health-hostile"
	r := tokenRegistry(t)
	sim := testenv.StartProductSim(t, "harbor", r)
	sim.SetSlow(time.Minute)
	clock := &fakeClock{t: time.Now()}
	m := healthModule
	m.Timeout = time.Second
	s, reg := healthScheduler(t, ua, clock, healthConfig(credModule(m, sim.Addr), tc(t, "app", sim.Ref("team/app", "v1"), 0)))
	regLabel := fmt.Sprintf("registry=%q", sim.Addr)

	checks := map[string]float64{} // by result, cumulative
	for i, c := range []struct {
		mode, result, code string
	}{
		{testenv.HealthModeSlow, "error", "error"},
		{testenv.HealthModeHuge, "malformed", "200"},
		{testenv.HealthModeMalformed, "malformed", "200"},
		{testenv.HealthModeHTML, "malformed", "200"},
		{testenv.HealthModeError, "error", "502"},
	} {
		sim.SetHealthMode(c.mode)
		sim.SetComponent("database", false, "down")
		sim.SetLoginsFail(true)
		start := time.Now()
		probeAll(s, "app")
		if d := time.Since(start); d > 4*m.Timeout {
			t.Errorf("%s: the probe and its health read took %s, more than the timeouts allow", c.mode, d)
		}
		if n := len(sim.HealthRequests()); n != 2*i+1 {
			t.Fatalf("%s: %d health reads, want %d", c.mode, n, 2*i+1)
		}
		res := lastResult(t, s, "app")
		if res.Reason != probe.ReasonUnauthorized {
			t.Errorf("%s: reason %q (%s): a reply that is not Harbor's health must excuse nothing", c.mode, res.Reason, res.Error)
		}
		samples := healthSamples(t, reg)
		wantNoSeries(t, samples, "imagepull_registry_health_up", regLabel)
		wantNoSeries(t, samples, "imagepull_registry_component_up", regLabel)
		checks[c.result]++
		wantValue(t, samples, checks[c.result], "imagepull_registry_health_checks_total", regLabel, fmt.Sprintf("result=%q", c.result), `product="harbor"`)
		if got := series(samples, "imagepull_registry_requests_total", regLabel, `kind="health"`, fmt.Sprintf("code=%q", c.code)); len(got) != 1 {
			t.Errorf("%s: no health request counted with code %s: %v", c.mode, c.code, series(samples, "imagepull_registry_requests_total", regLabel, `kind="health"`))
		}
		// A healthy read between two modes: each mode is counted once.
		clock.Add(15 * time.Minute)
		sim.SetHealthMode(testenv.HealthModeNormal)
		sim.SetComponent("database", true, "")
		sim.SetLoginsFail(false)
		probeAll(s, "app") // healthy read, fresh token
		clock.Add(15 * time.Minute)
		if n := len(sim.HealthRequests()); n != 2*i+2 {
			t.Fatalf("%s: %d health reads after the healthy one, want %d", c.mode, n, 2*i+2)
		}
	}

	sim.SetHealthMode(testenv.HealthModeMany)
	probeAll(s, "app")
	samples := healthSamples(t, reg)
	comps := series(samples, "imagepull_registry_component_up", regLabel)
	if len(comps) != probe.MaxHealthComponents {
		t.Fatalf("%d component series, want %d", len(comps), probe.MaxHealthComponents)
	}
	for _, k := range comps {
		if samples[k] != 0 {
			t.Errorf("%s = %v: the components down must be kept first", k, samples[k])
		}
		_, name, _ := strings.Cut(k, `component="`)
		name, _, _ = strings.Cut(name, `"`)
		if len(name) > probe.MaxComponentName+3 || strings.ContainsAny(name, "\x00\x1b") {
			t.Errorf("component name %q is not bounded and printable", name)
		}
	}
}

// TestRegistryHealthCredentialsStayHome: the module's credentials go to a
// health API only where the product's API needs them (Nexus's status
// checks, simulated) and only to the registry they are bound to. A second
// host that also answers as Nexus (a credential sink in front of the
// simulation: an attacker's) gets neither probe nor health request with a
// credential, even under health: nexus configured; the bound Nexus gets
// its status checks read with them. When Nexus refuses them (an account
// without nexus:metrics:read), the anonymous status endpoint is read from
// then on, and never with credentials again.
func TestRegistryHealthCredentialsStayHome(t *testing.T) {
	const ua = "imagepull-health-creds"
	r := tokenRegistry(t)
	sim := testenv.StartProductSim(t, "nexus", r)
	sim.SetMetricsUser(pullUser, pullPassword)
	sink := testenv.StartCredentialSink(t, sim.URL)
	clock := &fakeClock{t: time.Now()}
	m := credModule(healthModule, sim.Addr)
	m.Health = probe.ProductNexus.Setting()
	s, reg := healthScheduler(t, ua, clock, healthConfig(m,
		tc(t, "bound", sim.Ref("team/app", "v1"), 0), tc(t, "elsewhere", sink.Addr+"/team/app:v1", 0)))

	probeAll(s, "bound", "elsewhere")
	if res := lastResult(t, s, "bound"); !res.Success {
		t.Fatalf("bound: %s", res.Error)
	}
	if leaks := sink.Leaks(pullPassword); len(leaks) != 0 {
		t.Errorf("the sink received credentials: %+v", leaks)
	}
	var sinkHealth []testenv.SinkRequest
	for _, rq := range sink.Requests() {
		if strings.HasPrefix(rq.Path, "/service/rest/") {
			sinkHealth = append(sinkHealth, rq)
		}
	}
	if len(sinkHealth) != 1 || sinkHealth[0].Path != "/service/rest/v1/status" {
		t.Errorf("health requests to the unbound host: %+v, want one anonymous GET /service/rest/v1/status", sinkHealth)
	}
	var boundHealth []testenv.SinkRequest
	for _, rq := range sim.HealthRequests() {
		if rq.Authorization != "" || rq.Path == "/service/rest/v1/status/check" {
			boundHealth = append(boundHealth, rq)
		}
	}
	if len(boundHealth) != 1 || boundHealth[0].Path != "/service/rest/v1/status/check" || !strings.HasPrefix(boundHealth[0].Authorization, "Basic ") {
		t.Errorf("health requests with credentials: %+v, want one GET /service/rest/v1/status/check with the module's Basic credentials", boundHealth)
	}

	// An account without nexus:metrics:read: refused once, then the
	// anonymous status endpoint.
	sim.SetMetricsUser("admin-only", "x")
	before := len(sim.HealthRequests())
	for i := 0; i < 2; i++ {
		clock.Add(16 * time.Minute)
		probeAll(s, "bound")
	}
	got := sim.HealthRequests()[before:]
	if len(got) < 2 {
		t.Fatalf("health requests after the refusal: %+v", got)
	}
	if got[0].Path != "/service/rest/v1/status/check" || got[0].Authorization == "" {
		t.Errorf("first read: %+v, want the status checks with credentials (refused)", got[0])
	}
	for _, rq := range got[1:] {
		if rq.Path != "/service/rest/v1/status" || rq.Authorization != "" {
			t.Errorf("after the refusal: %+v, want anonymous /service/rest/v1/status", rq)
		}
	}
	samples := healthSamples(t, reg)
	regLabel := fmt.Sprintf("registry=%q", sim.Addr)
	wantValue(t, samples, 1, "imagepull_registry_health_up", regLabel, `product="nexus"`)
	wantValue(t, samples, 1, "imagepull_registry_requests_total", regLabel, `kind="health"`, `code="403"`)
}
