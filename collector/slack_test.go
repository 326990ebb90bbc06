package collector

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestTimerSlack(t *testing.T) {
	for _, c := range []struct{ interval, want time.Duration }{
		{2 * time.Second, 100 * time.Millisecond},
		{15 * time.Second, 750 * time.Millisecond},
		{20 * time.Second, time.Second},
		{5 * time.Minute, time.Second},
		{time.Hour, time.Second},
	} {
		if got := timerSlack(c.interval); got != c.want {
			t.Errorf("timerSlack(%s) = %s, want %s", c.interval, got, c.want)
		}
	}
}

// A later probe starts on the slack grid, never before its due time and
// less than one slack after it; two targets due within one slack cell
// start together.
func TestOnSlackGrid(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	base := time.Date(2026, 11, 29, 3, 0, 0, 0, time.UTC)
	for i := 0; i < 10000; i++ {
		interval := time.Duration(1+rng.IntN(600)) * time.Second / time.Duration(1+rng.IntN(4))
		now := base.Add(time.Duration(rng.Int64N(int64(time.Hour))))
		d := time.Duration(float64(interval) * (0.9 + 0.2*rng.Float64()))
		q := timerSlack(interval)
		got := onSlackGrid(now, d, interval)
		if got < d || got >= d+q {
			t.Fatalf("onSlackGrid(%s, %s, %s) = %s, want in [%s, %s)", now, d, interval, got, d, d+q)
		}
		if at := now.Add(got); !at.Equal(at.Truncate(q)) {
			t.Fatalf("onSlackGrid(%s, %s, %s) starts at %s, not on the %s grid", now, d, interval, at, q)
		}
	}
	// Due 10 ms and 90 ms after a boundary of a 100 ms grid: one start.
	now := base.Add(5 * time.Millisecond)
	a := now.Add(onSlackGrid(now, 2*time.Second+5*time.Millisecond, 2*time.Second))
	b := now.Add(onSlackGrid(now, 2*time.Second+85*time.Millisecond, 2*time.Second))
	if !a.Equal(b) {
		t.Errorf("probes due within one slack cell start at %s and %s, want together", a, b)
	}
	// On a boundary already: no wait added.
	if got := onSlackGrid(base, time.Second, 2*time.Second); got != time.Second {
		t.Errorf("due on a grid boundary: wait %s, want 1s", got)
	}
}
