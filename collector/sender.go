package collector

import (
	"context"
	"sort"
	"sync"

	"github.com/imagepull/imagepull_exporter/probe"
)

// Purpose says who sends requests through the Sender. It decides how the
// request budget treats a refusal and where the requests are counted.
type Purpose int

// The callers of the Sender.
const (
	// PurposeScheduled is a scheduled probe of a target: a budget refusal
	// skips it and is counted in imagepull_probe_budget_exhausted_total.
	PurposeScheduled Purpose = iota
	// PurposeMirror is the probe of a mirror after its target's: it spends
	// the mirror host's budget, and its requests are counted in
	// imagepull_mirror_requests_total{mirror,upstream}; the caller counts
	// refusals per mirror.
	PurposeMirror
	// PurposeOnDemand is a /probe request: it spends its own share of the
	// budget (OnDemandShare) as well as the registry's, a refusal is
	// answered to the caller and not counted, and its requests are counted under the
	// registry only when the scheduler probes that registry (else under
	// registry="other"), so that callers naming arbitrary registries
	// cannot create series.
	PurposeOnDemand
	// PurposeAuthCheck is a pull secret's periodic login check: a refusal
	// postpones it and is not a skipped scheduled probe.
	PurposeAuthCheck
	// PurposeDiagnose is `diagnose`'s probes and tag listings.
	PurposeDiagnose
	// PurposeHealth is a read of a registry product's own health API
	// (health.go): a refusal postpones it to the next probe, and its
	// request counts under kind="health".
	PurposeHealth
)

// OtherRegistry is the registry label of requests /probe sends to a
// registry the scheduler does not probe.
const OtherRegistry = "other"

// Send names who sends and to whom.
type Send struct {
	Purpose Purpose
	// Registry is the normalised registry the requests are about: the
	// budget charged and the `registry` (or, for mirrors, `upstream`)
	// label.
	Registry string
	// Mirror is the mirror host (PurposeMirror): its budget is charged
	// instead of the registry's.
	Mirror string
	// Waits marks a scheduled probe that waits for a token when the
	// budget refuses it (the scheduler's first round) rather than being
	// skipped until its next round: its refusal is not counted in
	// imagepull_probe_budget_exhausted_total.
	Waits bool
}

// Sender is the one door through which every request the process sends to
// a registry or a mirror leaves: scheduled and mirror probes, /probe, the
// pull-secret auth checks and diagnose. Do takes the budget, runs the
// exchange, charges the requests it really sent and counts each of them,
// so that "every request is budgeted and counted" holds for every caller at
// once (node_exporter's execute() plays this role for its collectors).
type Sender struct {
	budget *RequestBudget
	// known reports whether the scheduler probes a registry (for
	// PurposeOnDemand's labels); nil means every registry is known.
	known func(registry string) bool
	// knownMirror reports whether some target of the scheduler probes
	// mirror for upstream; nil means every mirror is known.
	knownMirror func(mirror, upstream string) bool

	mu             sync.Mutex
	held           map[string]map[string]bool // by holder: registries it sends to (Hold)
	requests       map[requestKey]uint64
	malformed      map[malformedKey]uint64
	mirrorRequests map[mirrorRequestKey]uint64
}

type requestKey struct {
	registry string
	kind     probe.RequestKind
	code     string
}

type malformedKey struct{ registry, header string }

type mirrorRequestKey struct {
	mirror, upstream string
	kind             probe.RequestKind
	code             string
}

// NewSender returns a Sender charging budget (nil: unlimited).
func NewSender(budget *RequestBudget) *Sender {
	return &Sender{budget: budget, held: map[string]map[string]bool{},
		requests: map[requestKey]uint64{}, malformed: map[malformedKey]uint64{},
		mirrorRequests: map[mirrorRequestKey]uint64{}}
}

// Do runs exchange if the budget allows it, then charges and counts the
// requests its Result reports. ok is false when the budget refused: then
// exchange did not run and nothing was sent.
func (s *Sender) Do(ctx context.Context, send Send, exchange func(context.Context) probe.Result) (res probe.Result, ok bool) {
	res, err := s.Try(ctx, send, exchange)
	return res, err == nil
}

// Try is Do that says why the budget refused: ErrBudgetSpent, or for
// PurposeOnDemand ErrTooManyRegistries. On-demand probes spend only their
// share of the budget (RequestBudget.AllowOnDemand).
func (s *Sender) Try(ctx context.Context, send Send, exchange func(context.Context) probe.Result) (probe.Result, error) {
	bucket := send.Registry
	if send.Purpose == PurposeMirror {
		bucket = send.Mirror
	}
	switch send.Purpose {
	case PurposeScheduled:
		take := s.budget.Take
		if send.Waits {
			take = s.budget.Allow
		}
		if !take(bucket) {
			return probe.Result{}, ErrBudgetSpent
		}
	case PurposeOnDemand:
		if err := s.budget.AllowOnDemand(bucket); err != nil {
			return probe.Result{}, err
		}
	default:
		if !s.budget.Allow(bucket) {
			return probe.Result{}, ErrBudgetSpent
		}
	}
	res := exchange(ctx)
	if send.Purpose == PurposeOnDemand {
		s.budget.Settle(bucket, len(res.Requests))
	} else {
		s.budget.Charge(bucket, len(res.Requests))
	}
	s.count(send, &res)
	return res, nil
}

// count adds the requests of res, and its malformed header values.
func (s *Sender) count(send Send, res *probe.Result) {
	// known takes the scheduler's lock, and the scheduler holds it while it
	// prunes the Sender: ask before locking, or a /probe and a reload can
	// deadlock.
	reg := send.Registry
	// A scheduled probe still in flight when a reload removed the last
	// target of its registry: its requests were sent and count, but under
	// "other", or they would re-create the series the reload pruned.
	if (send.Purpose == PurposeOnDemand || send.Purpose == PurposeScheduled || send.Purpose == PurposeHealth) && s.known != nil && !s.known(reg) {
		reg = OtherRegistry
	}
	// Likewise a mirror probe in flight when a reload dropped the mirror.
	mirror, upstream := send.Mirror, send.Registry
	if send.Purpose == PurposeMirror && s.knownMirror != nil && !s.knownMirror(mirror, upstream) {
		mirror, upstream = OtherRegistry, OtherRegistry
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if send.Purpose == PurposeMirror {
		for _, rq := range res.Requests {
			s.mirrorRequests[mirrorRequestKey{mirror, upstream, rq.Kind, StatusLabel(rq.Status)}]++
		}
		return
	}
	countRequests(s.requests, s.malformed, reg, res)
}

// Total returns how many requests were counted, over every registry,
// mirror, kind and code: what `diagnose` reports having sent.
func (s *Sender) Total() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n uint64
	for _, v := range s.requests {
		n += v
	}
	for _, v := range s.mirrorRequests {
		n += v
	}
	return n
}

// Hold says that holder (a caller other than the scheduler, e.g. the
// pull-secret auth checks) keeps sending to registries, replacing what it
// held before: their counters are kept by prune although no target of the
// scheduler probes them. Without it a reload, or a change of the
// discovered targets, reset the auth checks' counts of a registry only
// pods' secrets name, while the checks went on sending.
func (s *Sender) Hold(holder string, registries []string) {
	set := make(map[string]bool, len(registries))
	for _, r := range registries {
		set[r] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.held[holder] = set
}

// prune drops the counters of registries and mirrors nothing probes any
// more (a reload, discovered images that went away) and no holder holds;
// requests of /probe under "other" stay.
func (s *Sender) prune(probed func(registry string) bool, mirrorUsed func(mirror, upstream string) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	used := func(registry string) bool {
		if registry == OtherRegistry || probed(registry) {
			return true
		}
		for _, set := range s.held {
			if set[registry] {
				return true
			}
		}
		return false
	}
	for k := range s.requests {
		if !used(k.registry) {
			delete(s.requests, k)
		}
	}
	for k := range s.malformed {
		if !used(k.registry) {
			delete(s.malformed, k)
		}
	}
	for k := range s.mirrorRequests {
		if k.mirror != OtherRegistry && !mirrorUsed(k.mirror, k.upstream) {
			delete(s.mirrorRequests, k)
		}
	}
}

// snapshot copies the counters.
func (s *Sender) snapshot() (requests map[requestKey]uint64, malformed map[malformedKey]uint64, mirrors []mirrorRequestCount) {
	s.mu.Lock()
	defer s.mu.Unlock()
	requests = make(map[requestKey]uint64, len(s.requests))
	for k, v := range s.requests {
		requests[k] = v
	}
	malformed = make(map[malformedKey]uint64, len(s.malformed))
	for k, v := range s.malformed {
		malformed[k] = v
	}
	mirrors = make([]mirrorRequestCount, 0, len(s.mirrorRequests))
	for k, v := range s.mirrorRequests {
		mirrors = append(mirrors, mirrorRequestCount{k, v})
	}
	sort.Slice(mirrors, func(i, j int) bool {
		a, b := mirrors[i].key, mirrors[j].key
		if a.mirror != b.mirror {
			return a.mirror < b.mirror
		}
		if a.upstream != b.upstream {
			return a.upstream < b.upstream
		}
		if a.kind != b.kind {
			return a.kind < b.kind
		}
		return a.code < b.code
	})
	return requests, malformed, mirrors
}

type mirrorRequestCount struct {
	key mirrorRequestKey
	n   uint64
}
