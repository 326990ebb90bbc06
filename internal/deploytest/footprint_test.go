package deploytest_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	dt "github.com/imagepull/imagepull_exporter/internal/deploytest"
	"github.com/imagepull/imagepull_exporter/internal/testenv"
)

// BenchmarkFootprint measures the exporter as deploy/base runs it (its args,
// its config's modules and discovery, the base role's token) in a cluster of
// 10,000 pods in 100 namespaces, 1,000 Deployments, 100 nodes listing 50
// images each, and 500 distinct images on a real registry, which discovery
// turns into probe targets. It prints the figures the Deployment's resource
// requests and limits are sized from:
//
//	go test -run='^$' -bench=Footprint -benchtime=1x ./internal/deploytest/
//
// peak-rss-MiB is the kernel's high-water mark of the process (VmHWM): the
// start-up LIST of every object, decoded in full before the informers'
// transforms trim it. steady-rss-MiB and heap-inuse-MiB are read after the
// caches synced and the first probes ran. cpu-ms-per-min is the CPU the
// process spends per minute once settled (probes, scrapes every 30 s as the
// ServiceMonitor does). scrape-ms is one /metrics request (the join runs at
// scrape time).
func BenchmarkFootprint(b *testing.B) {
	const (
		namespaces  = 100
		pods        = 10000
		deployments = 1000
		nodes       = 100
		images      = 500
	)
	k := testenv.StartKube(b, testenv.KubeOptions{})
	reg := testenv.StartRegistry(b, testenv.RegistryOptions{})
	refs := make([]string, images)
	for i := range refs {
		refs[i] = fmt.Sprintf("team-%02d/app-%03d:v1", i%20, i)
	}
	reg.PushMany(b, refs, 4)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	start := time.Now()
	populate(b, ctx, k.Client, reg.Addr, refs, namespaces, pods, deployments, nodes)
	b.Logf("created %d pods, %d deployments, %d nodes in %v", pods, deployments, nodes, time.Since(start).Round(time.Second))

	// The base, for real, and its token.
	k.InstallCRDs(b, testenv.PrometheusOperatorCRDs(b)...)
	baseYAML := dt.KustomizeYAML(b, "deploy/base")
	if out, err := k.Kubectl(b, "", strings.NewReader(string(baseYAML)), "apply", "-f", "-"); err != nil {
		b.Fatalf("%v\n%s", err, out)
	}
	token := k.ServiceAccountToken(b, dt.Namespace, "imagepull-exporter")
	objs, err := dt.Parse(baseYAML)
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	addr := testenv.FreeAddr(b)
	dep := dt.Find(b, objs, "Deployment", "imagepull-exporter")
	args := deployedArgs(b, k, objs, dep, dir, addr, token, func(config map[string]any) {
		// The local registry speaks plain HTTP.
		config["modules"].(map[string]any)["discovered"].(map[string]any)["plain_http"] = true
	})
	bin := exporterBinary(b)

	b.ResetTimer()
	started := time.Now()
	p := testenv.StartProcess(b, "imagepull_exporter", bin, args, []string{"KUBECONFIG=", goMemLimit(b, dep)}, dir)
	p.WaitHTTP("http://"+addr+"/-/ready", http.StatusOK, 5*time.Minute, nil)
	client := &http.Client{Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()
	scrape := func() (string, time.Duration) {
		t0 := time.Now()
		resp, err := client.Get("http://" + addr + "/metrics")
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body), time.Since(t0)
	}
	// Synced: every watch up, and discovery found every image.
	for {
		m, _ := scrape()
		if strings.Count(m, "imagepull_kube_watch_up{") == 8 && !regexp.MustCompile(`(?m)^imagepull_kube_watch_up\{[^}]*\} 0$`).MatchString(m) &&
			metric(m, `imagepull_exporter_targets{source="discovered"}`) >= images {
			break
		}
		if time.Since(started) > 5*time.Minute {
			b.Fatalf("not synced after 5m:\n%s", grepLines(m, "imagepull_kube_watch_up"))
		}
		time.Sleep(500 * time.Millisecond)
	}
	synced := time.Since(started)
	// Settle: the discovered module's first probes spread over its
	// interval's jitter; take two scrape periods.
	time.Sleep(time.Minute)
	m0, _ := scrape()
	cpu0 := metric(m0, "process_cpu_seconds_total")
	t0 := time.Now()
	var scrapeDur time.Duration
	for i := 0; i < 2; i++ {
		time.Sleep(30 * time.Second)
		_, d := scrape()
		scrapeDur = d
	}
	m1, _ := scrape()
	cpuPerMin := (metric(m1, "process_cpu_seconds_total") - cpu0) / time.Since(t0).Minutes()
	b.StopTimer()

	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pidOf(b, bin, "--web.listen-address="+addr)))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(kib(b, string(status), "VmHWM")/1024, "peak-rss-MiB")
	b.ReportMetric(metric(m1, "process_resident_memory_bytes")/(1<<20), "steady-rss-MiB")
	b.ReportMetric(metric(m1, "go_memstats_heap_inuse_bytes")/(1<<20), "heap-inuse-MiB")
	b.ReportMetric(cpuPerMin*1000, "cpu-ms-per-min")
	b.ReportMetric(float64(scrapeDur.Microseconds())/1000, "scrape-ms")
	b.ReportMetric(synced.Seconds(), "sync-s")
	b.ReportMetric(metric(m1, `imagepull_exporter_targets{source="discovered"}`), "discovered-targets")
}

// pidOf finds the process running bin with arg among its arguments.
func pidOf(b *testing.B, bin, arg string) int {
	b.Helper()
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		cmdline, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil {
			continue
		}
		argv := strings.Split(string(cmdline), "\x00")
		if argv[0] == bin && slices.Contains(argv, arg) {
			n, _ := strconv.Atoi(filepath.Base(d))
			return n
		}
	}
	b.Fatalf("no process %s %s", bin, arg)
	return 0
}

// metric returns the value of the first sample whose line starts with name
// (a metric name, or name{labels}), or 0.
func metric(metrics, name string) float64 {
	for _, l := range strings.Split(metrics, "\n") {
		if !strings.HasPrefix(l, name) {
			continue
		}
		rest := strings.TrimPrefix(l, name)
		if !strings.HasPrefix(rest, " ") && !strings.HasPrefix(rest, "{") {
			continue
		}
		f := strings.Fields(l)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			return v
		}
	}
	return 0
}

func kib(b *testing.B, status, field string) float64 {
	b.Helper()
	m := regexp.MustCompile(`(?m)^` + field + `:\s+(\d+) kB$`).FindStringSubmatch(status)
	if m == nil {
		b.Fatalf("no %s in /proc status", field)
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// populate creates the cluster the benchmark measures, 8 requests at a time.
func populate(b *testing.B, ctx context.Context, c kubernetes.Interface, registry string, refs []string, namespaces, pods, deployments, nodes int) {
	b.Helper()
	work := make(chan func() error)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range work {
				if err := f(); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		}()
	}
	image := func(i int) string { return registry + "/" + refs[i%len(refs)] }
	podSpec := func(i int) corev1.PodSpec {
		ctr := func(name string, img string, port int32) corev1.Container {
			return corev1.Container{
				Name: name, Image: img, ImagePullPolicy: corev1.PullIfNotPresent,
				Args:  []string{fmt.Sprintf("--listen=:%d", port), "--log.level=info"},
				Ports: []corev1.ContainerPort{{Name: name, ContainerPort: port}},
				Env: []corev1.EnvVar{{Name: "APP_ENV", Value: "production"}, {Name: "APP_REGION", Value: "eu-west-1"},
					{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
					Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
				},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromString(name)}}},
				VolumeMounts:   []corev1.VolumeMount{{Name: "config", MountPath: "/etc/app"}},
			}
		}
		return corev1.PodSpec{
			Containers:       []corev1.Container{ctr("app", image(i), 8080), ctr("sidecar", image(i+7), 9090)},
			Volumes:          []corev1.Volume{{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "app"}}}}},
			ImagePullSecrets: []corev1.LocalObjectReference{{Name: "regcred"}},
			NodeName:         fmt.Sprintf("node-%03d", i%nodes),
		}
	}
	go func() {
		defer close(work)
		for n := 0; n < namespaces; n++ {
			ns := fmt.Sprintf("team-%03d", n)
			if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
				errs <- err
				return
			}
		}
		for n := 0; n < nodes; n++ {
			node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("node-%03d", n),
				Labels: map[string]string{"kubernetes.io/os": "linux", "topology.kubernetes.io/zone": fmt.Sprintf("zone-%d", n%3)}}}
			for j := 0; j < 50; j++ {
				node.Status.Images = append(node.Status.Images, corev1.ContainerImage{
					Names: []string{image(n*50 + j), fmt.Sprintf("%s@sha256:%064x", strings.Split(image(n*50+j), ":")[0], n*50+j)}, SizeBytes: 50 << 20})
			}
			work <- func() error { _, err := c.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); return err }
		}
		for i := 0; i < deployments; i++ {
			ns := fmt.Sprintf("team-%03d", i%namespaces)
			labels := map[string]string{"app": fmt.Sprintf("app-%04d", i)}
			replicas := int32(pods / deployments)
			d := &appsv1.Deployment{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("app-%04d", i), Namespace: ns, Labels: labels},
				Spec: appsv1.DeploymentSpec{Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: labels},
					Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: podSpec(i)}},
			}
			work <- func() error { _, err := c.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); return err }
		}
		for i := 0; i < pods; i++ {
			dep := i % deployments
			ns := fmt.Sprintf("team-%03d", dep%namespaces)
			p := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("app-%04d-%05d", dep, i), Namespace: ns,
					Labels:      map[string]string{"app": fmt.Sprintf("app-%04d", dep), "pod-template-hash": "5d8f7c9b6"},
					Annotations: map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": "8080"}},
				Spec: podSpec(dep),
			}
			work <- func() error { _, err := c.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); return err }
		}
	}()
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatalf("populate: %v", err)
	default:
	}
}
