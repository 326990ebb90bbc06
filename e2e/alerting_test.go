package e2e_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/imagepull/imagepull_exporter/internal/testenv"
)

// TestAlerting runs the path from a registry problem to a notification:
// registry → exporter (probes, and the join with the pods a real apiserver
// holds) → Prometheus (the mixin's rules, `for:` shortened) → Alertmanager
// (the mixin's example configuration) → the test's webhook.
//
//  1. Healthy baseline: the registry probes healthy, and three containers
//     wait on it for reasons of their own (a tag that was never pushed, a
//     missing pull secret). Exactly one alert is notified: the warning
//     ImagePullPodsBlocked with cause registry_ok, to the ticket receiver.
//  2. The registry stops: exactly one ImagePullRegistryUnreachable (the
//     critical one, cause connect) and the critical ImagePullPodsBlocked
//     (cause connect) page; the registry_ok alert resolves; the warning
//     Unreachable fires in Prometheus but Alertmanager inhibits it. The
//     registry starts again: both resolve, registry_ok fires again.
//  3. The exporter's password is rotated to a wrong one (config reload):
//     ImagePullRegistryAuthFailing and ImagePullPodsBlocked with cause
//     unauthorized are notified instead of Unreachable. With the right
//     password back, both resolve.
//  4. Every dashboard panel's query runs against Prometheus in the baseline
//     and during the outage (dashboards_test.go): it parses, executes, and
//     has data unless the setup has nothing to show for it (listed, with
//     the reason).
func TestAlerting(t *testing.T) {
	s := startStack(t)
	reg := s.registry

	podsBlocked := func(cause, severity string) map[string]string {
		return map[string]string{"alertname": "ImagePullPodsBlocked", "registry": reg, "cause": cause, "severity": severity}
	}
	unreachable := func(severity string) map[string]string {
		return map[string]string{"alertname": "ImagePullRegistryUnreachable", "registry": reg, "cause": "connect", "severity": severity}
	}
	authFailing := map[string]string{"alertname": "ImagePullRegistryAuthFailing", "registry": reg, "cause": "unauthorized", "severity": "warning"}
	sel := fmt.Sprintf(`job=%q, registry=%q`, exporterJob, reg)
	runbook := "https://github.com/imagepull/imagepull_exporter/blob/main/mixin/runbook.md#"

	// 1. Healthy baseline.
	ph := s.beginPhase(t, "1. healthy baseline")
	s.waitQuery(t, fmt.Sprintf(`max by (target) (imagepull_probe_success{%s})`, sel), `{target="shop-api"} 1`)
	s.waitQuery(t, fmt.Sprintf(`sum by (namespace, reason) (imagepull_pod_containers_waiting{%s})`, sel),
		`{namespace="payments", reason="ImagePullBackOff"} 2`, `{namespace="shop", reason="ImagePullBackOff"} 1`)
	// api-canary's node says its tag is not found (the 1.32+ back-off
	// message); the other two say nothing classifiable, and the registry
	// probes healthy.
	s.waitQuery(t, fmt.Sprintf(`sum by (cause) (imagepull_registry_blocked_containers{%s})`, sel), `{cause="not_found"} 1`, `{cause="registry_ok"} 2`)
	s.waitQuery(t, fmt.Sprintf(`max by (node, cause) (imagepull_node_pull_errors{%s})`, sel), `{cause="not_found", node="node-b"} 1`)
	s.waitQuery(t, fmt.Sprintf(`sum by (namespace, pull_policy, kind) (imagepull_pod_containers_mutable_ref{%s})`, sel),
		`{kind="tag", namespace="shop", pull_policy="IfNotPresent"} 2`)
	s.waitQuery(t, fmt.Sprintf(`max by (repository, tag) (imagepull_tag_digests{%s})`, sel), `{repository="shop/api", tag="v1"} 2`)
	s.waitQuery(t, fmt.Sprintf(`max by (repository, tag) (imagepull_tag_registry_drift{%s})`, sel), `{repository="shop/api", tag="v1"} 1`)
	if r := s.prom.Query(t, fmt.Sprintf(`imagepull_reschedule_risk_containers{%s}`, sel)); len(r.Samples) != 0 {
		t.Errorf("reschedule risk while the registry serves the running tag: %s", r)
	}

	got := s.expectNotifications(t, ph, []expect{
		firing(receiverTicket, podsBlocked("registry_ok", "warning")),
		firing(receiverTicket, podsBlocked("not_found", "warning")),
	})
	l := podsBlocked("registry_ok", "warning")
	wantAnnotation(t, got, l, "summary", fmt.Sprintf("Containers cannot start: images from %s fail to pull (registry_ok).", reg))
	wantAnnotation(t, got, l, "description",
		"2 container(s) have waited on them for 8s.",
		"Waiting by namespace: payments (2), shop (1).",
		"The registry answers the exporter, so it is the image or the credentials")
	wantAnnotation(t, got, l, "runbook_url", runbook+"imagepullpodsblocked")
	// The node-reported cause names the node that reported it.
	wantAnnotation(t, got, podsBlocked("not_found", "warning"), "description",
		"1 container(s) have waited on them for 8s.",
		"Nodes reporting it: node-b (1).",
		"The registry does not have the image")
	// Nothing else fires; the drift of api-1 waits out its hour-long for:.
	for _, a := range s.promAlerts(t) {
		switch {
		case a == "firing "+labelString(podsBlocked("registry_ok", "warning")),
			a == "firing "+labelString(podsBlocked("not_found", "warning")):
		case strings.HasPrefix(a, `pending {alertname="ImagePullTagDrift"`):
		default:
			t.Errorf("baseline: Prometheus alert %s", a)
		}
	}
	// 4. Every dashboard query, in the first of two states.
	s.checkDashboards(t, "healthy", emptyWhileHealthy)
	if t.Failed() {
		return
	}

	// 2. Registry outage.
	ph = s.beginPhase(t, "2. registry stopped")
	s.reg.Stop()
	s.waitQuery(t, fmt.Sprintf(`max by (reason) (imagepull_probe_failure_reason{%s} == 1)`, sel), `{reason="connect"} 1`)
	s.waitQuery(t, fmt.Sprintf(`sum by (cause) (imagepull_registry_blocked_containers{%s})`, sel), `{cause="connect"} 3`)
	s.waitQuery(t, fmt.Sprintf(`sum by (namespace, cause) (imagepull_reschedule_risk_containers{%s})`, sel), `{cause="connect", namespace="shop"} 2`)
	got = s.expectNotifications(t, ph, []expect{
		firing(receiverPage, unreachable("critical")),
		firing(receiverPage, podsBlocked("connect", "critical")),
		resolved(receiverTicket, podsBlocked("registry_ok", "warning")),
		resolved(receiverTicket, podsBlocked("not_found", "warning")), // a registry-level cause wins over the node's
	})
	wantAnnotation(t, got, unreachable("critical"), "summary", fmt.Sprintf("Registry %s is unreachable (connect) and containers wait on it.", reg))
	wantAnnotation(t, got, unreachable("critical"), "description",
		fmt.Sprintf("No probe of %s has got an answer for 8s: TCP connections to it fail", reg),
		"3 container(s) wait on its images.")
	wantAnnotation(t, got, unreachable("critical"), "runbook_url", runbook+"imagepullregistryunreachable")
	wantAnnotation(t, got, podsBlocked("connect", "critical"), "description",
		"3 container(s) have waited on them for 8s.",
		"Waiting by namespace: payments (2), shop (1).",
		"The registry itself fails (see ImagePullRegistryUnreachable)")
	// The warning Unreachable fires too, and is inhibited, not absent.
	s.waitAlertmanager(t, "the warning ImagePullRegistryUnreachable, inhibited", func(as []testenv.AMAlert) bool {
		for _, a := range as {
			if sameLabels(a.Labels, unreachable("warning")) {
				return a.Status.State == "suppressed" && len(a.Status.InhibitedBy) > 0
			}
		}
		return false
	})
	for _, want := range []string{
		"firing " + labelString(unreachable("warning")),
		"pending " + labelString(map[string]string{"alertname": "ImagePullRescheduleRisk", "registry": reg, "cause": "connect", "severity": "warning"}),
	} {
		if !contains(s.promAlerts(t), want) {
			t.Errorf("outage: Prometheus does not hold %s; it holds %q", want, s.promAlerts(t))
		}
	}
	// 4. Every dashboard query, in the second of two states.
	s.checkDashboards(t, "outage", emptyDuringOutage)
	if t.Failed() {
		return
	}

	ph = s.beginPhase(t, "2. registry started again")
	s.reg.Start()
	s.pushImage() // in-memory storage: the restarted registry is empty
	s.waitQuery(t, fmt.Sprintf(`max by (target) (imagepull_probe_success{%s})`, sel), `{target="shop-api"} 1`)
	s.expectNotifications(t, ph, []expect{
		resolved(receiverPage, unreachable("critical")),
		resolved(receiverPage, podsBlocked("connect", "critical")),
		firing(receiverTicket, podsBlocked("registry_ok", "warning")),
		firing(receiverTicket, podsBlocked("not_found", "warning")),
	})
	if t.Failed() {
		return
	}

	// 3. Rotated password.
	ph = s.beginPhase(t, "3. wrong password")
	wrong := "rotated-" + randomHex(t)
	s.writeExporterConfig(t, wrong)
	s.reloadExporter(t)
	s.waitQuery(t, fmt.Sprintf(`max by (reason) (imagepull_probe_failure_reason{%s} == 1)`, sel), `{reason="unauthorized"} 1`)
	s.waitQuery(t, fmt.Sprintf(`sum by (cause) (imagepull_registry_blocked_containers{%s})`, sel), `{cause="unauthorized"} 3`)
	got = s.expectNotifications(t, ph, []expect{
		firing(receiverTicket, authFailing),
		firing(receiverTicket, podsBlocked("unauthorized", "warning")),
		resolved(receiverTicket, podsBlocked("registry_ok", "warning")),
		resolved(receiverTicket, podsBlocked("not_found", "warning")),
	})
	wantAnnotation(t, got, authFailing, "summary", fmt.Sprintf("Registry %s rejects the exporter's credentials (unauthorized).", reg))
	wantAnnotation(t, got, authFailing, "description",
		fmt.Sprintf("%s rejects the credentials the exporter was given.", reg),
		"Targets: shop-api.")
	wantAnnotation(t, got, podsBlocked("unauthorized", "warning"), "description",
		"3 container(s) have waited on them for 8s.", "The registry rejects the pull credentials")
	if t.Failed() {
		return
	}

	ph = s.beginPhase(t, "3. right password back")
	s.writeExporterConfig(t, s.password)
	s.reloadExporter(t)
	s.waitQuery(t, fmt.Sprintf(`max by (target) (imagepull_probe_success{%s})`, sel), `{target="shop-api"} 1`)
	s.expectNotifications(t, ph, []expect{
		resolved(receiverTicket, authFailing),
		resolved(receiverTicket, podsBlocked("unauthorized", "warning")),
	}, podsBlocked("registry_ok", "warning"), podsBlocked("not_found", "warning")) // fire again 8s later; not waited for

	// Across the whole run: never the warning Unreachable, and no
	// credential in any notification.
	msgs := s.hook.Messages()
	for _, n := range flatten(msgs) {
		if sameLabels(n.Labels, unreachable("warning")) {
			t.Errorf("the warning ImagePullRegistryUnreachable reached %s (%s): the critical one should inhibit it", n.receiver, n.Status)
		}
	}
	b, _ := json.Marshal(msgs)
	for _, secret := range []string{s.password, wrong} {
		if strings.Contains(string(b), secret) {
			t.Errorf("a notification carries a password")
		}
	}
	t.Logf("done in %s", time.Since(s.started).Round(time.Second))
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
