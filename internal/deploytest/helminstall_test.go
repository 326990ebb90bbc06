package deploytest_test

import (
	"context"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	dt "github.com/imagepull/imagepull_exporter/internal/deploytest"
	"github.com/imagepull/imagepull_exporter/internal/testenv"
)

// TestHelmInstall installs the chart with helm itself into a real
// kube-apiserver, which helm asks for its APIs: first without the
// prometheus-operator CRDs (the install succeeds without the objects that
// need them, and its notes say so), then with them (an upgrade adds them).
// The schema refuses bad values at install time too, before anything
// reaches the cluster.
func TestHelmInstall(t *testing.T) {
	k := testenv.StartKube(t, testenv.KubeOptions{})
	kubeconfig := k.WriteKubeconfig(k.AdminToken)
	chart := filepath.Join(testenv.RepoRoot(t), dt.Chart)
	helm := func(t *testing.T, args ...string) (string, error) {
		t.Helper()
		out, err := dt.Helm(t, append(args, "--kubeconfig", kubeconfig)...)
		return string(out), err
	}
	mustHelm := func(t *testing.T, args ...string) string {
		t.Helper()
		out, err := helm(t, args...)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return out
	}
	// installed lists the release's objects as "Kind name", from helm's
	// record of what it applied.
	installed := func(t *testing.T, release, ns string) []string {
		t.Helper()
		objs, err := dt.Parse([]byte(mustHelm(t, "get", "manifest", release, "--namespace", ns)))
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, o := range objs {
			out = append(out, o.Kind()+" "+o.Name())
		}
		sort.Strings(out)
		return out
	}
	monitoring := func(objs []string) []string {
		var out []string
		for _, o := range objs {
			if slices.Contains(monitoringKinds, strings.Fields(o)[0]) {
				out = append(out, o)
			}
		}
		return out
	}
	const warning = "WARNING: NOT CREATED: "

	t.Run("without CRDs", func(t *testing.T) {
		for _, c := range []struct {
			release string
			sets    []string
			notes   []string // lines the notes must have
		}{
			{"defaults", nil, []string{
				warning + "ServiceMonitor (serviceMonitor.enabled), PrometheusRule (prometheusRule.enabled).",
				"serviceMonitor.enabled=false, prometheusRule.enabled=false to say you do not want them.",
			}},
			{"podmonitor", []string{"serviceMonitor.enabled=false", "podMonitor.enabled=true", "prometheusRule.enabled=false"}, []string{
				warning + "PodMonitor (podMonitor.enabled).",
				"podMonitor.enabled=false to say you do not want them.",
			}},
			{"opted-out", []string{"serviceMonitor.enabled=false", "prometheusRule.enabled=false"}, []string{
				`No ServiceMonitor: scrape the Service's endpoints with job="imagepull-exporter", which the mixin's alerts select.`,
				"No PrometheusRule: load alerts/*.yaml (the mixin's alerts and recording rules) into Prometheus.",
			}},
		} {
			t.Run(c.release, func(t *testing.T) {
				out := mustHelm(t, append([]string{"install", c.release, chart, "--namespace", "ns-" + c.release, "--create-namespace"}, setArgs(c.sets)...)...)
				for _, l := range c.notes {
					if !slices.Contains(strings.Split(out, "\n"), l) {
						t.Errorf("notes lack the line %q:\n%s", l, out)
					}
				}
				if c.release == "opted-out" && strings.Contains(out, warning) {
					t.Errorf("a warning about objects nobody asked for:\n%s", out)
				}
				objs := installed(t, c.release, "ns-"+c.release)
				if m := monitoring(objs); len(m) != 0 {
					t.Errorf("installed %q on a cluster without their CRDs", m)
				}
				if !slices.Contains(objs, "Deployment "+c.release+"-imagepull-exporter") {
					t.Errorf("installed %q: no Deployment", objs)
				}
				// Really there, not just in helm's record.
				if _, err := k.Client.AppsV1().Deployments("ns-"+c.release).Get(context.Background(), c.release+"-imagepull-exporter", metav1.GetOptions{}); err != nil {
					t.Error(err)
				}
			})
		}
	})

	// What the guard prevents: the same chart rendered as if the CRDs were
	// there is refused by this apiserver.
	t.Run("unguarded", func(t *testing.T) {
		k.EnsureNamespace(t, dt.Namespace)
		out, err := k.Kubectl(t, "", strings.NewReader(string(dt.HelmTemplateYAML(t))), "--cache-dir", t.TempDir(), "apply", "--dry-run=server", "-f", "-")
		if err == nil || !strings.Contains(out, `no matches for kind "ServiceMonitor" in version "monitoring.coreos.com/v1"`) {
			t.Errorf("a ServiceMonitor applied to a cluster without its CRD: %v\n%s", err, out)
		}
	})

	// The three bad values fail helm install with the value's path,
	// and no release is left behind.
	t.Run("schema", func(t *testing.T) {
		for _, r := range schemaRejects[:3] {
			out, err := helm(t, "install", "bad", chart, "--namespace", "ns-bad", "--create-namespace", "--set", r.set)
			if err == nil || !strings.Contains(err.Error(), r.want) {
				t.Errorf("helm install --set %s: %v\n%s\nwant %q", r.set, err, out, r.want)
			}
		}
		if out, err := helm(t, "status", "bad", "--namespace", "ns-bad"); err == nil || !strings.Contains(err.Error(), "release: not found") {
			t.Errorf("helm status of the refused release: %v\n%s", err, out)
		}
	})

	t.Run("with CRDs", func(t *testing.T) {
		k.InstallCRDs(t, testenv.PrometheusOperatorCRDs(t)...)
		// The CRDs arrive: the same release, upgraded with the same values,
		// gets what it asked for.
		out := mustHelm(t, "upgrade", "defaults", chart, "--namespace", "ns-defaults")
		if strings.Contains(out, warning) {
			t.Errorf("upgrade with the CRDs still warns:\n%s", out)
		}
		if got, want := monitoring(installed(t, "defaults", "ns-defaults")), []string{"PrometheusRule defaults-imagepull-exporter", "ServiceMonitor defaults-imagepull-exporter"}; !slices.Equal(got, want) {
			t.Errorf("after the upgrade: %q, want %q", got, want)
		}
		if out, err := k.Kubectl(t, "", nil, "--cache-dir", t.TempDir(), "get", "-n", "ns-defaults", "servicemonitor/defaults-imagepull-exporter", "prometheusrule/defaults-imagepull-exporter", "-o", "name"); err != nil ||
			strings.Count(out, "defaults-imagepull-exporter") != 2 {
			t.Errorf("not in the cluster: %v\n%s", err, out)
		}

		// Every option of the chart's own, installed for real (admission,
		// the CRDs' schemas, the system-cluster-critical PriorityClass).
		mustHelm(t, append([]string{"install", "options", chart, "--namespace", "ns-options", "--create-namespace"}, setArgs(chartOptions)...)...)
		objs := installed(t, "options", "ns-options")
		for _, want := range []string{
			"PodMonitor options-imagepull-exporter", "PodMonitor options-imagepull-exporter-node", "PrometheusRule options-imagepull-exporter",
			"PodDisruptionBudget options-imagepull-exporter", "StatefulSet options-imagepull-exporter", "DaemonSet options-imagepull-exporter-node",
			"ConfigMap options-imagepull-exporter-dashboard-cluster-impact", "ConfigMap options-imagepull-exporter-dashboard-registries-overview",
			"ConfigMap options-imagepull-exporter-dashboard-registry-detail",
		} {
			if !slices.Contains(objs, want) {
				t.Errorf("installed %q: no %s", objs, want)
			}
		}
		if m := monitoring(objs); slices.ContainsFunc(m, func(o string) bool { return strings.HasPrefix(o, "ServiceMonitor") }) {
			t.Errorf("ServiceMonitors next to the PodMonitors: %q", m)
		}
	})
}
