package collector

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// Buckets of registries nobody probed for two minutes are dropped (they are
// full again by then), so /probe callers naming ever new registries cannot
// grow the budget without bound; a bucket still in debt is kept.
func TestRequestBudgetForgetsIdleRegistries(t *testing.T) {
	now := t0
	b := NewRequestBudget(10, func() time.Time { return now })
	for _, reg := range []string{"idle.example", "busy.example"} {
		if !b.Take(reg) {
			t.Fatalf("first Take(%s) refused", reg)
		}
		b.Charge(reg, 20) // ten requests into debt
	}
	now = now.Add(bucketIdle)
	b.Charge("busy.example", 15) // refilled to 10 by now, then 5 into debt
	now = now.Add(time.Second)
	if !b.Take("new.example") {
		t.Fatal("Take(new.example) refused")
	}

	b.mu.Lock()
	_, idleKept := b.buckets["idle.example"]
	busy := *b.buckets["busy.example"]
	n := len(b.buckets)
	b.mu.Unlock()
	if idleKept || n != 2 {
		t.Errorf("after two idle minutes: %d buckets, idle.example kept %v; want busy.example and new.example only", n, idleKept)
	}
	if busy.tokens != -5 {
		t.Errorf("busy.example holds %g tokens, want its debt of -5 kept", busy.tokens)
	}
	// A dropped bucket comes back full, as if it had been kept.
	for i := 0; i < 10; i++ {
		if !b.Take("idle.example") {
			t.Fatalf("Take(idle.example) %d refused; a forgotten registry starts with a full bucket", i)
		}
		b.Charge("idle.example", 1)
	}
	if b.Take("idle.example") {
		t.Error("an eleventh request within the minute was allowed")
	}
}

// A /probe flood spends only its share of a registry's budget: over ten
// minutes of a fake clock, with /probe callers trying ten times a second
// and scheduled probes asking for the whole rate, at least 80% of the
// scheduled probes run (issue 9), and /probe gets its share.
func TestRequestBudgetShareSurvivesOnDemandFlood(t *testing.T) {
	now := t0
	b := NewRequestBudget(60, func() time.Time { return now })
	const reg = "registry.example"
	var run, skipped, onDemand int
	for step := 0; step < 6000; step++ { // 100 ms steps
		for i := 0; i < 10; i++ { // the flood
			if b.AllowOnDemand(reg) == nil {
				onDemand++
				b.Settle(reg, 3) // cold: ping, token, HEAD
			}
		}
		if step%10 == 0 { // a warm scheduled probe every second: the whole rate
			if b.Take(reg) {
				run++
				b.Charge(reg, 1) // warm: one HEAD
			} else {
				skipped++
			}
		}
		now = now.Add(100 * time.Millisecond)
	}
	t.Logf("scheduled: %d run, %d skipped; /probe: %d allowed of 60000", run, skipped, onDemand)
	// /probe's share is 12 requests a minute (4 cold probes), plus its
	// first 12.
	if run < int(0.8*600) {
		t.Errorf("scheduled probes: %d run, %d skipped; want at least 80%% of the 600 the budget allows", run, skipped)
	}
	if onDemand < 40 || onDemand > 45 {
		t.Errorf("%d /probe calls allowed, want about 40 (12 requests a minute of cold probes)", onDemand)
	}
}

// Concurrent /probe calls are charged when they start, so that they cannot
// all pass the share check before any of them is charged; and /probe runs
// while the scheduler has spent the registry's bucket.
func TestRequestBudgetOnDemandChargedUpFront(t *testing.T) {
	b := NewRequestBudget(60, func() time.Time { return t0 })
	b.Charge("r.example", 60) // the scheduler spent the minute
	allowed := 0
	for i := 0; i < 100; i++ {
		if b.AllowOnDemand("r.example") == nil {
			allowed++
		}
	}
	// A share of 12, OnDemandCost (3) each.
	if allowed != 4 {
		t.Errorf("%d concurrent /probe calls allowed, want 4", allowed)
	}
}

// Buckets of registries only /probe names are capped: past the cap a /probe
// of a new registry is refused with ErrTooManyRegistries until one of them
// has refilled; registries the scheduler uses are not affected.
func TestRequestBudgetCapsOnDemandRegistries(t *testing.T) {
	now := t0
	b := NewRequestBudget(60, func() time.Time { return now })
	for i := 0; i < MaxOnDemandRegistries; i++ {
		if err := b.AllowOnDemand(fmt.Sprintf("r%d.example", i)); err != nil {
			t.Fatalf("registry %d: %v", i, err)
		}
	}
	if err := b.AllowOnDemand("one-more.example"); !errors.Is(err, ErrTooManyRegistries) {
		t.Errorf("past the cap: %v, want ErrTooManyRegistries", err)
	}
	if !b.Take("scheduled.example") {
		t.Error("a scheduled registry was refused because /probe filled the on-demand buckets")
	}
	// A registry the scheduler takes from is no longer on-demand-only.
	if !b.Take("r0.example") {
		t.Error("Take(r0.example) refused")
	}
	if err := b.AllowOnDemand("one-more.example"); !errors.Is(err, ErrTooManyRegistries) && err != nil {
		t.Errorf("unexpected %v", err)
	}
	now = now.Add(20 * time.Second) // the share refills 12 a minute: the up-front 3 after 15 s
	if err := b.AllowOnDemand("another.example"); err != nil {
		t.Errorf("after the buckets refilled: %v, want allowed", err)
	}
	b.mu.Lock()
	n, od := len(b.buckets), b.onDemand
	b.mu.Unlock()
	if od > MaxOnDemandRegistries || n > MaxOnDemandRegistries+2 {
		t.Errorf("%d buckets, %d on-demand-only; want at most %d on-demand-only", n, od, MaxOnDemandRegistries)
	}
}
