package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
)

// Resource names: the `resource` label of the watch health metrics.
const (
	ResourcePods            = "pods"
	ResourceNodes           = "nodes"
	ResourceServiceAccounts = "serviceaccounts"
	ResourceDeployments     = "deployments"
	ResourceStatefulSets    = "statefulsets"
	ResourceDaemonSets      = "daemonsets"
	ResourceJobs            = "jobs"
	ResourceCronJobs        = "cronjobs"
)

type listFunc func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error)
type watchFunc func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)

// resourceWatch is the set of informers of one resource (one per watched
// namespace, or one for the whole cluster) and their health.
type resourceWatch struct {
	name      string
	informers []cache.SharedIndexInformer
	conns     []*connState
	logger    *slog.Logger
	now       func() time.Time

	lastEvent atomic.Int64 // unix nanoseconds of the last list or watch event
	lists     atomic.Int64 // successful lists, so tests can see a relist
	down      atomic.Bool  // for logging transitions once
}

// connState is the health of one informer's connection: whether its last
// list or watch request succeeded.
type connState struct{ ok atomic.Bool }

// The reflector's own watch error handler is only called for errors that end
// ListAndWatch; a refused connection is retried inside the reflector without
// reaching it. So health is taken from the list and watch calls themselves
// (instrumentedLW), and the error handler only adds what ends a
// ListAndWatch (expired resource versions, forbidden, decode errors).
type instrumentedLW struct {
	rw    *resourceWatch
	conn  *connState
	list  listFunc
	watch watchFunc
	// transform is the informer's: each page of a list is shrunk with it
	// as it arrives (see shrinkPage).
	transform cache.TransformFunc
}

func (l *instrumentedLW) List(opts metav1.ListOptions) (runtime.Object, error) {
	return l.ListWithContext(context.Background(), opts)
}

func (l *instrumentedLW) Watch(opts metav1.ListOptions) (watch.Interface, error) {
	return l.WatchWithContext(context.Background(), opts)
}

func (l *instrumentedLW) ListWithContext(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
	obj, err := l.list(ctx, pagedListOptions(opts))
	if err != nil {
		l.rw.markDown(ctx, l.conn, err)
		return nil, err
	}
	page, err := shrinkPage(obj, l.transform)
	if err != nil {
		return nil, err
	}
	if page.Continue == "" {
		l.rw.lists.Add(1) // the last page: the list is complete
	}
	l.rw.markUp(l.conn)
	l.rw.touch()
	return page, nil
}

func (l *instrumentedLW) WatchWithContext(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	w, err := l.watch(ctx, opts)
	if err != nil {
		// An apiserver without streaming lists (WatchList gate off, or
		// older than 1.27) refuses sendInitialEvents as invalid, and the
		// reflector falls back to a paginated list at once: that list,
		// not this refusal, says whether the connection is up.
		if opts.SendInitialEvents == nil || !apierrors.IsInvalid(err) {
			l.rw.markDown(ctx, l.conn, err)
		}
		return nil, err
	}
	return newObservedWatch(ctx, w, l.rw, l.conn, opts.SendInitialEvents != nil), nil
}

// listPageSize is the number of objects per page of a list. A variable so
// tests can page a few hundred pods.
var listPageSize int64 = 500

// pagedListOptions makes a list request the apiserver answers in pages of
// at most listPageSize. The reflector asks for its first list at
// resourceVersion "0" (any data, from the watch cache) with client-go's
// page size of 500, but the watch cache ignores the limit at
// resourceVersion "0" and answers with every object at once: at 10,000 pods
// that one response, and the typed list decoded from it, were most of the
// exporter's start-up peak. Without a resource version the read is
// consistent (served from the watch cache once it caught up with etcd, or
// from etcd) and the limit holds. A relist at a later resource version
// comes without a limit (client-go turns paging off so the watch cache can
// serve it); it gets one too, which makes it an exact read at that version
// (from the watch cache's snapshots, or etcd; when that version is
// compacted the reflector retries without one).
func pagedListOptions(opts metav1.ListOptions) metav1.ListOptions {
	if opts.Limit == 0 || opts.Limit > listPageSize {
		opts.Limit = listPageSize
	}
	if opts.Continue == "" && opts.ResourceVersion == "0" {
		opts.ResourceVersion = ""
		opts.ResourceVersionMatch = ""
	}
	return opts
}

// shrinkPage applies the informer's transform to every object of one page
// of a list and returns the compact objects as a list. client-go's pager
// collects every page before the reflector hands the objects to the
// informer, whose transform would only then shrink them: shrunk here, a
// full object lives only as long as its page.
func shrinkPage(obj runtime.Object, transform cache.TransformFunc) (*metainternalversion.List, error) {
	m, err := meta.ListAccessor(obj)
	if err != nil {
		return nil, fmt.Errorf("list response: %w", err)
	}
	page := &metainternalversion.List{}
	page.ResourceVersion = m.GetResourceVersion()
	page.Continue = m.GetContinue()
	page.RemainingItemCount = m.GetRemainingItemCount()
	err = meta.EachListItem(obj, func(o runtime.Object) error {
		if transform != nil {
			t, err := transform(o)
			if err != nil {
				return err
			}
			ro, ok := t.(runtime.Object)
			if !ok {
				return fmt.Errorf("transform made a %T, not a runtime.Object", t)
			}
			o = ro
		}
		page.Items = append(page.Items, o)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list response: %w", err)
	}
	return page, nil
}

// errEmptyWatch is the failure an empty watch stands for.
var errEmptyWatch = errors.New("watch stream closed at once without an event (the apiserver or a proxy in front of it dropped the connection)")

// shortWatch is client-go's own bound for a watch that ended before it
// began (the reflector's VeryShortWatchError).
const shortWatch = time.Second

// observedWatch forwards a watch stream and judges the connection by it.
// A successful Watch call proves little: when the connection breaks with an
// EOF or a reset (a load balancer or proxy in front of a stopped apiserver
// accepts, then drops), client-go's rest client retries and finally returns
// watch.NewEmptyWatch() with a nil error, a stream that is already closed.
// So the connection counts as up once the stream delivers an event or stays
// open for shortWatch, and as down when it closes sooner without an event.
type observedWatch struct {
	inner watch.Interface
	out   chan watch.Event
	stop  chan struct{}
	once  sync.Once
}

// newObservedWatch starts forwarding inner. A streaming list (streaming)
// that the apiserver accepted but cannot serve answers with an error event
// and closes: kube-apiserver 1.34 serves one only when etcd sends progress
// notifications on request (etcd 3.4.31 or 3.5.13 and later), and sends an
// InternalError "required storage feature RequestWatchProgress is
// disabled" otherwise. The reflector then falls back to a paginated list,
// whose outcome judges the connection.
func newObservedWatch(ctx context.Context, inner watch.Interface, rw *resourceWatch, conn *connState, streaming bool) *observedWatch {
	w := &observedWatch{inner: inner, out: make(chan watch.Event), stop: make(chan struct{})}
	go w.run(ctx, rw, conn, streaming)
	return w
}

func (w *observedWatch) run(ctx context.Context, rw *resourceWatch, conn *connState, streaming bool) {
	defer close(w.out)
	timer := time.NewTimer(shortWatch)
	defer timer.Stop()
	judged := false
	in := w.inner.ResultChan()
	for {
		select {
		case ev, ok := <-in:
			if !ok {
				if !judged {
					rw.markDown(ctx, conn, errEmptyWatch)
				}
				return
			}
			if !judged {
				switch {
				case ev.Type != watch.Error:
					judged = true
					rw.markUp(conn)
				case streaming:
					judged = true // refused: the fallback list judges
				}
			}
			select {
			case w.out <- ev:
			case <-w.stop:
				return
			}
		case <-timer.C:
			if !judged {
				judged = true
				rw.markUp(conn)
			}
		case <-w.stop:
			return
		}
	}
}

// Stop implements watch.Interface.
func (w *observedWatch) Stop() {
	w.once.Do(func() {
		close(w.stop)
		w.inner.Stop()
	})
}

// ResultChan implements watch.Interface.
func (w *observedWatch) ResultChan() <-chan watch.Event { return w.out }

func (rw *resourceWatch) markDown(ctx context.Context, c *connState, err error) {
	c.ok.Store(false)
	if ctx.Err() != nil {
		return // shutting down: not an outage
	}
	if !rw.down.Swap(true) {
		rw.logger.Warn("Kubernetes watch is down; keeping the last known state until the apiserver answers again",
			"resource", rw.name, "err", err)
	}
}

func (rw *resourceWatch) markUp(c *connState) {
	c.ok.Store(true)
	if rw.up() && rw.down.Swap(false) {
		rw.logger.Info("Kubernetes watch is back", "resource", rw.name)
	}
}

func (rw *resourceWatch) touch() { rw.lastEvent.Store(rw.now().UnixNano()) }

// synced reports whether every informer of the resource has completed its
// first list.
func (rw *resourceWatch) synced() bool {
	for _, inf := range rw.informers {
		if !inf.HasSynced() {
			return false
		}
	}
	return true
}

// up reports whether every informer has synced and its latest list or watch
// request succeeded.
func (rw *resourceWatch) up() bool {
	for _, c := range rw.conns {
		if !c.ok.Load() {
			return false
		}
	}
	return rw.synced()
}

// list returns the objects of every informer's store.
func (rw *resourceWatch) list() []any {
	if len(rw.informers) == 1 {
		return rw.informers[0].GetStore().List()
	}
	var out []any
	for _, inf := range rw.informers {
		out = append(out, inf.GetStore().List()...)
	}
	return out
}

// get returns the object namespace/name, or nil.
func (rw *resourceWatch) get(namespace, name string) any {
	key := name
	if namespace != "" {
		key = namespace + "/" + name
	}
	for _, inf := range rw.informers {
		if obj, ok, _ := inf.GetStore().GetByKey(key); ok {
			return obj
		}
	}
	return nil
}

// addInformer adds one informer (for one namespace, or "" for all) of the
// resource, with its transform and health instrumentation, and resync off.
func (rw *resourceWatch) addInformer(example runtime.Object, transform cache.TransformFunc, list listFunc, watch watchFunc) {
	conn := &connState{}
	lw := &instrumentedLW{rw: rw, conn: conn, list: list, watch: watch, transform: transform}
	inf := cache.NewSharedIndexInformerWithOptions(lw, example, cache.SharedIndexInformerOptions{
		ResyncPeriod:      0,
		ObjectDescription: rw.name,
	})
	// Errors only arise once the informer runs; set before Run they cannot.
	_ = inf.SetTransform(transform)
	_ = inf.SetWatchErrorHandlerWithContext(func(ctx context.Context, _ *cache.Reflector, err error) {
		rw.markDown(ctx, conn, err)
	})
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { rw.touch() },
		UpdateFunc: func(any, any) { rw.touch() },
		DeleteFunc: func(any) { rw.touch() },
	})
	rw.informers = append(rw.informers, inf)
	rw.conns = append(rw.conns, conn)
}

// addHandler adds h to every informer of the resource (call before run)
// and returns the registrations, whose HasSynced says h has received every
// object of the first lists.
func (rw *resourceWatch) addHandler(h cache.ResourceEventHandler) []cache.ResourceEventHandlerRegistration {
	var regs []cache.ResourceEventHandlerRegistration
	for _, inf := range rw.informers {
		// AddEventHandler fails only on a stopped informer; these have
		// not started.
		if r, err := inf.AddEventHandler(h); err == nil {
			regs = append(regs, r)
		}
	}
	return regs
}

// run runs every informer until ctx is done, and returns once they stopped.
func (rw *resourceWatch) run(ctx context.Context, wg *sync.WaitGroup) {
	for _, inf := range rw.informers {
		wg.Go(func() { inf.RunWithContext(ctx) })
	}
}
