package testenv_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/imagepull/imagepull_exporter/internal/testenv"
)

// TestKube proves the recipe the Kubernetes tests build on: a real
// kube-apiserver on etcd, the test playing the kubelet through the status
// subresource, real RBAC for TokenRequest and static tokens, kubectl through
// a written kubeconfig, and data surviving an apiserver restart.
func TestKube(t *testing.T) {
	const readerToken = "reader-static-token"
	k := testenv.StartKube(t, testenv.KubeOptions{
		Tokens: []testenv.StaticToken{{Token: readerToken, User: "reader", Groups: []string{"readers"}}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := k.Client
	const ns = "apps"
	k.EnsureNamespace(t, ns)

	// A node that holds an image, as the kubelet reports it. Status is
	// written through its subresource like the kubelet does.
	node, err := c.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create node: %v", err)
	}
	node.Status.Images = []corev1.ContainerImage{{
		Names:     []string{"registry.example.com/app@sha256:" + strings.Repeat("a", 64), "registry.example.com/app:v1"},
		SizeBytes: 1234,
	}}
	if _, err := c.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update node status: %v", err)
	}

	pod, err := c.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.PodSpec{
			NodeName:   "node-a",
			Containers: []corev1.Container{{Name: "app", Image: "registry.example.com/app:v2"}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod: %v", err)
	}
	pod.Status.Phase = corev1.PodPending
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{
		Name:  "app",
		Image: "registry.example.com/app:v2",
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
			Reason:  "ImagePullBackOff",
			Message: `Back-off pulling image "registry.example.com/app:v2"`,
		}},
	}}
	if _, err := c.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update pod status: %v", err)
	}

	checkState := func(t *testing.T) {
		t.Helper()
		got, err := c.CoreV1().Pods(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("get pod: %v", err)
		}
		if n := len(got.Status.ContainerStatuses); n != 1 {
			t.Fatalf("pod has %d container statuses, want 1", n)
		}
		w := got.Status.ContainerStatuses[0].State.Waiting
		if w == nil || w.Reason != "ImagePullBackOff" {
			t.Fatalf("pod waiting state = %+v, want reason ImagePullBackOff", w)
		}
		n, err := c.CoreV1().Nodes().Get(ctx, "node-a", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("get node: %v", err)
		}
		if len(n.Status.Images) != 1 || n.Status.Images[0].Names[1] != "registry.example.com/app:v1" {
			t.Fatalf("node images = %+v, want the one written", n.Status.Images)
		}
	}
	checkState(t)

	// The bootstrap roles view/edit get their rules from the aggregation
	// controller, which does not run here: tests bring their own roles.
	_, err = c.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-reader"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create clusterrole: %v", err)
	}

	t.Run("tokenrequest bound to a clusterrole", func(t *testing.T) {
		rc := k.ClientFor(t, k.ClusterRoleToken(t, "pod-reader"))
		pods, err := rc.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatalf("list pods with pod-reader token: %v", err)
		}
		if len(pods.Items) != 1 || pods.Items[0].Name != "web" {
			t.Fatalf("pod-reader sees %d pods, want [web]", len(pods.Items))
		}
		_, err = rc.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
		if !apierrors.IsForbidden(err) {
			t.Fatalf("list secrets with pod-reader token: err = %v, want forbidden", err)
		}
	})

	t.Run("static token user bound to a clusterrole", func(t *testing.T) {
		rc := k.ClientFor(t, readerToken)
		if _, err := rc.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
			t.Fatalf("unbound static user lists pods: err = %v, want forbidden", err)
		}
		k.BindClusterRole(t, "pod-reader", rbacv1.Subject{Kind: rbacv1.UserKind, Name: "reader"})
		if _, err := rc.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); err != nil {
			t.Fatalf("static user bound to pod-reader lists pods: %v", err)
		}
	})

	t.Run("kubectl with a kubeconfig", func(t *testing.T) {
		out, err := k.Kubectl(t, "", nil, "get", "pod", "web", "-n", ns,
			"-o", "jsonpath={.status.containerStatuses[0].state.waiting.reason}")
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if out != "ImagePullBackOff" {
			t.Fatalf("kubectl get pod: %q, want ImagePullBackOff", out)
		}
		out, err = k.Kubectl(t, "", nil, "version", "-o", "json")
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		var v struct {
			Client struct{ GitVersion string } `json:"clientVersion"`
			Server struct{ GitVersion string } `json:"serverVersion"`
		}
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatalf("kubectl version output: %v\n%s", err, out)
		}
		if v.Client.GitVersion != testenv.KubeVersion || v.Server.GitVersion != testenv.KubeVersion {
			t.Fatalf("kubectl version: client %q server %q, want %s for both", v.Client.GitVersion, v.Server.GitVersion, testenv.KubeVersion)
		}
	})

	t.Run("prometheus-operator CRDs", func(t *testing.T) {
		k.InstallCRDs(t, testenv.PrometheusOperatorCRDs(t)...)
		out, err := k.Kubectl(t, "", strings.NewReader(`apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: probe, namespace: apps}
spec:
  selector: {matchLabels: {app: exporter}}
  endpoints: [{port: http}]
`), "apply", "--dry-run=server", "-f", "-")
		if err != nil || !strings.Contains(out, "servicemonitor.monitoring.coreos.com/probe created (server dry run)") {
			t.Fatalf("server dry run of a ServiceMonitor: %v\n%s", err, out)
		}
		out, err = k.Kubectl(t, "", strings.NewReader(`apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: bad, namespace: apps}
spec: {endpoints: "not a list"}
`), "apply", "--dry-run=server", "-f", "-")
		if err == nil || !strings.Contains(out, "spec.endpoints") {
			t.Fatalf("server dry run of an invalid ServiceMonitor: err = %v, want a schema error on spec.endpoints:\n%s", err, out)
		}
	})

	t.Run("apiserver stopped and restarted", func(t *testing.T) {
		k.Stop()
		short, cancelShort := context.WithTimeout(ctx, 5*time.Second)
		_, err := c.CoreV1().Pods(ns).Get(short, "web", metav1.GetOptions{})
		cancelShort()
		if err == nil {
			t.Fatal("get pod succeeded while the apiserver was stopped")
		}
		k.Start()
		checkState(t)
	})
}
