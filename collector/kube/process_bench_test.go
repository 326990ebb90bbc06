package kube

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imagepull/imagepull_exporter/internal/testenv"
)

// BenchmarkProcess measures the built exporter as a whole process (`make
// bench-process`): its CPU from /proc/<pid>/stat (utime+stime, GC and
// every goroutine included), its RSS from /proc/<pid>/status (VmRSS
// steady, VmHWM peak) and /metrics as a client sees it. It prints figures
// and asserts nothing about time.
//
//   - probes: benchProcessTargets targets on a real distribution registry
//     probed every 2 s; cpu-µs/probe is the process's CPU over a warm
//     window divided by the probes imagepull_probes_total counted in it.
//     With IMAGEPULL_BENCH_CPUPROFILE=FILE the exporter is built with
//     -tags imagepull_pprof and a CPU profile of the warm window is
//     written to FILE (read it with go tool pprof -top).
//   - discovery: the steady state. A real apiserver holding
//     benchDiscoveryPods pods whose containers name benchDiscoveryImages
//     images on a real registry, the exporter discovering them
//     (--kube.discover-targets) and probing each every 15 s: CPU per
//     minute over a warm window, with the probes and the registry's
//     manifest requests counted.
//   - pods=N: a real apiserver holding N pods (1,000, 10,000, 30,000;
//     100,000 with IMAGEPULL_BENCH_LONG=1) and no targets: CPU per minute
//     idle, peak and steady RSS, and /metrics latency and CPU per scrape
//     (scrapes back to back for 10 s; with IMAGEPULL_BENCH_CPUPROFILE, a
//     profile of them is written to FILE.pods=N).
//
// Run with
//
//	go test -run '^$' -bench 'Process' -benchtime 1x -timeout 60m ./collector/kube/
func BenchmarkProcess(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skip("reads /proc")
	}
	profile := os.Getenv("IMAGEPULL_BENCH_CPUPROFILE")
	bin := buildBenchExporter(b, profile != "")
	var rows []string
	b.Run("probes", func(b *testing.B) {
		rows = append(rows, benchProcessProbes(b, bin, profile))
	})
	b.Run("pods", func(b *testing.B) {
		sizes := []int{1000, 10000, 30000}
		if os.Getenv("IMAGEPULL_BENCH_LONG") != "" {
			sizes = append(sizes, 100000)
		}
		k := testenv.StartKube(b, testenv.KubeOptions{})
		have := 0
		for _, n := range sizes {
			b.Run(fmt.Sprintf("pods=%d", n), func(b *testing.B) {
				t0 := time.Now()
				createBenchCluster(b, k.Client, have, n)
				have = n
				b.Logf("%d pods in the apiserver (%s to add)", n, time.Since(t0).Round(time.Second))
				rows = append(rows, benchProcessPods(b, bin, profile, k, n))
			})
		}
	})
	b.Run("discovery", func(b *testing.B) {
		rows = append(rows, benchProcessDiscovery(b, bin))
	})
	fmt.Printf("\nwhole-process figures of the exporter binary (%d CPUs)\n%s\n", runtime.NumCPU(), strings.Join(rows, "\n"))
}

const benchProcessTargets = 200

func buildBenchExporter(b *testing.B, pprof bool) string {
	if !pprof {
		bin, remove, err := testenv.BuildExporter(false)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(remove)
		return bin
	}
	bin := filepath.Join(b.TempDir(), "imagepull_exporter")
	cmd := exec.Command("go", "build", "-tags", "imagepull_pprof", "-o", bin, "github.com/imagepull/imagepull_exporter/cmd/imagepull_exporter")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// procCPU is the process's user+system CPU time (/proc/pid/stat fields 14
// and 15, in clock ticks of 1/100 s on Linux).
func procCPU(b *testing.B, pid int) time.Duration {
	s, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(s[strings.LastIndexByte(string(s), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// procMem is VmRSS and VmHWM of the process in MiB.
func procMem(b *testing.B, pid int) (rss, hwm float64) {
	s, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(s), "\n") {
		for _, k := range []struct {
			name string
			v    *float64
		}{{"VmRSS:", &rss}, {"VmHWM:", &hwm}} {
			if rest, ok := strings.CutPrefix(l, k.name); ok {
				kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
				*k.v = kb / 1024
			}
		}
	}
	return rss, hwm
}

// sumSamples adds every sample of the metric name.
func sumSamples(body, name string) float64 {
	var sum float64
	for _, l := range strings.Split(body, "\n") {
		if !strings.HasPrefix(l, name+"{") && !strings.HasPrefix(l, name+" ") {
			continue
		}
		f := strings.Fields(l)
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		sum += v
	}
	return sum
}

func startBenchExporter(b *testing.B, bin, config string, env []string, extra ...string) (*testenv.Process, string) {
	dir := b.TempDir()
	cfg := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		b.Fatal(err)
	}
	addr := testenv.FreeAddr(b)
	p := testenv.StartProcess(b, "imagepull_exporter", bin, append([]string{
		"--config.file=" + cfg, "--web.listen-address=" + addr, "--log.level=warn",
	}, extra...), env, dir)
	p.WaitHTTP("http://"+addr+"/-/ready", http.StatusOK, 5*time.Minute, nil)
	return p, "http://" + addr + "/metrics"
}

// benchProfiler is the pprof listener of an exporter built with
// -tags imagepull_pprof; a zero one (no profile asked for) does nothing.
type benchProfiler struct{ addr string }

// profilerEnv returns the exporter's environment for profile ("" = none).
func profilerEnv(b *testing.B, profile string) (benchProfiler, []string) {
	if profile == "" {
		return benchProfiler{}, nil
	}
	addr := testenv.FreeAddr(b)
	return benchProfiler{addr}, []string{"IMAGEPULL_PPROF_ADDR=" + addr}
}

// start profiles the exporter's CPU for window into file; the returned
// func waits for the profile to be written.
func (pr benchProfiler) start(b *testing.B, window time.Duration, file string) (wait func()) {
	if pr.addr == "" {
		return func() {}
	}
	done := make(chan error, 1)
	go func() {
		resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", pr.addr, int(window.Seconds())))
		if err != nil {
			done <- err
			return
		}
		defer resp.Body.Close()
		prof, err := io.ReadAll(resp.Body)
		if err == nil {
			err = os.WriteFile(file, prof, 0o644)
		}
		done <- err
	}()
	return func() {
		if err := <-done; err != nil {
			b.Errorf("CPU profile %s: %v", file, err)
		}
	}
}

// waitScrape scrapes url every poll until ready holds of the body, failing
// b if the exporter exits or limit passes first.
func waitScrape(b *testing.B, client *http.Client, url string, p *testenv.Process, what string, poll, limit time.Duration, ready func(body string) bool) {
	started := time.Now()
	for {
		body, err := scrape(client, url)
		if err == nil && ready(body) {
			return
		}
		if p.Exited() {
			b.Fatalf("the exporter exited:\n%s", p.Output())
		}
		if time.Since(started) > limit {
			b.Fatalf("not %s after %s (last error %v)", what, limit, err)
		}
		time.Sleep(poll)
	}
}

func benchProcessProbes(b *testing.B, bin, profile string) string {
	reg := testenv.StartRegistry(b, testenv.RegistryOptions{})
	refs := make([]string, benchProcessTargets)
	for i := range refs {
		refs[i] = fmt.Sprintf("bench/repo-%04d:v1", i)
	}
	reg.PushMany(b, refs, 8)
	var cfg strings.Builder
	cfg.WriteString("modules:\n  default:\n    plain_http: true\n    interval: 2s\n    timeout: 1s\ntargets:\n")
	for _, r := range refs {
		fmt.Fprintf(&cfg, "  - image: %s/%s\n", reg.Addr, r)
	}
	pr, env := profilerEnv(b, profile)
	p, url := startBenchExporter(b, bin, cfg.String(), env, "--probe.registry-budget=0")
	client := &http.Client{Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()
	// Warm: two rounds done (the first is cold: ping, then HEAD).
	waitScrape(b, client, url, p, "warm", 200*time.Millisecond, 5*time.Minute, func(body string) bool {
		return sumSamples(body, "imagepull_probes_total") >= 2*benchProcessTargets
	})
	const window = 30 * time.Second
	waitProfile := pr.start(b, window, profile)
	body0, err := scrape(client, url)
	if err != nil {
		b.Fatal(err)
	}
	cpu0, t0 := procCPU(b, p.Pid()), time.Now()
	time.Sleep(window)
	cpu1, el := procCPU(b, p.Pid()), time.Since(t0)
	body1, err := scrape(client, url)
	if err != nil {
		b.Fatal(err)
	}
	waitProfile()
	probes := sumSamples(body1, "imagepull_probes_total") - sumSamples(body0, "imagepull_probes_total")
	gets, heads := reg.ManifestRequests()
	rss, hwm := procMem(b, p.Pid())
	perProbe := float64((cpu1 - cpu0).Microseconds()) / probes
	b.ReportMetric(perProbe, "cpu-µs/probe")
	b.ReportMetric(probes/el.Seconds(), "probes/s")
	b.ReportMetric(rss, "rss-MiB")
	b.Logf("manifest requests so far: %d GET, %d HEAD", gets, heads)
	return fmt.Sprintf("probes    %d targets every 2s: %.0f warm probes in %s, %.0f µs CPU per probe (whole process), RSS %.1f MiB (peak %.1f)",
		benchProcessTargets, probes, el.Round(time.Second), perProbe, rss, hwm)
}

func benchProcessPods(b *testing.B, bin, profile string, k *testenv.Kube, n int) string {
	pr, env := profilerEnv(b, profile)
	started := time.Now() // synced counts from the start of the process
	p, url := startBenchExporter(b, bin, "modules:\n  default: {}\ntargets: []\n", env, "--kubeconfig="+k.WriteKubeconfig(k.AdminToken))
	client := &http.Client{Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()
	waitScrape(b, client, url, p, "synced", 50*time.Millisecond, 5*time.Minute, func(body string) bool {
		return strings.Contains(body, `imagepull_kube_watch_up{resource="pods"} 1`) &&
			strings.Contains(body, `imagepull_kube_watch_up{resource="nodes"} 1`) && strings.Contains(body, "imagepull_pod_containers_waiting{")
	})
	synced := time.Since(started)
	time.Sleep(5 * time.Second) // the post-sync garbage
	// Idle: no scrape, no target; discovery and the informers' resyncs only.
	const idle = 30 * time.Second
	cpu0, t0 := procCPU(b, p.Pid()), time.Now()
	time.Sleep(idle)
	idleCPU := float64((procCPU(b, p.Pid()) - cpu0).Milliseconds()) / time.Since(t0).Minutes()
	rss, hwm := procMem(b, p.Pid())
	// Scrapes back to back for scrapeWindow, as Prometheus asks (gzip,
	// kept-alive); with a profile, of that window, to FILE.pods=N.
	const scrapeWindow = 10 * time.Second
	waitProfile := pr.start(b, scrapeWindow, fmt.Sprintf("%s.pods=%d", profile, n))
	var lat []time.Duration
	cpu0 = procCPU(b, p.Pid())
	for s0 := time.Now(); time.Since(s0) < scrapeWindow; {
		s := time.Now()
		if _, err := scrape(client, url); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(s))
	}
	scrapes := len(lat)
	scrapeCPU := float64((procCPU(b, p.Pid()) - cpu0).Microseconds()) / 1000 / float64(scrapes)
	waitProfile()
	slices.Sort(lat)
	p.Stop()
	b.ReportMetric(idleCPU, "idle-cpu-ms/min")
	b.ReportMetric(rss, "steady-rss-MiB")
	b.ReportMetric(hwm, "peak-rss-MiB")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "scrape-p50-ms")
	b.ReportMetric(scrapeCPU, "scrape-cpu-ms")
	return fmt.Sprintf("pods=%-6d synced in %s; idle %.0f ms CPU/min; RSS steady %.1f MiB, peak %.1f MiB; /metrics p50 %.1f ms, max %.1f ms, %.1f ms CPU per scrape",
		n, synced.Round(100*time.Millisecond), idleCPU, rss, hwm,
		float64(lat[len(lat)/2].Microseconds())/1000, float64(lat[len(lat)-1].Microseconds())/1000, scrapeCPU)
}

const (
	benchDiscoveryPods   = 10000
	benchDiscoveryImages = 70
)

func benchProcessDiscovery(b *testing.B, bin string) string {
	reg := testenv.StartRegistry(b, testenv.RegistryOptions{})
	var refs, images []string
	for i := range benchDiscoveryImages {
		refs = append(refs, fmt.Sprintf("shop/app%02d:v1", i))
		images = append(images, reg.Addr+"/"+refs[i])
	}
	reg.PushMany(b, refs, 8)
	k := testenv.StartKube(b, testenv.KubeOptions{})
	t0 := time.Now()
	createBenchClusterOf(b, k.Client, 0, benchDiscoveryPods, images)
	b.Logf("%d pods naming %d images in the apiserver (%s to add)", benchDiscoveryPods, benchDiscoveryImages, time.Since(t0).Round(time.Second))
	// The init containers name docker.io/library/busybox, which cannot be
	// reached from here: excluded, as a cluster without that image's
	// registry would.
	const cfg = "modules:\n  default:\n    plain_http: true\n    interval: 15s\n    timeout: 5s\ntargets: []\ndiscovery:\n  exclude: [docker.io]\n"
	// 70 images every 15 s are 280 manifest requests a minute to one
	// registry, over the default budget of 60: raised, as such a
	// deployment must.
	p, url := startBenchExporter(b, bin, cfg, nil, "--kubeconfig="+k.WriteKubeconfig(k.AdminToken), "--kube.discover-targets", "--probe.registry-budget=600")
	client := &http.Client{Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()
	// Warm: every image probed twice (the first probe is cold).
	waitScrape(b, client, url, p, "warm", 500*time.Millisecond, 5*time.Minute, func(body string) bool {
		return sumSamples(body, "imagepull_probes_total") >= 2*benchDiscoveryImages
	})
	const window = 2 * time.Minute
	body0, err := scrape(client, url)
	if err != nil {
		b.Fatal(err)
	}
	_, heads0 := reg.ManifestRequests()
	cpu0, w0 := procCPU(b, p.Pid()), time.Now()
	time.Sleep(window)
	cpu1, el := procCPU(b, p.Pid()), time.Since(w0)
	body1, err := scrape(client, url)
	if err != nil {
		b.Fatal(err)
	}
	gets, heads1 := reg.ManifestRequests()
	probes := sumSamples(body1, "imagepull_probes_total") - sumSamples(body0, "imagepull_probes_total")
	targets := sumSamples(body1, "imagepull_exporter_targets")
	perMin := float64((cpu1 - cpu0).Milliseconds()) / el.Minutes()
	rss, hwm := procMem(b, p.Pid())
	b.ReportMetric(perMin, "cpu-ms/min")
	b.ReportMetric(probes/el.Minutes(), "probes/min")
	if gets != 0 {
		b.Errorf("the registry saw %d manifest GETs; probes must HEAD", gets)
	}
	if n := sumSamples(body1, "imagepull_probe_budget_exhausted_total"); n != 0 {
		b.Errorf("%.0f probes skipped for the budget", n)
	}
	return fmt.Sprintf("discovery %d pods, %.0f discovered targets every 15s: %.0f ms CPU per minute (%.0f probes/min, %.0f manifest HEADs/min, %.0f µs CPU per probe all included), RSS %.1f MiB (peak %.1f)",
		benchDiscoveryPods, targets, perMin, probes/el.Minutes(), float64(heads1-heads0)/el.Minutes(), perMin*1000/(probes/el.Minutes()), rss, hwm)
}
