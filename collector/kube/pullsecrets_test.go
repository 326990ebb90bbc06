package kube

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/imagepull/imagepull_exporter/internal/testenv"
	"github.com/imagepull/imagepull_exporter/probe"
)

func dockerConfigJSON(host, user, pass string) []byte {
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	return fmt.Appendf(nil, `{"auths":{%q:{"auth":%q}}}`, host, auth)
}

func createSecret(t *testing.T, k *testenv.Kube, s *corev1.Secret) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := k.Client.CoreV1().Secrets(s.Namespace).Create(ctx, s, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create secret %s/%s: %v", s.Namespace, s.Name, err)
	}
}

func createServiceAccount(t *testing.T, k *testenv.Kube, ns, name string, secrets ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	for _, s := range secrets {
		sa.ImagePullSecrets = append(sa.ImagePullSecrets, corev1.LocalObjectReference{Name: s})
	}
	if _, err := k.Client.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create serviceaccount %s/%s: %v", ns, name, err)
	}
}

// testPullSecrets: discovered images are probed with the credentials the
// kubelet would use, and each referenced secret's login is checked.
func testPullSecrets(t *testing.T, k *testenv.Kube) {
	const ns = "pullsecrets"
	k.EnsureNamespace(t, ns)
	kl := kubelet{t: t, client: k.Client}
	r := testenv.StartRegistry(t, testenv.RegistryOptions{Auth: testenv.RegistryAuthBasic,
		Users: map[string]testenv.TokenUser{"puller": {Password: "right-pw-7f3a"}}})
	d1 := r.Push(t, "app", "v1")
	r.Push(t, "app", "v2")

	secret := func(name string, typ corev1.SecretType, key string, data []byte) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Type: typ,
			Data: map[string][]byte{key: data}}
	}
	createSecret(t, k, secret("right", corev1.SecretTypeDockerConfigJson, corev1.DockerConfigJsonKey,
		dockerConfigJSON(r.Addr, "puller", "right-pw-7f3a")))
	createSecret(t, k, secret("wrong", corev1.SecretTypeDockerConfigJson, corev1.DockerConfigJsonKey,
		dockerConfigJSON(r.Addr, "puller", "wrong-pw-91c2")))
	createSecret(t, k, secret("legacy", corev1.SecretTypeDockercfg, corev1.DockerConfigKey,
		fmt.Appendf(nil, `{%q:{"username":"puller","password":"right-pw-7f3a","email":"x@example.com"}}`, "http://"+r.Addr)))
	createSecret(t, k, secret("hub", corev1.SecretTypeDockerConfigJson, corev1.DockerConfigJsonKey,
		dockerConfigJSON("https://index.docker.io/v1/", "hubuser", "hub-pw-55e1")))
	createSecret(t, k, secret("opaque", corev1.SecretTypeOpaque, "password", []byte("opaque-pw-0b7d")))
	createServiceAccount(t, k, ns, "builder", "right")

	img := r.Ref("app", "v1")
	kl.pod(podSpec{ns: ns, name: "via-sa", node: "n1", sa: "builder", ctrs: []ctr{{image: img, running: true}}})
	kl.pod(podSpec{ns: ns, name: "wrong-secret", node: "n1", secrets: []string{"wrong"}, ctrs: []ctr{{image: img, waiting: "ErrImagePull"}}})
	kl.pod(podSpec{ns: ns, name: "wrong-then-right", node: "n1", secrets: []string{"wrong", "right"}, ctrs: []ctr{{image: img, running: true}}})
	kl.pod(podSpec{ns: ns, name: "legacy", node: "n1", secrets: []string{"legacy"}, ctrs: []ctr{{image: r.Ref("app", "v2"), running: true}}})
	kl.pod(podSpec{ns: ns, name: "hub", node: "n1", secrets: []string{"hub"}, ctrs: []ctr{{image: "nginx:1.27", running: true}}})
	kl.pod(podSpec{ns: ns, name: "opaque", node: "n1", secrets: []string{"opaque"}, ctrs: []ctr{{image: img, waiting: "ErrImagePull"}}})
	kl.pod(podSpec{ns: ns, name: "missing", node: "n1", secrets: []string{"missing"}, ctrs: []ctr{{image: img, waiting: "ErrImagePull"}}})

	cfg := configYAML("") + fmt.Sprintf(`discovery:
  modules:
    - {registry: %q, module: local}
  exclude: [docker.io]   # no internet here: nothing may be sent to Docker Hub
`, r.Addr)
	e := startExporter(t, exporterOptions{rest: k.Config, namespaces: []string{ns}, config: cfg,
		discover: true, pullSecret: true})

	via := func(secrets string) string { return img + " via " + secrets }
	waitFor(t, "the discovered targets with their secrets", func() bool {
		return len(e.targets()) == 6
	})
	var names []string
	for _, d := range e.targets() {
		names = append(names, d.Name)
	}
	want := []string{
		// Waiting images first, then running ones, each by name.
		via(ns + "/missing"), via(ns + "/opaque"), via(ns + "/wrong"),
		via(ns + "/right"), via(ns + "/wrong," + ns + "/right"), r.Ref("app", "v2") + " via " + ns + "/legacy",
	}
	if strings.Join(names, "\n") != strings.Join(want, "\n") {
		t.Fatalf("discovered targets:\n%s\nwant:\n%s", strings.Join(names, "\n"), strings.Join(want, "\n"))
	}

	// What the scheduler's probes say, target by target: the kubelet's
	// credentials give its outcome.
	wantReason := map[string]probe.Reason{
		via(ns + "/right"):                            "",
		via(ns + "/wrong," + ns + "/right"):           "", // every matching credential is tried, in order
		r.Ref("app", "v2") + " via " + ns + "/legacy": "",
		via(ns + "/wrong"):                            probe.ReasonUnauthorized,
		via(ns + "/opaque"):                           probe.ReasonNoCredentials, // an Opaque secret is ignored: anonymous, and the registry asks for credentials
		via(ns + "/missing"):                          probe.ReasonNoCredentials, // a missing secret is skipped: likewise
	}
	waitFor(t, "every discovered target probed", func() bool {
		snap := e.sched.Snapshot()
		seen := 0
		for _, ts := range snap.Targets {
			want, ok := wantReason[ts.Name]
			if !ok || ts.Last == nil {
				continue
			}
			if ts.Last.Reason != want {
				return false
			}
			if want == "" && ts.Last.Digest != d1 && ts.Name != r.Ref("app", "v2")+" via "+ns+"/legacy" {
				return false
			}
			seen++
		}
		return seen == len(wantReason)
	})

	waitMetrics(t, e.reg, fmt.Sprintf(`
# HELP imagepull_pull_secret_auth_success Whether a pull secret that pods or workloads reference still logs in to a registry their images use (1) or not (0): the registry rejected its credential, or the secret is missing, of the wrong type or unparsable. Checked with only that secret's credential, every auth_check_interval of the registry's module; no series while the answer is unknown.
# TYPE imagepull_pull_secret_auth_success gauge
imagepull_pull_secret_auth_success{namespace="pullsecrets",registry=%[1]q,secret="legacy"} 1
imagepull_pull_secret_auth_success{namespace="pullsecrets",registry=%[1]q,secret="missing"} 0
imagepull_pull_secret_auth_success{namespace="pullsecrets",registry=%[1]q,secret="opaque"} 0
imagepull_pull_secret_auth_success{namespace="pullsecrets",registry=%[1]q,secret="right"} 1
imagepull_pull_secret_auth_success{namespace="pullsecrets",registry=%[1]q,secret="wrong"} 0
`, r.Addr), "imagepull_pull_secret_auth_success")

	// A Docker Hub image with a secret keyed the way `docker login` writes
	// it: resolved (not probed: no internet) to that secret's credential.
	hub := &pullSecretKeychain{cache: e.discovery.secrets, namespace: ns, secrets: []string{"hub"}}
	ref, err := probe.ParseReference("nginx:1.27")
	if err != nil {
		t.Fatal(err)
	}
	creds, err := hub.Resolve(ref)
	if err != nil || len(creds) != 1 || creds[0].Username != "hubuser" || creds[0].Password != "hub-pw-55e1" ||
		creds[0].Source != `secret pullsecrets/hub entry "https://index.docker.io/v1/"` {
		t.Fatalf("hub keychain: %v, %v; want the hubuser credential from secret pullsecrets/hub", creds, err)
	}
	if creds, _ := hub.Resolve(probe.Reference{Registry: r.Addr, Repository: "app", Tag: "v1"}); len(creds) != 0 {
		t.Errorf("the Docker Hub secret matched %s: %v", r.Addr, creds)
	}

	// Rotation: the wrong secret is fixed in place; within the TTL the
	// check sees the new content and the target's probes succeed.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fixed := secret("wrong", corev1.SecretTypeDockerConfigJson, corev1.DockerConfigJsonKey,
		dockerConfigJSON(r.Addr, "puller", "right-pw-7f3a"))
	if _, err := k.Client.CoreV1().Secrets(ns).Update(ctx, fixed, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	rotated := time.Now()
	waitFor(t, "the rotated secret to log in", func() bool {
		v, ok := authValue(e, ns, "wrong", r.Addr)
		return ok && v == 1
	})
	waitFor(t, "the target with the rotated secret to succeed", func() bool {
		for _, ts := range e.sched.Snapshot().Targets {
			if ts.Name == via(ns+"/wrong") && ts.Last != nil && ts.Last.Start.After(rotated) {
				return ts.Last.Success
			}
		}
		return false
	})

	// Nothing of a secret leaves the process.
	all, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exposition := fmt.Sprint(all, e.sched.Snapshot())
	for _, s := range []string{"right-pw-7f3a", "wrong-pw-91c2", "hub-pw-55e1", "opaque-pw-0b7d", "cHVsbGVy"} {
		if strings.Contains(exposition, s) || strings.Contains(logsOf(t), s) {
			t.Errorf("%q appears in the metrics, the scheduler snapshot or the logs", s)
		}
	}
}

// authValue reads one pull secret's auth result.
func authValue(e *exporter, ns, secret, registry string) (float64, bool) {
	a := e.discovery.auth
	a.mu.Lock()
	defer a.mu.Unlock()
	ch := a.checks[authCheckKey{ns, secret, registry}]
	if ch == nil || !ch.known {
		return 0, false
	}
	return ch.value, true
}
