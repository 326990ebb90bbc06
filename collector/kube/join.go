package kube

import (
	"slices"
	"strings"
	"unique"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imagepull/imagepull_exporter/collector"
	"github.com/imagepull/imagepull_exporter/probe"
)

// The join is evaluated at scrape time from aggregates the informers' events
// keep up to date (joinindex.go) and the prober's latest results: a scrape
// never walks the pods, nor talks to the apiserver or a registry.
// join() below computes the same result from the caches in one pass over
// every pod: it is the oracle the incremental join is tested against.
// BenchmarkScrape measures both at 1,000 to 100,000 pods.

var (
	descWatchUp = prometheus.NewDesc("imagepull_kube_watch_up",
		"1 when the watch of the resource has synced and its latest list or watch request to the apiserver succeeded; 0 while the apiserver is unreachable (the last known state keeps being used).",
		[]string{"resource"}, nil)
	descWatchLastEvent = prometheus.NewDesc("imagepull_kube_watch_last_event_timestamp_seconds",
		"Time of the last successful list or watch event of the resource.",
		[]string{"resource"}, nil)
	descWaiting = prometheus.NewDesc("imagepull_pod_containers_waiting",
		"Containers (init and regular) waiting with an image pull reason, per namespace, registry and reason; a series exists only while its count is above zero. InvalidImageName counts under registry=\"invalid\".",
		[]string{"namespace", "registry", "reason"}, nil)
	descBlocked = prometheus.NewDesc("imagepull_registry_blocked_containers",
		"Containers waiting with an image pull reason, per registry and cause, counted per container: the registry's probe failure reason when it is registry-level, else the pull error the container's node reported (classified), else the registry's probe cause: registry_ok (the registry probes healthy and the node said nothing classifiable: the problem is per image or per credential), a per-image reason, or unprobed (no target covers the registry).",
		[]string{"registry", "cause"}, nil)
	descPullError = prometheus.NewDesc("imagepull_pod_containers_pull_error",
		"Containers waiting in ErrImagePull or ImagePullBackOff, per namespace, registry and the cause their node reported: the kubelet's waiting message (or, when it holds no error, the pod's newest Failed event) classified into the probe's reasons, or unknown; a series only while its count is above zero.",
		[]string{"namespace", "registry", "cause"}, nil)
	descNodePullErrors = prometheus.NewDesc("imagepull_node_pull_errors",
		"Containers waiting in ErrImagePull or ImagePullBackOff, per node (the pod's spec.nodeName), registry and node-reported cause, as imagepull_pod_containers_pull_error: a per-IP limit or one zone's broken egress shows on its nodes; a series only while its count is above zero.",
		[]string{"node", "registry", "cause"}, nil)
	descMutable = prometheus.NewDesc("imagepull_pod_containers_mutable_ref",
		"Running containers whose image is not pinned by digest, per namespace, registry, pull policy and kind (latest, tag, no_tag).",
		[]string{"namespace", "registry", "pull_policy", "kind"}, nil)
	descTagDigests = prometheus.NewDesc("imagepull_tag_digests",
		"Number of different digests (from containerStatuses[].imageID) running under one tag across the cluster; a series only while it is 2 or more.",
		[]string{"registry", "repository", "tag"}, nil)
	descDrift = prometheus.NewDesc("imagepull_tag_registry_drift",
		"1 when a container running this tag runs a digest other than the one the registry serves for it now (a reschedule would start a different image), 0 when all match; only for tags that run and whose latest probe succeeded.",
		[]string{"registry", "repository", "tag"}, nil)
	descFolded = prometheus.NewDesc("imagepull_kube_registries_folded",
		"Distinct registries beyond --kube.max-registries in the latest join, whose containers the registry-labelled Kubernetes series count under registry=\"other\" (and whose per-tag series are left out).",
		nil, nil)
	descRescheduleRisk = prometheus.NewDesc("imagepull_reschedule_risk_containers",
		"Running containers whose image the registry cannot serve now (its probe fails, or the image's own probe fails, e.g. not_found), leaving out images another node already holds per node.status.images (which the kubelet caps at --node-status-max-images, default 50) unless the pull policy is Always.",
		[]string{"namespace", "registry", "cause"}, nil)
)

type nsRegReason struct{ namespace, registry, reason string }
type regCause struct{ registry, cause string }
type nodeRegCause struct{ node, registry, cause string }
type mutableKey struct{ namespace, registry, pullPolicy, kind string }
type tagKey struct{ registry, repository, tag string }

// joinResult is one evaluation of the join.
type joinResult struct {
	waiting        map[nsRegReason]int
	blocked        map[regCause]int
	mutable        map[mutableKey]int
	tagDigests     map[tagKey]int // only >= 2
	drift          map[tagKey]int // 0 or 1
	rescheduleRisk map[nsRegReason]int
	pullError      map[nsRegReason]int // reason = the node-reported cause
	nodeErrors     map[nodeRegCause]int
	nodesSynced    bool
	folded         int // registries folded into "other" (foldRegistries)

	// The workloads' unavailable images (workloads.go), exposed once
	// every workload watch has synced: a partial cache would drop series.
	workloadsSynced  bool
	workloads        []workloadSeries
	workloadsDropped int // past Options.MaxWorkloadSeries
}

// statusCache memoises ProbeStatus answers for one evaluation: thousands of
// containers share a few registries and tags.
type statusCache struct {
	status collector.ProbeStatus
	causes map[string]string
	tags   map[tagKey]tagResult
	images map[imageResultKey]imageResult
}

type tagResult struct {
	digest string
	reason probe.Reason
	ok     bool
}

func (s *statusCache) registryCause(registry string) string {
	if registry == RegistryInvalid || s.status == nil {
		return collector.CauseUnprobed
	}
	if c, ok := s.causes[registry]; ok {
		return c
	}
	c := s.status.RegistryCause(registry)
	s.causes[registry] = c
	return c
}

// tagResult asks for registry/repository:identifier, identifier being the
// tag, or the digest when the image is pinned (Reference.Identifier, the
// `reference` label of the probe metrics).
func (s *statusCache) tagResult(registry, repository, identifier string) tagResult {
	if s.status == nil {
		return tagResult{}
	}
	k := tagKey{registry, repository, identifier}
	if r, ok := s.tags[k]; ok {
		return r
	}
	d, reason, ok := s.status.TagResult(registry, repository, identifier)
	r := tagResult{d, reason, ok}
	s.tags[k] = r
	return r
}

// nodeCause is the pull error the container's node reported, classified:
// the waiting message's (kept by the transform), else the newest Failed
// event's of the container; "" when neither holds an error. The caller
// holds c.eventIdx.mu for reading when events are watched.
func (c *Cluster) nodeCause(p *podInfo, ct *containerInfo) string {
	if !pullErrorReason(ct.Waiting) {
		return ""
	}
	if ct.Cause != noCause {
		return ct.Cause.Value()
	}
	if c.events == nil {
		return ""
	}
	name := ct.Name.Value()
	if e, ok := c.eventIdx.entries[containerKey{p.Namespace, string(p.UID), name}]; ok {
		return e.cause.Value()
	}
	if e, ok := c.eventIdx.entries[containerKey{p.Namespace, p.Name, name}]; ok {
		return e.cause.Value() // an event that names no pod UID
	}
	return ""
}

// blockedCause is a blocked container's cause, by precedence: a
// registry-level probe failure (fresher, and about every image of the
// registry) for every container; otherwise the cause the container's node
// reported, when it classifies; otherwise the registry's probe cause
// (registry_ok, a per-image reason, unprobed) as before.
func blockedCause(registry, node string) string {
	if registryFailing(registry) || node == "" || node == collector.CauseUnknown {
		return registry
	}
	return node
}

// registryFailing reports whether cause says the registry itself cannot
// serve anything now. The per-image reasons (not_found, forbidden) are
// ProbeStatus's answer when every target of a registry fails that way; they
// say nothing about the registry's other images, whose own results decide.
func registryFailing(cause string) bool {
	return probe.Reason(cause).RegistryLevel()
}

// defaultPullPolicy is the apiserver's defaulting, for objects that somehow
// lack it.
func defaultPullPolicy(kind string) string {
	if kind == KindLatest || kind == KindNoTag {
		return "Always"
	}
	return "IfNotPresent"
}

type risky struct {
	namespace, registry, cause, node, key string
	always                                bool
}

// join evaluates the join over the current caches in one pass over every
// pod: the oracle of incrementalJoin, which scrapes use. It reads only
// caches and ProbeStatus (which must be cheap).
func (c *Cluster) join() *joinResult {
	res := &joinResult{
		waiting:        map[nsRegReason]int{},
		blocked:        map[regCause]int{},
		mutable:        map[mutableKey]int{},
		tagDigests:     map[tagKey]int{},
		drift:          map[tagKey]int{},
		rescheduleRisk: map[nsRegReason]int{},
		pullError:      map[nsRegReason]int{},
		nodeErrors:     map[nodeRegCause]int{},
	}
	if c.events != nil {
		c.eventIdx.mu.RLock()
		defer c.eventIdx.mu.RUnlock()
	}
	sc := &statusCache{status: c.opts.Status, causes: map[string]string{}, tags: map[tagKey]tagResult{},
		images: map[imageResultKey]imageResult{}}
	// Distinct digests running per tag; a small slice, as one or two is usual.
	running := map[tagKey][]unique.Handle[string]{}
	var risks []risky

	for _, obj := range c.pods.list() {
		p, ok := obj.(*podInfo)
		if !ok {
			continue
		}
		for i := range p.Containers {
			ct := &p.Containers[i]
			img := ct.Img.Value()
			if ct.Waiting != "" {
				reg := img.Registry()
				if ct.Waiting == "InvalidImageName" {
					reg = RegistryInvalid
				}
				res.waiting[nsRegReason{p.Namespace, reg, ct.Waiting}]++
				nodeCause := c.nodeCause(p, ct)
				if nodeCause != "" {
					res.pullError[nsRegReason{p.Namespace, reg, nodeCause}]++
					if p.Node != "" {
						res.nodeErrors[nodeRegCause{p.Node, reg, nodeCause}]++
					}
				}
				res.blocked[regCause{reg, blockedCause(sc.registryCause(reg), sc.attribute(reg, nodeCause))}]++
			}
			if !ct.Running || img.Invalid {
				continue
			}
			ref := img.Ref
			pp := ct.PullPolicy
			if pp == "" {
				pp = defaultPullPolicy(img.Kind)
			}
			if img.Kind != KindDigest {
				res.mutable[mutableKey{p.Namespace, ref.Registry, pp, img.Kind}]++
				if ct.Digest != noDigest {
					k := tagKey{ref.Registry, ref.Repository, ref.Tag}
					if ds := running[k]; !slices.Contains(ds, ct.Digest) {
						running[k] = append(ds, ct.Digest)
					}
				}
			}
			if cause := rescheduleCause(sc, ref); cause != "" {
				risks = append(risks, risky{namespace: p.Namespace, registry: ref.Registry, cause: cause,
					node: p.Node, key: img.nodeKey(), always: pp == "Always"})
			}
		}
	}

	for k, ds := range running {
		if len(ds) >= 2 {
			res.tagDigests[k] = len(ds)
		}
		tr := sc.tagResult(k.registry, k.repository, k.tag)
		if !tr.ok || tr.reason != probe.ReasonNone || tr.digest == "" {
			continue
		}
		drift := 0
		for _, d := range ds {
			if d.Value() != tr.digest {
				drift = 1
				break
			}
		}
		res.drift[k] = drift
	}

	res.nodesSynced = c.nodes.synced()
	if len(risks) > 0 {
		// Which nodes hold each risky image: only the risky keys are
		// looked up, so a scrape does not index every node's images.
		want := map[string]bool{}
		for _, r := range risks {
			if !r.always {
				want[r.key] = true
			}
		}
		holders := c.imageHolders(want)
		for _, r := range risks {
			if !r.always && heldElsewhere(holders[r.key], r.node) {
				continue
			}
			res.rescheduleRisk[nsRegReason{r.namespace, r.registry, r.cause}]++
		}
	}
	if len(c.workloads) > 0 {
		res.workloadsSynced = c.workloadsSynced()
		res.workloads, res.workloadsDropped = capWorkloadSeries(c.workloadImages(sc), c.opts.MaxWorkloadSeries)
	}
	res.foldRegistries(c.opts.MaxRegistries)
	return res
}

// workloadsSynced reports whether every workload watch has synced.
func (c *Cluster) workloadsSynced() bool {
	for _, rw := range c.workloads {
		if !rw.synced() {
			return false
		}
	}
	return true
}

// foldRegistries keeps at most limit distinct registries in the join's
// series: those with the most containers (ties by name), so that the
// series stay where the containers are. The containers of the others are
// counted under registry="other"; their per-tag series (tag digests,
// drift), which are not counts, are left out; the workloads' unavailable
// images keep their series under registry="other" (each weighs one
// container). Image references come from whoever may create pods or
// workloads, so without a cap anyone with that right could grow the
// registry label without bound. "invalid" is not a registry and is always
// kept.
func (res *joinResult) foldRegistries(limit int) {
	if limit <= 0 {
		return
	}
	weight := map[string]int{}
	add := func(reg string, n int) {
		if reg != RegistryInvalid {
			weight[reg] += n
		}
	}
	for k, v := range res.waiting {
		add(k.registry, v)
	}
	for k, v := range res.mutable {
		add(k.registry, v)
	}
	for k, v := range res.rescheduleRisk {
		add(k.registry, v)
	}
	for k := range res.pullError {
		add(k.registry, 0) // its containers are in waiting already
	}
	for k := range res.tagDigests {
		add(k.registry, 0)
	}
	for k := range res.drift {
		add(k.registry, 0)
	}
	for _, w := range res.workloads {
		add(w.registry, 1) // a template's container weighs as a pod's
	}
	if len(weight) <= limit {
		return
	}
	regs := make([]string, 0, len(weight))
	for r := range weight {
		regs = append(regs, r)
	}
	slices.SortFunc(regs, func(a, b string) int {
		if d := weight[b] - weight[a]; d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
	folded := map[string]bool{}
	for _, r := range regs[limit:] {
		folded[r] = true
	}
	res.folded = len(folded)
	other := func(reg string) string {
		if folded[reg] {
			return collector.OtherRegistry
		}
		return reg
	}
	res.waiting = refold(res.waiting, func(k nsRegReason) nsRegReason { k.registry = other(k.registry); return k })
	res.blocked = refold(res.blocked, func(k regCause) regCause { k.registry = other(k.registry); return k })
	res.mutable = refold(res.mutable, func(k mutableKey) mutableKey { k.registry = other(k.registry); return k })
	res.rescheduleRisk = refold(res.rescheduleRisk, func(k nsRegReason) nsRegReason { k.registry = other(k.registry); return k })
	res.pullError = refold(res.pullError, func(k nsRegReason) nsRegReason { k.registry = other(k.registry); return k })
	res.nodeErrors = refold(res.nodeErrors, func(k nodeRegCause) nodeRegCause { k.registry = other(k.registry); return k })
	for i := range res.workloads {
		res.workloads[i].registry = other(res.workloads[i].registry)
	}
	for k := range res.tagDigests {
		if folded[k.registry] {
			delete(res.tagDigests, k)
		}
	}
	for k := range res.drift {
		if folded[k.registry] {
			delete(res.drift, k)
		}
	}
}

// rescheduleCause says why the registry cannot serve ref now, or "". The
// image's own latest probe decides when there is one: it is the most
// specific answer (a deleted tag on a healthy registry; a registry whose
// cause is unauthorized only because some pod's pull secret is wrong still
// serves this image to the credentials that probed it). Without one, a
// registry-wide failure (down, TLS, rate limited...) counts; a per-image
// cause of the registry (not_found, forbidden) says nothing about this image.
func rescheduleCause(sc *statusCache, ref probe.Reference) string {
	if tr := sc.tagResult(ref.Registry, ref.Repository, ref.Identifier()); tr.ok {
		return imageCause(sc, ref.Registry, tr.reason)
	}
	if cause := sc.registryCause(ref.Registry); registryFailing(cause) {
		return cause
	}
	return ""
}

// imageCause turns the latest probe result of one image (reason, ReasonNone
// for a success) into what a node pulling it would run into, or "" when the
// result says nothing about that: a success; no_credentials (the registry
// asked for credentials the probe did not have, and the pods may have
// them); config (the exporter's own files); a path-level failure (tls,
// connect, ...) while other probes of the registry get answers, which is
// that target's module or route (ImagePullTargetFailing), not what the
// nodes see. The reschedule risk and the workloads' unavailable images
// read results through it.
func imageCause(sc *statusCache, registry string, reason probe.Reason) string {
	switch {
	case reason == probe.ReasonNone, reason.Inconclusive(), reason.Local():
		return ""
	case reason.PathLevel() && !registryFailing(sc.registryCause(registry)):
		return ""
	}
	return string(reason)
}

// heldElsewhere reports whether a node other than own holds the image. A
// node may list an image twice (by tag and by digest).
func heldElsewhere(nodes []string, own string) bool {
	for _, n := range nodes {
		if n != own {
			return true
		}
	}
	return false
}

// Describe implements prometheus.Collector.
func (c *Cluster) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descWatchUp, descWatchLastEvent, descWaiting, descBlocked,
		descPullError, descNodePullErrors, descPullFailures,
		descMutable, descTagDigests, descDrift, descRescheduleRisk, descFolded,
		descWorkloadUnavailable, descWorkloadDropped} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: watch health always; the join's
// series once the pods have synced (a partial cache would under-count), the
// reschedule risk once the nodes have too, the workloads' unavailable
// images once the workloads have.
func (c *Cluster) Collect(ch chan<- prometheus.Metric) {
	for _, rw := range c.watches() {
		up := 0.0
		if rw.up() {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descWatchUp, prometheus.GaugeValue, up, rw.name)
		if ts := rw.lastEvent.Load(); ts > 0 {
			ch <- prometheus.MustNewConstMetric(descWatchLastEvent, prometheus.GaugeValue, float64(ts)/1e9, rw.name)
		}
	}
	c.failures.collect(ch)
	if !c.indexSynced() {
		return
	}
	res := c.incrementalJoin()
	c.series.scrape(func(series seriesFunc) { res.collectWith(ch, series) })
}

// collect sends the join's series; the reschedule risk only once the nodes
// have synced, since an image a node not yet listed holds would count; the
// workloads' series only once the workloads have (and only when watched).
func (res *joinResult) collect(ch chan<- prometheus.Metric) { res.collectWith(ch, constSeries) }

// collectWith is collect with series making each sample (the Cluster's
// seriesCache, or constSeries).
func (res *joinResult) collectWith(ch chan<- prometheus.Metric, series seriesFunc) {
	ch <- series(descFolded, float64(res.folded))
	for k, v := range res.waiting {
		ch <- series(descWaiting, float64(v), k.namespace, k.registry, k.reason)
	}
	for k, v := range res.blocked {
		ch <- series(descBlocked, float64(v), k.registry, k.cause)
	}
	for k, v := range res.pullError {
		ch <- series(descPullError, float64(v), k.namespace, k.registry, k.reason)
	}
	for k, v := range res.nodeErrors {
		ch <- series(descNodePullErrors, float64(v), k.node, k.registry, k.cause)
	}
	for k, v := range res.mutable {
		ch <- series(descMutable, float64(v), k.namespace, k.registry, k.pullPolicy, k.kind)
	}
	for k, v := range res.tagDigests {
		ch <- series(descTagDigests, float64(v), k.registry, k.repository, k.tag)
	}
	for k, v := range res.drift {
		ch <- series(descDrift, float64(v), k.registry, k.repository, k.tag)
	}
	if res.nodesSynced {
		for k, v := range res.rescheduleRisk {
			ch <- series(descRescheduleRisk, float64(v), k.namespace, k.registry, k.reason)
		}
	}
	if res.workloadsSynced {
		ch <- series(descWorkloadDropped, float64(res.workloadsDropped))
		for _, w := range res.workloads {
			ch <- series(descWorkloadUnavailable, 1,
				w.namespace, w.kind, w.workload, w.container, w.image, w.cause, w.registry)
		}
	}
}

// refold re-keys the counts of m with rekey, summing the counts of keys
// that become one (registries folded into "other").
func refold[K comparable](m map[K]int, rekey func(K) K) map[K]int {
	out := make(map[K]int, len(m))
	for k, v := range m {
		out[rekey(k)] += v
	}
	return out
}
