package docstest

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/imagepull/imagepull_exporter/collector"
	"github.com/imagepull/imagepull_exporter/collector/config"
	"github.com/imagepull/imagepull_exporter/collector/kube"
	"github.com/imagepull/imagepull_exporter/collector/mirror"
	"github.com/imagepull/imagepull_exporter/internal/testenv"
	"github.com/imagepull/imagepull_exporter/probe"
)

// standardPrefixes are the metrics client_golang's standard collectors
// export (GoCollector, ProcessCollector, promhttp's own scrape counters).
// They are not the exporter's contract and the README does not list them;
// anything else the code describes must have a row, and every row must be
// described. imagepull_exporter_build_info is not among them: the README
// documents it, so the test checks it like any other.
var standardPrefixes = []string{"go_", "process_", "promhttp_"}

func standard(name string) bool {
	for _, p := range standardPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// recorder is a prometheus.Registerer that keeps what is registered with
// it, for collectors whose constructors register their own metrics
// (config.NewSafeConfig).
type recorder struct{ cs []prometheus.Collector }

func (r *recorder) Register(c prometheus.Collector) error   { r.cs = append(r.cs, c); return nil }
func (r *recorder) MustRegister(cs ...prometheus.Collector) { r.cs = append(r.cs, cs...) }
func (r *recorder) Unregister(prometheus.Collector) bool    { return false }

// exporterCollectors builds every collector `serve` registers (see
// cmd/imagepull_exporter/main.go, scaleout.go and collector/kube/wiring.go),
// with every optional part on: the Kubernetes join with discovery and pull
// secrets, and node-local mode's runtime-file reader. Nothing runs: the
// Kubernetes client points at an address nobody listens on and is never
// used, since Describe needs no state.
func exporterCollectors(t *testing.T) []prometheus.Collector {
	t.Helper()
	rec := &recorder{}
	rec.MustRegister(
		versioncollector.NewCollector("imagepull_exporter"),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	sc := config.NewSafeConfig(rec)

	prober := probe.NewProber(probe.ProberOptions{})
	t.Cleanup(prober.Close)
	sched := collector.NewScheduler(collector.SchedulerOptions{Prober: prober})
	rec.MustRegister(sched, collector.NewShardCollector(collector.Sharding{}))
	rec.MustRegister(mirror.NewNodeReader(mirror.NodeOptions{}, nil))

	client, err := kubernetes.NewForConfig(&rest.Config{Host: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := kube.New(client, kube.Options{WatchWorkloads: true, UsePullSecrets: true, Status: sched})
	if err != nil {
		t.Fatal(err)
	}
	d, err := kube.NewDiscovery(c, kube.DiscoveryOptions{
		Config: sc.Get, DiscoverTargets: true, SetTargets: sched.SetDiscovered,
		UsePullSecrets: true, Prober: prober, Sender: sched.Sender(),
	})
	if err != nil {
		t.Fatal(err)
	}
	rec.MustRegister(c, d)
	return rec.cs
}

var fqNameRE = regexp.MustCompile(`fqName: "([^"]+)"`)

// describedMetrics returns the names the collectors describe, standard ones
// left out.
func describedMetrics(t *testing.T, cs []prometheus.Collector) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	for _, c := range cs {
		ch := make(chan *prometheus.Desc)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			// Desc has no accessor for its name; its String() is stable
			// (`Desc{fqName: "...", ...}`) and a desc built with an
			// invalid name carries no fqName, which fails below.
			m := fqNameRE.FindStringSubmatch(d.String())
			if m == nil {
				t.Errorf("cannot read the metric name of %s", d)
				continue
			}
			if !standard(m[1]) {
				names[m[1]] = true
			}
		}
	}
	return names
}

var backticked = regexp.MustCompile("`([a-z_:][a-z0-9_:]*)`")

// readmeMetrics returns the metric names of the first column of README's
// "Metrics reference" table; a cell may name several
// (`a_total`, `b_total`).
func readmeMetrics(t *testing.T, readme string) map[string]bool {
	t.Helper()
	_, section, ok := strings.Cut(readme, "\n## Metrics reference\n")
	if !ok {
		t.Fatal(`README.md has no "## Metrics reference" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	names := map[string]bool{}
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(line, "|")
		for _, m := range backticked.FindAllStringSubmatch(cells[1], -1) {
			names[m[1]] = true
		}
	}
	if len(names) == 0 {
		t.Fatal(`README.md's "Metrics reference" has no table rows`)
	}
	return names
}

// TestReadmeMetricsTable fails when README.md's metrics reference and the
// metrics the code describes differ, either way: a new metric needs a row
// (CONTRIBUTING.md, "Add a metric"), and a row needs a metric.
func TestReadmeMetricsTable(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diffMetrics(describedMetrics(t, exporterCollectors(t)), readmeMetrics(t, string(b))) {
		t.Error(d)
	}
}

// diffMetrics says what one side has that the other lacks, sorted.
func diffMetrics(code, readme map[string]bool) []string {
	var out []string
	for n := range code {
		if !readme[n] {
			out = append(out, n+": described by the code but has no row in README.md's Metrics reference; add one")
		}
	}
	for n := range readme {
		if !code[n] {
			out = append(out, n+": in README.md's Metrics reference but no collector describes it; remove the row or fix the name")
		}
	}
	slices.Sort(out)
	return out
}

// TestReadmeMetricsTableCatchesDrift proves the check has teeth: the real
// README with one row removed, and with a row for a metric that does not
// exist, must each be reported.
func TestReadmeMetricsTableCatchesDrift(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	code := describedMetrics(t, exporterCollectors(t))

	const row = "| `imagepull_probe_success` |"
	i := strings.Index(readme, row)
	if i < 0 {
		t.Fatalf("README.md has no row starting %q", row)
	}
	end := i + strings.IndexByte(readme[i:], '\n') + 1
	removed := readme[:i] + readme[end:]
	if got := diffMetrics(code, readmeMetrics(t, removed)); len(got) != 1 || !strings.HasPrefix(got[0], "imagepull_probe_success: described by the code") {
		t.Errorf("README without the imagepull_probe_success row: got %q, want that one metric reported as missing", got)
	}

	added := readme[:end] + "| `imagepull_no_such_metric` | gauge | | |\n" + readme[end:]
	if got := diffMetrics(code, readmeMetrics(t, added)); len(got) != 1 || !strings.HasPrefix(got[0], "imagepull_no_such_metric: in README.md") {
		t.Errorf("README with a row for a metric that does not exist: got %q, want it reported", got)
	}
}
