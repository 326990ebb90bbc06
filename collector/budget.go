package collector

import (
	"sort"
	"sync"
	"time"
)

// RequestBudget is a token bucket per registry that caps how many requests
// the exporter sends to one registry per minute, so a long target list (or
// a crowd of /probe callers) cannot hammer a registry or spend its abuse
// allowance. A probe may start while the registry's bucket holds at least one
// token; afterwards it is charged the requests it actually sent, so a warm
// probe (one HEAD) costs 1 and a cold one (ping, token, HEAD) costs 3. The
// bucket holds at most one minute's worth, and may go into debt by as much,
// which then delays the next probes of that registry.
type RequestBudget struct {
	perMinute float64 // 0 = unlimited
	now       func() time.Time

	mu        sync.Mutex
	buckets   map[string]*bucket
	exhausted map[string]uint64 // probes skipped, per registry
	lastSweep time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

// NewRequestBudget returns a budget of perMinute requests per minute per
// registry; perMinute <= 0 means unlimited. now nil means time.Now.
func NewRequestBudget(perMinute float64, now func() time.Time) *RequestBudget {
	if now == nil {
		now = time.Now
	}
	return &RequestBudget{perMinute: perMinute, now: now,
		buckets: map[string]*bucket{}, exhausted: map[string]uint64{}}
}

// bucketIdle is how long a bucket must go untouched to be dropped: by then
// it has refilled from its deepest debt (one minute's worth) to full, so a
// new bucket is the same. Dropping them keeps the map to the registries
// probed lately: /probe takes any registry a caller names.
const bucketIdle = 2 * time.Minute

func (b *RequestBudget) refill(registry string) *bucket {
	now := b.now()
	bk, ok := b.buckets[registry]
	if !ok {
		if now.Sub(b.lastSweep) >= bucketIdle {
			b.lastSweep = now
			for reg, old := range b.buckets {
				if now.Sub(old.last) >= bucketIdle {
					delete(b.buckets, reg)
				}
			}
		}
		bk = &bucket{tokens: b.perMinute, last: now}
		b.buckets[registry] = bk
		return bk
	}
	if el := now.Sub(bk.last); el > 0 {
		bk.tokens = min(b.perMinute, bk.tokens+el.Minutes()*b.perMinute)
		bk.last = now
	}
	return bk
}

// Take reports whether a scheduled probe of registry may start now. A
// refusal is counted in imagepull_probe_budget_exhausted_total{registry}.
func (b *RequestBudget) Take(registry string) bool {
	return b.take(registry, true)
}

// Allow is Take for /probe: a refusal is answered 429 to the caller and not
// counted, so that callers naming arbitrary registries cannot create
// counter series (the scheduler's registries bound the counter's labels).
func (b *RequestBudget) Allow(registry string) bool {
	return b.take(registry, false)
}

func (b *RequestBudget) take(registry string, count bool) bool {
	if b == nil || b.perMinute <= 0 {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.refill(registry).tokens >= 1 {
		return true
	}
	if count {
		b.exhausted[registry]++
	}
	return false
}

// Charge takes n requests off registry's budget.
func (b *RequestBudget) Charge(registry string, n int) {
	if b == nil || b.perMinute <= 0 || n <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	bk := b.refill(registry)
	bk.tokens = max(-b.perMinute, bk.tokens-float64(n))
}

// Exhausted returns the number of probes skipped per registry, sorted by
// registry.
func (b *RequestBudget) Exhausted() []RegistryCount {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]RegistryCount, 0, len(b.exhausted))
	for r, n := range b.exhausted {
		out = append(out, RegistryCount{Registry: r, Count: n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Registry < out[j].Registry })
	return out
}

// RegistryCount is a per-registry count.
type RegistryCount struct {
	Registry string
	Count    uint64
}

// pruneExhausted drops the skipped-probe counts of registries nothing
// probes any more, as a reload drops their other series.
func (b *RequestBudget) pruneExhausted(probed func(registry string) bool) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for reg := range b.exhausted {
		if !probed(reg) {
			delete(b.exhausted, reg)
		}
	}
}
