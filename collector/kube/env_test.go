package kube

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/imagepull/imagepull_exporter/collector"
	"github.com/imagepull/imagepull_exporter/collector/config"
	"github.com/imagepull/imagepull_exporter/internal/testenv"
	"github.com/imagepull/imagepull_exporter/probe"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, testenv.KubeLeakOptions()...)
}

// exporter is the Kubernetes side of the exporter as cmd wires it, running
// against a real apiserver with a real scheduler and prober: Cluster (the
// informers and the join), Scheduler (probes, ProbeStatus) and Discovery.
type exporter struct {
	cluster   *Cluster
	sched     *collector.Scheduler
	discovery *Discovery
	prober    *probe.Prober
	reg       *prometheus.Registry
	cfg       *config.Config

	mu         sync.Mutex
	discovered []collector.DiscoveredTarget
}

type exporterOptions struct {
	rest       *rest.Config
	namespaces []string
	config     string // YAML; the scheduler probes its targets
	discover   bool
	pullSecret bool
	// userAgent of the prober; empty means "imagepull-kube-test".
	userAgent string
	// forward filters what discovery hands the scheduler (nil = all); the
	// full set is kept in exporter.discovered.
	forward func(collector.DiscoveredTarget) bool
	// maxRegistries is --kube.max-registries (0: no cap).
	maxRegistries int
	// events watches the pods' Failed events (--kube.watch-events).
	events bool
}

func startExporter(t *testing.T, o exporterOptions) *exporter {
	t.Helper()
	cfg, err := config.Parse("test.yml", []byte(o.config))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	rc := rest.CopyConfig(o.rest)
	rc.Timeout = 0 // watches are long requests
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	e := &exporter{reg: prometheus.NewRegistry(), cfg: cfg}
	ua := o.userAgent
	if ua == "" {
		ua = "imagepull-kube-test"
	}
	e.prober = probe.NewProber(probe.ProberOptions{UserAgent: ua})
	e.sched = collector.NewScheduler(collector.SchedulerOptions{Prober: e.prober, Concurrency: 4})
	e.sched.ApplyConfig(cfg)
	e.cluster, err = New(client, Options{
		Namespaces:     o.namespaces,
		WatchWorkloads: o.discover,
		UsePullSecrets: o.pullSecret,
		Status:         e.sched,
		Logger:         testLogger(t),
		MaxRegistries:  o.maxRegistries,
		WatchEvents:    o.events,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.reg.MustRegister(e.cluster)
	if o.discover || o.pullSecret {
		e.discovery, err = NewDiscovery(e.cluster, DiscoveryOptions{
			Config:          func() *config.Config { return cfg },
			DiscoverTargets: o.discover,
			SetTargets: func(ts []collector.DiscoveredTarget) {
				e.mu.Lock()
				e.discovered = ts
				e.mu.Unlock()
				var fwd []collector.DiscoveredTarget
				for _, t := range ts {
					if o.forward == nil || o.forward(t) {
						fwd = append(fwd, t)
					}
				}
				e.sched.SetDiscovered(fwd)
			},
			UsePullSecrets: o.pullSecret,
			Prober:         e.prober,
			Sender:         e.sched.Sender(), // as Deps wires it: the checks share the scheduler's budget and counters
			Interval:       500 * time.Millisecond,
			SecretTTL:      time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		e.reg.MustRegister(e.discovery)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = e.cluster.Run(ctx) })
	wg.Go(func() { _ = e.sched.Run(ctx) })
	if e.discovery != nil {
		wg.Go(func() { _ = e.discovery.Run(ctx) })
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		e.prober.Close()
	})
	sctx, scancel := context.WithTimeout(ctx, time.Minute)
	defer scancel()
	if err := e.cluster.WaitForSync(sctx); err != nil {
		t.Fatalf("informers did not sync: %v", err)
	}
	return e
}

func (e *exporter) targets() []collector.DiscoveredTarget {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.discovered
}

// waitMetrics polls until the exposition of the named metrics equals want
// (a wait for the system to converge, not a timing assertion: the bound is
// generous and the test fails with the last difference).
func waitMetrics(t *testing.T, g prometheus.Gatherer, want string, names ...string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if err = testutil.GatherAndCompare(g, strings.NewReader(want), names...); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("metrics did not converge: %v", err)
}

// waitFor polls cond until it holds, failing with what after a generous
// bound.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// kubelet plays the kubelet: it creates pods and writes their status
// through the status subresource, and creates nodes with status.images.
type kubelet struct {
	t      *testing.T
	client kubernetes.Interface
}

type podSpec struct {
	ns, name, node string
	sa             string
	secrets        []string
	ctrs           []ctr
}

func (k kubelet) pod(ps podSpec) *corev1.Pod {
	k.t.Helper()
	p := pod(ps.ns, ps.name, ps.node, ps.ctrs...)
	p.Spec.ServiceAccountName = ps.sa
	for _, s := range ps.secrets {
		p.Spec.ImagePullSecrets = append(p.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: s})
	}
	status := p.Status
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	created, err := k.client.CoreV1().Pods(ps.ns).Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		k.t.Fatalf("create pod %s/%s: %v", ps.ns, ps.name, err)
	}
	created.Status = status
	updated, err := k.client.CoreV1().Pods(ps.ns).UpdateStatus(ctx, created, metav1.UpdateOptions{})
	if err != nil {
		k.t.Fatalf("update status of pod %s/%s: %v", ps.ns, ps.name, err)
	}
	return updated
}

// setStatus replaces the status of an existing pod's containers.
func (k kubelet) setStatus(ns, name string, ctrs ...ctr) {
	k.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cur, err := k.client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		k.t.Fatal(err)
	}
	cur.Status = pod(ns, name, "", ctrs...).Status
	if _, err := k.client.CoreV1().Pods(ns).UpdateStatus(ctx, cur, metav1.UpdateOptions{}); err != nil {
		k.t.Fatalf("update status of pod %s/%s: %v", ns, name, err)
	}
}

// failedPull records (or, when it exists, updates to count) the kubelet's
// "Failed to pull image" event of container (the pod() helper names them
// ca, cb, ...) of pod ns/podName, as reported from node.
func (k kubelet) failedPull(ns, podName, container, node, name, image, pullErr string, count int32) {
	k.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	now := metav1.Now()
	api := k.client.CoreV1().Events(ns)
	if cur, err := api.Get(ctx, name, metav1.GetOptions{}); err == nil {
		cur.Count, cur.LastTimestamp = count, now
		if _, err := api.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			k.t.Fatalf("update event %s/%s: %v", ns, name, err)
		}
		return
	}
	pod, err := k.client.CoreV1().Pods(ns).Get(ctx, podName, metav1.GetOptions{})
	if err != nil {
		k.t.Fatal(err)
	}
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: podName, UID: pod.UID, APIVersion: "v1",
			FieldPath: "spec.containers{" + container + "}"},
		Reason:         "Failed",
		Message:        fmt.Sprintf("Failed to pull image %q: %s", image, pullErr),
		Source:         corev1.EventSource{Component: "kubelet", Host: node},
		FirstTimestamp: now, LastTimestamp: now, Count: count, Type: corev1.EventTypeWarning,
	}
	if _, err := api.Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		k.t.Fatalf("create event %s/%s: %v", ns, name, err)
	}
}

func (k kubelet) node(name string, images ...string) {
	k.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := k.client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		k.t.Fatalf("create node %s: %v", name, err)
	}
	n.Status = node(name, images...).Status
	if _, err := k.client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		k.t.Fatalf("update status of node %s: %v", name, err)
	}
}

// localModule is a module for the test registries: plain HTTP, fast.
const localModule = `
  local:
    timeout: 2s
    interval: 2s
    auth_check_interval: 1m
    plain_http: true
`

func configYAML(modules string, targets ...string) string {
	var b strings.Builder
	b.WriteString("modules:\n" + localModule + modules)
	if len(targets) > 0 {
		b.WriteString("targets:\n")
		for _, t := range targets {
			fmt.Fprintf(&b, "  - {image: %q, module: local}\n", t)
		}
	}
	return b.String()
}

// logSink collects every log line of a test (to prove no secret reaches a
// log) and echoes it to the test log.
type logSink struct {
	t  testing.TB
	mu sync.Mutex
	b  strings.Builder
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	s.b.Write(p)
	s.mu.Unlock()
	s.t.Logf("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var testLogs sync.Map // testing.TB → *logSink

func testLogger(t testing.TB) *slog.Logger {
	s := &logSink{t: t}
	testLogs.Store(t, s)
	return slog.New(slog.NewTextHandler(s, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func logsOf(t testing.TB) string {
	if s, ok := testLogs.Load(t); ok {
		return s.(*logSink).String()
	}
	return ""
}
