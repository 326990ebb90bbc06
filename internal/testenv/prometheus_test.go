package testenv_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imagepull/imagepull_exporter/internal/testenv"
)

// TestPrometheus proves a real Prometheus starts, scrapes, answers instant
// queries (vector and scalar), rejects bad PromQL with an error, loads rule
// files and reloads them.
func TestPrometheus(t *testing.T) {
	addr := testenv.FreeAddr(t)
	p := testenv.StartPrometheus(t, testenv.PrometheusOptions{
		Addr: addr,
		Config: fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [rules.yml]
scrape_configs:
- job_name: self
  static_configs: [{targets: ['%s']}]
`, addr),
		RuleFiles: map[string]string{"rules.yml": `groups:
- name: test
  rules:
  - record: testenv:up:sum
    expr: sum(up{job="self"})
  - alert: SelfScraped
    expr: up{job="self"} == 1
    labels: {severity: none}
    annotations: {summary: 'scraped {{ $labels.instance }}'}
`},
	})

	r := p.WaitQuery(t, `up{job="self"}`, time.Minute, func(r testenv.QueryResult) bool { return len(r.Samples) == 1 })
	if got := r.Samples[0]; got.Value != 1 || got.Metric["instance"] != addr || got.Metric["__name__"] != "up" {
		t.Fatalf("up = %s, want 1 for instance %s", r, addr)
	}
	p.WaitQuery(t, `testenv:up:sum`, time.Minute, func(r testenv.QueryResult) bool {
		return len(r.Samples) == 1 && r.Samples[0].Value == 1
	})
	if s := p.Query(t, `scalar(up{job="self"}) + 1`); s.Type != "scalar" || s.Scalar != 2 {
		t.Fatalf("scalar query = %s, want scalar 2", s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := p.QueryE(ctx, `sum(`); err == nil || !strings.Contains(err.Error(), "bad_data") {
		t.Fatalf("bad PromQL: err = %v, want a bad_data error", err)
	}

	// Rule evaluation reaches alerts: firing after its (zero) for.
	var firing bool
	for deadline := time.Now().Add(time.Minute); !firing; {
		for _, a := range p.Alerts(t) {
			if a.Labels["alertname"] == "SelfScraped" && a.State == "firing" {
				if a.Annotations["summary"] != "scraped "+addr {
					t.Fatalf("alert annotation summary = %q, want templated instance", a.Annotations["summary"])
				}
				firing = true
			}
		}
		if !firing && time.Now().After(deadline) {
			t.Fatalf("SelfScraped never fired: %+v", p.Alerts(t))
		}
		time.Sleep(250 * time.Millisecond)
	}

	// Reload picks up a changed rule file.
	err := os.WriteFile(filepath.Join(p.Dir, "rules.yml"), []byte(`groups:
- name: test
  rules:
  - record: testenv:reloaded
    expr: vector(42)
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	p.Reload(t)
	p.WaitQuery(t, `testenv:reloaded`, time.Minute, func(r testenv.QueryResult) bool {
		return len(r.Samples) == 1 && r.Samples[0].Value == 42
	})
}

// TestAlertmanager proves a real Alertmanager accepts alerts on its API,
// routes them to the test's webhook, holds back inhibited alerts, and
// notifies resolution.
func TestAlertmanager(t *testing.T) {
	hook := testenv.StartWebhook(t)
	am := testenv.StartAlertmanager(t, testenv.AlertmanagerOptions{Config: fmt.Sprintf(`route:
  receiver: hook
  group_by: [alertname]
  group_wait: 100ms
  group_interval: 1s
  repeat_interval: 1h
receivers:
- name: hook
  webhook_configs:
  - url: %q
    send_resolved: true
inhibit_rules:
- source_matchers: [alertname="Outage"]
  target_matchers: [alertname="Symptom"]
  equal: [registry]
`, hook.URL)})

	am.PostAlerts(t,
		testenv.PostableAlert{
			Labels:      map[string]string{"alertname": "Outage", "registry": "r1", "severity": "critical"},
			Annotations: map[string]string{"summary": "r1 is down"},
		},
		testenv.PostableAlert{Labels: map[string]string{"alertname": "Symptom", "registry": "r1"}},
	)
	got := hook.WaitForAlert(t, time.Minute, "firing", map[string]string{"alertname": "Outage", "registry": "r1"})
	if got.Annotations["summary"] != "r1 is down" || got.Labels["severity"] != "critical" {
		t.Fatalf("webhook alert = %+v, want the posted labels and annotations", got)
	}

	// The inhibited alert is held, not sent.
	var suppressed bool
	for _, a := range am.Alerts(t) {
		if a.Labels["alertname"] == "Symptom" {
			suppressed = a.Status.State == "suppressed" && len(a.Status.InhibitedBy) == 1
		}
	}
	if !suppressed {
		t.Fatalf("Symptom not inhibited by Outage: %+v", am.Alerts(t))
	}

	for _, a := range hook.Alerts() {
		if a.Labels["alertname"] == "Symptom" {
			t.Fatalf("inhibited Symptom reached the webhook: %+v", a)
		}
	}

	// Resolving the source notifies the resolution and lifts the
	// inhibition, so the symptom is sent at last.
	am.PostAlerts(t, testenv.PostableAlert{
		Labels: map[string]string{"alertname": "Outage", "registry": "r1", "severity": "critical"},
		EndsAt: time.Now().Add(-time.Second),
	})
	hook.WaitForAlert(t, time.Minute, "resolved", map[string]string{"alertname": "Outage"})
	hook.WaitForAlert(t, time.Minute, "firing", map[string]string{"alertname": "Symptom", "registry": "r1"})
}
