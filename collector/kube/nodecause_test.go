package kube

import (
	"fmt"
	"testing"

	"github.com/imagepull/imagepull_exporter/internal/testenv"
)

// Pull errors as the kubelet writes them (containerd's texts; the
// classifier's own table covers the runtimes' formats).
const (
	errNotFound = `rpc error: code = NotFound desc = failed to pull and unpack image "%[1]s": failed to resolve reference "%[1]s": %[1]s: not found`
	err429      = `rpc error: code = Unknown desc = failed to pull and unpack image "%[1]s": failed to copy: httpReadSeeker: failed open: unexpected status from HEAD request to https://registry-1.docker.io/v2/library/x/manifests/v1: 429 Too Many Requests`
	errDNS      = `rpc error: code = Unknown desc = failed to pull and unpack image "%[1]s": failed to resolve reference "%[1]s": failed to do request: Head "https://r.example/v2/x/manifests/v1": dial tcp: lookup r.example on 10.96.0.10:53: no such host`
	errOdd      = `rpc error: code = Unknown desc = failed to pull and unpack image "%[1]s": the runtime said something new`
)

func pullErr(format, image string) string { return fmt.Sprintf(format, image) }

// ErrImagePull's message, and ImagePullBackOff's since Kubernetes 1.32.
func backOff132(image, err string) string {
	return fmt.Sprintf("Back-off pulling image %q: ErrImagePull: %s", image, err)
}

// The bare back-off message of kubelets before 1.32.
func backOffBare(image string) string { return fmt.Sprintf("Back-off pulling image %q", image) }

// testNodeCauses: the test plays the kubelet with the waiting messages of
// every format and with the Failed events of older kubelets, and checks the
// node-reported series, the join's precedence and the failures counter.
func testNodeCauses(t *testing.T, k *testenv.Kube) {
	const ns = "nodecause"
	k.EnsureNamespace(t, ns)
	kl := kubelet{t: t, client: k.Client}
	healthy := testenv.StartRegistry(t, testenv.RegistryOptions{})
	down := testenv.StartRegistry(t, testenv.RegistryOptions{})
	healthy.Push(t, "app", "v1")
	down.Push(t, "app", "v1")
	down.Stop()
	e := startExporter(t, exporterOptions{rest: k.Config, namespaces: []string{ns}, events: true,
		config: configYAML("", healthy.Ref("app", "v1"), down.Ref("app", "v1"))})

	h1, h2, h3, h4, h5 := healthy.Ref("app", "v2"), healthy.Ref("app", "v3"), healthy.Ref("app", "v4"), healthy.Ref("app", "v5"), healthy.Ref("app", "v6")
	d1 := down.Ref("app", "v2")
	const unprobed = "unprobed.example.com/app:v1"
	// ErrImagePull, the runtime's error in the message.
	kl.pod(podSpec{ns: ns, name: "missing-tag", node: "n1", ctrs: []ctr{{image: h1, waiting: "ErrImagePull", message: pullErr(errNotFound, h1)}}})
	// ImagePullBackOff, 1.32's form.
	kl.pod(podSpec{ns: ns, name: "limited", node: "n2", ctrs: []ctr{{image: h2, waiting: "ImagePullBackOff", message: backOff132(h2, pullErr(err429, h2))}}})
	// ImagePullBackOff, the bare form: the error is in the Failed event.
	kl.pod(podSpec{ns: ns, name: "old-kubelet", node: "n2", ctrs: []ctr{{image: h3, waiting: "ImagePullBackOff", message: backOffBare(h3)}}})
	kl.failedPull(ns, "old-kubelet", "ca", "n2", "old-kubelet.ev1", h3, pullErr(errDNS, h3), 1)
	// The bare form and no event: no cause, none guessed.
	kl.pod(podSpec{ns: ns, name: "silent", node: "n1", ctrs: []ctr{{image: h4, waiting: "ImagePullBackOff", message: backOffBare(h4)}}})
	// An error the classifier cannot place.
	kl.pod(podSpec{ns: ns, name: "odd", node: "n1", ctrs: []ctr{{image: h5, waiting: "ErrImagePull", message: pullErr(errOdd, h5)}}})
	// A pod that comes back under the same name (a StatefulSet's): its
	// predecessor's event does not speak for it.
	h6 := healthy.Ref("app", "v7")
	kl.pod(podSpec{ns: ns, name: "reborn", node: "n1", ctrs: []ctr{{image: h6, waiting: "ImagePullBackOff", message: backOffBare(h6)}}})
	kl.failedPull(ns, "reborn", "ca", "n1", "reborn.ev1", h6, pullErr(errDNS, h6), 1)
	del(t, k.Client, ns, "reborn")
	waitFor(t, "the pod gone", func() bool { return e.cluster.pods.get(ns, "reborn") == nil })
	kl.pod(podSpec{ns: ns, name: "reborn", node: "n1", ctrs: []ctr{{image: h6, waiting: "ImagePullBackOff", message: backOffBare(h6)}}})
	// A registry-level probe failure wins over the node's cause.
	kl.pod(podSpec{ns: ns, name: "down", node: "n1", ctrs: []ctr{{image: d1, waiting: "ErrImagePull", message: pullErr(errNotFound, d1)}}})
	// An unprobed registry: the node's cause is all there is.
	kl.pod(podSpec{ns: ns, name: "unprobed", node: "n1", ctrs: []ctr{{image: unprobed, waiting: "ImagePullBackOff", message: backOff132(unprobed, pullErr(err429, unprobed))}}})

	H, D := healthy.Addr, down.Addr
	waitMetrics(t, e.reg, fmt.Sprintf(`
# HELP imagepull_pod_containers_pull_error Containers waiting in ErrImagePull or ImagePullBackOff, per namespace, registry and the cause their node reported: the kubelet's waiting message (or, when it holds no error, the pod's newest Failed event) classified into the probe's reasons, or unknown; a series only while its count is above zero.
# TYPE imagepull_pod_containers_pull_error gauge
imagepull_pod_containers_pull_error{cause="dns",namespace="nodecause",registry=%[1]q} 1
imagepull_pod_containers_pull_error{cause="not_found",namespace="nodecause",registry=%[1]q} 1
imagepull_pod_containers_pull_error{cause="not_found",namespace="nodecause",registry=%[2]q} 1
imagepull_pod_containers_pull_error{cause="rate_limited",namespace="nodecause",registry=%[1]q} 1
imagepull_pod_containers_pull_error{cause="rate_limited",namespace="nodecause",registry="unprobed.example.com"} 1
imagepull_pod_containers_pull_error{cause="unknown",namespace="nodecause",registry=%[1]q} 1
# HELP imagepull_node_pull_errors Containers waiting in ErrImagePull or ImagePullBackOff, per node (the pod's spec.nodeName), registry and node-reported cause, as imagepull_pod_containers_pull_error: a per-IP limit or one zone's broken egress shows on its nodes; a series only while its count is above zero.
# TYPE imagepull_node_pull_errors gauge
imagepull_node_pull_errors{cause="dns",node="n2",registry=%[1]q} 1
imagepull_node_pull_errors{cause="not_found",node="n1",registry=%[1]q} 1
imagepull_node_pull_errors{cause="not_found",node="n1",registry=%[2]q} 1
imagepull_node_pull_errors{cause="rate_limited",node="n1",registry="unprobed.example.com"} 1
imagepull_node_pull_errors{cause="rate_limited",node="n2",registry=%[1]q} 1
imagepull_node_pull_errors{cause="unknown",node="n1",registry=%[1]q} 1
# HELP imagepull_registry_blocked_containers Containers waiting with an image pull reason, per registry and cause, counted per container: the registry's probe failure reason when it is registry-level, else the pull error the container's node reported (classified), else the registry's probe cause: registry_ok (the registry probes healthy and the node said nothing classifiable: the problem is per image or per credential), a per-image reason, or unprobed (no target covers the registry).
# TYPE imagepull_registry_blocked_containers gauge
imagepull_registry_blocked_containers{cause="connect",registry=%[2]q} 1
imagepull_registry_blocked_containers{cause="dns",registry=%[1]q} 1
imagepull_registry_blocked_containers{cause="not_found",registry=%[1]q} 1
imagepull_registry_blocked_containers{cause="rate_limited",registry=%[1]q} 1
imagepull_registry_blocked_containers{cause="rate_limited",registry="unprobed.example.com"} 1
imagepull_registry_blocked_containers{cause="registry_ok",registry=%[1]q} 3
`, H, D), "imagepull_pod_containers_pull_error", "imagepull_node_pull_errors", "imagepull_registry_blocked_containers")

	// Failures: three containers entered ErrImagePull; the old kubelet's
	// event and reborn's predecessor's counted once each. The former's
	// count goes up by two: two more failures.
	kl.failedPull(ns, "old-kubelet", "ca", "n2", "old-kubelet.ev1", h3, pullErr(errDNS, h3), 3)
	// One failure seen both ways (the status and the event): once.
	kl.setStatus(ns, "silent", ctr{image: h4, waiting: "ErrImagePull", message: pullErr(errNotFound, h4)})
	kl.failedPull(ns, "silent", "ca", "n1", "silent.ev1", h4, pullErr(errNotFound, h4), 1)
	const failuresHeader = `
# HELP imagepull_pull_failures_total Image pull failures the nodes reported, per registry and classified cause: a container entering ErrImagePull, or the count of a pod's "Failed to pull image" event going up (one failure seen both ways counts once). Counted from the exporter's start; registries past --kube.max-registries count under registry="other".
# TYPE imagepull_pull_failures_total counter
`
	waitMetrics(t, e.reg, failuresHeader+fmt.Sprintf(`imagepull_pull_failures_total{cause="dns",registry=%[1]q} 4
imagepull_pull_failures_total{cause="not_found",registry=%[1]q} 2
imagepull_pull_failures_total{cause="not_found",registry=%[2]q} 1
imagepull_pull_failures_total{cause="unknown",registry=%[1]q} 1
`, H, D), "imagepull_pull_failures_total")

	// The kubelet pulls: the node-reported series go with the waiting.
	for _, p := range []struct{ name, image string }{{"missing-tag", h1}, {"limited", h2}, {"old-kubelet", h3}, {"silent", h4}, {"odd", h5}, {"reborn", h6}, {"down", d1}, {"unprobed", unprobed}} {
		kl.setStatus(ns, p.name, ctr{image: p.image, running: true})
	}
	waitMetrics(t, e.reg, "", "imagepull_pod_containers_pull_error", "imagepull_node_pull_errors", "imagepull_registry_blocked_containers")
	waitMetrics(t, e.reg, `
# HELP imagepull_kube_watch_up 1 when the watch of the resource has synced and its latest list or watch request to the apiserver succeeded; 0 while the apiserver is unreachable (the last known state keeps being used).
# TYPE imagepull_kube_watch_up gauge
imagepull_kube_watch_up{resource="events"} 1
imagepull_kube_watch_up{resource="nodes"} 1
imagepull_kube_watch_up{resource="pods"} 1
`, "imagepull_kube_watch_up")
}
