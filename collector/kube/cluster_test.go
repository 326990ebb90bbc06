package kube

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	dto "github.com/prometheus/client_model/go"

	"github.com/imagepull/imagepull_exporter/collector"
	"github.com/imagepull/imagepull_exporter/internal/testenv"
)

// TestCluster runs the join against a real kube-apiserver + etcd and real
// distribution registries; the test plays the kubelet. One apiserver serves
// every subtest, each in its own namespace, watched alone
// (--kube.namespaces), so the subtests cannot see each other's pods.
func TestCluster(t *testing.T) {
	k := testenv.StartKube(t, testenv.KubeOptions{})
	kl := kubelet{t: t, client: k.Client}

	t.Run("waiting counts per namespace, registry and reason", func(t *testing.T) {
		ns1, ns2 := "waiting-a", "waiting-b"
		k.EnsureNamespace(t, ns1)
		k.EnsureNamespace(t, ns2)
		e := startExporter(t, exporterOptions{rest: k.Config, namespaces: []string{ns1, ns2}, config: configYAML("")})
		kl := kubelet{t: t, client: k.Client}
		kl.pod(podSpec{ns: ns1, name: "a1", node: "n1", ctrs: []ctr{
			{image: "ghcr.io/acme/api:v1", init: true, waiting: "ErrImagePull"},
			{image: "ghcr.io/acme/api:v1", waiting: "PodInitializing"}}})
		kl.pod(podSpec{ns: ns1, name: "a2", node: "n1", ctrs: []ctr{{image: "ghcr.io/acme/web:v1", waiting: "ImagePullBackOff"}}})
		kl.pod(podSpec{ns: ns1, name: "a3", node: "n1", ctrs: []ctr{{image: "ghcr.io/acme/web:v1", waiting: "ImagePullBackOff"}}})
		kl.pod(podSpec{ns: ns2, name: "b1", node: "n1", ctrs: []ctr{{image: "nginx:1.27", waiting: "ErrImageNeverPull", policy: "Never"}}})
		kl.pod(podSpec{ns: ns2, name: "b2", node: "n1", ctrs: []ctr{{image: "quay.io/x/y:1", waiting: "SignatureValidationFailed"}}})
		kl.pod(podSpec{ns: ns2, name: "b3", node: "n1", ctrs: []ctr{{image: "registry.k8s.io/pause:3.10", waiting: "ImageInspectError"}}})
		kl.pod(podSpec{ns: ns2, name: "b4", node: "n1", ctrs: []ctr{{image: "registry.k8s.io/pause:3.10", waiting: "RegistryUnavailable"}}})
		// The apiserver validates image names only loosely; the kubelet's
		// stricter parser says InvalidImageName.
		kl.pod(podSpec{ns: ns2, name: "b5", node: "n1", ctrs: []ctr{{image: "Ghcr.io/ACME/Api:v1", waiting: "InvalidImageName"}}})
		kl.pod(podSpec{ns: ns2, name: "b6", node: "n1", ctrs: []ctr{{image: "nginx:1.27", waiting: "CrashLoopBackOff"}}})
		waitMetrics(t, e.reg, `
# HELP imagepull_pod_containers_waiting Containers (init and regular) waiting with an image pull reason, per namespace, registry and reason; a series exists only while its count is above zero. InvalidImageName counts under registry="invalid".
# TYPE imagepull_pod_containers_waiting gauge
imagepull_pod_containers_waiting{namespace="waiting-a",reason="ErrImagePull",registry="ghcr.io"} 1
imagepull_pod_containers_waiting{namespace="waiting-a",reason="ImagePullBackOff",registry="ghcr.io"} 2
imagepull_pod_containers_waiting{namespace="waiting-b",reason="ErrImageNeverPull",registry="docker.io"} 1
imagepull_pod_containers_waiting{namespace="waiting-b",reason="ImageInspectError",registry="registry.k8s.io"} 1
imagepull_pod_containers_waiting{namespace="waiting-b",reason="InvalidImageName",registry="invalid"} 1
imagepull_pod_containers_waiting{namespace="waiting-b",reason="RegistryUnavailable",registry="registry.k8s.io"} 1
imagepull_pod_containers_waiting{namespace="waiting-b",reason="SignatureValidationFailed",registry="quay.io"} 1
`, "imagepull_pod_containers_waiting")

		// The kubelet pulls: the series goes when its count reaches zero.
		kl.setStatus(ns1, "a2", ctr{image: "ghcr.io/acme/web:v1", running: true})
		kl.setStatus(ns1, "a3", ctr{image: "ghcr.io/acme/web:v1", running: true})
		del(t, k.Client, ns2, "b2", "b3", "b4", "b5")
		waitMetrics(t, e.reg, `
# HELP imagepull_pod_containers_waiting Containers (init and regular) waiting with an image pull reason, per namespace, registry and reason; a series exists only while its count is above zero. InvalidImageName counts under registry="invalid".
# TYPE imagepull_pod_containers_waiting gauge
imagepull_pod_containers_waiting{namespace="waiting-a",reason="ErrImagePull",registry="ghcr.io"} 1
imagepull_pod_containers_waiting{namespace="waiting-b",reason="ErrImageNeverPull",registry="docker.io"} 1
`, "imagepull_pod_containers_waiting")
		waitMetrics(t, e.reg, `
# HELP imagepull_kube_watch_up 1 when the watch of the resource has synced and its latest list or watch request to the apiserver succeeded; 0 while the apiserver is unreachable (the last known state keeps being used).
# TYPE imagepull_kube_watch_up gauge
imagepull_kube_watch_up{resource="nodes"} 1
imagepull_kube_watch_up{resource="pods"} 1
`, "imagepull_kube_watch_up")
	})

	// Issue 9: image references come from whoever may create pods, so
	// the registry label of the join's series is capped
	// (--kube.max-registries); the registries with the most containers
	// keep their label, the others count under registry="other".
	t.Run("registries past the cap fold into other", func(t *testing.T) {
		const ns = "fold"
		k.EnsureNamespace(t, ns)
		e := startExporter(t, exporterOptions{rest: k.Config, namespaces: []string{ns}, config: configYAML(""), maxRegistries: 2})
		for i, img := range []string{"a.example/x:1", "a.example/y:1", "a.example/z:1", "b.example/x:1", "b.example/y:1", "c.example/x:1", "d.example/x:1"} {
			kl.pod(podSpec{ns: ns, name: fmt.Sprintf("w%d", i), node: "n1", ctrs: []ctr{{image: img, waiting: "ImagePullBackOff"}}})
		}
		kl.pod(podSpec{ns: ns, name: "r0", node: "n1", ctrs: []ctr{{image: "e.example/x:1", running: true, imageID: "e.example/x@" + digestA}}})
		waitMetrics(t, e.reg, `
# HELP imagepull_kube_registries_folded Distinct registries beyond --kube.max-registries in the latest join, whose containers the registry-labelled Kubernetes series count under registry="other" (and whose per-tag series are left out).
# TYPE imagepull_kube_registries_folded gauge
imagepull_kube_registries_folded 3
# HELP imagepull_pod_containers_waiting Containers (init and regular) waiting with an image pull reason, per namespace, registry and reason; a series exists only while its count is above zero. InvalidImageName counts under registry="invalid".
# TYPE imagepull_pod_containers_waiting gauge
imagepull_pod_containers_waiting{namespace="fold",reason="ImagePullBackOff",registry="a.example"} 3
imagepull_pod_containers_waiting{namespace="fold",reason="ImagePullBackOff",registry="b.example"} 2
imagepull_pod_containers_waiting{namespace="fold",reason="ImagePullBackOff",registry="other"} 2
# HELP imagepull_registry_blocked_containers Containers waiting with an image pull reason, per registry and cause, counted per container: the registry's probe failure reason when it is registry-level, else the pull error the container's node reported (classified), else the registry's probe cause: registry_ok (the registry probes healthy and the node said nothing classifiable: the problem is per image or per credential), a per-image reason, or unprobed (no target covers the registry).
# TYPE imagepull_registry_blocked_containers gauge
imagepull_registry_blocked_containers{cause="unprobed",registry="a.example"} 3
imagepull_registry_blocked_containers{cause="unprobed",registry="b.example"} 2
imagepull_registry_blocked_containers{cause="unprobed",registry="other"} 2
`, "imagepull_kube_registries_folded", "imagepull_pod_containers_waiting", "imagepull_registry_blocked_containers")
		series := testenv.Series(testenv.Samples(gatherAll(t, e)), "imagepull_pod_containers_mutable_ref")
		if len(series) != 1 || !strings.Contains(series[0], `registry="other"`) {
			t.Errorf("mutable refs of e.example (folded) = %v, want one series under registry=\"other\"", series)
		}
	})

	t.Run("the join's three causes", func(t *testing.T) {
		const ns = "causes"
		k.EnsureNamespace(t, ns)
		down := testenv.StartRegistry(t, testenv.RegistryOptions{})
		locked := testenv.StartRegistry(t, testenv.RegistryOptions{Auth: testenv.RegistryAuthBasic})
		healthy := testenv.StartRegistry(t, testenv.RegistryOptions{})
		down.Push(t, "app", "v1")
		locked.Push(t, "app", "v1")
		healthy.Push(t, "app", "v1")
		down.Stop()
		cfg := configYAML(`
  wrong-password:
    timeout: 2s
    interval: 2s
    plain_http: true
    auth: {username: admin, password: not-the-password}
`, down.Ref("app", "v1"), healthy.Ref("app", "v1")) +
			fmt.Sprintf("  - {image: %q, module: wrong-password}\n", locked.Ref("app", "v1"))
		e := startExporter(t, exporterOptions{rest: k.Config, namespaces: []string{ns}, config: cfg})
		kl.pod(podSpec{ns: ns, name: "p1", node: "n1", ctrs: []ctr{{image: down.Ref("app", "v1"), waiting: "ImagePullBackOff"}}})
		kl.pod(podSpec{ns: ns, name: "p2", node: "n1", ctrs: []ctr{{image: down.Ref("app", "v2"), waiting: "ErrImagePull"}}})
		kl.pod(podSpec{ns: ns, name: "p3", node: "n1", ctrs: []ctr{{image: locked.Ref("app", "v1"), waiting: "ErrImagePull"}}})
		kl.pod(podSpec{ns: ns, name: "p4", node: "n1", ctrs: []ctr{{image: healthy.Ref("app", "v2-missing"), waiting: "ImagePullBackOff"}}})
		kl.pod(podSpec{ns: ns, name: "p5", node: "n1", ctrs: []ctr{{image: "unprobed.example.com/app:v1", waiting: "ErrImagePull"}}})
		waitMetrics(t, e.reg, fmt.Sprintf(`
# HELP imagepull_registry_blocked_containers Containers waiting with an image pull reason, per registry and cause, counted per container: the registry's probe failure reason when it is registry-level, else the pull error the container's node reported (classified), else the registry's probe cause: registry_ok (the registry probes healthy and the node said nothing classifiable: the problem is per image or per credential), a per-image reason, or unprobed (no target covers the registry).
# TYPE imagepull_registry_blocked_containers gauge
imagepull_registry_blocked_containers{cause="connect",registry=%q} 2
imagepull_registry_blocked_containers{cause="registry_ok",registry=%q} 1
imagepull_registry_blocked_containers{cause="unauthorized",registry=%q} 1
imagepull_registry_blocked_containers{cause="unprobed",registry="unprobed.example.com"} 1
`, down.Addr, healthy.Addr, locked.Addr), "imagepull_registry_blocked_containers")
		if strings.Contains(logsOf(t), "not-the-password") {
			t.Error("a log line holds the module's password")
		}
	})

	t.Run("tag drift and digests per tag", func(t *testing.T) {
		const ns = "drift"
		k.EnsureNamespace(t, ns)
		r := testenv.StartRegistry(t, testenv.RegistryOptions{})
		old := r.Push(t, "app", "dev")
		cur := r.Push(t, "app", "dev") // the rolling tag moved on
		ref := r.Ref("app", "dev")
		e := startExporter(t, exporterOptions{rest: k.Config, namespaces: []string{ns}, config: configYAML("", ref)})
		kl.pod(podSpec{ns: ns, name: "on-n1", node: "n1", ctrs: []ctr{{image: ref, policy: "IfNotPresent", running: true, imageID: r.Addr + "/app@" + old}}})
		kl.pod(podSpec{ns: ns, name: "on-n2", node: "n2", ctrs: []ctr{{image: ref, policy: "IfNotPresent", running: true, imageID: r.Addr + "/app@" + cur}}})
		want := func(digests string, drift int) string {
			return fmt.Sprintf(`
# HELP imagepull_tag_registry_drift 1 when a container running this tag runs a digest other than the one the registry serves for it now (a reschedule would start a different image), 0 when all match; only for tags that run and whose latest probe succeeded.
# TYPE imagepull_tag_registry_drift gauge
imagepull_tag_registry_drift{registry=%[1]q,repository="app",tag="dev"} %[2]d
`, r.Addr, drift) + digests
		}
		waitMetrics(t, e.reg, want(fmt.Sprintf(`
# HELP imagepull_tag_digests Number of different digests (from containerStatuses[].imageID) running under one tag across the cluster; a series only while it is 2 or more.
# TYPE imagepull_tag_digests gauge
imagepull_tag_digests{registry=%q,repository="app",tag="dev"} 2
`, r.Addr), 1), "imagepull_tag_digests", "imagepull_tag_registry_drift")
		// The old pod is replaced by one on the current digest.
		kl.setStatus(ns, "on-n1", ctr{image: ref, policy: "IfNotPresent", running: true, imageID: r.Addr + "/app@" + cur})
		waitMetrics(t, e.reg, want("", 0), "imagepull_tag_digests", "imagepull_tag_registry_drift")
		waitMetrics(t, e.reg, fmt.Sprintf(`
# HELP imagepull_pod_containers_mutable_ref Running containers whose image is not pinned by digest, per namespace, registry, pull policy and kind (latest, tag, no_tag).
# TYPE imagepull_pod_containers_mutable_ref gauge
imagepull_pod_containers_mutable_ref{kind="tag",namespace="drift",pull_policy="IfNotPresent",registry=%q} 2
`, r.Addr), "imagepull_pod_containers_mutable_ref")
	})

	t.Run("reschedule risk", func(t *testing.T) {
		const ns = "risk"
		k.EnsureNamespace(t, ns)
		r := testenv.StartRegistry(t, testenv.RegistryOptions{})
		gone := testenv.StartRegistry(t, testenv.RegistryOptions{})
		r.Push(t, "app", "v1")
		gone.Push(t, "app", "v1")
		ref := r.Ref("app", "v1")
		e := startExporter(t, exporterOptions{rest: k.Config, namespaces: []string{ns},
			config: configYAML("", ref, gone.Ref("app", "v1"), gone.Ref("app", "deleted"))})
		kl.node("risk-n1")
		kl.node("risk-n2", ref)
		kl.node("risk-n3", "docker.io/library/unrelated:1")
		kl.pod(podSpec{ns: ns, name: "held-elsewhere", node: "risk-n1", ctrs: []ctr{{image: ref, policy: "IfNotPresent", running: true}}})
		kl.pod(podSpec{ns: ns, name: "held-here-only", node: "risk-n2", ctrs: []ctr{{image: ref, policy: "IfNotPresent", running: true}}})
		kl.pod(podSpec{ns: ns, name: "always-pulls", node: "risk-n1", ctrs: []ctr{{image: ref, policy: "Always", running: true}}})
		kl.pod(podSpec{ns: ns, name: "tag-deleted", node: "risk-n1", ctrs: []ctr{{image: gone.Ref("app", "deleted"), policy: "IfNotPresent", running: true}}})
		kl.pod(podSpec{ns: ns, name: "tag-fine", node: "risk-n1", ctrs: []ctr{{image: gone.Ref("app", "v1"), policy: "IfNotPresent", running: true}}})
		// Healthy registries: the only risk is the tag the registry lost.
		waitMetrics(t, e.reg, fmt.Sprintf(`
# HELP imagepull_reschedule_risk_containers Running containers whose image the registry cannot serve now (its probe fails, or the image's own probe fails, e.g. not_found), leaving out images another node already holds per node.status.images (which the kubelet caps at --node-status-max-images, default 50) unless the pull policy is Always.
# TYPE imagepull_reschedule_risk_containers gauge
imagepull_reschedule_risk_containers{cause="not_found",namespace="risk",registry=%q} 1
`, gone.Addr), "imagepull_reschedule_risk_containers")
		r.Stop()
		waitMetrics(t, e.reg, fmt.Sprintf(`
# HELP imagepull_reschedule_risk_containers Running containers whose image the registry cannot serve now (its probe fails, or the image's own probe fails, e.g. not_found), leaving out images another node already holds per node.status.images (which the kubelet caps at --node-status-max-images, default 50) unless the pull policy is Always.
# TYPE imagepull_reschedule_risk_containers gauge
imagepull_reschedule_risk_containers{cause="connect",namespace="risk",registry=%q} 2
imagepull_reschedule_risk_containers{cause="not_found",namespace="risk",registry=%q} 1
`, r.Addr, gone.Addr), "imagepull_reschedule_risk_containers")
	})

	t.Run("node-reported causes", func(t *testing.T) { testNodeCauses(t, k) })
	t.Run("pull secrets", func(t *testing.T) { testPullSecrets(t, k) })
	t.Run("workload images", func(t *testing.T) { testWorkloadImages(t, k) })
	t.Run("workload images with pull secrets", func(t *testing.T) { testWorkloadImagesPullSecrets(t, k) })
	t.Run("diagnose", func(t *testing.T) { testDiagnose(t, k) })
	t.Run("auth check accounting", func(t *testing.T) { testAuthCheckAccounting(t, k) })
	t.Run("rbac", func(t *testing.T) { testRBAC(t, k) })

	t.Run("discovery from a deployment scaled to zero", func(t *testing.T) {
		const ns = "discovery"
		k.EnsureNamespace(t, ns)
		r := testenv.StartRegistry(t, testenv.RegistryOptions{})
		digest := r.Push(t, "app", "v1")
		cfg := configYAML("") + fmt.Sprintf(`discovery:
  modules:
    - {registry: %q, module: local}
  exclude: [excluded.example.com]
`, r.Addr)
		e := startExporter(t, exporterOptions{rest: k.Config, namespaces: []string{ns}, config: cfg, discover: true,
			forward: func(d collector.DiscoveredTarget) bool { return d.Ref.Registry == r.Addr }})
		zero := int32(0)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := k.Client.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "idle"},
			Spec: appsv1.DeploymentSpec{
				Replicas: &zero,
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "idle"}},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "idle"}},
					Spec: corev1.PodSpec{
						InitContainers: []corev1.Container{{Name: "init", Image: "excluded.example.com/init:v1"}},
						Containers:     []corev1.Container{{Name: "app", Image: r.Ref("app", "v1")}},
					},
				},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		kl.pod(podSpec{ns: ns, name: "one", node: "n1", ctrs: []ctr{{image: "quay.io/prometheus/busybox", running: true}}})
		waitFor(t, "two discovered targets", func() bool {
			ts := e.targets()
			return len(ts) == 2 && ts[0].Name == "quay.io/prometheus/busybox:latest" && ts[1].Name == r.Ref("app", "v1")
		})
		if got := e.targets()[1]; got.Module != "local" || got.Keychain != nil {
			t.Errorf("discovered %+v: want module local (discovery.modules) and no keychain", got)
		}
		// The scheduler probes it: the deployment's image is served.
		waitFor(t, "the discovered target probed", func() bool {
			d, reason, ok := e.sched.TagResult(r.Addr, "app", "v1")
			return ok && reason == "" && d == digest
		})
	})
}

func del(t *testing.T, c kubernetes.Interface, ns string, names ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	zero := int64(0)
	for _, n := range names {
		if err := c.CoreV1().Pods(ns).Delete(ctx, n, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
			t.Fatalf("delete pod %s/%s: %v", ns, n, err)
		}
	}
}

func gatherAll(t *testing.T, e *exporter) []*dto.MetricFamily {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}
