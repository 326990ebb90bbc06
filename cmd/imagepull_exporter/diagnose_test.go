package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/imagepull/imagepull_exporter/collector/kube"
	"github.com/imagepull/imagepull_exporter/internal/testenv"
)

// TestKubernetesCommands runs the built binary against a real apiserver and
// a real registry (basic auth): `serve` with the Kubernetes flags, and
// `diagnose pod|image`. The test plays the kubelet (pod status).
func TestKubernetesCommands(t *testing.T) {
	k := testenv.StartKube(t, testenv.KubeOptions{})
	rightPW, wrongPW := randomString("right-pw-"), randomString("wrong-pw-")
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{Auth: testenv.RegistryAuthBasic,
		Users: map[string]testenv.TokenUser{"puller": {Password: rightPW}}})
	reg.Push(t, "acme/api", "v1.2.3")
	secrets := []string{rightPW, wrongPW,
		base64.StdEncoding.EncodeToString([]byte("puller:" + rightPW)),
		base64.StdEncoding.EncodeToString([]byte("puller:" + wrongPW))}

	const ns = "shop"
	k.EnsureNamespace(t, ns)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for name, pw := range map[string]string{"right": rightPW, "wrong": wrongPW} {
		auth := base64.StdEncoding.EncodeToString([]byte("puller:" + pw))
		_, err := k.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Type:       corev1.SecretTypeDockerConfigJson,
			Data: map[string][]byte{corev1.DockerConfigJsonKey: fmt.Appendf(nil,
				`{"auths":{%q:{"auth":%q}}}`, reg.Addr, auth)},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
	}
	mkPod := func(name, secret string, st corev1.ContainerState) {
		t.Helper()
		p, err := k.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: corev1.PodSpec{NodeName: "n1", ImagePullSecrets: []corev1.LocalObjectReference{{Name: secret}},
				Containers: []corev1.Container{{Name: "api", Image: reg.Ref("acme/api", "v1.2.3")}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "api", Image: reg.Ref("acme/api", "v1.2.3"), State: st}}
		if _, err := k.Client.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	mkPod("good", "right", corev1.ContainerState{Running: &corev1.ContainerStateRunning{}})
	mkPod("bad", "wrong", corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff"}})

	dir := t.TempDir()
	kubeconfig := k.WriteKubeconfig(k.AdminToken)
	cfg := filepath.Join(dir, "config.yml")
	writeFile(t, cfg, fmt.Sprintf(`
modules:
  local: {timeout: 2s, interval: 2s, plain_http: true}
discovery:
  modules:
    - {registry: %q, module: local}
`, reg.Addr))

	t.Run("diagnose pod", func(t *testing.T) {
		out, errOut, code := runBinary(t, "--config.file", cfg, "diagnose", "pod", ns+"/good", "--kubeconfig", kubeconfig)
		if code != 0 || !strings.Contains(out, "OK: "+reg.Addr+" serves v1.2.3 as sha256:") {
			t.Errorf("diagnose pod %s/good: exit %d, want 0\n%s%s", ns, code, out, errOut)
		}
		out, errOut, code = runBinary(t, "--config.file", cfg, "diagnose", "pod", ns+"/bad", "--kubeconfig", kubeconfig)
		if code != exitFailure || !strings.Contains(out, "CANNOT PULL: "+reg.Addr+" rejected the credentials") ||
			!strings.Contains(out, "kubelet: waiting, ImagePullBackOff") {
			t.Errorf("diagnose pod %s/bad: exit %d, want %d\n%s%s", ns, code, exitFailure, out, errOut)
		}
		assertNoSecret(t, "diagnose output", out+errOut, secrets)

		// -o json: the same diagnosis, for scripts.
		out, errOut, code = runBinary(t, "--config.file", cfg, "diagnose", "pod", ns+"/bad", "--kubeconfig", kubeconfig, "-o", "json")
		assertNoSecret(t, "diagnose -o json", out+errOut, secrets)
		var rep kube.DiagnoseReport
		decodeStrict(t, "diagnose pod -o json", out, &rep)
		wantSecret := []kube.SecretReport{{Name: "wrong", State: "ok", Registries: []string{reg.Addr}, Detail: ""}}
		wantCreds := []kube.CredentialReport{{Username: "puller", Source: "secret " + ns + "/wrong entry " + strconv.Quote(reg.Addr)}}
		if code != exitFailure || rep.Schema != 1 || rep.Pullable || rep.Pod == nil || *rep.Pod != (kube.PodReport{Namespace: ns, Name: "bad", Node: "n1", ServiceAccount: "default"}) ||
			rep.Namespace != ns || rep.PullSecrets != "the pod's imagePullSecrets: wrong" || !reflect.DeepEqual(rep.Secrets, wantSecret) || len(rep.Images) != 1 {
			t.Fatalf("diagnose pod -o json: exit %d\n%s%s", code, out, errOut)
		}
		im := rep.Images[0]
		if im.Container != "api" || im.Image != reg.Ref("acme/api", "v1.2.3") || im.Module != "local" || im.Scheme != "http" ||
			im.Pullable || im.Reason != "unauthorized" || !strings.HasPrefix(im.Verdict, reg.Addr+" rejected the credentials") ||
			!reflect.DeepEqual(im.Credentials, wantCreds) || im.Kubelet == nil || im.Kubelet.State != "waiting" || im.Kubelet.Reason != "ImagePullBackOff" {
			t.Errorf("diagnose pod -o json image: %+v (kubelet %+v)", im, im.Kubelet)
		}
		if _, errOut, code := runBinary(t, "diagnose", "pod", "no-slash", "--kubeconfig", kubeconfig); code != exitUsage ||
			!strings.Contains(errOut, "diagnose pod wants NAMESPACE/NAME") {
			t.Errorf("diagnose pod no-slash: exit %d, want %d\n%s", code, exitUsage, errOut)
		}
		// The usage error comes first, before the configuration is read.
		if _, errOut, code := runBinary(t, "--config.file", filepath.Join(dir, "nonexistent.yml"), "diagnose", "pod", "no-slash"); code != exitUsage ||
			!strings.Contains(errOut, "diagnose pod wants NAMESPACE/NAME") {
			t.Errorf("diagnose pod no-slash with a missing config file: exit %d, want %d\n%s", code, exitUsage, errOut)
		}
	})

	t.Run("diagnose image", func(t *testing.T) {
		out, errOut, code := runBinary(t, "--config.file", cfg, "diagnose", "image", reg.Ref("acme/api", "v1.2.4"),
			"--kubeconfig", kubeconfig, "--namespace", ns, "--service-account", "default")
		// The default service account lists no secrets: anonymous, refused.
		if code != exitFailure || !strings.Contains(out, "requires credentials and none of the pull secrets has an entry for "+reg.Addr) {
			t.Errorf("diagnose image: exit %d, want %d\n%s%s", code, exitFailure, out, errOut)
		}
	})

	t.Run("serve joins and discovers", func(t *testing.T) {
		e := startExporter(t, "--config.file", cfg, "--kubeconfig", kubeconfig,
			"--kube.namespaces", ns, "--kube.discover-targets", "--kube.use-pull-secrets")
		e.waitFor("the join, discovery and the pull secret checks", func() bool {
			s := e.scrape()
			up, _ := lookup(s, "imagepull_kube_watch_up", `resource="pods"`)
			waiting, _ := lookup(s, "imagepull_pod_containers_waiting", `namespace="`+ns+`"`, `reason="ImagePullBackOff"`)
			discovered, _ := lookup(s, "imagepull_exporter_targets", `source="discovered"`)
			right, okR := lookup(s, "imagepull_pull_secret_auth_success", `secret="right"`)
			wrong, okW := lookup(s, "imagepull_pull_secret_auth_success", `secret="wrong"`)
			return up == 1 && waiting == 1 && discovered == 2 && okR && right == 1 && okW && wrong == 0
		})
		_, body := e.get("/metrics")
		assertNoSecret(t, "/metrics", body, secrets)
		assertNoSecret(t, "the log", e.log(), secrets)

		// The status page's Kubernetes section: the join's counts.
		_, statusJSON := e.get("/status.json")
		var st struct {
			Kubernetes *struct {
				Synced     bool
				Containers int
				Blocked    []struct {
					Registry, Cause string
					Containers      int
				}
				Namespaces []struct {
					Namespace  string
					Containers int
				}
			}
		}
		if err := json.Unmarshal([]byte(statusJSON), &st); err != nil {
			t.Fatal(err)
		}
		blocked, _ := lookup(e.scrape(), "imagepull_registry_blocked_containers", `registry="`+reg.Addr+`"`)
		if k := st.Kubernetes; k == nil || !k.Synced || k.Containers != 1 || len(k.Blocked) != 1 || k.Blocked[0].Registry != reg.Addr ||
			float64(k.Blocked[0].Containers) != blocked || len(k.Namespaces) != 1 || k.Namespaces[0].Namespace != ns || k.Namespaces[0].Containers != 1 {
			t.Errorf("/status.json's Kubernetes section does not show the blocked container (metric: %v):\n%s", blocked, statusJSON)
		}
		if _, page := e.get("/"); !strings.Contains(page, `<section id="kubernetes">`) || !strings.Contains(page, "<td>"+ns+"</td>") {
			t.Errorf("the status page has no Kubernetes section with namespace %s", ns)
		}
		assertNoSecret(t, "/status.json", statusJSON, secrets)
		// promtool's lint of a real scrape with every Kubernetes family.
		for _, family := range []string{"imagepull_kube_watch_up", "imagepull_kube_watch_last_event_timestamp_seconds",
			"imagepull_pod_containers_waiting", "imagepull_registry_blocked_containers",
			"imagepull_pod_containers_mutable_ref", "imagepull_pull_secret_auth_success"} {
			if !strings.Contains(body, "\n"+family+"{") {
				t.Errorf("/metrics lacks %s", family)
			}
		}
		check := exec.Command(testenv.Bin(t, "promtool"), "check", "metrics")
		check.Stdin = strings.NewReader(body)
		if out, err := check.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
	})

	t.Run("no cluster: a pure prober, said once", func(t *testing.T) {
		e := startExporter(t, "--config.file", cfg)
		_, body := e.get("/metrics")
		if strings.Contains(body, "imagepull_kube_watch_up") {
			t.Error("Kubernetes series without a cluster")
		}
		if n := strings.Count(e.log(), "the Kubernetes join is off"); n != 1 {
			t.Errorf("the log says the join is off %d times, want once:\n%s", n, e.log())
		}
		_, errOut, code := runBinary(t, "--config.file", cfg, "--kube.discover-targets")
		if code != exitFailure || !strings.Contains(errOut, "--kube.* flags need a cluster") {
			t.Errorf("--kube.discover-targets without a cluster: exit %d, want %d\n%s", code, exitFailure, errOut)
		}
	})
}
