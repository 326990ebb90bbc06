package testenv

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// exporterPackage is the exporter's main package, by import path so that
// the build works from any directory of the module.
const exporterPackage = "github.com/imagepull/imagepull_exporter/cmd/imagepull_exporter"

// BuildExporter builds the exporter binary of this checkout into a new
// temporary directory, so that tests run the real program with its real
// flags, signals and exit codes. With race the binary is built with -race:
// the exporter's own goroutines (scheduler, informers, reload, handlers)
// then run under the race detector too. remove deletes the directory.
//
// It takes no testing.TB so that a TestMain can build once for the whole
// test binary; the error carries go build's output.
func BuildExporter(race bool) (path string, remove func(), err error) {
	dir, err := os.MkdirTemp("", "imagepull_exporter-test-")
	if err != nil {
		return "", nil, fmt.Errorf("testenv: build the exporter: %w", err)
	}
	remove = func() { os.RemoveAll(dir) }
	path = filepath.Join(dir, "imagepull_exporter")
	args := []string{"build", "-o", path}
	if race {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, exporterPackage)...)
	// Inside the module, whatever the caller's working directory.
	_, self, _, _ := runtime.Caller(0)
	cmd.Dir = filepath.Dir(self)
	if out, err := cmd.CombinedOutput(); err != nil {
		remove()
		return "", nil, fmt.Errorf("testenv: go build %s: %w\n%s", exporterPackage, err, out)
	}
	return path, remove, nil
}

// MainBuildExporter is BuildExporter for a TestMain: it parses the test
// flags and, under -short (the fast tier), builds nothing and returns ""
// (tests that need the binary skip); a failed build ends the process.
func MainBuildExporter(race bool) (path string, remove func()) {
	flag.Parse()
	if testing.Short() {
		return "", func() {}
	}
	path, remove, err := BuildExporter(race)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	return path, remove
}

// Samples flattens metric families into one value per series, keyed
// `name{k="v",...}` with the labels in a stable order; a histogram contributes
// its sample count, keyed `name{...}_count`. Series looks keys up.
func Samples(mfs []*dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			ls := make([]string, 0, len(m.GetLabel()))
			for _, lp := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue()))
			}
			sort.Strings(ls)
			key := mf.GetName() + "{" + strings.Join(ls, ",") + "}"
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out[key] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[key] = m.GetGauge().GetValue()
			case dto.MetricType_UNTYPED:
				out[key] = m.GetUntyped().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[key+"_count"] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

// ParseSamples parses the text exposition format (a scrape of /metrics or
// /probe) into Samples.
func ParseSamples(text string) (map[string]float64, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		return nil, fmt.Errorf("parse the exposition: %w", err)
	}
	list := make([]*dto.MetricFamily, 0, len(mfs))
	for _, mf := range mfs {
		list = append(list, mf)
	}
	return Samples(list), nil
}

// Series returns, sorted, the keys of samples whose metric is metric and
// whose labels include every one of labels (each `k="v"`, the value quoted
// as %q quotes it). metric is a metric name, or a prefix ending in '_'
// ("imagepull_") for every metric under it, so that "no series of the
// target is left" can be asserted across all metrics.
func Series(samples map[string]float64, metric string, labels ...string) []string {
	var out []string
	for k := range samples {
		open, end := strings.IndexByte(k, '{'), strings.LastIndexByte(k, '}')
		if open < 0 || end < open {
			continue
		}
		name := k[:open]
		if name != metric && !(strings.HasSuffix(metric, "_") && strings.HasPrefix(name, metric)) {
			continue
		}
		// Delimited on both sides, so target="a" does not match
		// target="a-b" and a label name does not match its suffix.
		set := "," + k[open+1:end] + ","
		ok := true
		for _, l := range labels {
			if !strings.Contains(set, ","+l+",") {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}
