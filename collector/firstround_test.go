package collector

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/imagepull/imagepull_exporter/collector/config"
	"github.com/imagepull/imagepull_exporter/internal/testenv"
)

// The first round probes every new target at once, bounded by the
// concurrency and the registry's budget only; the later rounds keep the
// spread. Asserted on the scheduling, never on time: the time until every
// target has a result is printed.

const firstRoundImages = 70

func firstRoundConfig(t *testing.T, host string, interval time.Duration) *config.Config {
	var targets []config.TargetConfig
	for i := range firstRoundImages {
		targets = append(targets, tc(t, fmt.Sprintf("img%02d", i), fmt.Sprintf("%s/team/app%02d:v1", host, i), interval))
	}
	return testConfig(targets...)
}

func everyTargetProbed(s *Scheduler) func() bool {
	return func() bool {
		snap := s.Snapshot()
		if len(snap.Targets) != firstRoundImages {
			return false
		}
		for _, t := range snap.Targets {
			if t.Successes+t.Failures == 0 {
				return false
			}
		}
		return true
	}
}

func TestFirstRoundProbesEveryTargetAtOnce(t *testing.T) {
	reg := testenv.StartMemRegistry(t, testenv.NewMemRegistryHandler())
	for i := range firstRoundImages {
		testenv.PushRandom(t, reg.Host, fmt.Sprintf("team/app%02d:v1", i))
	}
	// The registry's budget, at the default 60 requests a minute, would
	// be what bounds a first round of 70 probes: give it room, as a
	// deployment probing 70 images of one registry must (70 images every
	// 15 s is 280 requests a minute).
	const interval, budget = time.Hour, 600
	s := NewScheduler(SchedulerOptions{Budget: NewRequestBudget(budget, nil)})
	s.ApplyConfig(firstRoundConfig(t, reg.Host, interval))

	// No first probe waits on the spread; the later rounds keep it: one
	// phase per target, evenly over the interval.
	phases := map[time.Duration]bool{}
	s.mu.Lock()
	for _, r := range s.runners {
		if r.delay != 0 {
			t.Errorf("%s waits %s before its first probe, want 0", r.spec.name, r.delay)
		}
		phases[r.phase] = true
	}
	s.mu.Unlock()
	for i := range firstRoundImages {
		if p := interval * time.Duration(i) / firstRoundImages; !phases[p] {
			t.Errorf("no target has the phase %s: the later rounds are not spread evenly", p)
		}
	}

	start := time.Now()
	runScheduler(t, s)
	testenv.WaitFor(t, "every target probed", everyTargetProbed(s))
	t.Logf("%d images on one registry, concurrency %d, budget %g requests/min: every image has a result %s after start",
		firstRoundImages, DefaultConcurrency, float64(budget), time.Since(start).Round(time.Millisecond))
	for _, st := range s.Snapshot().Targets {
		if st.Successes != 1 || st.Failures != 0 {
			t.Errorf("%s: %d successes, %d failures after the first round, want 1 and 0", st.Name, st.Successes, st.Failures)
		}
	}
}

// TestFirstRoundWaitsForTheBudget: a first round larger than the registry's
// budget waits for tokens instead of skipping to the next interval, and
// is not counted as skipped probes.
func TestFirstRoundWaitsForTheBudget(t *testing.T) {
	reg := testenv.StartMemRegistry(t, testenv.NewMemRegistryHandler())
	for i := range firstRoundImages {
		testenv.PushRandom(t, reg.Host, fmt.Sprintf("team/app%02d:v1", i))
	}
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	// 20 requests a minute, and a clock that moves only when told: the
	// first 20 requests' probes run, the others wait for the clock.
	budget := NewRequestBudget(20, clock)
	s := NewScheduler(SchedulerOptions{Budget: budget})
	s.ApplyConfig(firstRoundConfig(t, reg.Host, time.Hour))
	runScheduler(t, s)
	results := func() int {
		n := 0
		for _, st := range s.Snapshot().Targets {
			if st.Successes+st.Failures > 0 {
				n++
			}
		}
		return n
	}
	testenv.WaitFor(t, "the budget spent", func() bool { return results() > 0 && budget.untilToken(reg.Host) > 0 })
	if n := results(); n >= firstRoundImages {
		t.Fatalf("%d targets probed on a budget of 20 requests, want fewer than %d", n, firstRoundImages)
	}
	// Minutes pass: every first probe gets its token.
	for !everyTargetProbed(s)() {
		mu.Lock()
		now = now.Add(time.Minute)
		mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	for _, e := range budget.Exhausted() {
		if e.Registry == reg.Host && e.Count > 0 {
			t.Errorf("%d first probes counted as skipped for the budget; they should have waited", e.Count)
		}
	}
}

func TestSecondProbeAfter(t *testing.T) {
	const iv = 10 * time.Minute
	for i := range 100 {
		phase := iv * time.Duration(i) / 100
		got := secondProbeAfter(phase, iv)
		if got < iv/2 || got > iv*3/2 || (got-phase)%iv != 0 {
			t.Errorf("phase %s: second probe after %s, want the phase, between %s and %s after the first", phase, got, iv/2, iv*3/2)
		}
	}
}
