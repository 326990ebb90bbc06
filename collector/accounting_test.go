package collector

import (
	"context"
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imagepull/imagepull_exporter/collector/config"
	"github.com/imagepull/imagepull_exporter/internal/testenv"
	"github.com/imagepull/imagepull_exporter/probe"
)

// Issue 8, item 1: for each caller of the Sender, the request counters and
// what the servers saw agree exactly, kind by kind and code by code. The
// servers' side is read from the wire: the registry's access log and the
// token issuer's, filtered by a User-Agent only the test's prober sends,
// and classified by method and path (testenv.AccessLogEntry.RequestKind),
// not by the prober's own labels.

// TestScheduledProbeAccounting: scheduled probes of a token-auth registry,
// cold (ping, token, HEAD) then warm (HEAD only), of a tag that exists and
// one that does not: imagepull_registry_requests_total equals the
// registry's and the token issuer's logs of the prober's requests.
func TestScheduledProbeAccounting(t *testing.T) {
	const ua = "imagepull-acct-scheduled"
	r := testenv.StartRegistry(t, testenv.RegistryOptions{Auth: testenv.RegistryAuthToken,
		Users: map[string]testenv.TokenUser{"puller": {Password: "puller-pw-3c1e", Pull: []string{"**"}}}})
	r.Push(t, "team/app", "v1")

	m := localModule
	m.Auth = probe.AuthConfig{Username: "puller", Password: "puller-pw-3c1e", Registries: []string{r.Addr}}
	cfg := &config.Config{Modules: map[string]probe.Module{"local": m},
		Targets: []config.TargetConfig{tc(t, "ok", r.Ref("team/app", "v1"), 0), tc(t, "missing", r.Ref("team/app", "nope"), 0)}}
	s, reg := accountingScheduler(t, ua, cfg)
	ctx := context.Background()

	check := func(round string, musthave ...testenv.KindCode) {
		t.Helper()
		logged := testenv.LoggedKindCodes(
			testenv.FilterUA(r.Fence(t, "fence-"+round), ua),
			r.Issuer.AccessLogBy(ua))
		samples := gatherSeries(t, reg, "imagepull_registry_requests_total")
		testenv.WantAgreement(t, round, testenv.CountedKindCodes(samples, "imagepull_registry_requests_total", fmt.Sprintf("registry=%q", r.Addr)), logged, musthave...)
		// Nothing of it is counted under another registry.
		testenv.WantAgreement(t, round+", every registry", testenv.CountedKindCodes(samples, "imagepull_registry_requests_total"), logged)
	}

	for _, name := range []string{"ok", "missing"} {
		s.probeOnce(ctx, s.runners[name])
	}
	check("cold",
		testenv.KindCode{Kind: "ping", Code: "401"}, testenv.KindCode{Kind: "token", Code: "200"},
		testenv.KindCode{Kind: "manifest_head", Code: "200"}, testenv.KindCode{Kind: "manifest_head", Code: "404"})

	for i := 0; i < 2; i++ {
		for _, name := range []string{"ok", "missing"} {
			s.probeOnce(ctx, s.runners[name])
		}
	}
	for _, name := range []string{"ok", "missing"} {
		if st, _ := status(s, name); st.Successes+st.Failures != 3 {
			t.Fatalf("target %s: %d probes recorded, want 3", name, st.Successes+st.Failures)
		}
	}
	check("warm")
}

// TestMirrorProbeAccounting: the probes of a `mirrors:` mirror (a second
// registry, filled by copying) are counted in
// imagepull_mirror_requests_total{mirror,upstream}, and exactly the
// requests the mirror saw; the upstream's in imagepull_registry_requests_total.
// One tag is on the mirror (HEAD 200), one only upstream (HEAD 404 on the
// mirror).
func TestMirrorProbeAccounting(t *testing.T) {
	const ua = "imagepull-acct-mirror"
	upstream := testenv.StartRegistry(t, testenv.RegistryOptions{})
	upstream.Push(t, "team/app", "v1")
	upstream.Push(t, "team/app", "v2")
	mirror := testenv.StartRegistry(t, testenv.RegistryOptions{})
	copyImage(t, upstream, mirror, "team/app", "v1")

	cfg, err := config.Parse("mirrors.yml", []byte(fmt.Sprintf(`
modules:
  local: {timeout: 5s, interval: 1h, plain_http: true}
mirrors:
  %[1]q: ["http://%[2]s"]
targets:
  - {name: synced, image: "%[1]s/team/app:v1", module: local}
  - {name: unsynced, image: "%[1]s/team/app:v2", module: local}
`, upstream.Addr, mirror.Addr)))
	if err != nil {
		t.Fatal(err)
	}
	s, reg := accountingScheduler(t, ua, cfg)
	ctx := context.Background()

	for i := 0; i < 3; i++ {
		for _, name := range []string{"synced", "unsynced"} {
			s.probeOnce(ctx, s.runners[name])
		}
	}

	samples := gatherSeries(t, reg, "imagepull_mirror_requests_total", "imagepull_registry_requests_total")
	testenv.WantAgreement(t, "mirror",
		testenv.CountedKindCodes(samples, "imagepull_mirror_requests_total", fmt.Sprintf("mirror=%q", mirror.Addr), fmt.Sprintf("upstream=%q", upstream.Addr)),
		testenv.LoggedKindCodes(testenv.FilterUA(mirror.Fence(t, "fence-mirror"), ua)),
		testenv.KindCode{Kind: "manifest_head", Code: "200"}, testenv.KindCode{Kind: "manifest_head", Code: "404"})
	testenv.WantAgreement(t, "every mirror series",
		testenv.CountedKindCodes(samples, "imagepull_mirror_requests_total"),
		testenv.LoggedKindCodes(testenv.FilterUA(mirror.AccessLog(), ua)))
	testenv.WantAgreement(t, "upstream",
		testenv.CountedKindCodes(samples, "imagepull_registry_requests_total"),
		testenv.LoggedKindCodes(testenv.FilterUA(upstream.Fence(t, "fence-upstream"), ua)),
		testenv.KindCode{Kind: "ping", Code: "200"}, testenv.KindCode{Kind: "manifest_head", Code: "200"})
}

// accountingScheduler returns a scheduler that is not run (the tests drive
// probeOnce themselves) with cfg applied, a prober sending ua, and a
// registry that gathers it.
func accountingScheduler(t *testing.T, ua string, cfg *config.Config) (*Scheduler, *prometheus.Registry) {
	t.Helper()
	prober := probe.NewProber(probe.ProberOptions{UserAgent: ua})
	t.Cleanup(prober.Close)
	s := NewScheduler(SchedulerOptions{Prober: prober})
	s.ApplyConfig(cfg)
	reg := prometheus.NewRegistry()
	reg.MustRegister(s)
	return s, reg
}
