package collector

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imagepull/imagepull_exporter/collector/config"
	"github.com/imagepull/imagepull_exporter/collector/mirror"
	"github.com/imagepull/imagepull_exporter/probe"
)

// Target sources, the values of imagepull_exporter_targets{source}.
const (
	SourceConfig     = "config"
	SourceDiscovered = "discovered"
)

// Scheduler defaults.
const (
	DefaultConcurrency    = 8
	DefaultRegistryBudget = 60 // requests per minute per registry
	DefaultMaxDiscovered  = 1000
)

// DiscoveredTarget is a target found outside the configuration file (by the
// Kubernetes watchers: images pods use, with their pull secrets). The
// scheduler probes it like a configured target.
type DiscoveredTarget struct {
	// Name is the `target` label value; unique among discovered targets.
	// A discovered target whose name a configured target already uses is
	// ignored: the file wins.
	Name string
	// Ref is the image to probe.
	Ref probe.Reference
	// Module names a module of the running configuration; empty means
	// "default". A target naming a module the configuration lacks is
	// ignored (and logged) until a reload defines it.
	Module string
	// Interval overrides the module's interval when positive.
	Interval time.Duration
	// Keychain supplies the credentials (pull secrets); nil means the
	// module's own. Changing only the keychain keeps the target's state
	// and schedule: the next probe uses the new credentials.
	Keychain probe.Keychain
}

// SchedulerOptions configures a Scheduler.
type SchedulerOptions struct {
	// Prober is shared by every probe so that tokens and connections stay
	// warm; nil means a new one with default options. The scheduler does
	// not close it.
	Prober *probe.Prober
	// Concurrency bounds the probes in flight; <= 0 means DefaultConcurrency.
	Concurrency int
	// Budget caps requests per registry; nil means unlimited.
	Budget *RequestBudget
	// MaxDiscovered caps the discovered targets (cardinality); <= 0 means
	// DefaultMaxDiscovered.
	MaxDiscovered int
	// Logger; nil discards.
	Logger *slog.Logger
	// Now is the clock for rate-limit staleness; nil means time.Now.
	Now func() time.Time
	// Sharding keeps only the targets, configured and discovered, whose
	// registry this shard owns (shard.go); the zero value keeps all.
	Sharding Sharding
}

// Scheduler probes every target on its interval and keeps the latest
// results. A scrape never triggers a probe: Collector reads the results.
// It implements ProbeStatus for the Kubernetes join.
type Scheduler struct {
	prober *probe.Prober
	sem    chan struct{}
	budget *RequestBudget
	maxDis int
	logger *slog.Logger
	now    func() time.Time
	shard  Sharding

	mu         sync.Mutex
	cfg        *config.Config
	discovered []DiscoveredTarget
	runners    map[string]*runner   // by target name
	byRegistry map[string][]*runner // by normalised registry
	sources    map[string]int       // target count per source
	ctx        context.Context      // set by Run
	stopped    bool
	wg         sync.WaitGroup

	// sender is the door every probe's requests go through (sender.go).
	sender *Sender

	regMu      sync.Mutex
	rateLimits map[rateLimitKey]rateLimitEntry
	certExpiry map[string]time.Time

	// nodeMirrors is the node runtime's mirror configuration (node-local
	// mode), guarded by mu (mirror_probe.go).
	nodeMirrors *mirror.Set

	// health is what the registries' own health APIs say (health.go).
	health healthState

	// waiting counts probes blocked on the concurrency bound (for tests).
	waiting atomic.Int64
	// maxInterval is the longest target interval (a time.Duration), set
	// by reconcile: rate limits live three of it (rateLimitTTL).
	maxInterval atomic.Int64
}

type rateLimitKey struct{ registry, source string }

type rateLimitEntry struct {
	rl      probe.RateLimit
	updated time.Time
}

// targetSpec is everything that, when changed, restarts a target. It is
// compared with reflect.DeepEqual: a module holds slices (auth.registries).
type targetSpec struct {
	name       string
	source     string
	ref        probe.Reference
	moduleName string
	module     probe.Module
	interval   time.Duration
}

type keychainBox struct{ kc probe.Keychain }

type runner struct {
	spec     targetSpec
	keychain atomic.Pointer[keychainBox]
	cancel   context.CancelFunc
	delay    time.Duration // before the first probe: 0 unless a test sets it
	// phase is where in the interval the target's later probes fall,
	// spread evenly among the registry's new targets (reconcile); the
	// first probe does not wait for it.
	phase time.Duration
	// firstRound is set by the runner's loop until its first probe ran
	// (only that goroutine touches it): probeOnce then waits for the
	// budget instead of being refused and counted as skipped.
	firstRound bool

	mu sync.Mutex
	st TargetState
	// mirrors are the mirrors the runtime would send the target's image
	// to, probed after it (mirror_probe.go).
	mirrors []*mirrorRunner
}

// NewScheduler returns a scheduler with no targets. Give it a configuration
// with ApplyConfig and start it with Run.
func NewScheduler(opts SchedulerOptions) *Scheduler {
	if opts.Prober == nil {
		opts.Prober = probe.NewProber(probe.ProberOptions{})
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = DefaultConcurrency
	}
	if opts.MaxDiscovered <= 0 {
		opts.MaxDiscovered = DefaultMaxDiscovered
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Scheduler{
		prober:     opts.Prober,
		sem:        make(chan struct{}, opts.Concurrency),
		budget:     opts.Budget,
		maxDis:     opts.MaxDiscovered,
		logger:     opts.Logger,
		now:        opts.Now,
		shard:      opts.Sharding,
		cfg:        &config.Config{Modules: map[string]probe.Module{}},
		runners:    map[string]*runner{},
		byRegistry: map[string][]*runner{},
		sources:    map[string]int{},
		rateLimits: map[rateLimitKey]rateLimitEntry{},
		certExpiry: map[string]time.Time{},
		sender:     NewSender(opts.Budget),
	}
	s.sender.known = s.probesRegistry
	s.sender.knownMirror = s.probesMirror
	return s
}

// Sender returns the door through which the scheduler sends its requests,
// for every other caller that sends requests to registries (/probe, the
// pull-secret auth checks): they share its budget and its counters.
func (s *Scheduler) Sender() *Sender { return s.sender }

// probesRegistry reports whether some target of the scheduler probes
// registry.
func (s *Scheduler) probesRegistry(registry string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.byRegistry[registry]
	return ok
}

// probesMirror reports whether some target of upstream probes mirror.
func (s *Scheduler) probesMirror(mirror, upstream string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.byRegistry[upstream] {
		r.mu.Lock()
		for _, m := range r.mirrors {
			if m.plan.Host.Host == mirror {
				r.mu.Unlock()
				return true
			}
		}
		r.mu.Unlock()
	}
	return false
}

// Run starts probing and blocks until ctx is done; then it stops every
// target and returns once all of its goroutines have exited.
func (s *Scheduler) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.ctx != nil {
		s.mu.Unlock()
		return errors.New("scheduler: Run called twice")
	}
	s.ctx = ctx
	for _, r := range s.sortedRunners() {
		s.start(r)
	}
	s.mu.Unlock()

	<-ctx.Done()
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// ApplyConfig makes cfg's targets the configured targets: removed targets
// stop and lose their series, changed ones restart, unchanged ones keep
// their state and schedule. Discovered targets are re-resolved against
// cfg's modules.
func (s *Scheduler) ApplyConfig(cfg *config.Config) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg = cfg
	s.reconcile()
}

// SetDiscovered replaces the set of discovered targets (source
// "discovered"). It is the seam for Kubernetes discovery: call it with the
// full current set whenever it changes; targets keep their state across
// calls as long as their name, reference, module and interval stay.
func (s *Scheduler) SetDiscovered(targets []DiscoveredTarget) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.discovered = append([]DiscoveredTarget(nil), targets...)
	s.reconcile()
}

// reconcile computes the desired targets from the configuration and the
// discovered set and makes the running set match. s.mu is held.
func (s *Scheduler) reconcile() {
	type want struct {
		spec targetSpec
		kc   probe.Keychain
	}
	desired := map[string]want{}
	for _, t := range s.cfg.Targets {
		if !s.shard.Owns(t.Ref.Registry) {
			continue // another shard probes this registry
		}
		m := s.cfg.Modules[t.Module]
		desired[t.Name] = want{spec: targetSpec{
			name: t.Name, source: SourceConfig, ref: t.Ref,
			moduleName: t.Module, module: m, interval: t.EffectiveInterval(s.cfg),
		}}
	}
	accepted := 0
	for _, d := range s.discovered {
		if d.Name == "" {
			s.logger.Debug("ignoring discovered target without a name", "image", d.Ref.String())
			continue
		}
		if _, taken := desired[d.Name]; taken {
			s.logger.Debug("ignoring discovered target: its name is taken", "target", d.Name)
			continue
		}
		if !s.shard.Owns(d.Ref.Registry) {
			// Another shard probes this registry. Filtered before the
			// cap so that other shards' images do not use it up.
			continue
		}
		if accepted >= s.maxDis {
			s.logger.Warn("too many discovered targets; ignoring the rest", "max", s.maxDis, "target", d.Name)
			break
		}
		modName := d.Module
		if modName == "" {
			modName = config.DefaultModuleName
		}
		m, ok := s.cfg.Modules[modName]
		if !ok {
			if modName != config.DefaultModuleName {
				s.logger.Warn("ignoring discovered target: its module is not defined", "target", d.Name, "module", modName)
				continue
			}
			m = probe.DefaultModule
		}
		iv := m.Interval
		if d.Interval > 0 {
			iv = d.Interval
		}
		desired[d.Name] = want{spec: targetSpec{
			name: d.Name, source: SourceDiscovered, ref: d.Ref,
			moduleName: modName, module: m, interval: iv,
		}, kc: d.Keychain}
		accepted++
	}

	for name, r := range s.runners {
		if w, ok := desired[name]; !ok || !reflect.DeepEqual(w.spec, r.spec) {
			if r.cancel != nil {
				r.cancel()
			}
			delete(s.runners, name)
		}
	}
	var added []*runner
	for name, w := range desired {
		if r, ok := s.runners[name]; ok {
			r.keychain.Store(&keychainBox{w.kc})
			continue
		}
		r := &runner{spec: w.spec}
		r.keychain.Store(&keychainBox{w.kc})
		s.runners[name] = r
		added = append(added, r)
	}

	s.byRegistry = map[string][]*runner{}
	s.sources = map[string]int{SourceConfig: 0, SourceDiscovered: 0}
	var maxIv time.Duration
	for _, r := range s.sortedRunners() {
		maxIv = max(maxIv, r.spec.interval)
		s.byRegistry[r.spec.ref.Registry] = append(s.byRegistry[r.spec.ref.Registry], r)
		s.sources[r.spec.source]++
	}
	s.maxInterval.Store(int64(maxIv))
	// The first probe of every new target runs at once, as fast as the
	// concurrency (s.sem) and the registry's request budget allow: a start
	// or a reload has its first picture in seconds, not one interval
	// later (the budget, not a spread, is what protects the registry from
	// the burst). The later probes of each registry's new targets are
	// spread evenly over their interval (phase), so the steady state sends
	// no bursts.
	sort.Slice(added, func(i, j int) bool { return added[i].spec.name < added[j].spec.name })
	perRegistry := map[string][]*runner{}
	for _, r := range added {
		perRegistry[r.spec.ref.Registry] = append(perRegistry[r.spec.ref.Registry], r)
	}
	for _, rs := range perRegistry {
		for i, r := range rs {
			r.phase = time.Duration(float64(r.spec.interval) * float64(i) / float64(len(rs)))
		}
	}
	s.planMirrorsLocked()
	for _, r := range added {
		s.start(r)
	}
	s.pruneRegistrySeries()
}

// pruneRegistrySeries drops the registry-wide state of registries nothing
// probes any more, and the request counters of mirrors no target uses any
// more: like the per-target series, they go with what they were about, so
// that registries discovered from pods that came and went do not pile up.
// s.mu is held.
func (s *Scheduler) pruneRegistrySeries() {
	mirrors := map[mirrorKey]bool{}
	for _, r := range s.runners {
		r.mu.Lock()
		for _, m := range r.mirrors {
			mirrors[mirrorKey{m.plan.Host.Host, r.spec.ref.Registry}] = true
		}
		r.mu.Unlock()
	}
	probed := func(registry string) bool {
		_, ok := s.byRegistry[registry]
		return ok
	}
	s.sender.prune(probed, func(mirror, upstream string) bool { return mirrors[mirrorKey{mirror, upstream}] })
	s.budget.pruneExhausted(probed)
	s.health.prune(probed)
	s.regMu.Lock()
	defer s.regMu.Unlock()
	for k := range s.rateLimits {
		if !probed(k.registry) {
			delete(s.rateLimits, k)
		}
	}
	for reg := range s.certExpiry {
		if !probed(reg) {
			delete(s.certExpiry, reg)
		}
	}
}

func (s *Scheduler) sortedRunners() []*runner {
	rs := make([]*runner, 0, len(s.runners))
	for _, r := range s.runners {
		rs = append(rs, r)
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].spec.name < rs[j].spec.name })
	return rs
}

// start launches r's goroutine if the scheduler runs. s.mu is held.
func (s *Scheduler) start(r *runner) {
	if s.ctx == nil || s.stopped || s.ctx.Err() != nil {
		return
	}
	ctx, cancel := context.WithCancel(s.ctx)
	r.cancel = cancel
	s.wg.Add(1)
	go s.loop(ctx, r)
}

func (s *Scheduler) loop(ctx context.Context, r *runner) {
	defer s.wg.Done()
	timer := time.NewTimer(r.delay)
	defer timer.Stop()
	r.firstRound = true
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		if r.firstRound {
			// The first round waits for the registry's budget rather
			// than skip to the next interval: the first result comes as
			// soon as the budget allows.
			if d := s.budget.untilToken(r.spec.ref.Registry); d > 0 {
				timer.Reset(d)
				continue
			}
			if s.probeOnce(ctx, r) == probeSkipped {
				timer.Reset(firstRoundRetry)
				continue
			}
			r.firstRound = false
			timer.Reset(onSlackGrid(time.Now(), secondProbeAfter(r.phase, r.spec.interval), r.spec.interval))
			continue
		}
		s.probeOnce(ctx, r)
		// ±10% jitter keeps targets that share an interval from
		// converging on the same instant; the slack grid then lets the
		// probes that fall close together share one wake-up.
		timer.Reset(onSlackGrid(time.Now(), time.Duration(float64(r.spec.interval)*(0.9+0.2*rand.Float64())), r.spec.interval))
	}
}

// maxTimerSlack bounds timerSlack: no later probe starts more than this
// after its (jittered) due time.
const maxTimerSlack = time.Second

// timerSlack is the grid a later probe's start is rounded up to: a
// twentieth of its interval, at most maxTimerSlack. Probes spread evenly
// over an interval each wake the process on their own, and on a virtual
// machine that wake-up (timer interrupt, futex, epoll, the scheduler's
// spinning threads) costs more CPU than the probe itself: measured with
// `make bench-process`, 200 targets every 2 s took 710 µs of whole-process
// CPU per probe without the grid and 255 µs with it. Rounding to the grid
// makes the probes due within one slack start together, one wake-up for
// all of them, and delays none by more than 5% of its interval. The
// first round is not rounded: it runs at once.
func timerSlack(interval time.Duration) time.Duration {
	return min(interval/20, maxTimerSlack)
}

// onSlackGrid is the wait from now until the first boundary of the
// timerSlack(interval) grid at or after now+d. The grid is fixed
// (time.Truncate's, from the zero time), so every target of an interval,
// and every interval whose slack is maxTimerSlack, shares it.
func onSlackGrid(now time.Time, d, interval time.Duration) time.Duration {
	q := timerSlack(interval)
	if q <= 0 {
		return d
	}
	due := now.Add(d)
	at := due.Truncate(q)
	if at.Before(due) {
		at = at.Add(q)
	}
	return at.Sub(now)
}

// firstRoundRetry is how soon a first probe that found the budget spent
// once it had its turn (other targets took the tokens it waited for) tries
// again.
const firstRoundRetry = 100 * time.Millisecond

// secondProbeAfter is the wait after a target's first probe (at start or
// reload, not spread) for its second one, which falls on the target's
// phase: between half an interval and one and a half after the first, so
// that the later rounds are spread as if the first had been, without a
// second probe of any target coming right after its first.
func secondProbeAfter(phase, interval time.Duration) time.Duration {
	if phase >= interval/2 {
		return phase
	}
	return phase + interval
}

// What probeOnce did.
const (
	probeDone    = iota // probed (or stopped)
	probeSkipped        // the registry's request budget refused it
)

func (s *Scheduler) probeOnce(ctx context.Context, r *runner) int {
	s.waiting.Add(1)
	select {
	case s.sem <- struct{}{}:
		s.waiting.Add(-1)
	case <-ctx.Done():
		s.waiting.Add(-1)
		return probeDone
	}
	defer func() { <-s.sem }()

	reg := r.spec.ref.Registry
	if r.firstRound && s.budget.untilToken(reg) > 0 {
		return probeSkipped // not refused: the loop waits for a token
	}
	t := probe.Target{Ref: r.spec.ref, ModuleName: r.spec.moduleName, Module: r.spec.module,
		Keychain: r.keychain.Load().kc}
	// A first probe checked for a token above, but a concurrent one may
	// have spent it since: it waits for the next (Waits) rather than
	// being counted as skipped.
	res, ok := s.sender.Do(ctx, Send{Purpose: PurposeScheduled, Registry: reg, Waits: r.firstRound}, func(ctx context.Context) probe.Result {
		return s.prober.Probe(ctx, t) // bounded by the module's timeout
	})
	if !ok {
		s.logger.Debug("probe skipped: registry request budget spent", "target", r.spec.name, "registry", reg)
		return probeSkipped
	}
	s.checkRegistryHealth(ctx, r, &res) // the registry's own health API, and the attribution rule (health.go)
	if !s.recordIfCurrent(ctx, r, &res) {
		// The target was removed or changed by a reload, or the exporter
		// stops: a probe that was in flight then says nothing that should
		// be kept, and must not re-create the registry's series that the
		// reload pruned (its requests were counted by the Sender, under
		// "other" when nothing probes the registry any more).
		return probeDone
	}
	r.record(res)
	if !res.Success {
		s.logger.Debug("probe failed", "target", r.spec.name, "image", r.spec.ref.String(),
			"reason", string(res.Reason), "err", res.Error)
	}
	s.probeMirrors(ctx, r)
	return probeDone
}

// recordIfCurrent records the registry-wide state of res (rate limits, TLS
// expiry) when r still belongs to the scheduler and its probe was not
// cancelled, and says whether it did. The check and the record happen
// under s.mu, which reconcile holds while it removes runners and prunes
// registry series, so a reload cannot slip between them.
func (s *Scheduler) recordIfCurrent(ctx context.Context, r *runner, res *probe.Result) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ctx.Err() != nil || s.runners[r.spec.name] != r {
		return false
	}
	s.recordRegistry(r.spec.ref.Registry, res)
	return true
}

func (r *runner) record(res probe.Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.st.apply(res)
}

func (s *Scheduler) recordRegistry(reg string, res *probe.Result) {
	s.regMu.Lock()
	defer s.regMu.Unlock()
	if res.RateLimit != nil {
		s.putRateLimit(rateLimitKey{reg, res.RateLimit.Source}, rateLimitEntry{*res.RateLimit, s.now()})
	}
	if !res.TLSCertExpiry.IsZero() {
		s.certExpiry[reg] = res.TLSCertExpiry
	}
}

// maxRateLimitSources caps the `source` values kept per registry: the
// source is whatever the registry sends in docker-ratelimit-source, and a
// registry that varies it on every reply must not grow series without
// bound. Past the cap the oldest source of the registry is replaced: the
// newest says most about the headroom left now.
const maxRateLimitSources = 8

// putRateLimit stores e under k, first deleting the registry's expired
// sources, then its oldest if it still has maxRateLimitSources. s.regMu is
// held.
func (s *Scheduler) putRateLimit(k rateLimitKey, e rateLimitEntry) {
	if _, ok := s.rateLimits[k]; !ok {
		ttl := s.rateLimitTTL()
		var n int
		var oldest rateLimitKey
		for key, oe := range s.rateLimits {
			if key.registry != k.registry {
				continue
			}
			if e.updated.Sub(oe.updated) > ttl {
				delete(s.rateLimits, key)
				continue
			}
			if n == 0 || oe.updated.Before(s.rateLimits[oldest].updated) {
				oldest = key
			}
			n++
		}
		if n >= maxRateLimitSources {
			delete(s.rateLimits, oldest)
		}
	}
	s.rateLimits[k] = e
}

// rateLimitTTL is how long a rate limit is kept without being refreshed:
// rateLimitTTL, or three of the longest interval.
func (s *Scheduler) rateLimitTTL() time.Duration {
	return max(rateLimitTTL, 3*time.Duration(s.maxInterval.Load()))
}

// StatusLabel is the `code` label of a request: its HTTP status, or
// "error" when no response arrived.
func StatusLabel(status int) string {
	if status == 0 {
		return "error"
	}
	return strconv.Itoa(status)
}

// TargetState is what the scheduler remembers of one target, folded from
// its probe results by apply: the one place a result becomes state, read
// by the metrics (collectTarget), the status page and /logs.
type TargetState struct {
	Last          *probe.Result // nil before the first probe
	LastFailure   *probe.Result // the latest failed probe, kept across successes; nil before the first failure
	LastSuccess   time.Time     // zero before the first success
	Digest        string        // last digest seen, kept across failures
	MediaType     string
	Successes     uint64
	Failures      uint64
	DigestChanges uint64
	AuthChecked   bool // an auth check has happened
	AuthOK        bool
	hist          histogram
}

// apply folds one probe result into the state.
func (st *TargetState) apply(res probe.Result) {
	st.Last = &res
	if res.Success {
		st.Successes++
		st.LastSuccess = res.Start
	} else {
		st.Failures++
		st.LastFailure = &res
	}
	if res.AuthChecked {
		st.AuthChecked, st.AuthOK = true, res.AuthOK
	}
	if res.Digest != "" {
		if st.Digest != "" && st.Digest != res.Digest {
			st.DigestChanges++
		}
		st.Digest, st.MediaType = res.Digest, res.MediaType
	}
	if reachedManifest(&res) {
		st.hist.observe(res.Phases[probe.PhaseManifest].Seconds())
	}
}

// TargetStatus is a copy of one target's state with what it is, for the
// status page, /logs and the metrics.
type TargetStatus struct {
	Name     string
	Source   string
	Ref      probe.Reference
	Module   string
	Interval time.Duration
	// PullSecrets is true when the target is probed with pods' pull
	// secrets (a discovered target's Keychain) rather than its module's
	// credentials: an unauthorized answer then speaks for the secrets.
	PullSecrets bool
	TargetState
}

// StatusOf folds results, oldest first, into the status of one target the
// way the scheduler does: for /probe's answer, and for pages shown
// without a scheduler.
func StatusOf(name, source, module string, interval time.Duration, results ...probe.Result) TargetStatus {
	t := TargetStatus{Name: name, Source: source, Module: module, Interval: interval}
	for _, res := range results {
		t.Ref = res.Ref
		t.apply(res)
	}
	return t
}

// RateLimitStatus is the latest rate limit a registry reported for a source.
type RateLimitStatus struct {
	Registry string
	probe.RateLimit
	Updated time.Time
}

// Snapshot is a consistent copy of everything the scheduler knows.
type Snapshot struct {
	Targets    []TargetStatus // sorted by name
	RateLimits []RateLimitStatus
	CertExpiry map[string]time.Time // TLS certificate expiry per registry
	Exhausted  []RegistryCount      // probes skipped for budget, per registry
	Sources    map[string]int       // targets per source
	Registries []RegistryStatus     // health per registry with a judged result, sorted

	requests  map[requestKey]uint64
	malformed map[malformedKey]uint64
}

// rateLimitTTL is how long a rate limit stays exposed without being
// refreshed: a registry that stops sending the headers (an account turned
// paid, a source IP that changed) should not leave a stale headroom behind.
const rateLimitTTL = 30 * time.Minute

// Snapshot copies the scheduler's state.
func (s *Scheduler) Snapshot() Snapshot {
	s.mu.Lock()
	rs := s.sortedRunners()
	var maxInterval time.Duration
	for _, r := range rs {
		maxInterval = max(maxInterval, r.spec.interval)
	}
	snap := Snapshot{Sources: make(map[string]int, len(s.sources))}
	for k, v := range s.sources {
		snap.Sources[k] = v
	}
	s.mu.Unlock()

	snap.Targets = make([]TargetStatus, 0, len(rs))
	for _, r := range rs {
		r.mu.Lock()
		st := r.st
		r.mu.Unlock()
		snap.Targets = append(snap.Targets, TargetStatus{
			Name: r.spec.name, Source: r.spec.source, Ref: r.spec.ref,
			Module: r.spec.moduleName, Interval: r.spec.interval,
			PullSecrets: r.keychain.Load().kc != nil, TargetState: st,
		})
	}

	ttl := max(rateLimitTTL, 3*maxInterval)
	now := s.now()
	s.regMu.Lock()
	for k, e := range s.rateLimits {
		if now.Sub(e.updated) > ttl {
			delete(s.rateLimits, k) // deleted, not only hidden: the map stays bounded
			continue
		}
		snap.RateLimits = append(snap.RateLimits, RateLimitStatus{Registry: k.registry, RateLimit: e.rl, Updated: e.updated})
	}
	snap.CertExpiry = make(map[string]time.Time, len(s.certExpiry))
	for k, v := range s.certExpiry {
		snap.CertExpiry[k] = v
	}
	s.regMu.Unlock()
	snap.requests, snap.malformed, _ = s.sender.snapshot()
	sort.Slice(snap.RateLimits, func(i, j int) bool {
		a, b := snap.RateLimits[i], snap.RateLimits[j]
		return a.Registry < b.Registry || (a.Registry == b.Registry && a.Source < b.Source)
	})
	snap.Exhausted = s.budget.Exhausted()
	snap.Registries = registryHealth(snap.Targets)
	return snap
}

// RegistryStatus is one registry's health over its targets' latest
// results: imagepull_registry_up and imagepull_registry_failure_reason.
type RegistryStatus struct {
	Registry string
	probe.RegistryHealth
}

// registryHealth judges every registry of targets with probe.Health, the
// way RegistryHealth does; registries with nothing to judge are left out.
// Sorted by registry.
func registryHealth(targets []TargetStatus) []RegistryStatus {
	ev := map[string][]probe.Evidence{}
	for i := range targets {
		t := &targets[i]
		if t.Last != nil {
			ev[t.Ref.Registry] = append(ev[t.Ref.Registry], evidence(t.Last, t.PullSecrets))
		}
	}
	out := make([]RegistryStatus, 0, len(ev))
	for reg, e := range ev {
		if h := probe.Health(e); h.Probed {
			out = append(out, RegistryStatus{Registry: reg, RegistryHealth: h})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Registry < out[j].Registry })
	return out
}

// evidence is how one target's latest result counts in its registry's
// health (probe.Health): a target probed with pull secrets (a Keychain)
// that is answered unauthorized speaks for that secret, not the registry.
// One namespace's stale secret must not make every container waiting on
// the registry look like a registry auth outage
// (imagepull_pull_secret_auth_success names the secret). The scheduler's
// join answers and the metrics both weigh results through it.
func evidence(last *probe.Result, pullSecrets bool) probe.Evidence {
	return probe.Evidence{
		Success:       last.Success,
		Reason:        last.Reason,
		PerCredential: last.Reason == probe.ReasonUnauthorized && pullSecrets,
	}
}

// RegistryHealth implements ProbeStatus: probe.Health over the latest
// result of every target of the registry, whatever its module or
// credentials.
func (s *Scheduler) RegistryHealth(registry string) probe.RegistryHealth {
	registry = probe.NormalizeRegistry(registry)
	s.mu.Lock()
	rs := s.byRegistry[registry]
	s.mu.Unlock()
	var ev []probe.Evidence
	for _, r := range rs {
		r.mu.Lock()
		last := r.st.Last
		r.mu.Unlock()
		if last != nil {
			ev = append(ev, evidence(last, r.keychain.Load().kc != nil))
		}
	}
	return probe.Health(ev)
}

// RegistryCause implements ProbeStatus: the registry's health as the
// join's cause. Down: the down reason (probe.Health: every probe failed
// for a registry-level reason). Up: CauseRegistryOK when a probe succeeded
// or only no_credentials answers exist (never a cause: the exporter cannot
// know), else the per-image reason (not_found, then forbidden), else a pull
// secret's unauthorized. No target, or none probed yet, or only results
// that failed on the exporter's own files: CauseUnprobed.
func (s *Scheduler) RegistryCause(registry string) string {
	return CauseOf(s.RegistryHealth(registry))
}

// CauseOf is the join's cause for a registry judged h.
func CauseOf(h probe.RegistryHealth) string {
	switch {
	case !h.Probed:
		return CauseUnprobed
	case h.Reason == probe.ReasonNone:
		return CauseRegistryOK
	}
	return string(h.Reason)
}

// ImageResult implements ProbeStatus: the latest result of target, when
// it exists, probes ref and has a result; else that of a target probing
// exactly ref with its module's credentials (no pull secrets: another
// namespace's secrets say nothing about these), a success first, then the
// most recent. Results that failed on the exporter's own files (config)
// are no answer.
func (s *Scheduler) ImageResult(target string, ref probe.Reference) (reason probe.Reason, ok bool) {
	answer := func(last *probe.Result) bool { return last != nil && (last.Success || !last.Reason.Local()) }
	s.mu.Lock()
	named := s.runners[target]
	rs := s.byRegistry[ref.Registry]
	s.mu.Unlock()
	if named != nil && named.spec.ref == ref {
		named.mu.Lock()
		last := named.st.Last
		named.mu.Unlock()
		if answer(last) {
			return last.Reason, true
		}
	}
	var best *probe.Result
	for _, r := range rs {
		if r.spec.ref != ref || r.keychain.Load().kc != nil {
			continue
		}
		r.mu.Lock()
		last := r.st.Last
		r.mu.Unlock()
		if !answer(last) {
			continue
		}
		if best == nil || (last.Success && !best.Success) ||
			(last.Success == best.Success && last.Start.After(best.Start)) {
			best = last
		}
	}
	if best == nil {
		return probe.ReasonNone, false
	}
	return best.Reason, true
}

// TagResult implements ProbeStatus: the latest result of a target probing
// registry/repository:tag by tag (targets pinned by digest say nothing
// about what a tag serves). When several targets probe the tag (different
// modules or credentials), a success wins, then the most recent result.
func (s *Scheduler) TagResult(registry, repository, tag string) (digest string, reason probe.Reason, ok bool) {
	registry = probe.NormalizeRegistry(registry)
	s.mu.Lock()
	rs := s.byRegistry[registry]
	s.mu.Unlock()
	var best *probe.Result
	for _, r := range rs {
		ref := r.spec.ref
		if ref.Repository != repository || ref.Tag != tag || ref.Digest != "" {
			continue
		}
		r.mu.Lock()
		last := r.st.Last
		r.mu.Unlock()
		if last == nil || (!last.Success && last.Reason.Local()) {
			// A probe that failed on the exporter's own files (config)
			// says nothing about what the tag serves.
			continue
		}
		if best == nil || (last.Success && !best.Success) ||
			(last.Success == best.Success && last.Start.After(best.Start)) {
			best = last
		}
	}
	if best == nil {
		return "", probe.ReasonNone, false
	}
	if best.Success {
		return best.Digest, probe.ReasonNone, true
	}
	return "", best.Reason, true
}

var _ ProbeStatus = (*Scheduler)(nil)
