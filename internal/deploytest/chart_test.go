package deploytest_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/imagepull/imagepull_exporter/internal/chartdoc"
	dt "github.com/imagepull/imagepull_exporter/internal/deploytest"
	"github.com/imagepull/imagepull_exporter/internal/testenv"
)

// monitoringKinds are the prometheus-operator's kinds the chart renders.
var monitoringKinds = []string{"ServiceMonitor", "PodMonitor", "PrometheusRule"}

// helmFails renders the chart with sets and returns helm's error text,
// failing the test when helm renders instead.
func helmFails(t *testing.T, sets ...string) string {
	t.Helper()
	out, err := dt.Helm(t, dt.HelmTemplateArgs(t, dt.MonitoringAPI, sets...)...)
	if err == nil {
		t.Fatalf("helm template %q rendered, want an error:\n%s", sets, out)
	}
	return err.Error()
}

// Without monitoring.coreos.com/v1 (no prometheus-operator CRDs) the chart
// leaves out exactly the prometheus-operator objects, whatever asked for
// them, and renders everything else as with them: the apiserver would
// refuse the whole install over one object of an unknown kind.
func TestCRDGuards(t *testing.T) {
	for _, sets := range [][]string{
		nil,
		{"nodeProbe.enabled=true"},
		{"serviceMonitor.enabled=false", "podMonitor.enabled=true", "nodeProbe.enabled=true"},
	} {
		with := dt.HelmTemplate(t, sets...)
		out, err := dt.Helm(t, dt.HelmTemplateArgs(t, nil, sets...)...)
		if err != nil {
			t.Fatal(err)
		}
		without, err := dt.Parse(out)
		if err != nil {
			t.Fatal(err)
		}
		var kept, monitoring []string
		for _, o := range with {
			if slices.Contains(monitoringKinds, o.Kind()) {
				monitoring = append(monitoring, o.Key())
			} else {
				kept = append(kept, o.Key())
			}
		}
		var got []string
		for _, o := range without {
			got = append(got, o.Key())
		}
		sort.Strings(kept)
		sort.Strings(got)
		if !reflect.DeepEqual(got, kept) {
			t.Errorf("%q without the CRDs renders %q, want %q (all but %q)", sets, got, kept, monitoring)
		}
		// Each kind asked for is there with the CRDs.
		want := 2 // the exporter's and the rule
		if slices.Contains(sets, "nodeProbe.enabled=true") {
			want = 3
		}
		if len(monitoring) != want {
			t.Errorf("%q with the CRDs renders %q, want %d prometheus-operator objects", sets, monitoring, want)
		}
	}
}

// podMonitor scrapes the same pods, with the same job labels, interval,
// relabelings and TLS as the ServiceMonitors it replaces, and cannot be
// turned on next to them.
func TestPodMonitor(t *testing.T) {
	common := []string{"nodeProbe.enabled=true", "webConfig.enabled=true"}
	sms := dt.HelmTemplate(t, common...)
	pms := dt.HelmTemplate(t, append(slices.Clone(common), "serviceMonitor.enabled=false", "podMonitor.enabled=true")...)
	if n := len(dt.OfKind(pms, "ServiceMonitor")); n != 0 {
		t.Errorf("podMonitor: %d ServiceMonitors left", n)
	}
	for _, name := range []string{"imagepull-exporter", "imagepull-exporter-node"} {
		sm := dt.Find(t, sms, "ServiceMonitor", name)
		pm := dt.Find(t, pms, "PodMonitor", name)
		if d := cmp.Diff(dt.Get(sm, "spec", "selector"), dt.Get(pm, "spec", "selector")); d != "" {
			t.Errorf("%s: PodMonitor selects other pods than the ServiceMonitor (-sm +pm):\n%s", name, d)
		}
		if d := cmp.Diff(dt.Get(sm, "spec", "endpoints"), dt.Get(pm, "spec", "podMetricsEndpoints")); d != "" {
			t.Errorf("%s: PodMonitor endpoints differ from the ServiceMonitor's (-sm +pm):\n%s", name, d)
		}
		if d := cmp.Diff(dt.Get(sm, "metadata", "labels"), dt.Get(pm, "metadata", "labels")); d != "" {
			t.Errorf("%s: labels (-sm +pm):\n%s", name, d)
		}
	}
	// The PodMonitor's selector is the pods' own labels (not the Service's).
	dep := dt.Find(t, pms, "Deployment", "imagepull-exporter")
	for k, v := range dt.Get(dt.Find(t, pms, "PodMonitor", "imagepull-exporter"), "spec", "selector", "matchLabels").(map[string]any) {
		if dt.Get(dep, "spec", "template", "metadata", "labels", k) != v {
			t.Errorf("PodMonitor selects %s=%v, the exporter's pods have %v", k, v, dt.Get(dep, "spec", "template", "metadata", "labels", k))
		}
	}
	other := dt.HelmTemplate(t, "serviceMonitor.enabled=false", "podMonitor.enabled=true", "podMonitor.jobName=ipe",
		"podMonitor.interval=1m", "podMonitor.additionalLabels.release=kps")
	pm := dt.Find(t, other, "PodMonitor", "imagepull-exporter")
	if dt.Get(pm, "spec", "podMetricsEndpoints", "0", "relabelings", "0", "replacement") != "ipe" ||
		dt.Get(pm, "spec", "podMetricsEndpoints", "0", "interval") != "1m" || dt.Get(pm, "metadata", "labels", "release") != "kps" {
		t.Errorf("podMonitor values not rendered: %v", pm)
	}

	const want = "serviceMonitor.enabled and podMonitor.enabled are exclusive (both would scrape every pod, and every series would be counted twice): set serviceMonitor.enabled=false to use the PodMonitors"
	if got := helmFails(t, "podMonitor.enabled=true"); !strings.Contains(got, want) {
		t.Errorf("both monitors: %s\nwant %q", got, want)
	}
}

// The user's relabelings come after the one that sets the job label (so
// the job the mixin selects is set first and can only be changed on
// purpose), on every ServiceMonitor and PodMonitor; metricRelabelings are
// there only when given.
func TestScrapeRelabelings(t *testing.T) {
	job := map[string]any{"action": "replace", "targetLabel": "job", "replacement": "imagepull-exporter"}
	nodeJob := map[string]any{"action": "replace", "targetLabel": "job", "replacement": "imagepull-exporter-node"}
	user := map[string]any{"action": "replace", "sourceLabels": []any{"__meta_kubernetes_pod_node_name"}, "targetLabel": "node_name"}
	drop := map[string]any{"action": "drop", "sourceLabels": []any{"__name__"}, "regex": "go_.*"}
	for _, m := range []struct{ kind, key, endpoints string }{
		{"ServiceMonitor", "serviceMonitor", "endpoints"},
		{"PodMonitor", "podMonitor", "podMetricsEndpoints"},
	} {
		sets := []string{"nodeProbe.enabled=true",
			m.key + ".relabelings[0].action=replace", m.key + ".relabelings[0].sourceLabels[0]=__meta_kubernetes_pod_node_name", m.key + ".relabelings[0].targetLabel=node_name",
			m.key + ".metricRelabelings[0].action=drop", m.key + ".metricRelabelings[0].sourceLabels[0]=__name__", m.key + ".metricRelabelings[0].regex=go_.*"}
		plain := []string{"nodeProbe.enabled=true"}
		if m.kind == "PodMonitor" {
			sets = append(sets, "serviceMonitor.enabled=false", "podMonitor.enabled=true")
			plain = append(plain, "serviceMonitor.enabled=false", "podMonitor.enabled=true")
		}
		objs := dt.HelmTemplate(t, sets...)
		defaults := dt.HelmTemplate(t, plain...)
		for name, j := range map[string]any{"imagepull-exporter": job, "imagepull-exporter-node": nodeJob} {
			ep := dt.Get(dt.Find(t, objs, m.kind, name), "spec", m.endpoints, "0")
			if d := cmp.Diff([]any{j, user}, dt.Get(ep, "relabelings")); d != "" {
				t.Errorf("%s %s relabelings (-want +got):\n%s", m.kind, name, d)
			}
			if d := cmp.Diff([]any{drop}, dt.Get(ep, "metricRelabelings")); d != "" {
				t.Errorf("%s %s metricRelabelings (-want +got):\n%s", m.kind, name, d)
			}
			def := dt.Get(dt.Find(t, defaults, m.kind, name), "spec", m.endpoints, "0").(map[string]any)
			if _, ok := def["metricRelabelings"]; ok || !reflect.DeepEqual(def["relabelings"], []any{j}) {
				t.Errorf("%s %s by default: relabelings %v, metricRelabelings %v; want only the job's", m.kind, name, def["relabelings"], def["metricRelabelings"])
			}
		}
	}
}

// The PodDisruptionBudget covers the pods that run the join (the
// Deployment, or the shards), never the node probes, and takes one of
// minAvailable or maxUnavailable.
func TestPodDisruptionBudget(t *testing.T) {
	if pdbs := dt.OfKind(dt.HelmTemplate(t), "PodDisruptionBudget"); len(pdbs) != 0 {
		t.Errorf("a PodDisruptionBudget by default: %v", pdbs)
	}
	for _, c := range []struct {
		sets     []string
		workload string
		spec     map[string]any // without the selector
	}{
		{[]string{"podDisruptionBudget.enabled=true", "nodeProbe.enabled=true"}, "Deployment", map[string]any{"maxUnavailable": float64(1)}},
		{[]string{"podDisruptionBudget.enabled=true", "sharding.enabled=true", "podDisruptionBudget.maxUnavailable=34%"}, "StatefulSet", map[string]any{"maxUnavailable": "34%"}},
		{[]string{"podDisruptionBudget.enabled=true", "sharding.enabled=true", "podDisruptionBudget.minAvailable=2"}, "StatefulSet", map[string]any{"minAvailable": float64(2)}},
		{[]string{"podDisruptionBudget.enabled=true", "podDisruptionBudget.minAvailable=50%"}, "Deployment", map[string]any{"minAvailable": "50%"}},
	} {
		objs := dt.HelmTemplate(t, c.sets...)
		pdb := dt.Find(t, objs, "PodDisruptionBudget", "imagepull-exporter")
		spec := dt.Get(pdb, "spec").(map[string]any)
		sel := spec["selector"]
		got := map[string]any{}
		for k, v := range spec {
			if k != "selector" {
				got[k] = v
			}
		}
		if d := cmp.Diff(c.spec, got); d != "" {
			t.Errorf("%q: spec (-want +got):\n%s", c.sets, d)
		}
		w := dt.Find(t, objs, c.workload, "imagepull-exporter")
		if d := cmp.Diff(dt.Get(w, "spec", "selector"), sel); d != "" {
			t.Errorf("%q: the PDB selects other pods than the %s (-workload +pdb):\n%s", c.sets, c.workload, d)
		}
		for _, ds := range dt.OfKind(objs, "DaemonSet") {
			if reflect.DeepEqual(dt.Get(ds, "spec", "selector"), sel) {
				t.Errorf("%q: the PDB selects the node probes", c.sets)
			}
		}
	}
}

// topologySpreadConstraints go to the exporter's pods (not the DaemonSet's,
// one per node anyway); one without labelSelector spreads the exporter's
// own pods.
func TestTopologySpreadAndPodValues(t *testing.T) {
	objs := dt.HelmTemplate(t, "sharding.enabled=true", "nodeProbe.enabled=true",
		"topologySpreadConstraints[0].maxSkew=1", "topologySpreadConstraints[0].topologyKey=topology.kubernetes.io/zone", "topologySpreadConstraints[0].whenUnsatisfiable=ScheduleAnyway",
		"topologySpreadConstraints[1].maxSkew=2", "topologySpreadConstraints[1].topologyKey=kubernetes.io/hostname", "topologySpreadConstraints[1].whenUnsatisfiable=DoNotSchedule",
		"topologySpreadConstraints[1].labelSelector.matchLabels.team=a",
		"priorityClassName=system-cluster-critical", "podAnnotations.example\\.com/scrape=true", "podLabels.tier=1")
	sts := dt.Find(t, objs, "StatefulSet", "imagepull-exporter")
	want := []any{
		map[string]any{"maxSkew": float64(1), "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
			"labelSelector": dt.Get(sts, "spec", "selector")},
		map[string]any{"maxSkew": float64(2), "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule",
			"labelSelector": map[string]any{"matchLabels": map[string]any{"team": "a"}}},
	}
	if d := cmp.Diff(want, dt.Get(sts, "spec", "template", "spec", "topologySpreadConstraints")); d != "" {
		t.Errorf("topologySpreadConstraints (-want +got):\n%s", d)
	}
	ds := dt.Find(t, objs, "DaemonSet", "imagepull-exporter-node")
	if c := dt.Get(ds, "spec", "template", "spec", "topologySpreadConstraints"); c != nil {
		t.Errorf("the node probes got topologySpreadConstraints %v", c)
	}
	// Every pod of the chart: the priority class, and the annotations and
	// labels as strings, whatever --set made of them.
	for _, w := range []dt.Object{sts, ds} {
		pod := dt.Get(w, "spec", "template").(map[string]any)
		if dt.Get(pod, "spec", "priorityClassName") != "system-cluster-critical" ||
			dt.Get(pod, "metadata", "annotations", "example.com/scrape") != "true" ||
			dt.Get(pod, "metadata", "labels", "tier") != "1" {
			t.Errorf("%s: priorityClassName %v, annotations %v, labels %v", w.Key(), dt.Get(pod, "spec", "priorityClassName"),
				dt.Get(pod, "metadata", "annotations"), dt.Get(pod, "metadata", "labels"))
		}
	}
}

// ruleSummary lists a PrometheusRule's rules as "group/alert-or-record" in
// order, with the rules themselves by the same key (an alert with two
// severities appears twice).
func ruleSummary(t *testing.T, objs []dt.Object) ([]string, []map[string]any) {
	t.Helper()
	pr := dt.Find(t, objs, "PrometheusRule", "imagepull-exporter")
	var keys []string
	var rules []map[string]any
	for _, g := range dt.Get(pr, "spec", "groups").([]any) {
		g := g.(map[string]any)
		for _, r := range g["rules"].([]any) {
			r := r.(map[string]any)
			name, _ := r["alert"].(string)
			if name == "" {
				name = "record:" + r["record"].(string)
			}
			keys = append(keys, g["name"].(string)+"/"+name)
			rules = append(rules, r)
		}
	}
	return keys, rules
}

// disabledAlerts removes exactly the named alerts (both severities of one
// that has two), and a group left empty; the rest is the mixin's, rule for
// rule. A name that is no alert is an error naming it.
func TestDisabledAlerts(t *testing.T) {
	allKeys, allRules := ruleSummary(t, dt.HelmTemplate(t))
	disabled := []string{"ImagePullRegistryUnreachable", "ImagePullTagDrift", "ImagePullExporterShardMissing", "ImagePullExporterShardsMisconfigured"}
	sets := []string{"prometheusRule.disabledAlerts={" + strings.Join(disabled, ",") + "}"}
	keys, rules := ruleSummary(t, dt.HelmTemplate(t, sets...))
	var wantKeys []string
	var wantRules []map[string]any
	removed := 0
	for i, k := range allKeys {
		if slices.Contains(disabled, k[strings.Index(k, "/")+1:]) {
			removed++
			continue
		}
		wantKeys = append(wantKeys, k)
		wantRules = append(wantRules, allRules[i])
	}
	// Two severities of ImagePullRegistryUnreachable, one each of the others.
	if removed != 5 {
		t.Fatalf("the mixin has %d rules named %q, the test expects 5: update the test", removed, disabled)
	}
	if d := cmp.Diff(wantKeys, keys); d != "" {
		t.Errorf("rules with %q (-want +got):\n%s", disabled, d)
	}
	if d := cmp.Diff(wantRules, rules); d != "" {
		t.Errorf("the rules kept differ from the mixin's (-want +got):\n%s", d)
	}
	pr := dt.Find(t, dt.HelmTemplate(t, sets...), "PrometheusRule", "imagepull-exporter")
	for _, g := range dt.Get(pr, "spec", "groups").([]any) {
		if name := dt.Get(g, "name"); name == "imagepull-scaleout" {
			t.Errorf("group %v is left with no rules but still rendered: %v", name, g)
		}
	}

	const want = `prometheusRule.disabledAlerts: "ImagePullTagdrift" is not an alert of the mixin; its alerts are ImagePullExporterConfigBroken, `
	if got := helmFails(t, "prometheusRule.disabledAlerts={ImagePullTagdrift}"); !strings.Contains(got, want) || !strings.Contains(got, " ImagePullTagDrift,") {
		t.Errorf("a misspelt alert: %s\nwant %q and the alerts' names", got, want)
	}
	// Also when the PrometheusRule is left out for want of the CRDs: the
	// same values must not fail only on the next cluster.
	if _, err := dt.Helm(t, dt.HelmTemplateArgs(t, nil, "prometheusRule.disabledAlerts={ImagePullTagdrift}")...); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("a misspelt alert without the CRDs: %v", err)
	}
}

// additionalRuleLabels go on every alert and on no recording rule (a label
// there would change the series every dashboard queries); an alert's own
// label of the same name wins.
func TestAdditionalRuleLabels(t *testing.T) {
	_, plain := ruleSummary(t, dt.HelmTemplate(t))
	keys, rules := ruleSummary(t, dt.HelmTemplate(t, "prometheusRule.additionalRuleLabels.team=platform",
		"prometheusRule.additionalRuleLabels.severity=page", "prometheusRule.additionalRuleLabels.paged=true"))
	alerts := 0
	for i, r := range rules {
		if r["alert"] == nil {
			if d := cmp.Diff(plain[i], r); d != "" {
				t.Errorf("%s: a recording rule changed (-want +got):\n%s", keys[i], d)
			}
			continue
		}
		alerts++
		want := map[string]any{}
		for k, v := range plain[i]["labels"].(map[string]any) {
			want[k] = v
		}
		want["team"], want["paged"] = "platform", "true"
		if d := cmp.Diff(want, r["labels"]); d != "" {
			t.Errorf("%s: labels (-want +got):\n%s", keys[i], d)
		}
		if r["labels"].(map[string]any)["severity"] == "page" {
			t.Errorf("%s: additionalRuleLabels overrode the alert's severity", keys[i])
		}
		rest := func(m map[string]any) map[string]any {
			c := map[string]any{}
			for k, v := range m {
				if k != "labels" {
					c[k] = v
				}
			}
			return c
		}
		if d := cmp.Diff(rest(plain[i]), rest(r)); d != "" {
			t.Errorf("%s: more than the labels changed (-want +got):\n%s", keys[i], d)
		}
	}
	if alerts == 0 {
		t.Fatal("no alerts rendered")
	}
}

// Limits a dashboard ConfigMap must stay under. A ConfigMap's data cannot
// exceed 1 MiB (the apiserver refuses it). The tighter one is the
// annotations' 256 KiB: client-side `kubectl apply` (-k too) copies the
// whole object into kubectl.kubernetes.io/last-applied-configuration, the
// classic failure of big dashboards.
const (
	configMapDataLimit  = 1 << 20
	annotationSizeLimit = 256 << 10
)

// The dashboards ConfigMaps, from the chart and from the kustomize
// component: one per dashboards/*.json, the file's exact bytes under its
// own name, the Grafana sidecar's label, and small enough to apply.
func TestDashboards(t *testing.T) {
	root := testenv.RepoRoot(t)
	files, err := filepath.Glob(filepath.Join(root, "dashboards", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards/*.json: %v", err)
	}
	want := map[string]string{} // ConfigMap name -> file name
	contents := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(f)
		contents[name] = string(b)
		want["imagepull-exporter-dashboard-"+strings.TrimPrefix(strings.TrimSuffix(name, ".json"), "imagepull-")] = name
	}
	dashboardMaps := func(objs []dt.Object) map[string]dt.Object {
		out := map[string]dt.Object{}
		for _, o := range dt.OfKind(objs, "ConfigMap") {
			if strings.Contains(o.Name(), "-dashboard-") {
				out[o.Name()] = o
			}
		}
		return out
	}
	if got := dashboardMaps(dt.HelmTemplate(t)); len(got) != 0 {
		t.Errorf("dashboards by default: %v", got)
	}
	for name, objs := range map[string][]dt.Object{
		"helm":      dt.HelmTemplate(t, "dashboards.enabled=true"),
		"kustomize": dt.Kustomize(t, "deploy/overlays/dashboards"),
	} {
		got := dashboardMaps(objs)
		var gotNames, wantNames []string
		for n := range got {
			gotNames = append(gotNames, n)
		}
		for n := range want {
			wantNames = append(wantNames, n)
		}
		sort.Strings(gotNames)
		sort.Strings(wantNames)
		if !reflect.DeepEqual(gotNames, wantNames) {
			t.Errorf("%s: dashboard ConfigMaps %q, want %q", name, gotNames, wantNames)
			continue
		}
		for cm, file := range want {
			o := got[cm]
			data := o["data"].(map[string]any)
			if len(data) != 1 || data[file] != contents[file] {
				t.Errorf("%s %s: data keys %v: want exactly %s with dashboards/%s's bytes", name, cm, slices.Sorted(maps.Keys(data)), file, file)
			}
			var dash map[string]any
			if err := json.Unmarshal([]byte(data[file].(string)), &dash); err != nil || dash["uid"] != strings.TrimSuffix(file, ".json") {
				t.Errorf("%s %s: not the dashboard (uid %v): %v", name, cm, dash["uid"], err)
			}
			if o.Namespace() != dt.Namespace || dt.Get(o, "metadata", "labels", "grafana_dashboard") != "1" {
				t.Errorf("%s %s: namespace %q, labels %v: want %s and grafana_dashboard: \"1\"", name, cm, o.Namespace(), dt.Get(o, "metadata", "labels"), dt.Namespace)
			}
			size := 0
			for _, v := range data {
				size += len(v.(string))
			}
			whole, err := json.Marshal(o)
			if err != nil {
				t.Fatal(err)
			}
			if size >= configMapDataLimit || len(whole) >= annotationSizeLimit {
				t.Errorf("%s %s: %d bytes of data, %d as a whole: over the ConfigMap limit (%d) or too big for kubectl apply's last-applied annotation (%d)",
					name, cm, size, len(whole), configMapDataLimit, annotationSizeLimit)
			}
			t.Logf("%s %s: %d bytes (limits: %d data, %d for client-side apply)", name, cm, len(whole), configMapDataLimit, annotationSizeLimit)
		}
	}

	// The chart's label, namespace, labels and annotations are the user's.
	objs := dt.HelmTemplate(t, "dashboards.enabled=true", "dashboards.label=grafana_dashboards", "dashboards.labelValue=true",
		"dashboards.namespace=monitoring", "dashboards.additionalLabels.team=platform", "dashboards.annotations.grafana_folder=Image pulls")
	got := dashboardMaps(objs)
	if len(got) != len(want) {
		t.Fatalf("%d dashboard ConfigMaps, want %d", len(got), len(want))
	}
	for cm, o := range got {
		labels := dt.Get(o, "metadata", "labels").(map[string]any)
		if o.Namespace() != "monitoring" || labels["grafana_dashboards"] != "true" || labels["team"] != "platform" || labels["grafana_dashboard"] != nil ||
			!reflect.DeepEqual(dt.Get(o, "metadata", "annotations"), map[string]any{"grafana_folder": "Image pulls"}) {
			t.Errorf("%s: namespace %q, labels %v, annotations %v", cm, o.Namespace(), labels, dt.Get(o, "metadata", "annotations"))
		}
	}
}

// schemaRejects are values the schema must refuse, with the exact part of
// helm's message that names the value and what is wrong with it.
var schemaRejects = []struct {
	set  string
	want string
}{
	// The three.
	{"resources=foo", "- at '/resources': got string, want object"},
	{"serviceMonitor.enabeld=true", "- at '/serviceMonitor': additional properties 'enabeld' not allowed"},
	{"port=abc", "- at '/port': got string, want integer"},
	// Unknown keys anywhere, types, ranges, enums, patterns.
	{"enabeld=true", "- at '': additional properties 'enabeld' not allowed"},
	{"nodeProbe.credentialProviders.enable=true", "- at '/nodeProbe/credentialProviders': additional properties 'enable' not allowed"},
	{"port=70000", "- at '/port': maximum: got 70,000, want 65,535"},
	{"networkPolicy.registries.extraPorts={http}", "- at '/networkPolicy/registries/extraPorts/0': got string, want integer"},
	{"sharding.replicas=0", "- at '/sharding/replicas': minimum: got 0, want 1"},
	{"image.pullPolicy=always", "- at '/image/pullPolicy': value must be one of 'Always', 'IfNotPresent', 'Never'"},
	{"serviceMonitor.interval=30sec", "- at '/serviceMonitor/interval': '30sec' does not match pattern"},
	{"podMonitor.scrapeTimeout=10", "- at '/podMonitor/scrapeTimeout': got number, want string"},
	{"resources.limits.memory=512MB", "- at '/resources/limits/memory': '512MB' does not match pattern"},
	{"resources.limit.memory=512Mi", "- at '/resources': additional properties 'limit' not allowed"},
	{"podDisruptionBudget.maxUnavailable=half", "- at '/podDisruptionBudget/maxUnavailable': 'half' does not match pattern '^[0-9]+%$'"},
	{"podLabels.tier=front end", "- at '/podLabels/tier': 'front end' does not match pattern"},
	{"prometheusRule.additionalRuleLabels.team-name=x", "'team-name' does not match pattern '^[a-zA-Z_][a-zA-Z0-9_]*$'"},
	{"prometheusRule.disabledAlerts=ImagePullTagDrift", "- at '/prometheusRule/disabledAlerts': got string, want array"},
	{"nodeProbe.credentialProviders.binDir=usr/libexec", "- at '/nodeProbe/credentialProviders/binDir': 'usr/libexec' does not match pattern '^/'"},
	{"credentials.secrets[0].nam=harbor", "- at '/credentials/secrets/0': missing property 'name'"},
	{"dashboards.namespace=Monitoring", "- at '/dashboards/namespace': 'Monitoring' does not match pattern"},
	{"topologySpreadConstraints[0].maxSkew=1", "- at '/topologySpreadConstraints/0': missing properties 'topologyKey', 'whenUnsatisfiable'"},
	{"extraArgs=--kube.namespaces=a", "- at '/extraArgs': got string, want array"},
	{"config=foo", "- at '/config': got string, want object"},
}

// values.schema.json covers every value of values.yaml and nothing else
// (internal/chartdoc walks both; the chart's README is generated from the
// same walk), is strict wherever the shape is the chart's own, accepts the
// defaults and every option the tests use, and refuses each bad value with
// a message that names it, in `helm template` and `helm lint` alike (the
// cluster test adds `helm install`).
func TestValuesSchema(t *testing.T) {
	root := testenv.RepoRoot(t)
	values, err := os.ReadFile(filepath.Join(root, dt.Chart, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	schemaJSON, err := os.ReadFile(filepath.Join(root, dt.Chart, "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := chartdoc.Values(values, schemaJSON)
	if err != nil {
		t.Fatalf("values.yaml and values.schema.json disagree:\n%v", err)
	}
	if len(rows) < 100 {
		t.Errorf("only %d documented values: did the walk stop early?", len(rows))
	}
	// Every object schema with properties — the chart's own shapes, inline
	// or in definitions — refuses unknown keys.
	var schema map[string]any
	if err := json.Unmarshal(schemaJSON, &schema); err != nil {
		t.Fatal(err)
	}
	var walk func(path string, s any)
	walk = func(path string, s any) {
		switch x := s.(type) {
		case map[string]any:
			if _, ok := x["properties"]; ok && x["additionalProperties"] != false && !strings.Contains(path, "topologySpreadConstraints") &&
				!strings.HasPrefix(path, "/definitions/envVars") && !strings.HasPrefix(path, "/definitions/volume") {
				t.Errorf("schema %s has properties but allows others (additionalProperties: false)", path)
			}
			for k, v := range x {
				walk(path+"/"+k, v)
			}
		case []any:
			for i, v := range x {
				walk(fmt.Sprintf("%s/%d", path, i), v)
			}
		}
	}
	walk("", schema)

	for _, args := range [][]string{
		{"lint", "--strict", filepath.Join(root, dt.Chart)},
		append([]string{"lint", "--strict", filepath.Join(root, dt.Chart)}, setArgs(chartOptions)...),
	} {
		if out, err := dt.Helm(t, args...); err != nil {
			t.Errorf("%v\n%s", err, out)
		}
	}
	for _, r := range schemaRejects {
		t.Run(r.set, func(t *testing.T) {
			if got := helmFails(t, r.set); !strings.Contains(got, "values don't meet the specifications of the schema") || !strings.Contains(got, r.want) {
				t.Errorf("helm template --set %s:\n%s\nwant %q", r.set, got, r.want)
			}
			out, err := dt.Helm(t, "lint", "--strict", filepath.Join(root, dt.Chart), "--set", r.set)
			if err == nil || !strings.Contains(string(out), r.want) {
				t.Errorf("helm lint --set %s: %v\n%s\nwant %q", r.set, err, out, r.want)
			}
		})
	}
}

// chartOptions turns on every option the chart has that the overlays do
// not cover, each in a way the schema must accept and the apiserver too
// (cluster_test.go applies it).
var chartOptions = []string{
	"nodeProbe.enabled=true", "sharding.enabled=true", "serviceMonitor.enabled=false", "podMonitor.enabled=true",
	"podMonitor.relabelings[0].action=replace", "podMonitor.relabelings[0].sourceLabels[0]=__meta_kubernetes_pod_node_name",
	"podMonitor.relabelings[0].targetLabel=node_name",
	"podMonitor.metricRelabelings[0].action=drop", "podMonitor.metricRelabelings[0].sourceLabels[0]=__name__", "podMonitor.metricRelabelings[0].regex=go_.*",
	"podMonitor.additionalLabels.release=kube-prometheus-stack", "podMonitor.interval=1m", "podMonitor.scrapeTimeout=20s",
	"podDisruptionBudget.enabled=true", "podDisruptionBudget.maxUnavailable=34%",
	"topologySpreadConstraints[0].maxSkew=1", "topologySpreadConstraints[0].topologyKey=topology.kubernetes.io/zone",
	"topologySpreadConstraints[0].whenUnsatisfiable=ScheduleAnyway",
	"priorityClassName=system-cluster-critical", "podAnnotations.example\\.com/owner=platform", "podLabels.tier=1",
	"nodeSelector.kubernetes\\.io/os=linux",
	"prometheusRule.disabledAlerts={ImagePullTagDrift,ImagePullRegistryUnreachable}",
	"prometheusRule.additionalRuleLabels.team=platform", "prometheusRule.additionalLabels.release=kube-prometheus-stack",
	"dashboards.enabled=true", "dashboards.annotations.grafana_folder=Image pulls", "dashboards.additionalLabels.team=platform",
	"resources.limits.memory=1Gi",
}

func setArgs(sets []string) []string {
	var out []string
	for _, s := range sets {
		out = append(out, "--set", s)
	}
	return out
}
