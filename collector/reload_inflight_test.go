package collector

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/imagepull/imagepull_exporter/internal/testenv"
)

// TestInFlightProbeOfRemovedTargetRecordsNothing: a probe that is waiting
// on its registry when a reload removes its target (and with it the last
// target of the registry) records nothing: no target state, no rate limit,
// and no registry series re-created after the reload pruned them. Its
// requests were really sent, so they are counted, under registry="other".
func TestInFlightProbeOfRemovedTargetRecordsNothing(t *testing.T) {
	// Docker Hub's documented rate-limit headers on every reply (a
	// simulation: no real registry here sends them).
	h := testenv.NewMemRegistryHandler()
	counter := &testenv.InflightCounter{}
	reg := testenv.StartCountedMemRegistry(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("RateLimit-Limit", "100;w=21600")
		w.Header().Set("RateLimit-Remaining", "99;w=21600")
		h.ServeHTTP(w, r)
	}), counter)
	testenv.PushRandom(t, reg.Host, "demo/app:v1")
	counter.MaxInflight.Store(0)

	s := NewScheduler(SchedulerOptions{})
	gone := tc(t, "gone", reg.Host+"/demo/app:v1", time.Hour)
	s.ApplyConfig(testConfig(gone))
	// Warm: one finished probe, so the registry has every series.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		<-done
		s.prober.Close()
	}()
	testenv.WaitFor(t, "gone probed", probed(s, "gone", 1))
	m := gather(t, s)
	for _, metric := range []string{"imagepull_registry_requests_total", "imagepull_ratelimit_remaining"} {
		if ks := series(m, metric, `registry="`+reg.Host+`"`); len(ks) == 0 {
			t.Fatalf("before the reload, no %s for the registry", metric)
		}
	}

	// The next probe waits at the registry's gate when the reload comes.
	release := reg.Hold()
	again := gone
	again.Interval = 2 * time.Hour
	s.ApplyConfig(testConfig(again)) // a changed target: a fresh runner probes at once
	testenv.WaitFor(t, "a probe held at the registry", func() bool { return counter.Inflight.Load() == 1 })
	s.mu.Lock()
	held := s.runners["gone"]
	s.mu.Unlock()

	s.ApplyConfig(testConfig()) // the reload removes the target and its registry
	release()
	// Stop the scheduler: every probe goroutine has returned after this.
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	done <- nil // for the deferred receive

	m = gather(t, s)
	if ks := series(m, "imagepull_", `registry="`+reg.Host+`"`); len(ks) != 0 {
		t.Errorf("the probe in flight re-created the pruned registry's series: %v", ks)
	}
	if ks := series(m, "imagepull_registry_requests_total", `registry="other"`); len(ks) == 0 {
		t.Errorf("the requests of the probe in flight were not counted (under other): %v", series(m, "imagepull_registry_requests_total"))
	}
	held.mu.Lock()
	last := held.st.Last
	held.mu.Unlock()
	if last != nil {
		t.Errorf("the removed runner recorded %+v", last)
	}
}
