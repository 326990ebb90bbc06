package collector

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imagepull/imagepull_exporter/collector/config"
	"github.com/imagepull/imagepull_exporter/internal/testenv"
	"github.com/imagepull/imagepull_exporter/probe"
)

// localModule probes the plain-HTTP loopback registries of these tests.
var localModule = probe.Module{Timeout: 10 * time.Second, Interval: time.Hour,
	AuthCheckInterval: time.Hour, PlainHTTP: true}

func tc(t *testing.T, name, image string, interval time.Duration) config.TargetConfig {
	t.Helper()
	ref, err := probe.ParseReference(image)
	if err != nil {
		t.Fatal(err)
	}
	return config.TargetConfig{Name: name, Image: image, Module: "local", Interval: interval, Ref: ref}
}

// testConfig builds a configuration directly (not through the loader) so
// that intervals can be shorter than the loader allows and tests stay fast.
func testConfig(targets ...config.TargetConfig) *config.Config {
	return &config.Config{Modules: map[string]probe.Module{"local": localModule, config.DefaultModuleName: probe.DefaultModule},
		Targets: targets}
}

// runScheduler starts s and stops it (and waits for it) at cleanup.
func runScheduler(t *testing.T, s *Scheduler) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		s.prober.Close()
	})
}

func status(s *Scheduler, name string) (TargetStatus, bool) {
	for _, t := range s.Snapshot().Targets {
		if t.Name == name {
			return t, true
		}
	}
	return TargetStatus{}, false
}

// probed reports whether target name has at least n results.
func probed(s *Scheduler, name string, n uint64) func() bool {
	return func() bool {
		st, ok := status(s, name)
		return ok && st.Successes+st.Failures >= n
	}
}

// gather returns every sample of the collector, keyed as testenv.Samples
// keys them.
func gather(t *testing.T, c prometheus.Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return testenv.Samples(mfs)
}

// series returns the keys of samples whose name is metric (or, for a prefix
// ending in '_', starts with it) and whose labels include every one of
// labels (`k="v"` strings).
func series(samples map[string]float64, metric string, labels ...string) []string {
	return testenv.Series(samples, metric, labels...)
}

func value(t *testing.T, samples map[string]float64, metric string, labels ...string) float64 {
	t.Helper()
	ks := series(samples, metric, labels...)
	if len(ks) != 1 {
		t.Fatalf("%s%v: want one series, got %v", metric, labels, ks)
	}
	return samples[ks[0]]
}

func TestSchedulerProbesSuccessAndNotFound(t *testing.T) {
	reg := testenv.StartMemRegistry(t, testenv.NewMemRegistryHandler())
	digest := testenv.PushRandom(t, reg.Host, "demo/app:v1")

	s := NewScheduler(SchedulerOptions{})
	s.ApplyConfig(testConfig(
		tc(t, "ok", reg.Host+"/demo/app:v1", 200*time.Millisecond),
		tc(t, "missing-tag", reg.Host+"/demo/app:nope", 200*time.Millisecond),
		tc(t, "missing-repo", reg.Host+"/demo/nothing:v1", 200*time.Millisecond),
	))
	runScheduler(t, s)
	for _, name := range []string{"ok", "missing-tag", "missing-repo"} {
		testenv.WaitFor(t, name+" probed twice", probed(s, name, 2))
	}

	ok, _ := status(s, "ok")
	if !ok.Last.Success || ok.Digest != digest.String() {
		t.Errorf("ok: success=%v reason=%s digest=%s, want success with %s", ok.Last.Success, ok.Last.Reason, ok.Digest, digest)
	}
	for _, name := range []string{"missing-tag", "missing-repo"} {
		st, _ := status(s, name)
		if st.Last.Success || st.Last.Reason != probe.ReasonNotFound {
			t.Errorf("%s: success=%v reason=%q, want not_found", name, st.Last.Success, st.Last.Reason)
		}
	}
	if n := reg.Count("GET", "/manifests/"); n != 0 {
		t.Errorf("%d manifest GETs reached the registry; a probe must only HEAD", n)
	}

	m := gather(t, s)
	okL := []string{`target="ok"`, `registry="` + reg.Host + `"`, `repository="demo/app"`, `reference="v1"`}
	if v := value(t, m, "imagepull_probe_success", okL...); v != 1 {
		t.Errorf("probe_success{ok} = %v", v)
	}
	if v := value(t, m, "imagepull_manifest_info", append(okL, `digest="`+digest.String()+`"`)...); v != 1 {
		t.Errorf("manifest_info{ok} = %v", v)
	}
	if v := value(t, m, "imagepull_probe_success", `target="missing-tag"`); v != 0 {
		t.Errorf("probe_success{missing-tag} = %v", v)
	}
	// One failure_reason series per reason: 1 on the current one only.
	for _, r := range probe.Reasons {
		want := 0.0
		if r == probe.ReasonNotFound {
			want = 1
		}
		if v := value(t, m, "imagepull_probe_failure_reason", `target="missing-repo"`, `reason="`+string(r)+`"`); v != want {
			t.Errorf("failure_reason{missing-repo,%s} = %v, want %v", r, v, want)
		}
		if v := value(t, m, "imagepull_probe_failure_reason", `target="ok"`, `reason="`+string(r)+`"`); v != 0 {
			t.Errorf("failure_reason{ok,%s} = %v, want 0 after a success", r, v)
		}
	}
	if got := len(series(m, "imagepull_probe_duration_seconds", `target="ok"`)); got != len(probe.Phases) {
		t.Errorf("%d duration series for ok, want one per phase (%d)", got, len(probe.Phases))
	}
	if v := value(t, m, "imagepull_manifest_head_duration_seconds", `target="ok"`); v < 2 {
		t.Errorf("manifest_head histogram count = %v, want >= 2 (one per probe)", v)
	}
	if v := value(t, m, "imagepull_exporter_targets", `source="config"`); v != 3 {
		t.Errorf("targets{config} = %v", v)
	}
	// Every request sent is counted; none is a manifest GET.
	if ks := series(m, "imagepull_registry_requests_total", `kind="manifest_get"`); len(ks) != 0 {
		t.Errorf("manifest_get requests counted: %v", ks)
	}
	if v := value(t, m, "imagepull_registry_requests_total", `kind="manifest_head"`, `code="200"`); v < 2 {
		t.Errorf("manifest_head 200 requests = %v", v)
	}
	// The registry sends no rate-limit headers: no rate-limit series.
	if ks := series(m, "imagepull_ratelimit_remaining"); len(ks) != 0 {
		t.Errorf("rate-limit series without headers: %v", ks)
	}
}

func TestSchedulerReloadRemovesAndRestartsTargets(t *testing.T) {
	reg := testenv.StartMemRegistry(t, testenv.NewMemRegistryHandler())
	testenv.PushRandom(t, reg.Host, "demo/keep:v1")
	testenv.PushRandom(t, reg.Host, "demo/gone:v1")
	testenv.PushRandom(t, reg.Host, "demo/change:v1")

	s := NewScheduler(SchedulerOptions{})
	keep := tc(t, "keep", reg.Host+"/demo/keep:v1", 100*time.Millisecond)
	change := tc(t, "change", reg.Host+"/demo/change:v1", 100*time.Millisecond)
	s.ApplyConfig(testConfig(keep, tc(t, "gone", reg.Host+"/demo/gone:v1", 100*time.Millisecond), change))
	runScheduler(t, s)
	for _, name := range []string{"keep", "gone", "change"} {
		testenv.WaitFor(t, name+" probed", probed(s, name, 2))
	}
	s.mu.Lock()
	keepRunner, changeRunner := s.runners["keep"], s.runners["change"]
	s.mu.Unlock()
	before, _ := status(s, "keep")

	change.Interval = 150 * time.Millisecond
	s.ApplyConfig(testConfig(keep, change))

	s.mu.Lock()
	if s.runners["keep"] != keepRunner {
		t.Error("an unchanged target was restarted")
	}
	if s.runners["change"] == changeRunner {
		t.Error("a changed target kept its old runner")
	}
	s.mu.Unlock()
	if _, ok := status(s, "gone"); ok {
		t.Error("the removed target is still in the snapshot")
	}
	m := gather(t, s)
	if ks := series(m, "imagepull_", `target="gone"`); len(ks) != 0 {
		t.Errorf("the removed target still has series: %v", ks)
	}
	after, _ := status(s, "keep")
	if after.Successes < before.Successes {
		t.Errorf("the unchanged target lost its state: %d successes before the reload, %d after", before.Successes, after.Successes)
	}

	// The removed target is no longer probed: once any probe that was in
	// flight during the reload has finished (two more probes of "keep"),
	// its request count stays put while "keep" goes on.
	testenv.WaitFor(t, "two more probes of keep", probed(s, "keep", after.Successes+2))
	gone := reg.Count("HEAD", "/demo/gone/")
	testenv.WaitFor(t, "three more probes of keep", probed(s, "keep", after.Successes+5))
	if n := reg.Count("HEAD", "/demo/gone/"); n != gone {
		t.Errorf("the removed target was probed after the reload: %d HEADs, then %d", gone, n)
	}
}

func TestSchedulerBudget(t *testing.T) {
	reg := testenv.StartMemRegistry(t, testenv.NewMemRegistryHandler())
	testenv.PushRandom(t, reg.Host, "demo/app:v1")

	// A frozen clock: the bucket never refills, so what it allows is
	// exactly its size. 3 requests: a cold probe (ping + HEAD = 2) and a
	// warm one (HEAD = 1); every later probe is skipped and counted.
	pushed := reg.Count("GET", "/") + reg.Count("HEAD", "/")
	frozen := time.Now()
	budget := NewRequestBudget(3, func() time.Time { return frozen })
	s := NewScheduler(SchedulerOptions{Budget: budget})
	s.ApplyConfig(testConfig(tc(t, "app", reg.Host+"/demo/app:v1", 20*time.Millisecond)))
	runScheduler(t, s)

	exhausted := func() float64 {
		for _, e := range budget.Exhausted() {
			if e.Registry == reg.Host {
				return float64(e.Count)
			}
		}
		return 0
	}
	testenv.WaitFor(t, "three skipped probes", func() bool { return exhausted() >= 3 })

	st, _ := status(s, "app")
	if st.Successes != 2 || st.Failures != 0 {
		t.Errorf("%d successful and %d failed probes, want 2 and 0 within a budget of 3 requests", st.Successes, st.Failures)
	}
	if n := reg.Count("GET", "/") + reg.Count("HEAD", "/") - pushed; n != 3 {
		t.Errorf("the registry saw %d requests, want the budget's 3", n)
	}
	m := gather(t, s)
	if v := value(t, m, "imagepull_probe_budget_exhausted_total", `registry="`+reg.Host+`"`); v < 3 {
		t.Errorf("budget_exhausted_total = %v, want >= 3", v)
	}
}

func TestSchedulerConcurrencyBound(t *testing.T) {
	// Six registries (one in-memory store behind six listeners), one
	// target each, so that all six first probes are due at once.
	h := testenv.NewMemRegistryHandler()
	counter := &testenv.InflightCounter{}
	var regs []*testenv.MemRegistry
	for i := 0; i < 6; i++ {
		regs = append(regs, testenv.StartCountedMemRegistry(t, h, counter))
	}
	testenv.PushRandom(t, regs[0].Host, "demo/app:v1")
	counter.MaxInflight.Store(0) // the push's parallel uploads are not probes
	var releases []func()
	for _, r := range regs {
		releases = append(releases, r.Hold())
	}
	releaseAll := func() {
		for _, rel := range releases {
			rel()
		}
	}
	defer releaseAll()

	const bound = 2
	s := NewScheduler(SchedulerOptions{Concurrency: bound})
	var targets []config.TargetConfig
	for i, r := range regs {
		targets = append(targets, tc(t, fmt.Sprintf("t%d", i), r.Host+"/demo/app:v1", time.Hour))
	}
	s.ApplyConfig(testConfig(targets...))
	runScheduler(t, s)

	inflight := counter.Inflight.Load
	// Every probe is either holding a request at a gate or queued on the
	// bound: exactly `bound` in flight, the other four waiting.
	testenv.WaitFor(t, "2 requests in flight and 4 probes queued", func() bool {
		return inflight() == bound && s.waiting.Load() == int64(len(regs)-bound)
	})
	releaseAll()
	for i := range regs {
		testenv.WaitFor(t, "all targets probed", probed(s, fmt.Sprintf("t%d", i), 1))
	}
	if maxSeen := counter.MaxInflight.Load(); maxSeen != bound {
		t.Errorf("at most %d requests were in flight at once, want the bound %d", maxSeen, bound)
	}
	for i := range regs {
		if st, _ := status(s, fmt.Sprintf("t%d", i)); !st.Last.Success {
			t.Errorf("t%d: %s %s", i, st.Last.Reason, st.Last.Error)
		}
	}
}

func TestSchedulerDiscoveredTargets(t *testing.T) {
	reg := testenv.StartMemRegistry(t, testenv.NewMemRegistryHandler())
	digest := testenv.PushRandom(t, reg.Host, "team/app:v2")
	ref, _ := probe.ParseReference(reg.Host + "/team/app:v2")

	s := NewScheduler(SchedulerOptions{})
	s.ApplyConfig(testConfig(tc(t, "configured", reg.Host+"/team/app:v2", time.Hour)))
	runScheduler(t, s)
	s.SetDiscovered([]DiscoveredTarget{
		{Name: "pod-image", Ref: ref, Module: "local"},
		{Name: "configured", Ref: ref, Module: "local"},  // the file's name wins
		{Name: "no-module", Ref: ref, Module: "missing"}, // ignored until defined
	})
	testenv.WaitFor(t, "discovered target probed", probed(s, "pod-image", 1))

	st, _ := status(s, "pod-image")
	if st.Source != SourceDiscovered || !st.Last.Success || st.Digest != digest.String() {
		t.Errorf("pod-image: source=%s success=%v digest=%s", st.Source, st.Last.Success, st.Digest)
	}
	if st, _ := status(s, "configured"); st.Source != SourceConfig {
		t.Errorf("configured target's source = %s; a discovered target took its name", st.Source)
	}
	if _, ok := status(s, "no-module"); ok {
		t.Error("a discovered target with an undefined module is probed")
	}
	m := gather(t, s)
	if v := value(t, m, "imagepull_exporter_targets", `source="discovered"`); v != 1 {
		t.Errorf("targets{discovered} = %v", v)
	}

	// A new keychain alone keeps the target (and its state).
	s.mu.Lock()
	r := s.runners["pod-image"]
	s.mu.Unlock()
	kc, _ := probe.ModuleKeychain(probe.Module{})
	s.SetDiscovered([]DiscoveredTarget{{Name: "pod-image", Ref: ref, Module: "local", Keychain: kc}})
	s.mu.Lock()
	same := s.runners["pod-image"] == r
	s.mu.Unlock()
	if !same {
		t.Error("changing only the keychain restarted the target")
	}
	if r.keychain.Load().kc != kc {
		t.Error("the new keychain was not stored")
	}

	s.SetDiscovered(nil)
	if _, ok := status(s, "pod-image"); ok {
		t.Error("a target no longer discovered is still probed")
	}
	if _, ok := status(s, "configured"); !ok {
		t.Error("clearing discovered targets removed a configured one")
	}
}

func TestSchedulerProbeStatus(t *testing.T) {
	reg := testenv.StartMemRegistry(t, testenv.NewMemRegistryHandler())
	digest := testenv.PushRandom(t, reg.Host, "demo/app:v1")
	down := testenv.StartMemRegistry(t, testenv.NewMemRegistryHandler())
	downHost := down.Host
	down.Close() // nothing listens there any more: connect fails

	s := NewScheduler(SchedulerOptions{})
	s.ApplyConfig(testConfig(
		tc(t, "a-ok", reg.Host+"/demo/app:v1", time.Hour),
		tc(t, "b-missing", reg.Host+"/demo/app:nope", time.Hour),
		tc(t, "down", downHost+"/demo/app:v1", time.Hour),
	))
	if got := s.RegistryCause(reg.Host); got != CauseUnprobed {
		t.Errorf("before any probe: RegistryCause = %q, want %q", got, CauseUnprobed)
	}
	runScheduler(t, s)
	testenv.WaitFor(t, "a-ok probed", probed(s, "a-ok", 1))
	testenv.WaitFor(t, "down probed", probed(s, "down", 1))
	// "b-missing" shares a-ok's registry, so its first probe is half an
	// interval away; the registry is ok from the one result there is.
	if got := s.RegistryCause(reg.Host); got != CauseRegistryOK {
		t.Errorf("RegistryCause(%s) = %q, want %q", reg.Host, got, CauseRegistryOK)
	}
	if got := s.RegistryCause(downHost); got != string(probe.ReasonConnect) {
		t.Errorf("RegistryCause(stopped registry) = %q, want connect", got)
	}
	if got := s.RegistryCause("registry.example.com"); got != CauseUnprobed {
		t.Errorf("RegistryCause(unknown) = %q, want %q", got, CauseUnprobed)
	}
	if d, reason, ok := s.TagResult(reg.Host, "demo/app", "v1"); !ok || d != digest.String() || reason != probe.ReasonNone {
		t.Errorf("TagResult(v1) = %q, %q, %v; want %s", d, reason, ok, digest)
	}
	if _, _, ok := s.TagResult(reg.Host, "demo/app", "v9"); ok {
		t.Error("TagResult of an unprobed tag says ok")
	}
	if _, reason, ok := s.TagResult(downHost, "demo/app", "v1"); !ok || reason != probe.ReasonConnect {
		t.Errorf("TagResult(down) = %q, %v; want connect", reason, ok)
	}
}

// TestRegistryCausePrecedence feeds results straight into the targets of
// one registry to check the documented precedence.
func TestRegistryCausePrecedence(t *testing.T) {
	res := func(reason probe.Reason) probe.Result {
		return probe.Result{Success: reason == probe.ReasonNone, Reason: reason, Start: time.Now()}
	}
	for _, c := range []struct {
		results []probe.Reason
		want    string
		// withSecrets marks targets probed with pull secrets (a Keychain).
		withSecrets []bool
	}{
		{results: []probe.Reason{probe.ReasonNone}, want: CauseRegistryOK},
		// A pod's rejected pull secret is that secret's problem: the
		// registry itself answers the module's probe fine.
		{results: []probe.Reason{probe.ReasonNone, probe.ReasonUnauthorized}, want: CauseRegistryOK, withSecrets: []bool{false, true}},
		// The module's own credentials rejected on one target while
		// another target is served: the registry is up (issue 11), the
		// rejection is that target's (ImagePullRegistryAuthFailing).
		{results: []probe.Reason{probe.ReasonNone, probe.ReasonUnauthorized}, want: CauseRegistryOK, withSecrets: []bool{true, false}},
		// ... and when every probe is rejected that way, the registry's
		// auth is down.
		{results: []probe.Reason{probe.ReasonUnauthorized, probe.ReasonUnauthorized}, want: string(probe.ReasonUnauthorized)},
		// Only pull-secret targets, all rejected: the registry answered;
		// the cause is the secrets', after a per-image not_found.
		{results: []probe.Reason{probe.ReasonUnauthorized, probe.ReasonUnauthorized}, want: string(probe.ReasonUnauthorized), withSecrets: []bool{true, true}},
		{results: []probe.Reason{probe.ReasonUnauthorized, probe.ReasonNotFound}, want: string(probe.ReasonNotFound), withSecrets: []bool{true, false}},
		// One target's path fails (a module's wrong CA, a dead proxy)
		// while another gets answers: the registry is up.
		{results: []probe.Reason{probe.ReasonNone, probe.ReasonConnect}, want: CauseRegistryOK, withSecrets: []bool{false, true}},
		{results: []probe.Reason{probe.ReasonTLS, probe.ReasonNone}, want: CauseRegistryOK},
		{results: []probe.Reason{probe.ReasonNone, probe.ReasonRateLimited}, want: CauseRegistryOK},
		// A connection failure is the registry's when nothing answers,
		// whatever the credentials.
		{results: []probe.Reason{probe.ReasonConnect, probe.ReasonConnect}, want: string(probe.ReasonConnect), withSecrets: []bool{false, true}},
		{results: []probe.Reason{probe.ReasonNone, probe.ReasonNotFound}, want: CauseRegistryOK},
		{results: []probe.Reason{probe.ReasonNotFound, probe.ReasonForbidden}, want: string(probe.ReasonNotFound)},
		{results: []probe.Reason{probe.ReasonForbidden}, want: string(probe.ReasonForbidden)},
		{results: []probe.Reason{probe.ReasonNotFound, probe.ReasonUnauthorized}, want: string(probe.ReasonNotFound)},
		// No credentials is not an outage, and never the join's cause.
		{results: []probe.Reason{probe.ReasonNoCredentials}, want: CauseRegistryOK},
		{results: []probe.Reason{probe.ReasonNoCredentials, probe.ReasonTimeout}, want: CauseRegistryOK},
		{results: []probe.Reason{probe.ReasonNoCredentials, probe.ReasonNotFound}, want: string(probe.ReasonNotFound)},
		{results: []probe.Reason{probe.ReasonTimeout, probe.ReasonDNS, probe.ReasonServerError}, want: string(probe.ReasonDNS)},
		// The exporter's own file problems (config) are never the
		// registry's cause: left out, as if that target were unprobed.
		{results: []probe.Reason{probe.ReasonConfig}, want: CauseUnprobed},
		{results: []probe.Reason{probe.ReasonConfig, probe.ReasonNotFound}, want: string(probe.ReasonNotFound)},
		{results: []probe.Reason{probe.ReasonConfig, probe.ReasonNone}, want: CauseRegistryOK},
	} {
		s := NewScheduler(SchedulerOptions{})
		var targets []config.TargetConfig
		for i := range c.results {
			targets = append(targets, tc(t, fmt.Sprintf("t%d", i), fmt.Sprintf("registry.example.com/r%d:v1", i), time.Hour))
		}
		s.ApplyConfig(testConfig(targets...))
		for i, r := range c.results {
			runner := s.runners[fmt.Sprintf("t%d", i)]
			if i < len(c.withSecrets) && c.withSecrets[i] {
				runner.keychain.Store(&keychainBox{staticKeychain{}})
			}
			runner.record(res(r))
		}
		if got := s.RegistryCause("registry.example.com"); got != c.want {
			t.Errorf("results %v (pull secrets %v): RegistryCause = %q, want %q", c.results, c.withSecrets, got, c.want)
		}
	}
}

// TestTagResultIgnoresConfig: a target whose probe failed on the
// exporter's own files says nothing about what its tag serves, so the join
// does not blame the image or the registry for it.
func TestTagResultIgnoresConfig(t *testing.T) {
	s := NewScheduler(SchedulerOptions{})
	s.ApplyConfig(testConfig(tc(t, "a", "registry.example.com/app:v1", time.Hour)))
	s.runners["a"].record(probe.Result{Reason: probe.ReasonConfig, Start: time.Now()})
	if d, r, ok := s.TagResult("registry.example.com", "app", "v1"); ok {
		t.Errorf("TagResult = %q, %q, true; want nothing known", d, r)
	}
}

// staticKeychain stands for a pod's pull secrets: RegistryCause only asks
// whether a target has a keychain, never what it resolves to.
type staticKeychain struct{}

func (staticKeychain) Resolve(probe.Reference) ([]probe.Credential, error) {
	return []probe.Credential{{Username: "pod", Password: "not-a-real-password", Source: "secret test/pull"}}, nil
}

// A reload that removes the last target of a registry removes every series
// about that registry (request and malformed-header counters, rate limit,
// certificate expiry, probes skipped for its budget), and one that drops a
// mirror drops its request counter; the registry that stays keeps its
// counts.
func TestReloadDropsRegistrySeries(t *testing.T) {
	budget := NewRequestBudget(1, func() time.Time { return t0 })
	s := NewScheduler(SchedulerOptions{Now: func() time.Time { return t0 }, Budget: budget})
	quay := tc(t, "quay", "quay.io/prometheus/busybox:latest", time.Minute)
	ghcr := tc(t, "ghcr", "ghcr.io/acme/app:v1", time.Minute)
	withMirror, err := config.Parse("mirror.yml", []byte(`
modules:
  local: {timeout: 10s, interval: 1m}
targets:
  - {name: quay, image: "quay.io/prometheus/busybox:latest", module: local}
  - {name: ghcr, image: "ghcr.io/acme/app:v1", module: local}
mirrors:
  quay.io: [https://mirror.example]
`))
	if err != nil {
		t.Fatal(err)
	}
	s.ApplyConfig(withMirror)
	res := func(ref probe.Reference) probe.Result {
		return probe.Result{Ref: ref, Start: t0, Success: true, Digest: "sha256:1", Phases: phases(time.Millisecond, time.Millisecond),
			RateLimit: &probe.RateLimit{Limit: 10, Remaining: 9}, TLSCertExpiry: t0.Add(time.Hour),
			MalformedHeaderNames: []string{probe.HeaderRetryAfter},
			Requests:             []probe.Request{{Kind: probe.KindManifestHead, Method: "HEAD", Status: 200}}}
	}
	feed(s, "quay", res(quay.Ref))
	feed(s, "ghcr", res(ghcr.Ref))
	for _, reg := range []string{"quay.io", "ghcr.io"} { // spend each budget, then be refused once
		budget.Charge(reg, 1)
		if budget.Take(reg) {
			t.Fatalf("%s: budget not spent", reg)
		}
	}
	s.sender.count(Send{Purpose: PurposeMirror, Registry: "quay.io", Mirror: "mirror.example"},
		&probe.Result{Requests: []probe.Request{{Kind: probe.KindManifestHead, Method: "HEAD", Status: 200}}})

	registryWide := []string{"imagepull_registry_requests_total", "imagepull_malformed_headers_total",
		"imagepull_ratelimit_remaining", "imagepull_tls_cert_expiry_timestamp_seconds", "imagepull_probe_budget_exhausted_total"}
	m := gather(t, s)
	for _, metric := range registryWide {
		for _, reg := range []string{"quay.io", "ghcr.io"} {
			if ks := series(m, metric, `registry="`+reg+`"`); len(ks) != 1 {
				t.Fatalf("before the reload, %s for %s: %v", metric, reg, ks)
			}
		}
	}
	if ks := series(m, "imagepull_mirror_requests_total", `mirror="mirror.example"`); len(ks) != 1 {
		t.Fatalf("before the reload, mirror requests: %v", ks)
	}

	s.ApplyConfig(testConfig(quay)) // ghcr.io's only target and quay.io's mirror go
	m = gather(t, s)
	for _, metric := range registryWide {
		if ks := series(m, metric, `registry="ghcr.io"`); len(ks) != 0 {
			t.Errorf("after the reload, ghcr.io is probed no more but has %v", ks)
		}
		if ks := series(m, metric, `registry="quay.io"`); len(ks) != 1 {
			t.Errorf("after the reload, quay.io's %s: %v, want it kept", metric, ks)
		}
	}
	if ks := series(m, "imagepull_mirror_requests_total"); len(ks) != 0 {
		t.Errorf("after the reload, the dropped mirror's requests are still counted: %v", ks)
	}

	// A mirror probe that was in flight during the reload ends now: its
	// requests count, but under "other", not as the dropped mirror's.
	s.sender.count(Send{Purpose: PurposeMirror, Registry: "quay.io", Mirror: "mirror.example"},
		&probe.Result{Requests: []probe.Request{{Kind: probe.KindManifestHead, Method: "HEAD", Status: 200}}})
	m = gather(t, s)
	if ks := series(m, "imagepull_mirror_requests_total", `mirror="mirror.example"`); len(ks) != 0 {
		t.Errorf("a late mirror probe re-created the dropped mirror's series: %v", ks)
	}
	if ks := series(m, "imagepull_mirror_requests_total", `mirror="other"`, `upstream="other"`); len(ks) != 1 {
		t.Errorf("a late mirror probe's requests are not counted under other: %v", series(m, "imagepull_mirror_requests_total"))
	}
}
