package collector

import (
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
