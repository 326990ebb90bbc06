package collector

import (
	"errors"
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
//
// /probe (on-demand) callers have a share of their own, OnDemandShare of
// the budget, and what they send is charged to the registry's bucket too:
// a /probe flood then takes at most that share of the rate, and scheduled
// probes keep the rest, so an outage of the registry cannot be hidden by
// someone looping on /probe; and a /probe still runs while the scheduler
// is busy with the registry. Buckets that only on-demand callers
// created are capped in number (MaxOnDemandRegistries), since /probe takes
// any registry a caller names.
type RequestBudget struct {
	perMinute float64 // 0 = unlimited
	now       func() time.Time

	mu        sync.Mutex
	buckets   map[string]*bucket
	onDemand  int               // buckets with onDemandOnly set
	exhausted map[string]uint64 // probes skipped, per registry
	lastSweep time.Time
}

type bucket struct {
	tokens float64 // everything sent to the registry
	share  float64 // what /probe may still send (OnDemandShare)
	last   time.Time
	// onDemandOnly: created by /probe and not used by anything else
	// since; these count against MaxOnDemandRegistries.
	onDemandOnly bool
}

// OnDemandShare is the share of every registry's budget that /probe may
// spend; scheduled probes keep the rest whatever /probe does.
const OnDemandShare = 0.2

// MaxOnDemandRegistries caps the buckets of registries that only /probe
// names: past it a /probe of yet another registry is refused until one of
// them has refilled (and is then forgotten).
const MaxOnDemandRegistries = 256

// OnDemandCost is charged when a /probe starts, before its requests are
// known: a /probe is cold (ping, token, manifest HEAD). Charging up front
// keeps concurrent /probe calls from all passing the share check before
// any of them is charged.
const OnDemandCost = 3

// ErrBudgetSpent and ErrTooManyRegistries are the reasons a RequestBudget
// refuses an on-demand probe.
var (
	ErrBudgetSpent       = errors.New("request budget spent")
	ErrTooManyRegistries = errors.New("too many registries named only by /probe")
)

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

// refill returns registry's bucket refilled to now, creating it when
// missing; nil when onDemand asks for a new one and MaxOnDemandRegistries
// are in use. A bucket created or used by anything but onDemand is not
// on-demand-only any more.
func (b *RequestBudget) refill(registry string, onDemand bool) *bucket {
	now := b.now()
	bk, ok := b.buckets[registry]
	if !ok {
		if now.Sub(b.lastSweep) >= bucketIdle {
			b.sweep(now, func(old *bucket) bool { return now.Sub(old.last) >= bucketIdle })
		}
		if onDemand && b.onDemand >= MaxOnDemandRegistries {
			// A refilled bucket is the same as a new one: forget those
			// (never one with a /probe in flight, which was charged
			// OnDemandCost up front and is not full).
			b.sweep(now, func(old *bucket) bool {
				el := now.Sub(old.last).Minutes()
				return old.onDemandOnly && old.tokens+el*b.perMinute >= b.perMinute &&
					old.share+el*b.shareRate() >= b.shareCap()
			})
			if b.onDemand >= MaxOnDemandRegistries {
				return nil
			}
		}
		bk = &bucket{tokens: b.perMinute, share: b.shareCap(), last: now, onDemandOnly: onDemand}
		if onDemand {
			b.onDemand++
		}
		b.buckets[registry] = bk
		return bk
	}
	if !onDemand && bk.onDemandOnly {
		bk.onDemandOnly = false
		b.onDemand--
	}
	if el := now.Sub(bk.last); el > 0 {
		bk.tokens = min(b.perMinute, bk.tokens+el.Minutes()*b.perMinute)
		bk.share = min(b.shareCap(), bk.share+el.Minutes()*b.shareRate())
		bk.last = now
	}
	return bk
}

// shareRate is the on-demand share's refill per minute; shareCap its
// depth, at least one request so that a small budget still allows /probe.
func (b *RequestBudget) shareRate() float64 { return OnDemandShare * b.perMinute }
func (b *RequestBudget) shareCap() float64  { return max(1, b.shareRate()) }

// sweep drops the buckets drop says to. b.mu is held.
func (b *RequestBudget) sweep(now time.Time, drop func(*bucket) bool) {
	b.lastSweep = now
	for reg, old := range b.buckets {
		if drop(old) {
			if old.onDemandOnly {
				b.onDemand--
			}
			delete(b.buckets, reg)
		}
	}
}

// Take reports whether a scheduled probe of registry may start now. A
// refusal is counted in imagepull_probe_budget_exhausted_total{registry}.
func (b *RequestBudget) Take(registry string) bool {
	return b.take(registry, true)
}

// Allow is Take for the exporter's other background senders (mirrors, pull
// secret checks, diagnose): a refusal is not counted as a skipped
// scheduled probe.
func (b *RequestBudget) Allow(registry string) bool {
	return b.take(registry, false)
}

func (b *RequestBudget) take(registry string, count bool) bool {
	if b == nil || b.perMinute <= 0 {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.refill(registry, false).tokens >= 1 {
		return true
	}
	if count {
		b.exhausted[registry]++
	}
	return false
}

// untilToken is how long until registry's bucket holds a token for a
// scheduled probe (0: now). It charges and counts nothing: the first round
// waits with it instead of being skipped and counted.
func (b *RequestBudget) untilToken(registry string) time.Duration {
	if b == nil || b.perMinute <= 0 {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	missing := 1 - b.refill(registry, false).tokens
	if missing <= 0 {
		return 0
	}
	return max(10*time.Millisecond, time.Duration(missing/b.perMinute*float64(time.Minute)))
}

// AllowOnDemand is Take for /probe: it spends the on-demand share
// (OnDemandShare) and, like every request, the registry's bucket, into
// debt if need be, which the scheduled probes then wait out: at most the
// share's rate. It is charged OnDemandCost at once (Settle corrects that
// to what was sent). A refusal is answered to the caller and
// not counted, so that callers naming arbitrary registries cannot create
// counter series (the scheduler's registries bound the counter's labels).
func (b *RequestBudget) AllowOnDemand(registry string) error {
	if b == nil || b.perMinute <= 0 {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	bk := b.refill(registry, true)
	if bk == nil {
		return ErrTooManyRegistries
	}
	if bk.share < 1 {
		return ErrBudgetSpent
	}
	bk.share -= OnDemandCost
	bk.tokens = max(-b.perMinute, bk.tokens-OnDemandCost)
	return nil
}

// Charge takes n requests off registry's budget.
func (b *RequestBudget) Charge(registry string, n int) {
	if n <= 0 {
		return
	}
	b.charge(registry, float64(n), false)
}

// Settle charges an on-demand probe that sent n requests, of which
// OnDemandCost were charged by AllowOnDemand.
func (b *RequestBudget) Settle(registry string, n int) {
	b.charge(registry, float64(n-OnDemandCost), true)
}

func (b *RequestBudget) charge(registry string, n float64, onDemand bool) {
	if b == nil || b.perMinute <= 0 || n == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	bk := b.refill(registry, onDemand)
	if bk == nil {
		return // only an on-demand refund of a bucket forgotten since
	}
	bk.tokens = min(b.perMinute, max(-b.perMinute, bk.tokens-n))
	if onDemand {
		bk.share = min(b.shareCap(), max(-b.shareCap(), bk.share-n))
	}
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
