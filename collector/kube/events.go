package kube

import (
	"fmt"
	"strings"
	"sync"
	"time"
	"unique"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/imagepull/imagepull_exporter/collector"
)

// Kubelets before 1.32 write a bare "Back-off pulling image "x"" into a
// container waiting in ImagePullBackOff; the pull error itself is then only
// in the pod's Failed event ("Failed to pull image "x": <err>"). So the
// pods' Failed events are watched too (core/v1: the kubelet records them
// through the core API, and the server-side field selector keeps the
// apiserver from sending any other event), reduced by transformEvent to
// the involved container, the classified cause, the node, the count and the
// time. Events live an hour in the apiserver (--event-ttl); the index of
// newest causes per container is capped on top of that.

// ResourceEvents is the `resource` label of the events watch.
const ResourceEvents = "events"

// failedEventSelector selects the pods' Failed events server-side.
var failedEventSelector = fields.Set{"involvedObject.kind": "Pod", "reason": "Failed"}.AsSelector().String()

// pullFailedPrefix starts the kubelet's event for one failed pull
// (pkg/kubelet/images/image_manager.go); its other Failed events ("Error:
// ErrImagePull", "Error: ImagePullBackOff") say nothing more than the status.
const pullFailedPrefix = "Failed to pull image "

// combinedPrefix is how client-go's event aggregator rewrites the message
// of an event that stands for several similar ones.
const combinedPrefix = "(combined from similar events): "

// maxEventIndex caps the newest-cause index: far more than the containers
// that wait on a pull at once in any cluster, and a bound on what an
// event flood can make the exporter hold.
const maxEventIndex = 20000

// eventInfo is the compact Failed event the informer stores.
type eventInfo struct {
	metav1.ObjectMeta // Name, Namespace, UID, ResourceVersion only

	Pod string
	// PodUID keys the newest-cause index: a StatefulSet's pod comes back
	// under the same name, and its predecessor's events must not speak
	// for it.
	PodUID    types.UID
	Container string // from involvedObject.fieldPath spec.containers{name} or spec.initContainers{name}
	// Cause is the classified pull error; zero for a Failed event that is
	// not a failed pull, or whose text holds no error.
	Cause unique.Handle[string]
	// PullFailure: the event reports failed pulls (its count counts them).
	PullFailure bool
	// Registry of the image named in the message, for an event whose pod
	// is not (or no longer) cached; "" when it does not parse.
	Registry string
	Node     string // source.host, else reportingInstance
	Count    int32
	Last     time.Time
}

// GetObjectKind implements runtime.Object.
func (*eventInfo) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// DeepCopyObject implements runtime.Object.
func (e *eventInfo) DeepCopyObject() runtime.Object {
	c := *e
	e.ObjectMeta.DeepCopyInto(&c.ObjectMeta)
	return &c
}

// containerOfFieldPath returns the container name of an involvedObject's
// fieldPath ("spec.containers{app}", "spec.initContainers{init}").
func containerOfFieldPath(p string) string {
	for _, prefix := range []string{"spec.containers{", "spec.initContainers{", "spec.ephemeralContainers{"} {
		if rest, ok := strings.CutPrefix(p, prefix); ok {
			if name, ok := strings.CutSuffix(rest, "}"); ok {
				return name
			}
		}
	}
	return ""
}

func transformEvent(obj any) (any, error) {
	ev, ok := obj.(*corev1.Event)
	if !ok {
		if _, done := obj.(*eventInfo); done {
			return obj, nil
		}
		return nil, fmt.Errorf("events informer: unexpected object type %T", obj)
	}
	e := &eventInfo{
		ObjectMeta: minimalMeta(&ev.ObjectMeta),
		Pod:        ev.InvolvedObject.Name,
		PodUID:     ev.InvolvedObject.UID,
		Container:  containerOfFieldPath(ev.InvolvedObject.FieldPath),
		Node:       ev.Source.Host,
		Count:      ev.Count,
	}
	if e.Node == "" {
		e.Node = ev.ReportingInstance
	}
	if ev.Series != nil && ev.Series.Count > e.Count {
		e.Count = ev.Series.Count
	}
	if e.Count < 1 {
		e.Count = 1
	}
	switch {
	case !ev.LastTimestamp.IsZero():
		e.Last = ev.LastTimestamp.Time
	case ev.Series != nil && !ev.Series.LastObservedTime.IsZero():
		e.Last = ev.Series.LastObservedTime.Time
	case !ev.EventTime.IsZero():
		e.Last = ev.EventTime.Time
	default:
		e.Last = ev.CreationTimestamp.Time
	}
	msg := strings.TrimPrefix(ev.Message, combinedPrefix)
	if rest, ok := strings.CutPrefix(msg, pullFailedPrefix); ok {
		e.PullFailure = true
		e.Cause = classify(msg)
		if image, _, ok := strings.Cut(strings.TrimPrefix(rest, `"`), `"`); ok {
			if info := parseImage(image).Value(); !info.Invalid {
				e.Registry = info.Ref.Registry
			}
		}
	}
	return e, nil
}

// containerKey names one container of one pod (by name, or in the event
// index by UID when the event names it).
type containerKey struct{ namespace, pod, container string }

// indexKey is the event's key in the newest-cause index.
func (e *eventInfo) indexKey() containerKey {
	if e.PodUID != "" {
		return containerKey{e.Namespace, string(e.PodUID), e.Container}
	}
	return containerKey{e.Namespace, e.Pod, e.Container}
}

// eventEntry is the newest classified Failed event of one container.
type eventEntry struct {
	cause unique.Handle[string]
	node  string
	last  time.Time
	name  string // the event's name, to forget it when it is deleted
}

// eventIndex keeps, per container, the newest Failed event whose pull error
// classifies. Bounded by maxEventIndex: when full, the oldest entry goes.
type eventIndex struct {
	mu      sync.RWMutex
	entries map[containerKey]eventEntry
	max     int
}

func newEventIndex(limit int) *eventIndex {
	return &eventIndex{entries: map[containerKey]eventEntry{}, max: limit}
}

// update records e if it is the newest of its container, and returns the
// keys whose entry changed (e's, and the one evicted to make room), whose
// pods the join index recounts.
func (x *eventIndex) update(e *eventInfo) []containerKey {
	if e.Cause == noCause || e.Container == "" {
		return nil
	}
	k := e.indexKey()
	changed := []containerKey{k}
	x.mu.Lock()
	defer x.mu.Unlock()
	if cur, ok := x.entries[k]; ok && cur.last.After(e.Last) {
		return nil
	}
	if _, ok := x.entries[k]; !ok && len(x.entries) >= x.max {
		var oldest containerKey
		var t time.Time
		first := true
		for k, v := range x.entries {
			if first || v.last.Before(t) {
				oldest, t, first = k, v.last, false
			}
		}
		delete(x.entries, oldest)
		changed = append(changed, oldest)
	}
	x.entries[k] = eventEntry{cause: e.Cause, node: e.Node, last: e.Last, name: e.Name}
	return changed
}

// remove forgets e's entry if e is still the newest of its container, and
// returns the key when it did.
func (x *eventIndex) remove(e *eventInfo) []containerKey {
	k := e.indexKey()
	x.mu.Lock()
	defer x.mu.Unlock()
	if cur, ok := x.entries[k]; ok && cur.name == e.Name {
		delete(x.entries, k)
		return []containerKey{k}
	}
	return nil
}

func (x *eventIndex) len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.entries)
}

// The pull failures counter, imagepull_pull_failures_total{registry,cause}:
// a container entering ErrImagePull (seen as a transition between two
// versions of the pod in the informer) or a pull-failure event's count going
// up. One failed pull usually shows both ways: the kubelet records the event
// and writes the status. A failure seen one way is therefore not counted
// again when the other way reports the same container within
// failureDedupeWindow; the kubelet's back-off (10s, doubling) keeps two
// real failures of one container further apart than that, and the window
// bounds the dedupe state: older entries are pruned.
const failureDedupeWindow = 8 * time.Second

// maxDedupe caps the dedupe state even when more containers fail within one
// window than any real cluster has (past it, failures are counted without
// dedupe: over- rather than under-counted).
const maxDedupe = 50000

var descPullFailures = prometheus.NewDesc("imagepull_pull_failures_total",
	"Image pull failures the nodes reported, per registry and classified cause: a container entering ErrImagePull, or the count of a pod's \"Failed to pull image\" event going up (one failure seen both ways counts once). Counted from the exporter's start; registries past --kube.max-registries count under registry=\"other\".",
	[]string{"registry", "cause"}, nil)

type failureSource uint8

const (
	fromStatus failureSource = iota + 1
	fromEvent
)

type seenFailure struct {
	at  time.Time
	src failureSource
}

// failureCounter is the counter's state. Its registry label is decided at
// increment time, first come first served: a registry keeps its own label
// once it has one, so no series ever goes down, and at most maxRegistries
// registries get one (the rest count under "other").
type failureCounter struct {
	mu            sync.Mutex
	now           func() time.Time
	maxRegistries int
	counts        map[regCause]float64
	labelled      map[string]bool
	seen          map[containerKey]seenFailure
}

func newFailureCounter(now func() time.Time, maxRegistries int) *failureCounter {
	return &failureCounter{now: now, maxRegistries: maxRegistries, counts: map[regCause]float64{},
		labelled: map[string]bool{}, seen: map[containerKey]seenFailure{}}
}

// observe records n failures of container k from src.
func (f *failureCounter) observe(k containerKey, src failureSource, registry, cause string, n int) {
	if n <= 0 || registry == "" {
		return
	}
	if cause == "" {
		cause = collector.CauseUnknown
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	if s, ok := f.seen[k]; ok && s.src != src && now.Sub(s.at) < failureDedupeWindow {
		delete(f.seen, k) // the other side of a failure already counted
		n--
	} else {
		f.remember(k, seenFailure{now, src})
	}
	if n <= 0 {
		return
	}
	if !f.labelled[registry] && registry != RegistryInvalid {
		if f.maxRegistries <= 0 || len(f.labelled) < f.maxRegistries {
			f.labelled[registry] = true
		} else {
			registry = collector.OtherRegistry
		}
	}
	f.counts[regCause{registry, cause}] += float64(n)
}

func (f *failureCounter) remember(k containerKey, s seenFailure) {
	if len(f.seen) >= 1000 {
		for key, v := range f.seen {
			if s.at.Sub(v.at) >= failureDedupeWindow {
				delete(f.seen, key)
			}
		}
	}
	if len(f.seen) < maxDedupe {
		f.seen[k] = s
	}
}

func (f *failureCounter) collect(ch chan<- prometheus.Metric) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, v := range f.counts {
		ch <- prometheus.MustNewConstMetric(descPullFailures, prometheus.CounterValue, v, k.registry, k.cause)
	}
}

// podFailures counts the containers of a pod that entered ErrImagePull
// between two versions of it.
func (c *Cluster) podFailures(oldObj, newObj any) {
	np, ok := newObj.(*podInfo)
	if !ok {
		return
	}
	var op *podInfo
	if oldObj != nil {
		op, _ = oldObj.(*podInfo)
	}
	for i := range np.Containers {
		ct := &np.Containers[i]
		if ct.Waiting != "ErrImagePull" {
			continue
		}
		if op != nil {
			if prev := op.container(ct.Name); prev != nil && prev.Waiting == "ErrImagePull" {
				continue
			}
		}
		cause := ""
		if ct.Cause != noCause {
			cause = ct.Cause.Value()
		}
		c.failures.observe(containerKey{np.Namespace, np.Name, ct.Name.Value()}, fromStatus, ct.Img.Value().Registry(), cause, 1)
	}
}

// container returns the container named name, or nil.
func (p *podInfo) container(name unique.Handle[string]) *containerInfo {
	for i := range p.Containers {
		if p.Containers[i].Name == name {
			return &p.Containers[i]
		}
	}
	return nil
}

// eventFailures counts the pull failures an event's count went up by.
func (c *Cluster) eventFailures(oldObj, newObj any) {
	ne, ok := newObj.(*eventInfo)
	if !ok || !ne.PullFailure {
		return
	}
	n := int(ne.Count)
	if oldObj != nil {
		if oe, ok := oldObj.(*eventInfo); ok {
			n -= int(oe.Count)
		}
	}
	if n <= 0 {
		return
	}
	registry := ne.Registry
	if obj := c.pods.get(ne.Namespace, ne.Pod); obj != nil {
		if p, ok := obj.(*podInfo); ok {
			if ct := p.container(unique.Make(ne.Container)); ct != nil {
				registry = ct.Img.Value().Registry()
			} else if c.opts.Sharding.Enabled() {
				registry = "" // the container's registry is another shard's
			}
		}
	}
	if registry == "" || !c.opts.Sharding.Owns(registry) {
		return
	}
	cause := ""
	if ne.Cause != noCause {
		cause = ne.Cause.Value()
	}
	c.failures.observe(containerKey{ne.Namespace, ne.Pod, ne.Container}, fromEvent, registry, cause, n)
}
