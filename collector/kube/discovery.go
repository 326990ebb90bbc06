package kube

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imagepull/imagepull_exporter/collector"
	"github.com/imagepull/imagepull_exporter/collector/config"
	"github.com/imagepull/imagepull_exporter/probe"
)

// DiscoveryOptions configures a Discovery.
type DiscoveryOptions struct {
	// Config returns the running configuration (modules and the
	// discovery: section); it is read at every pass, so a reload applies.
	Config func() *config.Config
	// DiscoverTargets feeds the discovered images to SetTargets
	// (--kube.discover-targets).
	DiscoverTargets bool
	// SetTargets receives the full discovered set whenever it changes:
	// the scheduler's SetDiscovered.
	SetTargets func([]collector.DiscoveredTarget)
	// MaxTargets caps the discovered targets (--kube.max-discovered-targets);
	// <= 0 means collector.DefaultMaxDiscovered.
	MaxTargets int
	// UsePullSecrets probes each discovered image with the credentials the
	// kubelet would use, and checks that every referenced pull secret
	// still logs in (--kube.use-pull-secrets). The Cluster must be in
	// pull-secret mode too (Options.UsePullSecrets).
	UsePullSecrets bool
	// Prober and Sender run the pull-secret auth checks: the scheduler's
	// shared prober, and its Sender (budget and request counts).
	Prober *probe.Prober
	Sender *collector.Sender
	// Interval is how often the set is recomputed even when no image
	// came or went (which recomputes it at once): what applies a reload
	// of the discovery: section and re-reads secrets after SecretTTL;
	// default 10s. A pass reads the distinct uses, not the pods.
	Interval time.Duration
	// SecretTTL is how long a pull secret is used before it is read
	// again; default DefaultSecretTTL.
	SecretTTL time.Duration
	// Logger; nil means the Cluster's.
	Logger *slog.Logger
}

// Discovery turns the images the cluster runs, and will run, into probe
// targets, and checks the pull secrets that reference them.
type Discovery struct {
	c      *Cluster
	opts   DiscoveryOptions
	logger *slog.Logger
	now    func() time.Time

	secrets *secretCache
	auth    *authChecker

	mu         sync.Mutex
	last       []collector.DiscoveredTarget
	lastCapped int
}

// NewDiscovery returns a Discovery over c's caches.
func NewDiscovery(c *Cluster, opts DiscoveryOptions) (*Discovery, error) {
	if opts.Config == nil {
		return nil, fmt.Errorf("kube: DiscoveryOptions.Config is required")
	}
	if opts.DiscoverTargets && opts.SetTargets == nil {
		return nil, fmt.Errorf("kube: DiscoveryOptions.SetTargets is required to discover targets")
	}
	if opts.DiscoverTargets && !c.opts.WatchWorkloads {
		return nil, fmt.Errorf("kube: discovery needs a Cluster that watches workloads (Options.WatchWorkloads)")
	}
	if opts.UsePullSecrets && !c.opts.UsePullSecrets {
		// The Cluster names the targets it reads the workloads' results
		// from the way discovery names them: both must know the mode.
		return nil, fmt.Errorf("kube: pull secrets need a Cluster in pull-secret mode (Options.UsePullSecrets)")
	}
	if opts.UsePullSecrets && opts.Prober == nil {
		return nil, fmt.Errorf("kube: pull secrets need DiscoveryOptions.Prober for the auth checks")
	}
	if opts.MaxTargets <= 0 {
		opts.MaxTargets = collector.DefaultMaxDiscovered
	}
	if opts.Interval <= 0 {
		opts.Interval = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = c.logger
	}
	d := &Discovery{c: c, opts: opts, logger: opts.Logger, now: c.opts.Now}
	if opts.UsePullSecrets {
		d.secrets = newSecretCache(c.client, opts.SecretTTL, c.opts.Now)
		d.auth = newAuthChecker(opts.Prober, opts.Sender, d.secrets, opts.Logger, c.opts.Now)
	}
	return d, nil
}

// imageUse is one place an image is used, with the credentials that go
// with it there.
type imageUse struct {
	img       imageInfo
	namespace string
	secrets   []string // effective pull secrets (pull-secret mode only)
	rank      int      // 0 waiting, 1 in a pod, 2 only in a template
}

// uses returns every distinct use of an image by pods and workload
// templates, from the reference counts the informers' handlers keep
// (useindex.go): a pass costs the distinct uses, not the pods. References
// that do not parse are left out (nothing can probe them).
func (d *Discovery) uses() []imageUse {
	c := d.c
	counts := c.uses.snapshot()
	out := make([]imageUse, 0, len(counts))
	for k := range counts {
		u := imageUse{img: k.img.Value(), namespace: k.namespace, rank: k.rank}
		if d.opts.UsePullSecrets {
			var own []string
			if k.ownSecrets != "" {
				own = strings.Split(k.ownSecrets, ",")
			}
			u.secrets = c.effectivePullSecrets(k.namespace, k.serviceAccount, own)
		}
		out = append(out, u)
	}
	return out
}

// targetName is the `target` label of a discovered target: the canonical
// reference, followed by the pull secrets it is probed with, since the
// same image probed with other credentials is another target.
func targetName(ref probe.Reference, namespace string, secrets []string) string {
	if len(secrets) == 0 {
		return ref.String()
	}
	return ref.String() + " via " + secretsLabel(namespace, secrets)
}

// Pass recomputes the discovered targets: it refreshes the referenced pull
// secrets, hands the scheduler the new set when it changed, and updates the
// pull-secret auth checks. It returns the set.
func (d *Discovery) Pass(ctx context.Context) []collector.DiscoveredTarget {
	cfg := d.opts.Config()
	if cfg == nil {
		cfg = &config.Config{}
	}
	uses := d.uses()

	if d.secrets != nil {
		wanted := map[nsName]bool{}
		for _, u := range uses {
			for _, s := range u.secrets {
				wanted[nsName{u.namespace, s}] = true
			}
		}
		d.secrets.refresh(ctx, wanted)
		d.auth.update(uses, cfg)
	}
	if !d.opts.DiscoverTargets {
		return nil
	}

	type cand struct {
		t    collector.DiscoveredTarget
		rank int
		ns   string
		sec  []string
	}
	byName := map[string]*cand{}
	for _, u := range uses {
		ref := u.img.Ref
		if cfg.Discovery.Excluded(ref) {
			continue
		}
		name := targetName(ref, u.namespace, u.secrets)
		if c, ok := byName[name]; ok {
			c.rank = min(c.rank, u.rank)
			continue
		}
		byName[name] = &cand{t: collector.DiscoveredTarget{Name: name, Ref: ref,
			Module: cfg.Discovery.ModuleFor(ref.Registry)}, rank: u.rank, ns: u.namespace, sec: u.secrets}
	}
	cands := make([]*cand, 0, len(byName))
	for _, c := range byName {
		cands = append(cands, c)
	}
	// When capped, keep what matters most: images pods wait for, then
	// images pods run, then images only templates name.
	sort.Slice(cands, func(i, j int) bool {
		if cands[i].rank != cands[j].rank {
			return cands[i].rank < cands[j].rank
		}
		return cands[i].t.Name < cands[j].t.Name
	})
	capped := 0
	if len(cands) > d.opts.MaxTargets {
		capped = len(cands) - d.opts.MaxTargets
		cands = cands[:d.opts.MaxTargets]
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	if capped != d.lastCapped {
		if capped > 0 {
			d.logger.Warn("more distinct images than --kube.max-discovered-targets; probing the ones pods wait for and run first",
				"max", d.opts.MaxTargets, "left_out", capped)
		}
		d.lastCapped = capped
	}
	out := make([]collector.DiscoveredTarget, 0, len(cands))
	for _, c := range cands {
		if len(c.sec) > 0 {
			c.t.Keychain = &pullSecretKeychain{cache: d.secrets, namespace: c.ns, secrets: c.sec,
				moduleName: c.t.Module, config: d.opts.Config}
		}
		out = append(out, c.t)
	}
	if !sameTargets(d.last, out) {
		d.last = out
		d.opts.SetTargets(slices.Clone(out))
	}
	return out
}

func moduleOf(cfg *config.Config, name string) probe.Module {
	if cfg == nil {
		return probe.DefaultModule
	}
	if m, ok := cfg.Modules[name]; ok {
		return m
	}
	return probe.DefaultModule
}

// sameTargets compares two sets by what the scheduler keys a target on.
// Keychains read the secret cache and the module's credentials live, so a
// rotated secret or a reloaded module needs no new set.
func sameTargets(a, b []collector.DiscoveredTarget) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].Ref != b[i].Ref || a[i].Module != b[i].Module || a[i].Interval != b[i].Interval {
			return false
		}
	}
	return true
}

// syncWait bounds how long Run waits for the caches before it works with
// what it has: a watch the exporter may not make (RBAC) never syncs, and
// must not stop discovery of everything else.
const syncWait = 2 * time.Minute

// Run recomputes the set every Interval until ctx is done, waiting for the
// caches to sync first (a partial cache would drop targets), and runs the
// pull-secret auth checks.
func (d *Discovery) Run(ctx context.Context) error {
	wctx, cancel := context.WithTimeout(ctx, syncWait)
	err := d.c.WaitForSync(wctx)
	cancel()
	if ctx.Err() != nil {
		return nil
	}
	if err != nil {
		var unsynced []string
		for _, rw := range d.c.watches() {
			if !rw.synced() {
				unsynced = append(unsynced, rw.name)
			}
		}
		d.logger.Warn("Kubernetes caches not synced; discovering from what is known (is the exporter's role missing a resource?)",
			"unsynced", strings.Join(unsynced, ","), "waited", syncWait)
	}
	var wg sync.WaitGroup
	if d.auth != nil {
		wg.Go(func() { d.auth.run(ctx) })
	}
	defer wg.Wait()
	t := time.NewTicker(d.opts.Interval)
	defer t.Stop()
	for {
		d.Pass(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-d.c.uses.changed:
			// An image came or went: pass now, once the burst of
			// events it came with (a rollout, a relist) has settled.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(discoverySettle):
			}
		}
	}
}

// discoverySettle is how long a pass waits after an image came or went, so
// that the events of one rollout make one pass.
const discoverySettle = 200 * time.Millisecond

// Describe implements prometheus.Collector.
func (d *Discovery) Describe(ch chan<- *prometheus.Desc) {
	ch <- descPullSecretAuth
}

// Collect implements prometheus.Collector: the pull-secret auth results.
func (d *Discovery) Collect(ch chan<- prometheus.Metric) {
	if d.auth != nil {
		d.auth.collect(ch)
	}
}
