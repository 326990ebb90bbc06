package e2e_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/imagepull/imagepull_exporter/internal/testenv"
)

// mixinConfigTruth shortens the durations of the alerts TestAlertsAreTrue
// expects, keeping the mixin's order: a workload's alert waits longer than
// the registry's, so ImagePullRegistryUnreachable already fires (and
// inhibits it) when the workloads of a registry that went down would.
const mixinConfigTruth = `{
  registryUnreachableFor: '8s',
  registryUnreachableKeepFiringFor: '4s',
  registryAuthFailingFor: '8s',
  podsBlockedFor: '8s',
  targetFailingFor: '8s',
  workloadImageUnavailableFor: '14s',
}`

// TestAlertsAreTrue runs issue 11's scenarios through the whole path
// (registries → exporter with discovery from a real apiserver → Prometheus
// with the mixin → Alertmanager with its example configuration → webhook):
//
//  1. Healthy registries, and three things that used to page falsely or
//     not at all:
//     - a CronJob whose tag was deleted from the registry, and a
//     Deployment scaled to zero whose repository does not exist: one
//     ImagePullWorkloadImageUnavailable each (not_found), to the ticket
//     receiver, with namespace, kind, workload, container and image;
//     - an HTTPS registry probed by two modules, one with the registry's
//     CA and one with a wrong CA: ImagePullTargetFailing (tls) for the
//     wrong-CA target only; no ImagePullRegistryUnreachable, nothing to
//     the page receiver;
//     - a target of the private registry probed without credentials:
//     no_credentials, the registry up, no ImagePullRegistryAuthFailing.
//  2. The private registry stops: ImagePullRegistryUnreachable (warning:
//     no container waits) is notified; the workloads' alerts, now with
//     cause connect, are inhibited by it and never notified.
func TestAlertsAreTrue(t *testing.T) {
	testenv.SkipShort(t, "the whole stack (registries, apiserver, Prometheus, Alertmanager, the exporter binary)")
	const (
		nsBatch    = "batch"
		cronRepo   = "shop/report"
		cronTag    = "nightly"
		legacyRepo = "shop/legacy" // never pushed
	)
	tlsReg := testenv.StartRegistry(t, testenv.RegistryOptions{TLS: true})
	tlsReg.Push(t, "team/app", "v1")
	wrongCA := testenv.NewSelfSignedCert(t, "", time.Time{}, "127.0.0.1")

	s := startStackWith(t, stackOptions{
		mixinConfig: mixinConfigTruth,
		flags:       []string{"--kube.discover-targets"},
		cluster: func(t *testing.T, s *stack) {
			// The CronJob's tag existed and was deleted; nothing runs it
			// between its runs, so only its template names the image.
			nightly := s.reg.Push(t, cronRepo, cronTag)
			s.reg.DeleteManifest(t, cronRepo, nightly)
			for _, ns := range []string{nsBatch, nsShop} {
				s.kube.EnsureNamespace(t, ns)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			spec := func(container, image string) corev1.PodTemplateSpec {
				return corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": container}},
					Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyOnFailure,
						Containers: []corev1.Container{{Name: container, Image: image}}},
				}
			}
			cj := &batchv1.CronJob{
				ObjectMeta: metav1.ObjectMeta{Name: "nightly-report", Namespace: nsBatch},
				Spec: batchv1.CronJobSpec{Schedule: "0 3 * * *", JobTemplate: batchv1.JobTemplateSpec{
					Spec: batchv1.JobSpec{Template: spec("report", s.reg.Ref(cronRepo, cronTag))}}},
			}
			if _, err := s.kube.Client.BatchV1().CronJobs(nsBatch).Create(ctx, cj, metav1.CreateOptions{}); err != nil {
				t.Fatalf("create CronJob: %v", err)
			}
			zero := int32(0)
			tmpl := spec("app", s.reg.Ref(legacyRepo, "v3"))
			tmpl.Spec.RestartPolicy = corev1.RestartPolicyAlways
			dep := &appsv1.Deployment{
				ObjectMeta: metav1.ObjectMeta{Name: "legacy", Namespace: nsShop},
				Spec: appsv1.DeploymentSpec{Replicas: &zero, Template: tmpl,
					Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "app"}}},
			}
			if _, err := s.kube.Client.AppsV1().Deployments(nsShop).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
				t.Fatalf("create Deployment: %v", err)
			}
		},
		config: func(t *testing.T, s *stack) {
			cfg := fmt.Sprintf(`modules:
%[1]s
  anon:
    timeout: 1s
    interval: 2s
    plain_http: true
  tls-good:
    timeout: 1s
    interval: 2s
    tls: {ca_file: %[2]q}
  tls-wrong-ca:
    timeout: 1s
    interval: 2s
    tls: {ca_file: %[3]q}
targets:
  - {name: shop-api, image: %[4]q, module: shop}
  - {name: anon-api, image: %[4]q, module: anon}
  - {name: tls-ok, image: %[5]q, module: tls-good}
  - {name: tls-bad-ca, image: %[5]q, module: tls-wrong-ca}
discovery:
  modules:
    - {registry: %[6]q, module: shop}
`, shopModule(s.password), tlsReg.Cert.CertFile, wrongCA.CertFile, s.reg.Ref(repo, tag), tlsReg.Ref("team/app", "v1"), s.registry)
			if err := os.WriteFile(filepath.Join(s.configDir, "config.yml"), []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
		},
	})
	reg := s.registry
	sel := fmt.Sprintf(`job=%q`, exporterJob)
	workload := func(ns, kind, name, container, image, cause string) map[string]string {
		return map[string]string{"alertname": "ImagePullWorkloadImageUnavailable", "severity": "warning",
			"namespace": ns, "kind": kind, "workload": name, "container": container, "image": image,
			"cause": cause, "registry": reg}
	}
	cron := func(cause string) map[string]string {
		return workload(nsBatch, "CronJob", "nightly-report", "report", s.reg.Ref(cronRepo, cronTag), cause)
	}
	legacy := func(cause string) map[string]string {
		return workload(nsShop, "Deployment", "legacy", "app", s.reg.Ref(legacyRepo, "v3"), cause)
	}
	targetFailing := map[string]string{"alertname": "ImagePullTargetFailing", "severity": "warning",
		"registry": tlsReg.Addr, "target": "tls-bad-ca", "cause": "tls"}
	unreachable := map[string]string{"alertname": "ImagePullRegistryUnreachable", "severity": "warning",
		"registry": reg, "cause": "connect"}

	// 1. What is true while the registries serve.
	ph := s.beginPhase(t, "1. healthy registries, a wrong CA, no credentials, workloads with missing images")
	s.waitQuery(t, fmt.Sprintf(`max by (registry) (imagepull_registry_up{%s})`, sel),
		fmt.Sprintf(`{registry=%q} 1`, reg), fmt.Sprintf(`{registry=%q} 1`, tlsReg.Addr))
	s.waitQuery(t, fmt.Sprintf(`max by (target, reason) (imagepull_probe_failure_reason{%s, target=~"anon-api|tls-.*|shop-api"} == 1)`, sel),
		`{reason="no_credentials", target="anon-api"} 1`, `{reason="tls", target="tls-bad-ca"} 1`)
	s.waitQuery(t, fmt.Sprintf(`max by (namespace, kind, workload, container, cause) (imagepull_workload_image_unavailable{%s})`, sel),
		`{cause="not_found", container="report", kind="CronJob", namespace="batch", workload="nightly-report"} 1`,
		`{cause="not_found", container="app", kind="Deployment", namespace="shop", workload="legacy"} 1`)
	got := s.expectNotifications(t, ph, []expect{
		firing(receiverTicket, cron("not_found")),
		firing(receiverTicket, legacy("not_found")),
		firing(receiverTicket, targetFailing),
	})
	wantAnnotation(t, got, cron("not_found"), "summary",
		"CronJob batch/nightly-report uses an image that cannot be pulled (not_found).")
	wantAnnotation(t, got, targetFailing, "description", "Target tls-bad-ca has failed with tls", "the fault is in this target's path, not in the registry")
	// Workload alerts are grouped per namespace (their owners), the
	// registry's per registry.
	for _, m := range s.hook.Messages()[ph.from:] {
		for _, a := range m.Alerts {
			if a.Labels["alertname"] == "ImagePullWorkloadImageUnavailable" {
				if m.GroupLabels["namespace"] != a.Labels["namespace"] || m.GroupLabels["registry"] != "" {
					t.Errorf("workload alert grouped by %v, want by namespace", m.GroupLabels)
				}
			}
		}
	}
	// Nothing else fires or pends: no auth failure for the target without
	// credentials (failing longer than registryAuthFailingFor by now), no
	// outage for the registry with one bad module, nothing critical.
	for _, a := range s.promAlerts(t) {
		if !strings.HasPrefix(a, "firing ") || (!strings.Contains(a, `alertname="ImagePullWorkloadImageUnavailable"`) &&
			a != "firing "+labelString(targetFailing)) {
			t.Errorf("healthy phase: Prometheus alert %s", a)
		}
	}
	if t.Failed() {
		return
	}

	// 2. The private registry goes down: its outage is notified once; the
	// workloads' alerts, whose cause is now the outage's, are inhibited.
	ph = s.beginPhase(t, "2. the registry the workloads use stops")
	s.reg.Stop()
	s.waitQuery(t, fmt.Sprintf(`max by (reason) (imagepull_registry_failure_reason{%s, registry=%q} == 1)`, sel, reg), `{reason="connect"} 1`)
	s.waitQuery(t, fmt.Sprintf(`max by (workload, cause) (imagepull_workload_image_unavailable{%s})`, sel),
		`{cause="connect", workload="legacy"} 1`, `{cause="connect", workload="nightly-report"} 1`)
	s.expectNotifications(t, ph, []expect{
		firing(receiverTicket, unreachable),
		resolved(receiverTicket, cron("not_found")),
		resolved(receiverTicket, legacy("not_found")),
	})
	for _, l := range []map[string]string{cron("connect"), legacy("connect")} {
		s.waitAlertmanager(t, "the workload alert "+labelString(l)+", inhibited", func(as []testenv.AMAlert) bool {
			for _, a := range as {
				if sameLabels(a.Labels, l) {
					return a.Status.State == "suppressed" && len(a.Status.InhibitedBy) > 0
				}
			}
			return false
		})
	}
	// Give the suppressed alerts a group interval: still nothing notified.
	time.Sleep(2 * notifyWait)
	for _, n := range flatten(s.hook.Messages()[ph.from:]) {
		if n.Labels["alertname"] == "ImagePullWorkloadImageUnavailable" && n.Status == "firing" {
			t.Errorf("outage: %s notified although the outage inhibits it", labelString(n.Labels))
		}
		if n.receiver == receiverPage {
			t.Errorf("outage: %s paged; nothing waits on the registry", labelString(n.Labels))
		}
	}
	t.Logf("done in %s", time.Since(s.started).Round(time.Second))
}
