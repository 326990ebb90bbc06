package web

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imagepull/imagepull_exporter/collector"
	"github.com/imagepull/imagepull_exporter/collector/config"
	"github.com/imagepull/imagepull_exporter/internal/testenv"
	"github.com/imagepull/imagepull_exporter/probe"
)

// TestProbeHandlerAccounting (issue 8, item 1): /probe sends through the
// scheduler's Sender, so the scheduler's imagepull_registry_requests_total
// grows by exactly the requests /probe sent, kind by kind and code by code,
// as the registry's and the token issuer's logs show them; and /probe's
// requests to a registry no target probes are counted, exactly, under
// registry="other", with no series of that registry. The scheduler's
// prober and /probe's have different User-Agents, so the logs tell whose
// request each was.
func TestProbeHandlerAccounting(t *testing.T) {
	const schedUA, probeUA = "imagepull-acct-web-scheduler", "imagepull-acct-web-probe"
	probed := testenv.StartRegistry(t, testenv.RegistryOptions{Auth: testenv.RegistryAuthToken,
		Users: map[string]testenv.TokenUser{"puller": {Password: "puller-pw-9b2d", Pull: []string{"**"}}}})
	probed.Push(t, "team/app", "v1")
	unprobed := testenv.StartRegistry(t, testenv.RegistryOptions{})
	unprobed.Push(t, "team/other", "v1")

	image := probed.Ref("team/app", "v1")
	ref, err := probe.ParseReference(image)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	withAuth := localModule
	withAuth.Auth = probe.AuthConfig{Username: "puller", Password: "puller-pw-9b2d", Registries: []string{ref.Registry}}
	cfg.Modules["auth"] = withAuth
	cfg.Targets = []config.TargetConfig{{Name: "app", Image: image, Module: "auth", Interval: time.Hour, Ref: ref}}
	prober := probe.NewProber(probe.ProberOptions{UserAgent: schedUA})
	defer prober.Close()
	s := collector.NewScheduler(collector.SchedulerOptions{Prober: prober})
	s.ApplyConfig(cfg)
	reg := prometheus.NewRegistry()
	reg.MustRegister(s)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	// The first probe of a target starts at once; the next is an hour
	// away, so only /probe sends from here on.
	testenv.WaitFor(t, "the scheduled probe", func() bool {
		st := s.Snapshot().Targets[0]
		return st.Successes+st.Failures == 1
	})

	counted := func(labels ...string) map[testenv.KindCode]int {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		return testenv.CountedKindCodes(testenv.Samples(mfs), "imagepull_registry_requests_total", labels...)
	}
	onProbed := fmt.Sprintf("registry=%q", probed.Addr)
	before := counted(onProbed)
	if d := testenv.DiffKindCodes(before, testenv.LoggedKindCodes(
		testenv.FilterUA(probed.Fence(t, "fence-scheduled"), schedUA), probed.Issuer.AccessLogBy(schedUA))); d != "" {
		t.Fatalf("the scheduled probe: counter and logs disagree:\n%s", d)
	}

	h := NewProbeHandler(ProbeHandlerOptions{Config: func() *config.Config { return cfg }, Sender: s.Sender(), UserAgent: probeUA})
	for _, q := range []url.Values{
		{"target": {image}, "module": {"auth"}},
		{"target": {image}, "module": {"auth"}},
		{"target": {probed.Ref("team/app", "nope")}, "module": {"auth"}},
		{"target": {image}, "module": {"local"}}, // no credentials: the token request is anonymous and refused
		{"target": {unprobed.Ref("team/other", "v1")}, "module": {"local"}},
		{"target": {unprobed.Ref("team/other", "nope")}, "module": {"local"}},
	} {
		if code, _, body := get(t, h, "/probe?"+q.Encode()); code != http.StatusOK {
			t.Fatalf("/probe?%s: %d %s", q.Encode(), code, body)
		}
	}

	after := counted(onProbed)
	grew := map[testenv.KindCode]int{}
	for k, n := range after {
		grew[k] = n - before[k]
	}
	for k, n := range before {
		if _, ok := after[k]; !ok {
			grew[k] = -n
		}
	}
	logged := testenv.LoggedKindCodes(testenv.FilterUA(probed.Fence(t, "fence-probe"), probeUA), probed.Issuer.AccessLogBy(probeUA))
	if d := testenv.DiffKindCodes(grew, logged); d != "" {
		t.Errorf("/probe of a probed registry: the scheduler's counter grew by other than what /probe sent:\n%s\ngrew   %v\nlogged %v", d, grew, logged)
	}
	for _, kc := range []testenv.KindCode{{Kind: "ping", Code: "401"}, {Kind: "token", Code: "200"}, {Kind: "token", Code: "401"},
		{Kind: "manifest_head", Code: "200"}, {Kind: "manifest_head", Code: "404"}} {
		if logged[kc] == 0 {
			t.Errorf("/probe sent no %s request answered %s (logged %v): the scenario misses what it should exercise", kc.Kind, kc.Code, logged)
		}
	}

	other := counted(fmt.Sprintf("registry=%q", collector.OtherRegistry))
	loggedOther := testenv.LoggedKindCodes(testenv.FilterUA(unprobed.Fence(t, "fence-other"), probeUA))
	if d := testenv.DiffKindCodes(other, loggedOther); d != "" {
		t.Errorf(`/probe of a registry no target probes: registry="other" disagrees with its log:`+"\n%s\ncounted %v\nlogged  %v", d, other, loggedOther)
	}
	if loggedOther[testenv.KindCode{Kind: "manifest_head", Code: "404"}] == 0 {
		t.Errorf("no HEAD 404 on the unprobed registry (logged %v)", loggedOther)
	}
	if n := counted(fmt.Sprintf("registry=%q", unprobed.Addr)); len(n) != 0 {
		t.Errorf("/probe created series of registry %s, which no target probes: %v", unprobed.Addr, n)
	}
}
