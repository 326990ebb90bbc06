package kube

import (
	"maps"
	"slices"
	"sync"
	"unique"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/imagepull/imagepull_exporter/probe"
)

// The join's pod-side aggregates, kept up to date as the informers deliver
// pods and Failed events, so that a scrape costs what the series cost and
// not what the pods cost (BenchmarkScrape: flat from 1,000 to 100,000
// pods). What depends on the prober's latest results is left to scrape
// time, applied to aggregates that are already small:
//   - blocked containers are counted per registry and node-reported cause;
//     the registry's cause (which takes precedence when registry-level) is
//     applied per (registry, cause) pair, so a probe result changing a
//     registry's cause re-labels its counts in O(registries), not O(pods);
//   - running containers are counted per image and (namespace, node, pull
//     policy Always): the reschedule risk asks the probe status once per
//     image and looks at the counts only of images that cannot be pulled;
//   - distinct digests are counted per tag; drift compares them with the
//     tag's probe result per tag.
//
// The offline join (Cluster.join) stays: it is the oracle the incremental
// result is tested against after random event sequences
// (TestIncrementalJoinOracle, FuzzIncrementalJoin), and tests of the join's
// semantics run against it.
type joinIndex struct {
	mu    sync.Mutex
	pods  map[string]*indexedPod // by store key (namespace/name)
	byUID map[types.UID]string   // pod UID → store key, for events naming a UID

	waiting    map[nsRegReason]int
	blockedBy  map[regCause]int // registry × node-reported cause ("" when none)
	pullError  map[nsRegReason]int
	nodeErrors map[nodeRegCause]int
	mutable    map[mutableKey]int
	digests    map[tagKey]map[unique.Handle[string]]int
	running    map[unique.Handle[imageInfo]]map[riskKey]int
}

// riskKey is where a running container of one image runs: the reschedule
// risk leaves out images another node holds, unless the policy is Always.
type riskKey struct {
	namespace, node string
	always          bool
}

// indexedPod is a pod as it was counted: its node-reported causes are kept
// so that a delete subtracts exactly what the add counted, whatever the
// events index says by then.
type indexedPod struct {
	p      *podInfo
	causes []string // per container, nodeCause when counted
}

func newJoinIndex() *joinIndex {
	return &joinIndex{pods: map[string]*indexedPod{}, byUID: map[types.UID]string{},
		waiting: map[nsRegReason]int{}, blockedBy: map[regCause]int{}, pullError: map[nsRegReason]int{},
		nodeErrors: map[nodeRegCause]int{}, mutable: map[mutableKey]int{},
		digests: map[tagKey]map[unique.Handle[string]]int{}, running: map[unique.Handle[imageInfo]]map[riskKey]int{}}
}

func podKey(p *podInfo) string { return p.Namespace + "/" + p.Name }

// count adds d to m[k], deleting the entry at zero: a series exists only
// while its count is above zero.
func count[K comparable](m map[K]int, k K, d int) {
	if n := m[k] + d; n != 0 {
		m[k] = n
	} else {
		delete(m, k)
	}
}

func count2[K, K2 comparable](m map[K]map[K2]int, k K, k2 K2, d int) {
	inner := m[k]
	if inner == nil {
		inner = map[K2]int{}
		m[k] = inner
	}
	count(inner, k2, d)
	if len(inner) == 0 {
		delete(m, k)
	}
}

// apply adds (d = 1) or subtracts (d = -1) the pod's containers, as the
// offline join's loop counts them.
func (x *joinIndex) apply(p *podInfo, causes []string, d int) {
	for i := range p.Containers {
		ct := &p.Containers[i]
		img := ct.Img.Value()
		if ct.Waiting != "" {
			reg := img.Registry()
			if ct.Waiting == "InvalidImageName" {
				reg = RegistryInvalid
			}
			count(x.waiting, nsRegReason{p.Namespace, reg, ct.Waiting}, d)
			nc := causes[i]
			if nc != "" {
				count(x.pullError, nsRegReason{p.Namespace, reg, nc}, d)
				if p.Node != "" {
					count(x.nodeErrors, nodeRegCause{p.Node, reg, nc}, d)
				}
			}
			count(x.blockedBy, regCause{reg, nc}, d)
		}
		if !ct.Running || img.Invalid {
			continue
		}
		pp := ct.PullPolicy
		if pp == "" {
			pp = defaultPullPolicy(img.Kind)
		}
		if img.Kind != KindDigest {
			count(x.mutable, mutableKey{p.Namespace, img.Ref.Registry, pp, img.Kind}, d)
			if ct.Digest != noDigest {
				count2(x.digests, tagKey{img.Ref.Registry, img.Ref.Repository, img.Ref.Tag}, ct.Digest, d)
			}
		}
		count2(x.running, ct.Img, riskKey{p.Namespace, p.Node, pp == "Always"}, d)
	}
}

// upsert counts p in place of what was counted under its key. The caller
// holds c.eventIdx.mu for reading when events are watched (nodeCause).
func (x *joinIndex) upsert(c *Cluster, p *podInfo) {
	key := podKey(p)
	if old, ok := x.pods[key]; ok {
		x.apply(old.p, old.causes, -1)
		if old.p.UID != p.UID && x.byUID[old.p.UID] == key {
			delete(x.byUID, old.p.UID)
		}
	}
	e := &indexedPod{p: p, causes: make([]string, len(p.Containers))}
	for i := range p.Containers {
		e.causes[i] = c.nodeCause(p, &p.Containers[i])
	}
	x.apply(p, e.causes, 1)
	x.pods[key] = e
	if p.UID != "" {
		x.byUID[p.UID] = key
	}
}

func (x *joinIndex) remove(key string) {
	old, ok := x.pods[key]
	if !ok {
		return
	}
	x.apply(old.p, old.causes, -1)
	delete(x.pods, key)
	if x.byUID[old.p.UID] == key {
		delete(x.byUID, old.p.UID)
	}
}

// Informer handlers: one set for every pods informer. A relist arrives as
// adds, updates and deletes (DeletedFinalStateUnknown) of the difference.

func (c *Cluster) indexPodAdd(obj any, _ bool) { c.indexPodUpsert(obj) }

func (c *Cluster) indexPodUpdate(_, obj any) { c.indexPodUpsert(obj) }

func (c *Cluster) indexPodUpsert(obj any) {
	p, ok := obj.(*podInfo)
	if !ok {
		return
	}
	x := c.index
	x.mu.Lock()
	defer x.mu.Unlock()
	if c.events != nil {
		c.eventIdx.mu.RLock()
		defer c.eventIdx.mu.RUnlock()
	}
	x.upsert(c, p)
}

func (c *Cluster) indexPodDelete(obj any) {
	var key string
	switch o := obj.(type) {
	case cache.DeletedFinalStateUnknown:
		key = o.Key
	case *podInfo:
		key = podKey(o)
	default:
		return
	}
	x := c.index
	x.mu.Lock()
	defer x.mu.Unlock()
	x.remove(key)
}

// indexEventsChanged recounts the pods whose node-reported cause may have
// moved with the newest-cause index's entries keys (an event added,
// replaced, evicted or deleted): those named by UID or by name.
func (c *Cluster) indexEventsChanged(keys []containerKey) {
	if len(keys) == 0 {
		return
	}
	x := c.index
	x.mu.Lock()
	defer x.mu.Unlock()
	c.eventIdx.mu.RLock()
	defer c.eventIdx.mu.RUnlock()
	for _, k := range keys {
		if key, ok := x.byUID[types.UID(k.pod)]; ok {
			if e := x.pods[key]; e != nil && e.p.Namespace == k.namespace {
				x.upsert(c, e.p)
			}
		}
		if e := x.pods[k.namespace+"/"+k.pod]; e != nil {
			x.upsert(c, e.p)
		}
	}
}

// result is the join evaluated from the aggregates and the probe status:
// what join() computes from the caches, in time independent of the pods.
func (c *Cluster) incrementalJoin() *joinResult {
	res := &joinResult{
		blocked:        map[regCause]int{},
		tagDigests:     map[tagKey]int{},
		drift:          map[tagKey]int{},
		rescheduleRisk: map[nsRegReason]int{},
	}
	sc := &statusCache{status: c.opts.Status, causes: map[string]string{}, tags: map[tagKey]tagResult{},
		images: map[imageResultKey]imageResult{}}
	type riskyImage struct {
		img   imageInfo
		cause string
		where map[riskKey]int
	}
	var risks []riskyImage

	x := c.index
	x.mu.Lock()
	res.waiting = maps.Clone(x.waiting)
	res.pullError = maps.Clone(x.pullError)
	res.nodeErrors = maps.Clone(x.nodeErrors)
	res.mutable = maps.Clone(x.mutable)
	for k, n := range x.blockedBy {
		res.blocked[regCause{k.registry, blockedCause(sc.registryCause(k.registry), sc.attribute(k.registry, k.cause))}] += n
	}
	for k, ds := range x.digests {
		if len(ds) >= 2 {
			res.tagDigests[k] = len(ds)
		}
		tr := sc.tagResult(k.registry, k.repository, k.tag)
		if !tr.ok || tr.reason != probe.ReasonNone || tr.digest == "" {
			continue
		}
		drift := 0
		for d := range ds {
			if d.Value() != tr.digest {
				drift = 1
				break
			}
		}
		res.drift[k] = drift
	}
	for h, where := range x.running {
		img := h.Value()
		if cause := rescheduleCause(sc, img.Ref); cause != "" {
			risks = append(risks, riskyImage{img, cause, maps.Clone(where)})
		}
	}
	x.mu.Unlock()

	res.nodesSynced = c.nodes.synced()
	if len(risks) > 0 {
		want := map[string]bool{}
		for _, r := range risks {
			for k := range r.where {
				if !k.always {
					want[r.img.nodeKey()] = true
					break
				}
			}
		}
		holders := c.imageHolders(want)
		for _, r := range risks {
			key := r.img.nodeKey()
			for k, n := range r.where {
				if !k.always && heldElsewhere(holders[key], k.node) {
					continue
				}
				res.rescheduleRisk[nsRegReason{k.namespace, r.img.Ref.Registry, r.cause}] += n
			}
		}
	}
	if len(c.workloads) > 0 {
		res.workloadsSynced = c.workloadsSynced()
		res.workloads, res.workloadsDropped = capWorkloadSeries(c.workloadImages(sc), c.opts.MaxWorkloadSeries)
	}
	res.foldRegistries(c.opts.MaxRegistries)
	return res
}

// imageHolders returns, for each wanted node key, the nodes whose
// status.images list it. Only risky images are looked up, so a scrape does
// not index every node's images.
func (c *Cluster) imageHolders(want map[string]bool) map[string][]string {
	holders := map[string][]string{}
	if len(want) == 0 {
		return holders
	}
	for _, obj := range c.nodes.list() {
		n, ok := obj.(*nodeInfo)
		if !ok {
			continue
		}
		for _, h := range n.Images {
			if k := h.Value(); want[k] {
				holders[k] = append(holders[k], n.Name)
			}
		}
	}
	return holders
}

// indexSynced reports whether the index has received every pod of the
// informers' first lists (the informers' stores may be ahead of it).
func (c *Cluster) indexSynced() bool {
	if !c.pods.synced() {
		return false
	}
	return !slices.ContainsFunc(c.indexRegs, func(r cache.ResourceEventHandlerRegistration) bool { return !r.HasSynced() })
}
