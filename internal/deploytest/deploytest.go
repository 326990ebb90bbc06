// Package deploytest renders what deploy/ ships — the kustomize base and
// overlays, the Helm chart — into Kubernetes objects, for the tests in this
// directory: rendering and Helm/kustomize parity without a cluster, and
// against a real kube-apiserver the server-side dry runs and the RBAC
// proofs. The tools are
// the project's: bin/kubectl (kustomize is built in) and bin/helm, and the
// prometheus-operator CRDs in bin/crds (testenv.PrometheusOperatorCRDs), all
// from `make deps`.
package deploytest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/imagepull/imagepull_exporter/internal/testenv"
)

// Release and Namespace are the Helm release name and namespace under which
// the chart renders the same names as the kustomize base.
const (
	Release   = "imagepull-exporter"
	Namespace = "imagepull-exporter"
	// Chart is the chart's directory from the repository root.
	Chart = "deploy/helm/imagepull-exporter"
)

// Object is one rendered Kubernetes object, as JSON-compatible maps.
type Object map[string]any

// Kind returns the object's kind.
func (o Object) Kind() string { s, _ := o["kind"].(string); return s }

// Name returns metadata.name.
func (o Object) Name() string { return o.str("metadata", "name") }

// Namespace returns metadata.namespace ("" for cluster-scoped objects).
func (o Object) Namespace() string { return o.str("metadata", "namespace") }

// Key is "Kind namespace/name", unique within a rendering.
func (o Object) Key() string { return o.Kind() + " " + o.Namespace() + "/" + o.Name() }

func (o Object) str(path ...string) string {
	s, _ := Get(o, path...).(string)
	return s
}

// Get walks maps by key and slices by index ("0", "1"...).
func Get(v any, path ...string) any {
	for _, p := range path {
		switch x := v.(type) {
		case map[string]any:
			v = x[p]
		case Object:
			v = x[p]
		case []any:
			var i int
			if _, err := fmt.Sscanf(p, "%d", &i); err != nil || i < 0 || i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

// Parse splits a multi-document YAML stream into objects, skipping empty
// documents.
func Parse(data []byte) ([]Object, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out []Object
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("split YAML documents: %w", err)
		}
		var o Object
		if err := yaml.Unmarshal(doc, &o); err != nil {
			return nil, fmt.Errorf("parse YAML document: %w\n%s", err, doc)
		}
		if len(o) == 0 {
			continue
		}
		out = append(out, o)
	}
}

// Find returns the object of kind and name, failing the test when there is
// not exactly one.
func Find(t testing.TB, objs []Object, kind, name string) Object {
	t.Helper()
	var found []Object
	for _, o := range objs {
		if o.Kind() == kind && o.Name() == name {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want exactly one %s %s, found %d", kind, name, len(found))
	}
	return found[0]
}

// OfKind returns the objects of kind.
func OfKind(objs []Object, kind string) []Object {
	var out []Object
	for _, o := range objs {
		if o.Kind() == kind {
			out = append(out, o)
		}
	}
	return out
}

// KustomizeYAML renders a kustomization (a directory relative to the
// repository root, e.g. "deploy/base", or an absolute one from Combine)
// with bin/kubectl kustomize.
func KustomizeYAML(t testing.TB, dir string) []byte {
	t.Helper()
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(testenv.RepoRoot(t), dir)
	}
	return run(t, testenv.Bin(t, "kubectl"), "kustomize", dir)
}

// Kustomize renders and parses a kustomization.
func Kustomize(t testing.TB, dir string) []Object {
	t.Helper()
	objs, err := Parse(KustomizeYAML(t, dir))
	if err != nil {
		t.Fatalf("kustomize %s: %v", dir, err)
	}
	return objs
}

// Combine writes a kustomization of the base plus the given components
// (directories relative to the repository root, in order) into a temporary
// directory, the way a user's own overlay combines the variants, and
// returns its directory for Kustomize.
func Combine(t testing.TB, components ...string) string {
	t.Helper()
	dir := t.TempDir()
	root := testenv.RepoRoot(t)
	rel := func(p string) string {
		r, err := filepath.Rel(dir, filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [%q]\ncomponents:\n", rel("deploy/base"))
	for _, c := range components {
		fmt.Fprintf(&b, "  - %q\n", rel(c))
	}
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// MonitoringAPI is the --api-versions argument that tells `helm template`
// the cluster serves the prometheus-operator's CRDs: the chart renders its
// ServiceMonitor, PodMonitor and PrometheusRule only then, as
// .Capabilities.APIVersions says, and deploy/base assumes them.
var MonitoringAPI = []string{"--api-versions", "monitoring.coreos.com/v1"}

// HelmTemplateYAML renders the chart as release Release in Namespace with
// bin/helm template, for a cluster with the prometheus-operator CRDs
// (MonitoringAPI); sets are --set arguments ("sharding.enabled=true").
func HelmTemplateYAML(t testing.TB, sets ...string) []byte {
	t.Helper()
	out, err := Helm(t, HelmTemplateArgs(t, MonitoringAPI, sets...)...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// HelmTemplateArgs are the arguments of `helm template` for release Release
// in Namespace, with extra flags and --set arguments.
func HelmTemplateArgs(t testing.TB, extra []string, sets ...string) []string {
	args := append([]string{"template", Release, filepath.Join(testenv.RepoRoot(t), Chart), "--namespace", Namespace}, extra...)
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	return args
}

// HelmTemplate renders and parses the chart.
func HelmTemplate(t testing.TB, sets ...string) []Object {
	t.Helper()
	objs, err := Parse(HelmTemplateYAML(t, sets...))
	if err != nil {
		t.Fatalf("helm template %v: %v", sets, err)
	}
	return objs
}

// Helm runs bin/helm with args and returns its standard output, or an
// error that holds its standard error: for the tests of what helm refuses.
// It fails the test only when helm cannot run or does not finish. Helm's
// homes and kube's discovery cache are a fresh directory (HOME): nothing of
// the user's is read, and a cluster's APIs are never remembered from an
// earlier run.
func Helm(t testing.TB, args ...string) ([]byte, error) {
	t.Helper()
	home := t.TempDir()
	return runE(t, []string{"HOME=" + home, "HELM_CACHE_HOME=" + home + "/cache", "HELM_CONFIG_HOME=" + home + "/config",
		"HELM_DATA_HOME=" + home + "/data"}, testenv.Bin(t, "helm"), args...)
}

func run(t testing.TB, bin string, args ...string) []byte {
	t.Helper()
	out, err := runE(t, nil, bin, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// runE runs bin with args, and env added to the environment, and returns
// its standard output; a non-zero exit is an error with the standard error
// in its text.
func runE(t testing.TB, env []string, bin string, args ...string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if ctx.Err() != nil {
		t.Fatalf("%s %s did not finish: %v\n%s", filepath.Base(bin), strings.Join(args, " "), ctx.Err(), stderr.Bytes())
	}
	if err != nil {
		var exit *exec.ExitError
		if !errors.As(err, &exit) {
			t.Fatalf("%s %s: %v", filepath.Base(bin), strings.Join(args, " "), err)
		}
		return out, fmt.Errorf("%s %s: %w\n%s", filepath.Base(bin), strings.Join(args, " "), err, stderr.Bytes())
	}
	return out, nil
}
