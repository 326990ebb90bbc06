// Package kube is the Kubernetes side of imagepull_exporter: it watches pods,
// nodes and (for discovery and pull secrets) workloads and service accounts
// with shared informers that keep only what the join needs, and joins that
// state with the prober's latest results into per namespace × registry ×
// reason counts. It also discovers probe targets from the images the cluster
// runs, resolves pull secrets the way the kubelet does, and explains failing
// pulls for `imagepull_exporter diagnose`.
//
// It imports collector for ProbeStatus; collector never imports it, and the
// command wires the two together.
package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/imagepull/imagepull_exporter/collector"
)

// Options configures a Cluster.
type Options struct {
	// Namespaces limits the pods, workloads and service accounts watched
	// (--kube.namespaces); empty means every namespace. Nodes are
	// cluster-scoped and always watched.
	Namespaces []string
	// WatchWorkloads also watches Deployments, StatefulSets, DaemonSets,
	// Jobs and CronJobs, whose pod templates discovery reads
	// (--kube.discover-targets).
	WatchWorkloads bool
	// Status is the prober's latest results, read at scrape time by the
	// join. Nil means every registry is "unprobed".
	Status collector.ProbeStatus
	// Logger receives watch health transitions; nil discards.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Sharding keeps only the containers and images of registries this
	// shard owns (shard.go); the zero value keeps everything.
	Sharding collector.Sharding
	// WatchEvents also watches the pods' Failed events (--kube.watch-events),
	// where kubelets before 1.32 leave the pull error of a container in
	// back-off.
	WatchEvents bool
	// MaxRegistries caps the distinct registries of the join's series
	// (--kube.max-registries); the rest count under registry="other".
	// <= 0 means no cap.
	MaxRegistries int
	// UsePullSecrets is pull-secret mode (--kube.use-pull-secrets): the
	// Cluster also watches ServiceAccounts, whose imagePullSecrets
	// pull-secret resolution reads, and reads the workloads' unavailable
	// images from the targets discovery names after the kubelet's pull
	// secrets (DiscoveryOptions.UsePullSecrets needs it).
	UsePullSecrets bool
	// MaxWorkloadSeries caps the series of
	// imagepull_workload_image_unavailable (--kube.max-workload-series);
	// <= 0 means no cap. Which are kept: workloads.go.
	MaxWorkloadSeries int
}

// Cluster watches one Kubernetes cluster and exposes the join's metrics.
type Cluster struct {
	// series keeps the join's label pairs between scrapes (seriesCache).
	series seriesCache

	client kubernetes.Interface
	opts   Options
	logger *slog.Logger

	pods            *resourceWatch
	nodes           *resourceWatch
	serviceAccounts *resourceWatch   // nil unless UsePullSecrets
	workloads       []*resourceWatch // empty unless WatchWorkloads
	events          *resourceWatch   // nil unless WatchEvents

	eventIdx *eventIndex // newest classified Failed event per container
	// index is the join's pod-side aggregates, kept by the pods' and
	// events' handlers (joinindex.go); indexRegs are its registrations
	// with the pods informers, whose HasSynced says it has every pod.
	index     *joinIndex
	indexRegs []cache.ResourceEventHandlerRegistration
	// uses is discovery's reference counts of images (useindex.go), kept
	// by the pods' and workloads' handlers.
	uses *useIndex
	// handlerRegs are the indexes' registrations: synced once they have
	// received every object of the first lists.
	handlerRegs []cache.ResourceEventHandlerRegistration
	failures    *failureCounter // imagepull_pull_failures_total

	mu      sync.Mutex
	running bool
}

// New builds the informers; Run starts them.
func New(client kubernetes.Interface, opts Options) (*Cluster, error) {
	if client == nil {
		return nil, errors.New("kube: nil client")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	namespaces := slices.Clone(opts.Namespaces)
	slices.Sort(namespaces)
	namespaces = slices.Compact(namespaces)
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	c := &Cluster{client: client, opts: opts, logger: opts.Logger,
		eventIdx: newEventIndex(maxEventIndex), index: newJoinIndex(), uses: newUseIndex(), failures: newFailureCounter(opts.Now, opts.MaxRegistries)}
	newRW := func(name string) *resourceWatch {
		return &resourceWatch{name: name, logger: opts.Logger, now: opts.Now}
	}

	c.pods = newRW(ResourcePods)
	for _, ns := range namespaces {
		api := client.CoreV1().Pods(ns)
		c.pods.addInformer(&corev1.Pod{}, shardPods(opts.Sharding), listOf(api.List), api.Watch)
	}
	c.pods.addHandler(cache.ResourceEventHandlerDetailedFuncs{
		// Pods already failing when the exporter starts are not new
		// failures; a pod added later (or at a relist) already in
		// ErrImagePull is.
		AddFunc: func(obj any, initial bool) {
			if !initial {
				c.podFailures(nil, obj)
			}
		},
		UpdateFunc: c.podFailures,
	})
	c.indexRegs = c.pods.addHandler(cache.ResourceEventHandlerDetailedFuncs{
		AddFunc:    c.indexPodAdd,
		UpdateFunc: c.indexPodUpdate,
		DeleteFunc: c.indexPodDelete,
	})
	c.handlerRegs = append(c.handlerRegs, c.indexRegs...)
	c.handlerRegs = append(c.handlerRegs, c.pods.addHandler(c.uses.handler())...)
	if opts.WatchEvents {
		c.events = newRW(ResourceEvents)
		for _, ns := range namespaces {
			api := client.CoreV1().Events(ns)
			list := func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				o.FieldSelector = failedEventSelector
				return api.List(ctx, o)
			}
			watch := func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				o.FieldSelector = failedEventSelector
				return api.Watch(ctx, o)
			}
			c.events.addInformer(&corev1.Event{}, transformEvent, list, watch)
		}
		c.events.addHandler(cache.ResourceEventHandlerDetailedFuncs{
			AddFunc: func(obj any, initial bool) {
				if e, ok := obj.(*eventInfo); ok {
					c.indexEventsChanged(c.eventIdx.update(e))
				}
				if !initial {
					c.eventFailures(nil, obj)
				}
			},
			UpdateFunc: func(oldObj, newObj any) {
				if e, ok := newObj.(*eventInfo); ok {
					c.indexEventsChanged(c.eventIdx.update(e))
				}
				c.eventFailures(oldObj, newObj)
			},
			DeleteFunc: func(obj any) {
				if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
					obj = d.Obj
				}
				if e, ok := obj.(*eventInfo); ok {
					c.indexEventsChanged(c.eventIdx.remove(e))
				}
			},
		})
	}
	c.nodes = newRW(ResourceNodes)
	nodes := client.CoreV1().Nodes()
	c.nodes.addInformer(&corev1.Node{}, shardNodes(opts.Sharding), listOf(nodes.List), nodes.Watch)
	if opts.UsePullSecrets {
		c.serviceAccounts = newRW(ResourceServiceAccounts)
		for _, ns := range namespaces {
			api := client.CoreV1().ServiceAccounts(ns)
			c.serviceAccounts.addInformer(&corev1.ServiceAccount{}, transformServiceAccount, listOf(api.List), api.Watch)
		}
	}
	if opts.WatchWorkloads {
		for _, w := range []struct {
			name    string
			example runtime.Object
			api     func(ns string) (listFunc, watchFunc)
		}{
			{ResourceDeployments, &appsv1.Deployment{}, func(ns string) (listFunc, watchFunc) {
				api := client.AppsV1().Deployments(ns)
				return listOf(api.List), api.Watch
			}},
			{ResourceStatefulSets, &appsv1.StatefulSet{}, func(ns string) (listFunc, watchFunc) {
				api := client.AppsV1().StatefulSets(ns)
				return listOf(api.List), api.Watch
			}},
			{ResourceDaemonSets, &appsv1.DaemonSet{}, func(ns string) (listFunc, watchFunc) {
				api := client.AppsV1().DaemonSets(ns)
				return listOf(api.List), api.Watch
			}},
			{ResourceJobs, &batchv1.Job{}, func(ns string) (listFunc, watchFunc) {
				api := client.BatchV1().Jobs(ns)
				return listOf(api.List), api.Watch
			}},
			{ResourceCronJobs, &batchv1.CronJob{}, func(ns string) (listFunc, watchFunc) {
				api := client.BatchV1().CronJobs(ns)
				return listOf(api.List), api.Watch
			}},
		} {
			rw := newRW(w.name)
			for _, ns := range namespaces {
				list, watch := w.api(ns)
				rw.addInformer(w.example, shardWorkloads(opts.Sharding), list, watch)
			}
			c.handlerRegs = append(c.handlerRegs, rw.addHandler(c.uses.handler())...)
			c.workloads = append(c.workloads, rw)
		}
	}
	return c, nil
}

// listOf adapts a typed client's List method (*v1.PodList, ...) to the
// informers' listFunc; Watch methods fit watchFunc as they are.
func listOf[L runtime.Object](list func(context.Context, metav1.ListOptions) (L, error)) listFunc {
	return func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
		l, err := list(ctx, o)
		if err != nil {
			return nil, err
		}
		return l, nil
	}
}

// watches returns every resource watched, in a stable order.
func (c *Cluster) watches() []*resourceWatch {
	out := []*resourceWatch{c.pods, c.nodes}
	if c.serviceAccounts != nil {
		out = append(out, c.serviceAccounts)
	}
	if c.events != nil {
		out = append(out, c.events)
	}
	return append(out, c.workloads...)
}

// Run runs the informers until ctx is done and returns after every
// goroutine it started has stopped. It may be called once.
func (c *Cluster) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.running {
		c.mu.Unlock()
		return errors.New("kube: Cluster.Run called twice")
	}
	c.running = true
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, rw := range c.watches() {
		rw.run(ctx, &wg)
	}
	wg.Go(func() {
		// The first list of every resource arrives as a stream or in
		// pages, each object shrunk by the transforms as it arrives
		// (instrumentedLW), but the decoded pages and events are still
		// garbage the runtime would hand back to the OS only over
		// minutes. Hand it back once, now.
		if c.WaitForSync(ctx) == nil {
			debug.FreeOSMemory()
		}
	})
	<-ctx.Done()
	wg.Wait()
	return nil
}

// HasSynced reports whether every informer has completed its first list
// and the indexes have received it.
func (c *Cluster) HasSynced() bool {
	for _, rw := range c.watches() {
		if !rw.synced() {
			return false
		}
	}
	for _, r := range c.handlerRegs {
		if !r.HasSynced() {
			return false
		}
	}
	return true
}

// WaitForSync blocks until every informer has synced or ctx is done.
func (c *Cluster) WaitForSync(ctx context.Context) error {
	var synced []cache.InformerSynced
	for _, rw := range c.watches() {
		for _, inf := range rw.informers {
			synced = append(synced, inf.HasSynced)
		}
	}
	for _, r := range c.handlerRegs {
		synced = append(synced, r.HasSynced)
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return fmt.Errorf("wait for Kubernetes caches to sync: %w", context.Cause(ctx))
	}
	return nil
}
