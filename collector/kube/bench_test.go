package kube

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/imagepull/imagepull_exporter/internal/testenv"
	"github.com/imagepull/imagepull_exporter/probe"
)

// The benchmarks print figures; they assert nothing about time.
//
//	go test -run '^$' -bench 'Join10k' -benchtime 200x ./collector/kube/        # in process, seconds
//	go test -run '^$' -bench 'Kube10kPods' -benchtime 50x -timeout 30m ./collector/kube/   # real apiserver, minutes

const (
	benchPods       = 10000
	benchNamespaces = 50
	benchNodes      = 100
)

// benchImages is a plausible spread: 40 images over 6 registries.
var benchImages = func() []string {
	var out []string
	regs := []string{"docker.io/library", "ghcr.io/acme", "quay.io/prometheus", "registry.k8s.io", "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team", "registry.internal.example.com/platform"}
	for i := range 40 {
		out = append(out, fmt.Sprintf("%s/app%d:v1.%d.0", regs[i%len(regs)], i, i%7))
	}
	return out
}()

func benchDigest(i int) string { return fmt.Sprintf("sha256:%064x", i) }

// benchPod is pod i of the benchmark: two containers (one in five pods also
// an init container); 94% running, 3% ImagePullBackOff, 2% ErrImagePull,
// 1% without status yet.
func benchPod(i int) *corev1.Pod { return benchPodOf(i, benchImages) }

// benchPodOf is benchPod with its images taken from images (each of the
// form REPOSITORY:vTAG).
func benchPodOf(i int, images []string) *corev1.Pod {
	ns := fmt.Sprintf("team-%02d", i%benchNamespaces)
	// 11 is prime to both 40 and 70: every image is named.
	img := func(j int) string { return images[(i*11+j*13)%len(images)] }
	c := []ctr{}
	state := i % 100
	for j := range 2 {
		x := ctr{image: img(j), policy: "IfNotPresent"}
		switch {
		case state < 94:
			x.running = true
			x.imageID = strings.SplitN(img(j), ":v", 2)[0] + "@" + benchDigest((i+j)%40/39) // a few tags run two digests
		case state < 97:
			x.waiting = "ImagePullBackOff"
		case state < 99:
			x.waiting = "ErrImagePull"
		}
		c = append(c, x)
	}
	if i%5 == 0 {
		c = append(c, ctr{image: "docker.io/library/busybox:1.36", init: true, policy: "IfNotPresent"})
	}
	p := pod(ns, fmt.Sprintf("pod-%05d", i), fmt.Sprintf("node-%03d", i%benchNodes), c...)
	p.Labels = map[string]string{"app": fmt.Sprintf("app-%d", i%300), "pod-template-hash": "5d8f7c9b6"}
	p.Spec.ServiceAccountName = "default"
	if state >= 99 {
		p.Status = corev1.PodStatus{}
	}
	return p
}

func benchNode(i int) *corev1.Node {
	var imgs []string
	for j := range 50 { // the kubelet's default --node-status-max-images
		imgs = append(imgs, benchImages[(i+j)%len(benchImages)])
	}
	return node(fmt.Sprintf("node-%03d", i), imgs...)
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// BenchmarkJoin10k measures the in-process cost of 10,000 pods: cache
// memory with the transforms against keeping the API objects, and the
// join a scrape computes.
func BenchmarkJoin10k(b *testing.B) {
	pods := make([]*corev1.Pod, benchPods)
	for i := range pods {
		pods[i] = benchPod(i)
	}
	before := heapInUse()
	raw := make([]*corev1.Pod, benchPods)
	for i := range raw {
		raw[i] = pods[i].DeepCopy()
	}
	rawBytes := heapInUse() - before
	runtime.KeepAlive(raw)
	raw = nil

	status := staticStatus{causes: map[string]string{"ghcr.io": "connect"}, tags: map[tagKey]tagResult{}}
	c := offlineCluster(b, Options{Status: status})
	before = heapInUse()
	objs := make([]any, 0, benchPods+benchNodes)
	for _, p := range pods {
		objs = append(objs, p.DeepCopy())
	}
	for i := range benchNodes {
		objs = append(objs, benchNode(i))
	}
	start := time.Now()
	c.feed(b, objs...)
	feed := time.Since(start)
	objs = nil
	compact := heapInUse() - before
	runtime.KeepAlive(pods) // measured on both sides: only the cache differs

	reg := prometheus.NewRegistry()
	// Collect skips the join until the informers have synced; these never
	// run, so gather the join's result through a collector of its own.
	reg.MustRegister(joinOnly{c})
	var size int
	var mfs int
	for b.Loop() {
		got, err := reg.Gather()
		if err != nil {
			b.Fatal(err)
		}
		mfs = len(got)
		size = 0
		for _, mf := range got {
			size += len(mf.Metric)
		}
	}
	b.ReportMetric(float64(compact)/benchPods, "cache-B/pod")
	b.ReportMetric(float64(rawBytes)/benchPods, "apiobject-B/pod")
	b.Logf("10,000 pods (2 containers, 1 in 5 an init container too), 100 nodes x 50 images: "+
		"cache %.1f MiB (%.0f B/pod) with the transforms, %.1f MiB (%.0f B/pod) as API objects; "+
		"transform+store %s; a scrape's join gives %d series in %d families",
		float64(compact)/(1<<20), float64(compact)/benchPods, float64(rawBytes)/(1<<20), float64(rawBytes)/benchPods,
		feed.Round(time.Millisecond), size, mfs)
}

// joinOnly exposes what Collect exposes once the informers have synced.
type joinOnly struct{ c *Cluster }

func (j joinOnly) Describe(ch chan<- *prometheus.Desc) { j.c.Describe(ch) }
func (j joinOnly) Collect(ch chan<- prometheus.Metric) {
	res := j.c.join()
	res.nodesSynced = true // the nodes and workloads were fed by hand
	res.workloadsSynced = len(j.c.workloads) > 0
	res.collect(ch)
}

const (
	benchDeployments = 1000
	benchCronJobs    = 200
	benchJobs        = 100 // half of them started by a CronJob
)

// benchWorkload is workload i of the benchmark: two containers from
// benchImages, one in five also an init container, in the pods'
// namespaces.
func benchWorkload(i int) any {
	ns := fmt.Sprintf("team-%02d", i%benchNamespaces)
	name := fmt.Sprintf("w-%04d", i)
	cs := []tctr{{name: "app", image: benchImages[(i*7)%len(benchImages)]}, {name: "sidecar", image: benchImages[(i*7+13)%len(benchImages)]}}
	if i%5 == 0 {
		cs = append(cs, tctr{name: "init", image: "docker.io/library/busybox:1.36", init: true})
	}
	spec := templateSpec(cs...)
	switch {
	case i < benchDeployments:
		return deployment(ns, name, int32(i%4), spec)
	case i < benchDeployments+benchCronJobs:
		return cronJob(ns, name, i%10 == 0, spec)
	case i%2 == 0:
		return ownedBy(job(ns, name, spec), "CronJob", "w-1000")
	}
	return job(ns, name, spec)
}

// BenchmarkJoin10kWorkloads is BenchmarkJoin10k with 1,000 Deployments,
// 200 CronJobs and 100 Jobs whose templates the join reads for
// imagepull_workload_image_unavailable: 4 of the 40 images are missing
// (not_found), so about one workload in five has a series. With pull
// secrets, every namespace's default service account names one secret,
// which the targets' names carry. templates=none is the same join without
// the workloads watched: the difference is what the templates cost.
func BenchmarkJoin10kWorkloads(b *testing.B) {
	for _, bc := range []struct {
		name                   string
		templates, pullSecrets bool
	}{{"templates=none", false, false}, {"templates=1300", true, false}, {"templates=1300/pull-secrets", true, true}} {
		templates, pullSecrets := bc.templates, bc.pullSecrets
		b.Run(bc.name, func(b *testing.B) {
			status := &benchStatus{staticStatus: staticStatus{causes: map[string]string{"ghcr.io": "connect"}, tags: map[tagKey]tagResult{}}}
			for i, img := range benchImages {
				ref, err := probe.ParseReference(img)
				if err != nil {
					b.Fatal(err)
				}
				r := tagResult{digest: benchDigest(i), ok: true}
				if i%10 == 3 {
					r = tagResult{reason: probe.ReasonNotFound, ok: true}
				}
				status.tags[tagKey{ref.Registry, ref.Repository, ref.Identifier()}] = r
			}
			c := offlineCluster(b, Options{Status: status, WatchWorkloads: templates, UsePullSecrets: pullSecrets,
				MaxWorkloadSeries: DefaultMaxWorkloadSeries, MaxRegistries: DefaultMaxRegistries})
			objs := make([]any, 0, benchPods+benchNodes+benchDeployments+benchCronJobs+benchJobs+benchNamespaces)
			for i := range benchPods {
				objs = append(objs, benchPod(i))
			}
			for i := range benchNodes {
				objs = append(objs, benchNode(i))
			}
			for i := 0; templates && i < benchDeployments+benchCronJobs+benchJobs; i++ {
				objs = append(objs, benchWorkload(i))
			}
			if pullSecrets {
				for i := range benchNamespaces {
					objs = append(objs, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("team-%02d", i), Name: "default"},
						ImagePullSecrets: []corev1.LocalObjectReference{{Name: "regcred"}}})
				}
			}
			c.feed(b, objs...)
			objs = nil
			reg := prometheus.NewRegistry()
			reg.MustRegister(joinOnly{c})
			var series, workloadSeries int
			status.calls.Store(0)
			for b.Loop() {
				got, err := reg.Gather()
				if err != nil {
					b.Fatal(err)
				}
				series, workloadSeries = 0, 0
				for _, mf := range got {
					series += len(mf.Metric)
					if mf.GetName() == "imagepull_workload_image_unavailable" {
						workloadSeries = len(mf.Metric)
					}
				}
			}
			b.ReportMetric(float64(status.calls.Load())/float64(b.N), "ImageResult-calls/op")
			b.Logf("10,000 pods, 100 nodes, templates %v (%d Deployments, %d CronJobs, %d Jobs), pull secrets %v: a scrape's join gives %d series, %d of them imagepull_workload_image_unavailable",
				templates, benchDeployments, benchCronJobs, benchJobs, pullSecrets, series, workloadSeries)
		})
	}
}

// benchStatus is staticStatus counting the ImageResult calls (the
// statusCache must make one per target and reference per join).
type benchStatus struct {
	staticStatus
	calls atomic.Int64
}

func (s *benchStatus) ImageResult(target string, ref probe.Reference) (probe.Reason, bool) {
	s.calls.Add(1)
	return s.staticStatus.ImageResult(target, ref)
}

// BenchmarkKube10kPods runs the exporter binary against a real apiserver
// holding 10,000 pods and 100 nodes, and prints its memory after sync (RSS
// and Go heap), the time from start to the first complete scrape, and the
// latency and size of /metrics. Run with -benchtime Nx (N scrapes);
// IMAGEPULL_BENCH_PODS=30000 runs it at another pod count.
//
// The etcd found first (bin/, then PATH) decides the first list: with
// bin/etcd (3.6, scripts/install-deps.sh), or any etcd 3.4.31 or 3.5.13 and
// later, it streams; Debian 12's etcd 3.4.23 cannot back the apiserver's
// streaming lists, so the exporter falls back to a paginated list.
// KUBE_FEATURE_WatchListClient=false in the environment (the exporter
// inherits it) measures the paginated list with any etcd.
func BenchmarkKube10kPods(b *testing.B) {
	pods := benchPods
	if v := os.Getenv("IMAGEPULL_BENCH_PODS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			b.Fatalf("IMAGEPULL_BENCH_PODS=%q: want a positive number", v)
		}
		pods = n
	}
	k := testenv.StartKube(b, testenv.KubeOptions{})
	dir := b.TempDir()
	// Without -race: the figures are the binary's as deployed.
	bin, remove, err := testenv.BuildExporter(false)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(remove)

	start := time.Now()
	createBenchObjects(b, k.Client, pods)
	created := time.Since(start)

	cfgFile := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgFile, []byte("modules:\n  default: {}\ntargets: []\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	addr := testenv.FreeAddr(b)
	started := time.Now()
	proc := testenv.StartProcess(b, "imagepull_exporter", bin, []string{
		"--config.file=" + cfgFile, "--web.listen-address=" + addr,
		"--kubeconfig=" + k.WriteKubeconfig(k.AdminToken), "--log.level=warn",
	}, nil, dir)
	url := "http://" + addr + "/metrics"
	client := &http.Client{Timeout: 30 * time.Second}
	var firstScrape time.Duration
	for {
		body, err := scrape(client, url)
		if err == nil && strings.Contains(body, `imagepull_kube_watch_up{resource="pods"} 1`) &&
			strings.Contains(body, `imagepull_kube_watch_up{resource="nodes"} 1`) &&
			strings.Contains(body, "imagepull_pod_containers_waiting{") && strings.Contains(body, "imagepull_pod_containers_mutable_ref{") {
			firstScrape = time.Since(started)
			break
		}
		if proc.Exited() {
			b.Fatalf("the exporter exited:\n%s", proc.Output())
		}
		if time.Since(started) > 5*time.Minute {
			b.Fatalf("no complete scrape after 5 minutes (last error %v)", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // let the post-sync garbage go before reading memory
	body, err := scrape(client, url)
	if err != nil {
		b.Fatal(err)
	}
	rss := metricValue(body, "process_resident_memory_bytes") // the exporter's own process collector
	peak := peakRSS(b, bin)
	heap := metricValue(body, "go_memstats_heap_inuse_bytes")

	var sizes []int
	var lat []time.Duration
	for b.Loop() {
		t0 := time.Now()
		body, err := scrape(client, url)
		lat = append(lat, time.Since(t0))
		if err != nil {
			b.Fatal(err)
		}
		sizes = append(sizes, len(body))
	}
	slices.Sort(lat)
	b.ReportMetric(rss/(1<<20), "rss-MiB")
	b.ReportMetric(heap/(1<<20), "heap-MiB")
	b.ReportMetric(float64(peak)/(1<<20), "peak-rss-MiB")
	b.ReportMetric(firstScrape.Seconds(), "first-scrape-s")
	b.ReportMetric(float64(sizes[len(sizes)-1]), "metrics-bytes")
	b.Logf("%d pods in 50 namespaces + 100 nodes created in the real apiserver in %s; exporter: first complete scrape %s after start, "+
		"RSS %.1f MiB, Go heap in use %.1f MiB after sync (peak RSS %.1f MiB, while decoding the first list); /metrics %d bytes, latency p50 %s, max %s over %d scrapes",
		pods, created.Round(time.Millisecond), firstScrape.Round(time.Millisecond), rss/(1<<20), heap/(1<<20), float64(peak)/(1<<20),
		sizes[len(sizes)-1], lat[len(lat)/2].Round(time.Microsecond), lat[len(lat)-1].Round(time.Microsecond), len(lat))
}

// createBenchObjects creates the benchmark's namespaces, nodes and pods
// (with status, as the kubelet would write it), 32 requests at a time.
func createBenchObjects(b *testing.B, c kubernetes.Interface, pods int) {
	createBenchCluster(b, c, 0, pods)
}

// createBenchCluster creates pods from to to (0 to to, with the
// namespaces and nodes, when from is 0).
func createBenchCluster(b *testing.B, c kubernetes.Interface, from, to int) {
	createBenchClusterOf(b, c, from, to, benchImages)
}

// createBenchClusterOf is createBenchCluster with the pods' images taken
// from images (benchPodOf).
func createBenchClusterOf(b *testing.B, c kubernetes.Interface, from, to int, images []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	for i := range benchNamespaces {
		if from > 0 {
			break
		}
		_, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("team-%02d", i)}}, metav1.CreateOptions{})
		if err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	work := func(n int, f func(i int) error) {
		next.Store(0)
		for range 32 {
			wg.Go(func() {
				for {
					i := int(next.Add(1) - 1)
					if i >= n || failed.Load() != nil {
						return
					}
					if err := f(i); err != nil {
						failed.Store(err)
						return
					}
				}
			})
		}
		wg.Wait()
		if err := failed.Load(); err != nil {
			b.Fatal(err)
		}
	}
	work(benchNodes, func(i int) error {
		if from > 0 {
			return nil
		}
		n := benchNode(i)
		st := n.Status
		got, err := c.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		got.Status = st
		_, err = c.CoreV1().Nodes().UpdateStatus(ctx, got, metav1.UpdateOptions{})
		return err
	})
	work(to-from, func(i int) error {
		p := benchPodOf(from+i, images)
		st := p.Status
		got, err := c.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		if len(st.ContainerStatuses) == 0 {
			return nil
		}
		got.Status = st
		_, err = c.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, got, metav1.UpdateOptions{})
		return err
	})
}

func scrape(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %s", resp.Status)
	}
	return string(b), nil
}

func metricValue(body, name string) float64 {
	for _, l := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(l, name+" "); ok {
			v, _ := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v
		}
	}
	return 0
}

// peakRSS reads VmHWM of the process running bin (its path is unique to
// this benchmark's temp dir) from /proc.
func peakRSS(b *testing.B, bin string) int64 {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		exe, err := os.Readlink(filepath.Join(d, "exe"))
		if err != nil || exe != bin {
			continue
		}
		status, err := os.ReadFile(filepath.Join(d, "status"))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(status), "\n") {
			if rest, ok := strings.CutPrefix(l, "VmHWM:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
				return kb << 10
			}
		}
	}
	b.Fatalf("no process runs %s", bin)
	return 0
}

// BenchmarkScrape measures a scrape of the join's series (Gather of the
// Kubernetes collector) at 1,000 to 30,000 pods, and 100,000 with
// IMAGEPULL_BENCH_LONG=1: join=incremental is what /metrics runs (the
// aggregates the informers' events keep), join=offline the one-pass
// computation over every pod that it replaced (now the tests' oracle).
// cpu-ms/scrape is the process's user+system CPU per scrape (GC included).
//
//	go test -run '^$' -bench 'Scrape' -benchtime 50x ./collector/kube/
func BenchmarkScrape(b *testing.B) {
	sizes := []int{1000, 10000, 30000}
	if os.Getenv("IMAGEPULL_BENCH_LONG") != "" {
		sizes = append(sizes, 100000)
	}
	for _, n := range sizes {
		status := staticStatus{causes: map[string]string{"ghcr.io": "connect"}, tags: map[tagKey]tagResult{}}
		c := offlineCluster(b, Options{Status: status, MaxRegistries: DefaultMaxRegistries})
		for i := range n {
			x, err := transformPod(benchPod(i))
			if err != nil {
				b.Fatal(err)
			}
			must(b, c.pods.informers[0].GetStore().Add(x))
			c.indexPodAdd(x, true)
		}
		for i := range benchNodes {
			must(b, c.nodes.informers[0].GetStore().Add(mustTransform(b, benchNode(i))))
		}
		for _, mode := range []string{"offline", "incremental"} {
			b.Run(fmt.Sprintf("pods=%d/join=%s", n, mode), func(b *testing.B) {
				reg := prometheus.NewRegistry()
				reg.MustRegister(joinVia{c, mode == "incremental"})
				var series int
				cpu0 := cpuTime()
				for b.Loop() {
					got, err := reg.Gather()
					if err != nil {
						b.Fatal(err)
					}
					series = 0
					for _, mf := range got {
						series += len(mf.Metric)
					}
				}
				b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N)/1e6, "cpu-ms/scrape")
				b.ReportMetric(float64(series), "series")
			})
		}
	}
}

// joinVia is joinOnly through either join.
type joinVia struct {
	c           *Cluster
	incremental bool
}

func (j joinVia) Describe(ch chan<- *prometheus.Desc) { j.c.Describe(ch) }
func (j joinVia) Collect(ch chan<- prometheus.Metric) {
	var res *joinResult
	if j.incremental {
		res = j.c.incrementalJoin()
	} else {
		res = j.c.join()
	}
	res.nodesSynced = true
	res.collect(ch)
}

// cpuTime is the process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkDiscoveryUses measures what a discovery pass reads at 10,000
// pods and 1,300 workloads: uses=fullpass walks every cached container
// (what each 10 s pass did), uses=counts reads the reference counts the
// informers' handlers keep.
func BenchmarkDiscoveryUses(b *testing.B) {
	c := offlineCluster(b, Options{WatchWorkloads: true})
	h := c.uses.handler()
	for i := range benchPods {
		x, err := transformPod(benchPod(i))
		if err != nil {
			b.Fatal(err)
		}
		must(b, c.pods.informers[0].GetStore().Add(x))
		h.OnAdd(x, true)
	}
	for i := range benchDeployments + benchCronJobs + benchJobs {
		x, err := transformWorkload(benchWorkload(i))
		if err != nil {
			b.Fatal(err)
		}
		must(b, c.workloads[0].informers[0].GetStore().Add(x))
		h.OnAdd(x, true)
	}
	d := &Discovery{c: c}
	b.Run("uses=fullpass", func(b *testing.B) {
		for b.Loop() {
			_ = d.usesFromCaches()
		}
	})
	b.Run("uses=counts", func(b *testing.B) {
		var n int
		for b.Loop() {
			n = len(d.uses())
		}
		b.ReportMetric(float64(n), "distinct-uses")
	})
}
