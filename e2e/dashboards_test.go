package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/imagepull/imagepull_exporter/mixin"
)

// Reasons a panel has no data in this setup.
const (
	noKSM         = "no kube-state-metrics runs here; the join's own waiting series are checked instead"
	noKubelet     = "no kubelet is scraped: the test plays the kubelet through the API"
	noPullSecrets = "--kube.use-pull-secrets is off, so no pull secret is checked"
	noRateLimit   = "distribution sends no rate-limit headers (Docker Hub does; the probe tests simulate it)"
	no429         = "the registry never answers 429"
	noTLS         = "the registry speaks plain HTTP, so there is no certificate"
	noMirrors     = "no mirror is configured"
	noBudgetSkip  = "the request budget never skipped a probe; the counter appears with the first skip"
	noWorkloads   = "the test creates bare pods: no Deployment, StatefulSet, DaemonSet, Job or CronJob names an image, so no workload image is unavailable"
	noProduct     = "the registry is a plain distribution registry, none of the products whose health API is read, so none is (collector/health_test.go reads simulated Harbor, Quay, Artifactory and Nexus)"
)

// Panels empty in one state only: emptyWhileHealthy during the baseline,
// emptyDuringOutage while the registry is stopped. Together with the two
// runs they prove that every other panel shows data when there is some.
var (
	emptyWhileHealthy = map[string]string{
		"imagepull-cluster-impact.json / Reschedule risk / A":      "the registry serves every running image",
		"imagepull-registries-overview.json / Registry health / F": "no target fails",
		"imagepull-registries-overview.json / Registry health / K": "the registry is up, so it has no down reason",
		"imagepull-registry-detail.json / Targets / B":             "no target fails",
	}
	emptyDuringOutage = map[string]string{
		"imagepull-cluster-impact.json / Tag drift / A": "drift compares what runs with what the registry serves now, which a stopped registry cannot say",
	}
)

// emptyPanels are the panel queries (dashboard / panel / refId) that have no
// data in this setup, and why. Every other query must return data.
var emptyPanels = map[string]string{
	"imagepull-cluster-impact.json / kube-state-metrics: waiting on images / A": noKSM,
	"imagepull-cluster-impact.json / Kubelet image pull errors / A":             noKubelet,
	"imagepull-cluster-impact.json / Pull secrets that no longer log in / A":    noPullSecrets,
	"imagepull-cluster-impact.json / Workload images that cannot be pulled / A": noWorkloads,
	"imagepull-cluster-impact.json / Pull failures by registry and cause / A":   "the pods wait before the exporter starts: a failure is counted when the exporter sees a container enter ErrImagePull, not in its first list",

	"imagepull-registries-overview.json / Lowest rate-limit headroom / A":           noRateLimit,
	"imagepull-registries-overview.json / Registry health / I":                      noTLS,
	"imagepull-registries-overview.json / Headroom per source / A":                  noRateLimit,
	"imagepull-registries-overview.json / Remaining pulls and forecast / A":         noRateLimit,
	"imagepull-registries-overview.json / Remaining pulls and forecast / B":         noRateLimit,
	"imagepull-registries-overview.json / Remaining pulls and forecast / C":         noRateLimit,
	"imagepull-registries-overview.json / Exhaustion forecast / A":                  noRateLimit,
	"imagepull-registries-overview.json / Exhaustion forecast / B":                  noRateLimit,
	"imagepull-registries-overview.json / Exhaustion forecast / C":                  noRateLimit,
	"imagepull-registries-overview.json / Exhaustion forecast / D":                  noRateLimit,
	"imagepull-registries-overview.json / 429 answers / A":                          no429,
	"imagepull-registries-overview.json / 429 answers / B":                          no429,
	"imagepull-registries-overview.json / Probes skipped by the request budget / A": noBudgetSkip,
	"imagepull-registries-overview.json / Mirror health / A":                        noMirrors,
	"imagepull-registries-overview.json / Mirror health / B":                        noMirrors,
	"imagepull-registries-overview.json / Mirror health / C":                        noMirrors,
	"imagepull-registries-overview.json / Stale mirror tags / A":                    noMirrors,

	"imagepull-registry-detail.json / Pull secrets for this registry / A":   noPullSecrets,
	"imagepull-registry-detail.json / TLS certificate expires in / A":       noTLS,
	"imagepull-registry-detail.json / Headroom per source / A":              noRateLimit,
	"imagepull-registry-detail.json / Remaining and limit / A":              noRateLimit,
	"imagepull-registry-detail.json / Remaining and limit / B":              noRateLimit,
	"imagepull-registry-detail.json / Retry-After / A":                      noRateLimit,
	"imagepull-registry-detail.json / Components / A":                       noProduct,
	"imagepull-registry-detail.json / Components / B":                       noProduct,
	"imagepull-registry-detail.json / Component health / A":                 noProduct,
	"imagepull-registry-detail.json / Component health / B":                 noProduct,
	"imagepull-registry-detail.json / Health reads by result / A":           noProduct,
	"imagepull-registry-detail.json / Mirrors of this registry / A":         noMirrors,
	"imagepull-registry-detail.json / Mirrors of this registry / B":         noMirrors,
	"imagepull-registry-detail.json / Mirrors of this registry / C":         noMirrors,
	"imagepull-registry-detail.json / Mirror requests by kind and code / A": noMirrors,
	"imagepull-registry-detail.json / Stale mirror tags / A":                noMirrors,
}

// checkDashboards runs every panel query of the generated dashboards against
// Prometheus, as Grafana would send it: variables resolved by running the
// dashboards' own variable queries, "All" as the variable's allValue. Each
// query must parse and execute; each must have data unless emptyPanels or
// emptyNow (the state's own) says why not, and those must be empty.
func (s *stack) checkDashboards(t *testing.T, state string, emptyNow map[string]string) {
	t.Helper()
	queries, err := mixin.DashboardQueries(s.files)
	if err != nil {
		t.Fatal(err)
	}
	if len(queries) == 0 {
		t.Fatal("the rendered dashboards have no queries")
	}
	vars := map[string]map[string]string{}
	seen := map[string]bool{}
	var withData, empty int
	for _, q := range queries {
		id := fmt.Sprintf("%s / %s / %s", q.Dashboard, q.Panel, q.RefID)
		if seen[id] {
			t.Errorf("two queries are %s: tell them apart in the dashboard", id)
		}
		seen[id] = true
		if vars[q.Dashboard] == nil {
			vars[q.Dashboard] = s.dashboardVariables(t, q.Dashboard)
		}
		expr, err := mixin.ExpandVariables(q.Expr, vars[q.Dashboard])
		if err != nil {
			t.Errorf("%s: %v", id, err)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		r, err := s.prom.QueryE(ctx, expr)
		cancel()
		if err != nil {
			t.Errorf("%s: %v", id, err)
			continue
		}
		hasData := r.Type == "scalar" || len(r.Samples) > 0
		reason, wantEmpty := emptyPanels[id]
		if r, ok := emptyNow[id]; ok {
			reason, wantEmpty = r, true
		}
		switch {
		case wantEmpty && hasData:
			t.Errorf("%s: %s: has data, but it is listed as empty (%s): %s\n  %s", state, id, reason, r, expr)
		case !wantEmpty && !hasData:
			t.Errorf("%s: %s: no data\n  %s", state, id, expr)
		case hasData:
			withData++
		default:
			empty++
		}
		// The prober only ever HEADs manifests.
		if q.Panel == "Manifest GETs sent" && formatResult(r) != "{} 0" {
			t.Errorf("%s = %s, want 0", id, r)
		}
	}
	for _, m := range []map[string]string{emptyPanels, emptyNow} {
		for id := range m {
			if !seen[id] {
				t.Errorf("%s is listed as empty, but no dashboard has it", id)
			}
		}
	}
	t.Logf("dashboards, %s: %d queries ran, %d with data, %d empty as expected", state, len(queries), withData, empty)
}

// labelValues matches a Grafana Prometheus query variable.
var labelValues = regexp.MustCompile(`^label_values\((.*),\s*(\w+)\)$`)

// dashboardVariables resolves a dashboard's variables the way Grafana
// does: each query variable's label_values() runs against Prometheus (with
// the variables before it expanded), and checks what it offers here; a
// multi-value variable is set to "All", i.e. its allValue.
func (s *stack) dashboardVariables(t *testing.T, file string) map[string]string {
	t.Helper()
	var d struct {
		Templating struct {
			List []struct {
				Name       string          `json:"name"`
				Type       string          `json:"type"`
				Query      json.RawMessage `json:"query"`
				IncludeAll bool            `json:"includeAll"`
				AllValue   string          `json:"allValue"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal([]byte(s.files["dashboards/"+file]), &d); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	// Grafana's default for a Prometheus data source scraped every 15s:
	// max(4 × scrape interval, step + scrape interval).
	vars := map[string]string{"__rate_interval": "1m"}
	// What each variable must offer in this setup: no cluster label (one
	// cluster), the one registry, the namespaces with pods.
	want := map[string][]string{"cluster": nil, "registry": {s.registry}, "namespace": {nsPayments, nsShop}}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var query string
		if err := json.Unmarshal(v.Query, &query); err != nil {
			t.Errorf("%s: variable %s: query is not a string: %s", file, v.Name, v.Query)
			continue
		}
		m := labelValues.FindStringSubmatch(query)
		if m == nil {
			t.Errorf("%s: variable %s: %q is not label_values(selector, label)", file, v.Name, query)
			continue
		}
		selector, err := mixin.ExpandVariables(m[1], vars)
		if err != nil {
			t.Errorf("%s: variable %s: %v", file, v.Name, err)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		r, err := s.prom.QueryE(ctx, fmt.Sprintf("group by (%s) (%s)", m[2], selector))
		cancel()
		if err != nil {
			t.Errorf("%s: variable %s: %v", file, v.Name, err)
			continue
		}
		var values []string
		for _, smp := range r.Samples {
			if val := smp.Metric[m[2]]; val != "" {
				values = append(values, val)
			}
		}
		sort.Strings(values)
		w, known := want[v.Name]
		if !known {
			t.Errorf("%s: variable %s is new: say here what it offers in this setup", file, v.Name)
		} else if strings.Join(values, ",") != strings.Join(w, ",") {
			t.Errorf("%s: variable %s offers %q, want %q", file, v.Name, values, w)
		}
		switch {
		case v.IncludeAll && v.AllValue != "":
			vars[v.Name] = v.AllValue
		case v.IncludeAll:
			// Without an allValue Grafana sends every value as a regex
			// alternation; PromQL strings need the backslashes doubled.
			quoted := make([]string, len(values))
			for i, val := range values {
				quoted[i] = strings.ReplaceAll(regexp.QuoteMeta(val), `\`, `\\`)
			}
			vars[v.Name] = "(" + strings.Join(quoted, "|") + ")"
		case len(values) > 0:
			vars[v.Name] = values[0]
		default:
			vars[v.Name] = "" // what Grafana sends for a variable without options
		}
	}
	return vars
}
