package mixin_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-jsonnet"
	"github.com/google/go-jsonnet/formatter"
	"github.com/google/go-jsonnet/linter"
	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"

	"github.com/imagepull/imagepull_exporter/collector"
	"github.com/imagepull/imagepull_exporter/internal/testenv"
	"github.com/imagepull/imagepull_exporter/mixin"
	"github.com/imagepull/imagepull_exporter/probe"
)

var (
	renderOnce  sync.Once
	renderFiles map[string]string
	renderErr   error
)

// render renders the mixin with its defaults, once for all tests: under
// -race one evaluation takes seconds.
func render(t *testing.T) map[string]string {
	t.Helper()
	renderOnce.Do(func() { renderFiles, renderErr = mixin.Render("") })
	if renderErr != nil {
		t.Fatal(renderErr)
	}
	return renderFiles
}

// TestGeneratedFilesAreCurrent fails when alerts/ or dashboards/ differ from
// what the mixin renders: they are generated, never edited by hand.
func TestGeneratedFilesAreCurrent(t *testing.T) {
	root := testenv.RepoRoot(t)
	files := render(t)
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			t.Errorf("%s: %v; run `make generate` and commit the result", name, err)
			continue
		}
		if string(got) != want {
			t.Errorf("%s is stale: it differs from what mixin/ renders; run `make generate` and commit the result", name)
		}
	}
	// A file the mixin no longer renders (a renamed dashboard) is stale too.
	for _, dir := range []string{"alerts", "dashboards"} {
		entries, err := os.ReadDir(filepath.Join(root, dir))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if _, ok := files[dir+"/"+e.Name()]; !ok {
				t.Errorf("%s/%s is not rendered by the mixin; remove it (`make generate` does)", dir, e.Name())
			}
		}
	}
}

// TestRenderOverrides proves the hook the end-to-end test uses: _config
// overrides change the rendered rules, here the `for:` durations.
func TestRenderOverrides(t *testing.T) {
	files, err := mixin.Render(`{ registryUnreachableFor: '1m', podsBlockedFor: '30s', imagepullSelector: 'job="e2e"' }`)
	if err != nil {
		t.Fatal(err)
	}
	groups := parseRuleGroups(t, files[mixin.AlertsFile])
	seen := 0
	for _, g := range groups {
		for _, r := range g.Rules {
			switch r.Alert {
			case "ImagePullRegistryUnreachable":
				seen++
				if r.For != "1m" {
					t.Errorf("%s for = %q, want 1m", r.Alert, r.For)
				}
			case "ImagePullPodsBlocked":
				seen++
				if r.For != "30s" {
					t.Errorf("%s for = %q, want 30s", r.Alert, r.For)
				}
			}
			if strings.Contains(r.Expr, `job="imagepull-exporter"`) {
				t.Errorf("%s%s ignores the overridden selector: %s", r.Alert, r.Record, r.Expr)
			}
		}
	}
	for _, g := range parseRuleGroups(t, files[mixin.RulesFile]) {
		for _, r := range g.Rules {
			if !strings.Contains(r.Expr, `job="e2e"`) {
				t.Errorf("%s ignores the overridden selector: %s", r.Record, r.Expr)
			}
		}
	}
	if seen != 4 {
		t.Errorf("found %d ImagePullRegistryUnreachable/ImagePullPodsBlocked rules, want 4 (critical and warning each)", seen)
	}
	if _, err := mixin.Render(`{ manifestLatencyQuantile: '90' }`); err == nil {
		t.Error("a malformed quantile rendered without error")
	}
}

// jsonnetSources returns the mixin's jsonnet files by path.
func jsonnetSources(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := fs.WalkDir(mixin.Sources, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !(strings.HasSuffix(p, ".jsonnet") || strings.HasSuffix(p, ".libsonnet")) {
			return err
		}
		b, err := mixin.Sources.ReadFile(p)
		out[p] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 10 {
		t.Fatalf("found only %d jsonnet files in the embedded sources", len(out))
	}
	return out
}

// TestJsonnetFormatted is jsonnetfmt --test with go-jsonnet's formatter and
// the CLI's default options.
func TestJsonnetFormatted(t *testing.T) {
	for name, src := range jsonnetSources(t) {
		got, err := formatter.Format(name, src, formatter.DefaultOptions())
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if got != src {
			t.Errorf("%s is not formatted; run `make fmt`", name)
		}
	}
}

// TestJsonnetLint runs go-jsonnet's linter (what jsonnet-lint runs) on
// every file: unused variables, unknown fields of locals, type errors.
func TestJsonnetLint(t *testing.T) {
	vm := jsonnet.MakeVM()
	vm.Importer(mixin.NewImporter())
	var snippets []linter.Snippet
	for name, src := range jsonnetSources(t) {
		snippets = append(snippets, linter.Snippet{FileName: name, Code: src})
	}
	var out bytes.Buffer
	if linter.LintSnippet(vm, &out, snippets) {
		t.Errorf("jsonnet-lint found problems:\n%s", out.String())
	}
}

// TestPromtoolCheckRules runs `promtool check rules` on the generated files.
func TestPromtoolCheckRules(t *testing.T) {
	root := testenv.RepoRoot(t)
	run(t, root, testenv.Bin(t, "promtool"), "check", "rules", mixin.AlertsFile, mixin.RulesFile)
}

// TestPromtoolTestRules runs the alert unit tests in mixin/tests/.
func TestPromtoolTestRules(t *testing.T) {
	files := ruleTestFiles(t)
	run(t, filepath.Join(testenv.RepoRoot(t), "mixin", "tests"), testenv.Bin(t, "promtool"), append([]string{"test", "rules"}, files...)...)
}

// TestAmtoolCheckConfig validates the example Alertmanager configuration.
func TestAmtoolCheckConfig(t *testing.T) {
	out := run(t, testenv.RepoRoot(t), testenv.Bin(t, "amtool"), "check-config", "mixin/alertmanager.example.yml")
	if !strings.Contains(out, "8 inhibit rules") {
		t.Errorf("amtool found a different number of inhibit rules than the example's 8:\n%s", out)
	}
}

func run(t *testing.T, dir, bin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Rule files as promtool reads them.
type ruleGroup struct {
	Name  string `yaml:"name"`
	Rules []struct {
		Alert       string            `yaml:"alert"`
		Record      string            `yaml:"record"`
		Expr        string            `yaml:"expr"`
		For         string            `yaml:"for"`
		Labels      map[string]string `yaml:"labels"`
		Annotations map[string]string `yaml:"annotations"`
	} `yaml:"rules"`
}

func parseRuleGroups(t *testing.T, text string) []ruleGroup {
	t.Helper()
	var f struct {
		Groups []ruleGroup `yaml:"groups"`
	}
	if err := yaml.Unmarshal([]byte(text), &f); err != nil {
		t.Fatal(err)
	}
	return f.Groups
}

// Unit test files as promtool reads them.
type ruleTestFile struct {
	EvaluationInterval string `yaml:"evaluation_interval"`
	Tests              []struct {
		AlertRuleTest []struct {
			EvalTime  string `yaml:"eval_time"`
			Alertname string `yaml:"alertname"`
			ExpAlerts []struct {
				ExpLabels      map[string]string `yaml:"exp_labels"`
				ExpAnnotations map[string]string `yaml:"exp_annotations"`
			} `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

func ruleTestFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(testenv.RepoRoot(t), "mixin", "tests", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no rule test files in mixin/tests: %v", err)
	}
	for i := range files {
		files[i] = filepath.Base(files[i])
	}
	return files
}

func parseDuration(t *testing.T, s string) time.Duration {
	t.Helper()
	d, err := model.ParseDuration(s)
	if err != nil {
		t.Fatalf("duration %q: %v", s, err)
	}
	return time.Duration(d)
}

// TestEveryAlertIsTestedAndDocumented checks the rule tests and the runbook
// against the rendered alerts: every alert rule (name and severity) has a
// test case in which it is silent one evaluation before it fires, and fires
// with all three annotations; every alert has a runbook section whose anchor
// its runbook_url names, and every annotation is set.
func TestEveryAlertIsTestedAndDocumented(t *testing.T) {
	root := testenv.RepoRoot(t)
	type rule struct{ alert, severity string }
	var rules []rule
	for _, g := range parseRuleGroups(t, render(t)[mixin.AlertsFile]) {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			rules = append(rules, rule{r.Alert, r.Labels["severity"]})
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if r.Annotations[a] == "" {
					t.Errorf("%s (%s) has no %s", r.Alert, r.Labels["severity"], a)
				}
			}
			if r.For == "" {
				t.Errorf("%s (%s) has no for:", r.Alert, r.Labels["severity"])
			}
		}
	}
	if len(rules) != 28 {
		t.Errorf("rendered %d alert rules, want 28 (24 alerts, four of them with critical and warning rules)", len(rules))
	}

	// firing[rule] holds eval times per test case at which the rule fires;
	// checked[test case][alertname] the eval times with any check.
	type at struct {
		file string
		tc   int
	}
	fires := map[rule]map[at][]time.Duration{}
	silent := map[rule]map[at][]time.Duration{}
	intervals := map[string]time.Duration{}
	for _, name := range ruleTestFiles(t) {
		b, err := os.ReadFile(filepath.Join(root, "mixin", "tests", name))
		if err != nil {
			t.Fatal(err)
		}
		var f ruleTestFile
		if err := yaml.Unmarshal(b, &f); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		intervals[name] = parseDuration(t, f.EvaluationInterval)
		for i, tc := range f.Tests {
			for _, check := range tc.AlertRuleTest {
				when := parseDuration(t, check.EvalTime)
				firing := map[string]bool{}
				for _, a := range check.ExpAlerts {
					firing[a.ExpLabels["severity"]] = true
					for _, k := range []string{"summary", "description", "runbook_url"} {
						if a.ExpAnnotations[k] == "" {
							t.Errorf("%s test %d: %s at %s expects no %s annotation", name, i, check.Alertname, check.EvalTime, k)
						}
					}
				}
				for _, r := range rules {
					if r.alert != check.Alertname {
						continue
					}
					m := silent
					if firing[r.severity] {
						m = fires
					}
					if m[r] == nil {
						m[r] = map[at][]time.Duration{}
					}
					m[r][at{name, i}] = append(m[r][at{name, i}], when)
				}
			}
		}
	}
	for _, r := range rules {
		ok := false
		for where, times := range fires[r] {
			for _, when := range times {
				for _, before := range silent[r][where] {
					if before == when-intervals[where.file] {
						ok = true
					}
				}
			}
		}
		if !ok {
			t.Errorf("%s (%s): no test case checks it silent one evaluation before it fires, and firing", r.alert, r.severity)
		}
	}

	runbook, err := os.ReadFile(filepath.Join(root, "mixin", "runbook.md"))
	if err != nil {
		t.Fatal(err)
	}
	headings := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^## (\S+)$`).FindAllStringSubmatch(string(runbook), -1) {
		headings[m[1]] = true
	}
	seen := map[string]bool{}
	for _, g := range parseRuleGroups(t, render(t)[mixin.AlertsFile]) {
		for _, r := range g.Rules {
			if r.Alert == "" || seen[r.Alert] {
				continue
			}
			seen[r.Alert] = true
			if !headings[r.Alert] {
				t.Errorf("runbook.md has no section \"## %s\"", r.Alert)
			}
			want := "https://github.com/imagepull/imagepull_exporter/blob/main/mixin/runbook.md#" + strings.ToLower(r.Alert)
			if r.Annotations["runbook_url"] != want {
				t.Errorf("%s runbook_url = %q, want %q", r.Alert, r.Annotations["runbook_url"], want)
			}
		}
	}
	for h := range headings {
		if !seen[h] {
			t.Errorf("runbook.md has a section for %s, which is not an alert", h)
		}
	}
}

// routingLabels are the labels each alert must carry for Alertmanager to
// route and group it (the example groups by cluster and registry, and
// workload images by namespace): every alert names its registry, except
// those about the exporter, its shards or a kubelet, which name no registry.
var routingLabels = map[string][]string{
	"ImagePullExporterDown":                {"job"},
	"ImagePullExporterShardMissing":        {},
	"ImagePullExporterShardsMisconfigured": {},
	"ImagePullKubeletPullErrorsHigh":       {"instance"},
	"ImagePullWorkloadImageUnavailable":    {"namespace", "kind", "workload", "container", "image", "cause", "registry"},
	"ImagePullTargetFailing":               {"registry", "target", "cause"},
	"ImagePullRegistryUnreachable":         {"registry", "cause"},
	"ImagePullRegistryAuthFailing":         {"registry", "cause"},
}

// Limits of a description an on-call reads in one glance, as the rule
// tests render it: what is wrong and the first thing to do, with at most a
// short list (namespaces, nodes, targets) in between. The detail is in the
// alert's runbook section.
const (
	maxDescriptionChars     = 450
	maxDescriptionSentences = 4
)

// sentenceEnd matches the end of a sentence: a full stop before the next
// sentence or the end of the text.
var sentenceEnd = regexp.MustCompile("[.!?](?:\\s+[A-Z`]|$)")

// TestAlertTextsReadInOneGlance holds every alert to the habits issue 11
// asked for (kubernetes-mixin's): the summary names what is wrong and
// where, without a value ({{ $value }} belongs in the description, if
// anywhere); the description, as the rule tests render it, is short; and
// every firing alert the rule tests expect carries its routing labels.
func TestAlertTextsReadInOneGlance(t *testing.T) {
	value := regexp.MustCompile(`\$value|\.Value\b|\bvalue\b`)
	alerts := map[string]bool{}
	for _, g := range parseRuleGroups(t, render(t)[mixin.AlertsFile]) {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts[r.Alert] = true
			if value.MatchString(r.Annotations["summary"]) {
				t.Errorf("%s (%s): the summary shows a value; name what is wrong and move the value to the description: %s", r.Alert, r.Labels["severity"], r.Annotations["summary"])
			}
		}
	}
	for name := range routingLabels {
		if !alerts[name] {
			t.Errorf("routingLabels names %s, which is not an alert", name)
		}
	}
	checked := map[string]bool{}
	for _, file := range ruleTestFiles(t) {
		b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "mixin", "tests", file))
		if err != nil {
			t.Fatal(err)
		}
		var f ruleTestFile
		if err := yaml.Unmarshal(b, &f); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		for i, tc := range f.Tests {
			for _, check := range tc.AlertRuleTest {
				want, ok := routingLabels[check.Alertname]
				if !ok {
					want = []string{"registry"}
				}
				for _, a := range check.ExpAlerts {
					checked[check.Alertname] = true
					for _, l := range want {
						if a.ExpLabels[l] == "" {
							t.Errorf("%s test %d: %s at %s has no %s label to route on: %v", file, i, check.Alertname, check.EvalTime, l, a.ExpLabels)
						}
					}
					d := a.ExpAnnotations["description"]
					if n := len(sentenceEnd.FindAllString(d, -1)); len(d) > maxDescriptionChars || n > maxDescriptionSentences {
						t.Errorf("%s test %d: %s at %s: the description has %d characters and %d sentences, more than %d and %d: move the detail to the runbook:\n%s",
							file, i, check.Alertname, check.EvalTime, len(d), n, maxDescriptionChars, maxDescriptionSentences, d)
					}
				}
			}
		}
	}
	for name := range alerts {
		if !checked[name] {
			t.Errorf("%s: no rule test expects it firing, so its labels and description are unchecked", name)
		}
	}
}

// TestDashboards checks the rendered dashboards' structure (there is no
// Grafana here to load them): stable uids, the datasource and cluster
// variables, every panel on the datasource variable with unique ids inside
// the 24-column grid, and every query valid PromQL once Grafana's variables
// are expanded (promtool parses them as recording rules).
func TestDashboards(t *testing.T) {
	files := render(t)
	wantUIDs := map[string]string{
		"dashboards/imagepull-registries-overview.json": "imagepull-registries-overview",
		"dashboards/imagepull-cluster-impact.json":      "imagepull-cluster-impact",
		"dashboards/imagepull-registry-detail.json":     "imagepull-registry-detail",
	}
	for name, uid := range wantUIDs {
		text, ok := files[name]
		if !ok {
			t.Errorf("%s is not rendered", name)
			continue
		}
		var d struct {
			UID        string `json:"uid"`
			Templating struct {
				List []struct {
					Name       string          `json:"name"`
					Type       string          `json:"type"`
					Datasource json.RawMessage `json:"datasource"`
				} `json:"list"`
			} `json:"templating"`
			Panels []struct {
				ID         int             `json:"id"`
				Type       string          `json:"type"`
				Title      string          `json:"title"`
				Datasource json.RawMessage `json:"datasource"`
				GridPos    struct{ X, Y, W, H int }
				Targets    []struct {
					RefID      string          `json:"refId"`
					Expr       string          `json:"expr"`
					Datasource json.RawMessage `json:"datasource"`
				} `json:"targets"`
			} `json:"panels"`
		}
		if err := json.Unmarshal([]byte(text), &d); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if d.UID != uid {
			t.Errorf("%s uid = %q, want %q", name, d.UID, uid)
		}
		vars := map[string]string{}
		for _, v := range d.Templating.List {
			vars[v.Name] = v.Type
		}
		if vars["datasource"] != "datasource" || vars["cluster"] != "query" {
			t.Errorf("%s: want a datasource variable and a cluster query variable, have %v", name, vars)
		}
		const ds = `{"type":"prometheus","uid":"${datasource}"}`
		ids := map[int]bool{}
		for _, p := range d.Panels {
			if ids[p.ID] {
				t.Errorf("%s: panel id %d twice", name, p.ID)
			}
			ids[p.ID] = true
			if p.GridPos.X < 0 || p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 {
				t.Errorf("%s: panel %q outside the grid: %+v", name, p.Title, p.GridPos)
			}
			if p.Type == "row" || p.Type == "text" {
				continue
			}
			if compact(t, p.Datasource) != ds {
				t.Errorf("%s: panel %q datasource = %s, want %s", name, p.Title, p.Datasource, ds)
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", name, p.Title)
			}
			for _, tg := range p.Targets {
				if tg.RefID == "" || tg.Expr == "" || compact(t, tg.Datasource) != ds {
					t.Errorf("%s: panel %q has a target without refId, expr or the datasource variable", name, p.Title)
				}
				if !strings.Contains(tg.Expr, `$cluster"`) {
					t.Errorf("%s: panel %q query does not select the cluster: %s", name, p.Title, tg.Expr)
				}
			}
		}
	}

	queries, err := mixin.DashboardQueries(files)
	if err != nil {
		t.Fatal(err)
	}
	type recording struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var recs []recording
	for i, q := range queries {
		expr, err := mixin.ExpandVariables(q.Expr, map[string]string{
			"cluster": "", "registry": "docker.io", "namespace": ".*", "__rate_interval": "1m",
		})
		if err != nil {
			t.Errorf("%s %q: %v", q.Dashboard, q.Panel, err)
			continue
		}
		recs = append(recs, recording{Record: fmt.Sprintf("dashboard_query_%d", i), Expr: expr})
	}
	if len(recs) < 50 {
		t.Errorf("only %d dashboard queries", len(recs))
	}
	out, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard-queries", "rules": recs}}})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "dashboard-queries.yaml")
	if err := os.WriteFile(file, out, 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, filepath.Dir(file), testenv.Bin(t, "promtool"), "check", "rules", file)
}

func compact(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return string(raw)
	}
	return b.String()
}

func TestExpandVariables(t *testing.T) {
	got, err := mixin.ExpandVariables(`rate(x{cluster="$cluster", r=~"${registry}", ns=~"${namespace:regex}"}[$__rate_interval]) and label_replace(y, "a", "$1", "b", "(.*)")`,
		map[string]string{"cluster": "eu", "registry": "docker.io", "namespace": ".*", "__rate_interval": "2m"})
	if err != nil {
		t.Fatal(err)
	}
	want := `rate(x{cluster="eu", r=~"docker.io", ns=~".*"}[2m]) and label_replace(y, "a", "$1", "b", "(.*)")`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if _, err := mixin.ExpandVariables(`x{a="$nope"}`, nil); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("a variable without a value: err = %v", err)
	}
}

// TestAlertmanagerExampleInhibitsAndGroups loads the example configuration
// into a real Alertmanager, posts the alerts of a registry outage and of
// rate-limit trouble at once, and checks which are inhibited and what each
// receiver is sent: one page per registry outage, carrying both
// ImagePullRegistryUnreachable and ImagePullPodsBlocked, and none of the
// alerts that only restate it; workload image alerts go out per namespace,
// muted while their registry is down or rate limited.
func TestAlertmanagerExampleInhibitsAndGroups(t *testing.T) {
	hook := testenv.StartWebhook(t)
	cfg, err := mixin.AlertmanagerExample(hook.URL, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(cfg, "30s") || !strings.Contains(cfg, hook.URL) {
		t.Fatalf("AlertmanagerExample did not rewrite timings and URLs:\n%s", cfg)
	}
	am := testenv.StartAlertmanager(t, testenv.AlertmanagerOptions{Config: cfg})

	type alert struct {
		labels     string // k=v,k=v
		inhibited  bool
		receiver   string // where it is notified when not inhibited
		groupLabel string // the notification group: "registry", "cluster/registry", or "ns:namespace" for workload alerts
	}
	alerts := []alert{
		// reg.example is down and containers wait on it.
		{"alertname=ImagePullRegistryUnreachable,severity=critical,registry=reg.example,cause=connect", false, "imagepull-page", "reg.example"},
		{"alertname=ImagePullRegistryUnreachable,severity=warning,registry=reg.example,cause=connect", true, "", ""},
		{"alertname=ImagePullPodsBlocked,severity=critical,registry=reg.example,cause=connect", false, "imagepull-page", "reg.example"},
		{"alertname=ImagePullRescheduleRisk,severity=warning,registry=reg.example,cause=connect", true, "", ""},
		{"alertname=ImagePullManifestLatencyHigh,severity=warning,registry=reg.example,quantile=0.9", true, "", ""},
		// A secret that fails to log in is news even during the outage.
		{"alertname=ImagePullPullSecretInvalid,severity=warning,registry=reg.example,namespace=shop,secret=regcred", false, "imagepull-ticket", "reg.example"},
		// quay.io is down, nothing waits on it: the warning is the notice.
		{"alertname=ImagePullRegistryUnreachable,severity=warning,registry=quay.io,cause=dns", false, "imagepull-ticket", "quay.io"},
		{"alertname=ImagePullRescheduleRisk,severity=warning,registry=quay.io,cause=dns", true, "", ""},
		// docker.io answers 429.
		{"alertname=ImagePullRateLimited,severity=warning,registry=docker.io,cause=rate_limited", false, "imagepull-ticket", "docker.io"},
		{"alertname=ImagePullRateLimitLow,severity=warning,registry=docker.io,source=s1", true, "", ""},
		{"alertname=ImagePullRateLimitExhaustionForecast,severity=warning,registry=docker.io,source=s1", true, "", ""},
		// ghcr.io: one source low (its forecast muted), another forecast only.
		{"alertname=ImagePullRateLimitLow,severity=warning,registry=ghcr.io,source=s2", false, "imagepull-ticket", "ghcr.io"},
		{"alertname=ImagePullRateLimitExhaustionForecast,severity=warning,registry=ghcr.io,source=s2", true, "", ""},
		{"alertname=ImagePullRateLimitExhaustionForecast,severity=warning,registry=ghcr.io,source=s3", false, "imagepull-ticket", "ghcr.io"},
		// A healthy registry: per-image problems are not muted by anything.
		{"alertname=ImagePullPodsBlocked,severity=warning,registry=ok.example,cause=registry_ok", false, "imagepull-ticket", "ok.example"},
		{"alertname=ImagePullRescheduleRisk,severity=warning,registry=ok.example,cause=not_found", false, "imagepull-ticket", "ok.example"},
		// Workload images: muted while their registry is down, and a 429
		// while the registry's rate limit is notified; the others go to
		// their namespace, one notification per namespace across registries.
		{"alertname=ImagePullWorkloadImageUnavailable,severity=warning,registry=reg.example,namespace=shop,kind=Deployment,workload=api,container=api,image=reg.example/api:v1,cause=connect", true, "", ""},
		{"alertname=ImagePullWorkloadImageUnavailable,severity=warning,registry=docker.io,namespace=ci,kind=Job,workload=build,container=build,image=golang:1.26,cause=rate_limited", true, "", ""},
		{"alertname=ImagePullWorkloadImageUnavailable,severity=warning,registry=docker.io,namespace=ci,kind=CronJob,workload=lint,container=lint,image=acme/lint:gone,cause=not_found", false, "imagepull-ticket", "ns:ci"},
		{"alertname=ImagePullWorkloadImageUnavailable,severity=warning,registry=ok.example,namespace=shop,kind=CronJob,workload=report,container=report,image=ok.example/report:gone,cause=not_found", false, "imagepull-ticket", "ns:shop"},
		{"alertname=ImagePullWorkloadImageUnavailable,severity=warning,registry=ghcr.io,namespace=shop,kind=StatefulSet,workload=db,container=init-schema,image=ghcr.io/acme/schema:v2,cause=forbidden", false, "imagepull-ticket", "ns:shop"},
		// One bad target of a healthy registry: a ticket with its registry.
		{"alertname=ImagePullTargetFailing,severity=warning,registry=ok.example,target=ok-api,cause=tls", false, "imagepull-ticket", "ok.example"},
		// Clusters do not inhibit each other.
		{"alertname=ImagePullRegistryUnreachable,severity=critical,cluster=eu,registry=x.example,cause=timeout", false, "imagepull-page", "eu/x.example"},
		{"alertname=ImagePullRegistryUnreachable,severity=warning,cluster=us,registry=x.example,cause=timeout", false, "imagepull-ticket", "us/x.example"},
		{"alertname=ImagePullTagDrift,severity=info,registry=ghcr.io,repository=acme/db,tag=dev", false, "imagepull-info", "ghcr.io"},
		// harbor.example's database is down (issue 15): containers wait,
		// the critical ImagePullRegistryUnhealthy pages with the blocked
		// containers; what blames credentials is muted, the warning too.
		{"alertname=ImagePullRegistryUnhealthy,severity=critical,registry=harbor.example,product=harbor,auth_backend=down", false, "imagepull-page", "harbor.example"},
		{"alertname=ImagePullRegistryUnhealthy,severity=warning,registry=harbor.example,product=harbor,auth_backend=down", true, "", ""},
		{"alertname=ImagePullPodsBlocked,severity=critical,registry=harbor.example,cause=server_error", false, "imagepull-page", "harbor.example"},
		{"alertname=ImagePullRegistryAuthFailing,severity=warning,registry=harbor.example,cause=unauthorized", true, "", ""},
		{"alertname=ImagePullPullSecretInvalid,severity=warning,registry=harbor.example,namespace=shop,secret=harbor-robot", true, "", ""},
		// quay-h.example is unhealthy but its auth backend is up: a
		// rejected secret or credential is the credentials' own problem.
		{"alertname=ImagePullRegistryUnhealthy,severity=warning,registry=quay-h.example,product=quay", false, "imagepull-ticket", "quay-h.example"},
		{"alertname=ImagePullRegistryAuthFailing,severity=warning,registry=quay-h.example,cause=unauthorized", false, "imagepull-ticket", "quay-h.example"},
		{"alertname=ImagePullPullSecretInvalid,severity=warning,registry=quay-h.example,namespace=shop,secret=quay-robot", false, "imagepull-ticket", "quay-h.example"},
	}
	labelsOf := func(s string) map[string]string {
		m := map[string]string{}
		for _, kv := range strings.Split(s, ",") {
			k, v, _ := strings.Cut(kv, "=")
			m[k] = v
		}
		return m
	}
	key := func(m map[string]string) string {
		var parts []string
		for k, v := range m {
			parts = append(parts, k+"="+v)
		}
		sort.Strings(parts)
		return strings.Join(parts, ",")
	}
	var post []testenv.PostableAlert
	want := map[string]bool{} // labels key -> inhibited
	for _, a := range alerts {
		l := labelsOf(a.labels)
		post = append(post, testenv.PostableAlert{Labels: l, Annotations: map[string]string{"summary": a.labels}})
		want[key(l)] = a.inhibited
	}
	am.PostAlerts(t, post...)

	// The inhibitor learns of the alerts asynchronously: wait until
	// Alertmanager reports every alert and a state for each.
	deadline := time.Now().Add(time.Minute)
	for {
		got := map[string]bool{}
		for _, a := range am.Alerts(t) {
			got[key(a.Labels)] = len(a.Status.InhibitedBy) > 0
		}
		diff := ""
		for k, inhibited := range want {
			if g, ok := got[k]; !ok || g != inhibited {
				diff += fmt.Sprintf("  %s: inhibited=%v (present %v), want inhibited=%v\n", k, g, ok, inhibited)
			}
		}
		if diff == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("inhibition differs from the design:\n%s", diff)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// What each receiver is sent: one notification per group, holding
	// exactly the alerts that are not inhibited.
	wantGroups := map[string][]string{} // receiver|group -> alert keys
	for _, a := range alerts {
		if !a.inhibited {
			g := a.receiver + "|" + a.groupLabel
			wantGroups[g] = append(wantGroups[g], key(labelsOf(a.labels)))
		}
	}
	groupOf := func(m testenv.WebhookMessage) string {
		g := m.GroupLabels["registry"]
		if ns := m.GroupLabels["namespace"]; ns != "" {
			g = "ns:" + ns
		}
		if c := m.GroupLabels["cluster"]; c != "" {
			g = c + "/" + g
		}
		return m.Receiver + "|" + g
	}
	msgs := hook.WaitFor(t, time.Minute, func(msgs []testenv.WebhookMessage) bool {
		seen := map[string]bool{}
		for _, m := range msgs {
			seen[groupOf(m)] = true
		}
		for g := range wantGroups {
			if !seen[g] {
				return false
			}
		}
		return true
	})
	first := map[string][]string{}
	for _, m := range msgs {
		g := groupOf(m)
		if _, ok := wantGroups[g]; !ok {
			t.Errorf("unexpected notification to %s: %d alerts", g, len(m.Alerts))
		}
		for _, a := range m.Alerts {
			if want[key(a.Labels)] {
				t.Errorf("inhibited alert notified to %s: %s", g, key(a.Labels))
			}
		}
		if _, ok := first[g]; ok {
			continue
		}
		for _, a := range m.Alerts {
			first[g] = append(first[g], key(a.Labels))
		}
	}
	for g, keys := range wantGroups {
		sort.Strings(keys)
		got := first[g]
		sort.Strings(got)
		if strings.Join(got, " ; ") != strings.Join(keys, " ; ") {
			t.Errorf("first notification to %s:\n got  %v\n want %v", g, got, keys)
		}
	}
}

// mixinConfig evaluates expr, a jsonnet expression over `c`, the mixin's
// _config (with configOverrides merged in, as Render does), and decodes
// the JSON result into out.
func mixinConfig(t *testing.T, configOverrides, expr string, out any) {
	t.Helper()
	if configOverrides == "" {
		configOverrides = "{}"
	}
	vm := jsonnet.MakeVM()
	vm.Importer(mixin.NewImporter())
	snippet := fmt.Sprintf("local c = ((import 'mixin.libsonnet') + { _config+:: %s })._config; %s", configOverrides, expr)
	js, err := vm.EvaluateAnonymousSnippet("config-test.jsonnet", snippet)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(js), out); err != nil {
		t.Fatal(err)
	}
}

// reasonClasses returns every _config list named *Reasons or *Causes, so a
// class added later is checked too.
func reasonClasses(t *testing.T, configOverrides string) map[string][]string {
	t.Helper()
	var classes map[string][]string
	mixinConfig(t, configOverrides, `{ [k]: c[k] for k in std.objectFieldsAll(c) if std.endsWith(k, 'Reasons') || std.endsWith(k, 'Causes') }`, &classes)
	return classes
}

// checkReasonClasses returns how the mixin's reason classes disagree with
// Go's one ordered set (probe.Reasons, Reason.RegistryLevel, Local,
// Inconclusive, PathLevel) and the join's causes: a reason Go does not have
// would match no series, and a class that drifts from Go's predicates pages
// or stays quiet for the wrong causes.
func checkReasonClasses(classes map[string][]string) []string {
	var problems []string
	known := map[string]bool{}
	var registryLevel, perImage, local, inconclusive, pathLevel []string
	for _, r := range probe.Reasons {
		known[string(r)] = true
		if r.PathLevel() {
			pathLevel = append(pathLevel, string(r))
		}
		switch {
		case r.RegistryLevel():
			registryLevel = append(registryLevel, string(r))
		case r.Local():
			local = append(local, string(r))
		case r.Inconclusive():
			inconclusive = append(inconclusive, string(r))
		default:
			perImage = append(perImage, string(r))
		}
	}
	level := map[string]bool{}
	for _, r := range registryLevel {
		level[r] = true
	}
	// The join's own causes: unknown is a node-reported pull error the
	// classifier cannot place (issue 10).
	joinCause := map[string]bool{collector.CauseRegistryOK: true, collector.CauseUnprobed: true, collector.CauseUnknown: true}
	for _, name := range []string{"registryLevelReasons", "perImageReasons", "localReasons", "inconclusiveReasons", "unreachableReasons", "targetFailingReasons", "authFailureReasons", "podsBlockedCriticalCauses"} {
		if _, ok := classes[name]; !ok {
			problems = append(problems, fmt.Sprintf("_config.%s is missing", name))
		}
	}
	names := make([]string, 0, len(classes))
	for name := range classes {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		// Probe failure reasons are label values of imagepull_probe_failure_reason;
		// causes are the join's cause label, which adds registry_ok and unprobed.
		isCause := strings.HasSuffix(name, "Causes")
		for _, r := range classes[name] {
			switch {
			case known[r], isCause && joinCause[r]:
			case isCause:
				problems = append(problems, fmt.Sprintf("_config.%s names %q, which is neither in probe.Reasons nor a join cause", name, r))
			default:
				problems = append(problems, fmt.Sprintf("_config.%s names %q, which is not in probe.Reasons", name, r))
			}
		}
	}
	if got := classes["registryLevelReasons"]; !slices.Equal(got, registryLevel) {
		problems = append(problems, fmt.Sprintf("_config.registryLevelReasons = %q, want Go's RegistryLevel reasons in probe.Reasons order %q", got, registryLevel))
	}
	if got := classes["perImageReasons"]; !slices.Equal(got, perImage) {
		problems = append(problems, fmt.Sprintf("_config.perImageReasons = %q, want the reasons neither registry-level nor local in probe.Reasons order %q", got, perImage))
	}
	if got := classes["localReasons"]; !slices.Equal(got, local) {
		problems = append(problems, fmt.Sprintf("_config.localReasons = %q, want Go's Local reasons in probe.Reasons order %q", got, local))
	}
	if got := classes["inconclusiveReasons"]; !slices.Equal(got, inconclusive) {
		problems = append(problems, fmt.Sprintf("_config.inconclusiveReasons = %q, want Go's Inconclusive reasons in probe.Reasons order %q", got, inconclusive))
	}
	// ImagePullTargetFailing's class is Go's PathLevel, exactly: a reason
	// left out would hide a module's TLS or proxy mistake, one added would
	// blame a target's path for what the registry says about an image.
	if got := classes["targetFailingReasons"]; !slices.Equal(got, pathLevel) {
		problems = append(problems, fmt.Sprintf("_config.targetFailingReasons = %q, want Go's PathLevel reasons in probe.Reasons order %q", got, pathLevel))
	}
	// An inconclusive reason (the registry asked an anonymous probe for
	// credentials) proves nothing wrong: no alert's class may name it, so no
	// private registry without a module raises anything.
	inconclusiveSet := map[string]bool{}
	for _, r := range inconclusive {
		inconclusiveSet[r] = true
	}
	for _, name := range names {
		if name == "inconclusiveReasons" {
			continue
		}
		for _, r := range classes[name] {
			if inconclusiveSet[r] {
				problems = append(problems, fmt.Sprintf("_config.%s names %q, which is inconclusive (Reason.Inconclusive): no class but inconclusiveReasons may hold it", name, r))
			}
		}
	}
	// A local reason (the exporter's own files) is never a registry's
	// cause: no alert may page or warn on it as the registry's problem.
	localSet := map[string]bool{}
	for _, r := range local {
		localSet[r] = true
	}
	for _, name := range []string{"unreachableReasons", "targetFailingReasons", "authFailureReasons", "podsBlockedCriticalCauses"} {
		for _, r := range classes[name] {
			if localSet[r] {
				problems = append(problems, fmt.Sprintf("_config.%s names %q, which is the exporter's own problem (Reason.Local), never the registry's", name, r))
			}
		}
	}
	for _, name := range []string{"unreachableReasons", "podsBlockedCriticalCauses"} {
		for _, r := range classes[name] {
			if !level[r] {
				problems = append(problems, fmt.Sprintf("_config.%s names %q, which is not registry-level in Go", name, r))
			}
		}
	}
	return problems
}

// TestReasonClassesMatchGo fails when the mixin's reason lists drift from
// probe/reasons.go, the one ordered reason set.
func TestReasonClassesMatchGo(t *testing.T) {
	for _, p := range checkReasonClasses(reasonClasses(t, "")) {
		t.Error(p)
	}
}

// TestReasonClassesCheckFails proves the check above can fail: each
// override is a drift it must report.
func TestReasonClassesCheckFails(t *testing.T) {
	for _, override := range []string{
		`{ registryLevelReasons: ['dns', 'connect', 'tls', 'timeout', 'server_error', 'rate_limited', 'unauthorized'] }`,
		`{ registryLevelReasons: ['connect', 'dns', 'tls', 'timeout', 'server_error', 'rate_limited', 'unauthorized', 'protocol'] }`,
		`{ perImageReasons: ['forbidden', 'not_found'] }`,
		`{ perImageReasons: ['not_found', 'forbidden', 'config'] }`,
		`{ localReasons: [] }`,
		`{ authFailureReasons: ['unauthorized', 'forbidden', 'config'] }`,
		`{ unreachableReasons: ['dns', 'not_found'] }`,
		`{ podsBlockedCriticalCauses: ['dns', 'registry_ok'] }`,
		`{ authFailureReasons: ['unauthorised'] }`,
		`{ someNewCauses: ['refused'] }`,
		`{ inconclusiveReasons: [] }`,
		`{ perImageReasons: ['not_found', 'forbidden', 'no_credentials'] }`,
		`{ authFailureReasons: ['unauthorized', 'forbidden', 'no_credentials'] }`,
		`{ targetFailingReasons: ['dns', 'connect', 'tls', 'timeout', 'server_error'] }`,
		`{ targetFailingReasons: ['dns', 'connect', 'tls', 'timeout', 'server_error', 'protocol', 'not_found'] }`,
		`{ podsBlockedCriticalCauses: ['dns', 'no_credentials'] }`,
	} {
		if problems := checkReasonClasses(reasonClasses(t, override)); len(problems) == 0 {
			t.Errorf("override %s: the check found no drift", override)
		}
	}
}

// TestRenderedReasonsMatchGo checks the reason and cause values the
// rendered alerts match on (`reason=~"..."`, `cause!~"..."` in expressions,
// `eq $labels.cause "..."` in annotations): each must be one Go reports.
func TestRenderedReasonsMatchGo(t *testing.T) {
	known := map[string]bool{collector.CauseRegistryOK: true, collector.CauseUnprobed: true, collector.CauseUnknown: true}
	for _, r := range probe.Reasons {
		known[string(r)] = true
	}
	// The contract of issue 11: no_credentials is inconclusive, and no alert
	// fires on an inconclusive reason.
	if !probe.ReasonNoCredentials.Inconclusive() || !slices.Contains(probe.Reasons, probe.ReasonNoCredentials) {
		t.Errorf("probe.ReasonNoCredentials is not an inconclusive reason of probe.Reasons; the mixin's inconclusiveReasons assume it is")
	}
	matcher := regexp.MustCompile(`\b(?:reason|cause)\s*(=~|!~|=|!=)\s*"([^"]*)"`)
	template := regexp.MustCompile(`eq \$labels\.cause((?: "[^"]*")+)`)
	seen := 0
	check := func(where, v string) {
		seen++
		if !known[v] {
			t.Errorf("%s matches reason or cause %q, which the exporter never reports", where, v)
		}
	}
	for _, g := range parseRuleGroups(t, render(t)[mixin.AlertsFile]) {
		for _, r := range g.Rules {
			for _, m := range matcher.FindAllStringSubmatch(r.Expr, -1) {
				for _, v := range strings.Split(m[2], "|") {
					check(r.Alert+" expr", v)
					if (m[1] == "=" || m[1] == "=~") && probe.Reason(v).Inconclusive() {
						t.Errorf("%s fires on reason or cause %q, which is inconclusive: the registry answered and the exporter cannot know whether the pods can pull", r.Alert, v)
					}
				}
			}
			for name, text := range r.Annotations {
				for _, m := range template.FindAllStringSubmatch(text, -1) {
					for _, v := range regexp.MustCompile(`"([^"]*)"`).FindAllStringSubmatch(m[1], -1) {
						check(r.Alert+" "+name, v[1])
					}
				}
			}
		}
	}
	if seen < 20 {
		t.Errorf("found only %d reason and cause values in the rendered alerts; has the matcher syntax changed?", seen)
	}
}

// renderAlertsOf renders the alert rules of a jsonnet expression that
// composes a mixin (imports resolve in mixin/), as lib/render.libsonnet
// does for the repository's files.
func renderAlertsOf(t *testing.T, composition string) []ruleGroup {
	t.Helper()
	vm := jsonnet.MakeVM()
	vm.Importer(mixin.NewImporter())
	vm.StringOutput = true
	files, err := vm.EvaluateAnonymousSnippetMulti("runbook-test.jsonnet", fmt.Sprintf("(import 'lib/render.libsonnet')(%s)", composition))
	if err != nil {
		t.Fatal(err)
	}
	return parseRuleGroups(t, files[mixin.AlertsFile])
}

// TestRunbookURLOverridesSurvive checks that add-runbook-links.libsonnet
// adds a runbook_url only where an alert has none: another mixin's alerts
// composed to the left of this one, and a user's link on one of this
// mixin's alerts, keep theirs.
func TestRunbookURLOverridesSurvive(t *testing.T) {
	const (
		otherURL = "https://runbooks.example/other/otheralert"
		userURL  = "https://wiki.example/imagepull/exporter-down"
		ours     = "https://github.com/imagepull/imagepull_exporter/blob/main/mixin/runbook.md#"
	)
	other := `{ prometheusAlerts+:: { groups+: [{ name: 'other', rules: [
	  { alert: 'OtherAlert', expr: 'vector(1)', annotations: { runbook_url: '` + otherURL + `' } },
	  { record: 'other:rule', expr: 'vector(1)' },
	] }] } }`
	// A user who assembles the mixin from its parts and sets a link on
	// one of its alerts before the links are added.
	parts := `{ prometheusRules:: {}, grafanaDashboards:: {} } + (import 'config.libsonnet') + (import 'alerts/exporter.libsonnet') + {
	  prometheusAlerts+:: { groups: [g { rules: [
	    if std.get(r, 'alert') == 'ImagePullExporterDown' then r { annotations+: { runbook_url: '` + userURL + `' } } else r
	    for r in g.rules
	  ] } for g in super.groups] },
	} + (import 'alerts/add-runbook-links.libsonnet')`
	// A user who patches the finished mixin.
	after := `(import 'mixin.libsonnet') + {
	  prometheusAlerts+:: { groups: [g { rules: [
	    if std.get(r, 'alert') == 'ImagePullExporterDown' then r { annotations+: { runbook_url: '` + userURL + `' } } else r
	    for r in g.rules
	  ] } for g in super.groups] },
	}`
	for _, c := range []struct {
		name, composition string
		want              map[string]string // alert or record -> runbook_url
	}{
		{"another mixin to the left", other + ` + (import 'mixin.libsonnet')`, map[string]string{
			"OtherAlert": otherURL, "other:rule": "", "ImagePullExporterDown": ours + "imagepullexporterdown",
		}},
		{"user link before the links are added", parts, map[string]string{
			"ImagePullExporterDown": userURL, "ImagePullProbesStale": ours + "imagepullprobesstale",
		}},
		{"user link on the finished mixin", after, map[string]string{
			"ImagePullExporterDown": userURL, "ImagePullProbesStale": ours + "imagepullprobesstale",
		}},
	} {
		got := map[string]string{}
		for _, g := range renderAlertsOf(t, c.composition) {
			for _, r := range g.Rules {
				got[r.Alert+r.Record] = r.Annotations["runbook_url"]
			}
		}
		for name, want := range c.want {
			if g, ok := got[name]; !ok || g != want {
				t.Errorf("%s: %s runbook_url = %q (rendered %v), want %q", c.name, name, g, ok, want)
			}
		}
	}
}
