package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/imagepull/imagepull_exporter/collector"
	"github.com/imagepull/imagepull_exporter/collector/config"
	"github.com/imagepull/imagepull_exporter/internal/testenv"
	"github.com/imagepull/imagepull_exporter/probe"
)

// testRBAC proves that the ClusterRole the project ships is enough for the
// exporter and grants nothing on secrets, and that the pull-secrets overlay
// adds reading a named secret and nothing wider: the exporter runs (through
// StartWithConfig, the path `serve` takes) with a ServiceAccount token bound
// only to those roles, applied from deploy/ with kubectl.
func testRBAC(t *testing.T, k *testenv.Kube) {
	// The roles as the overlays ship them: rendered with kustomize, the
	// ClusterRoles applied (the bindings name the deployed ServiceAccount;
	// the test binds its own).
	root := testenv.RepoRoot(t)
	roles := map[string]bool{}
	for _, dir := range []string{"deploy/base", "deploy/overlays/pull-secrets"} {
		rendered, err := k.Kubectl(t, "", nil, "kustomize", filepath.Join(root, dir))
		if err != nil {
			t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, rendered)
		}
		for _, doc := range clusterRoles(t, rendered) {
			if out, err := k.Kubectl(t, "", strings.NewReader(doc.yaml), "apply", "-f", "-"); err != nil {
				t.Fatalf("kubectl apply ClusterRole %s: %v\n%s", doc.name, err, out)
			}
			roles[doc.name] = true
		}
	}
	if !roles["imagepull-exporter"] || !roles["imagepull-exporter-pull-secrets"] || len(roles) != 2 {
		t.Fatalf("ClusterRoles in deploy/: %v; want imagepull-exporter and imagepull-exporter-pull-secrets", roles)
	}
	const ns = "rbac"
	k.EnsureNamespace(t, ns)
	kl := kubelet{t: t, client: k.Client}
	r := testenv.StartRegistry(t, testenv.RegistryOptions{Auth: testenv.RegistryAuthBasic,
		Users: map[string]testenv.TokenUser{"puller": {Password: "rbac-pw-3e8c"}}})
	r.Push(t, "app", "v1")
	s := &corev1.Secret{Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: dockerConfigJSON(r.Addr, "puller", "rbac-pw-3e8c")}}
	s.Namespace, s.Name = ns, "regcred"
	createSecret(t, k, s)
	createServiceAccount(t, k, ns, "app", "regcred")
	kl.pod(podSpec{ns: ns, name: "web", node: "n1", sa: "app", ctrs: []ctr{{image: r.Ref("app", "v1"), waiting: "ErrImagePull"}}})
	kl.pod(podSpec{ns: ns, name: "direct", node: "n1", secrets: []string{"regcred"}, ctrs: []ctr{{image: r.Ref("app", "v1"), running: true}}})

	token := k.ClusterRoleToken(t, "imagepull-exporter")
	asExporter := k.ClientFor(t, token)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// What the token may do, asked of the apiserver's real authorizer.
	can := func(verb, resource string) bool {
		t.Helper()
		args := []string{"auth", "can-i", verb, resource}
		if resource != "nodes" {
			args = append(args, "-n", ns)
		}
		out, _ := k.Kubectl(t, token, nil, args...)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		return strings.TrimSpace(lines[len(lines)-1]) == "yes" // after any "Warning: ..." line
	}
	for _, rsrc := range []string{"pods", "nodes", "events", "deployments.apps", "statefulsets.apps", "daemonsets.apps", "jobs.batch", "cronjobs.batch"} {
		if !can("list", rsrc) || !can("watch", rsrc) {
			t.Errorf("the base role cannot list and watch %s", rsrc)
		}
	}
	for _, verb := range []string{"get", "list", "watch"} {
		if can(verb, "secrets") {
			t.Errorf("the base role may %s secrets", verb)
		}
	}
	for _, verb := range []string{"create", "update", "delete", "patch"} {
		if can(verb, "pods") {
			t.Errorf("the base role may %s pods", verb)
		}
		if can(verb, "events") {
			t.Errorf("the base role may %s events", verb)
		}
	}
	// Events in the core group only, the one the kubelet records through.
	if can("list", "events.events.k8s.io") || can("get", "events") {
		t.Error("the base role reads events beyond list/watch of core events")
	}

	cfgYAML := configYAML("", r.Ref("app", "v1")) + fmt.Sprintf("discovery:\n  modules:\n    - {registry: %q, module: local}\n", r.Addr)
	start := func(t *testing.T, pullSecrets bool) (*prometheus.Registry, *Runtime) {
		cfg, err := config.Parse("test.yml", []byte(cfgYAML))
		if err != nil {
			t.Fatal(err)
		}
		reg := prometheus.NewRegistry()
		prober := probe.NewProber(probe.ProberOptions{UserAgent: "imagepull-rbac-test"})
		sched := collector.NewScheduler(collector.SchedulerOptions{Prober: prober})
		sched.ApplyConfig(cfg)
		rc := k.ConfigFor(token)
		rc.Timeout = 0
		ctx, cancel := context.WithCancel(context.Background())
		rt, err := StartWithConfig(ctx, rc, &Flags{Namespaces: []string{ns}, DiscoverTargets: true, UsePullSecrets: pullSecrets, WatchEvents: true},
			Deps{Registerer: reg, Scheduler: sched, Prober: prober, Config: func() *config.Config { return cfg }, Logger: testLogger(t)})
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Go(func() { _ = sched.Run(ctx) })
		t.Cleanup(func() { cancel(); rt.Wait(); wg.Wait(); prober.Close() })
		return reg, rt
	}
	upAll := func(sa int) string {
		s := `
# HELP imagepull_kube_watch_up 1 when the watch of the resource has synced and its latest list or watch request to the apiserver succeeded; 0 while the apiserver is unreachable (the last known state keeps being used).
# TYPE imagepull_kube_watch_up gauge
imagepull_kube_watch_up{resource="cronjobs"} 1
imagepull_kube_watch_up{resource="daemonsets"} 1
imagepull_kube_watch_up{resource="deployments"} 1
imagepull_kube_watch_up{resource="events"} 1
imagepull_kube_watch_up{resource="jobs"} 1
imagepull_kube_watch_up{resource="nodes"} 1
imagepull_kube_watch_up{resource="pods"} 1
`
		if sa >= 0 {
			s += fmt.Sprintf("imagepull_kube_watch_up{resource=\"serviceaccounts\"} %d\n", sa)
		}
		return s + `imagepull_kube_watch_up{resource="statefulsets"} 1
`
	}

	t.Run("the base role is enough for the join and discovery", func(t *testing.T) {
		// Without pull secrets the exporter probes the private registry
		// anonymously and is asked for credentials: no_credentials, so
		// the registry is up and the waiting container's cause is
		// registry_ok (issue 11), never unauthorized.
		reg, rt := start(t, false)
		waitMetrics(t, reg, upAll(-1)+fmt.Sprintf(`
# HELP imagepull_registry_blocked_containers Containers waiting with an image pull reason, per registry and cause, counted per container: the registry's probe failure reason when it is registry-level, else the pull error the container's node reported (classified), else the registry's probe cause: registry_ok (the registry probes healthy and the node said nothing classifiable: the problem is per image or per credential), a per-image reason, or unprobed (no target covers the registry).
# TYPE imagepull_registry_blocked_containers gauge
imagepull_registry_blocked_containers{cause="registry_ok",registry=%q} 1
`, r.Addr), "imagepull_kube_watch_up", "imagepull_registry_blocked_containers")
		waitFor(t, "the pods' image discovered", func() bool {
			return len(rt.Discovery.Pass(context.Background())) == 1
		})
	})

	t.Run("no secrets without the pull-secrets role", func(t *testing.T) {
		if _, err := asExporter.CoreV1().Secrets(ns).Get(ctx, "regcred", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
			t.Fatalf("get secret with the base role: %v, want forbidden", err)
		}
		// Pull-secret mode under the base role alone: the service account
		// watch is refused and so is every secret; the exporter says so
		// and keeps serving the rest.
		reg, rt := start(t, true)
		waitMetrics(t, reg, upAll(0), "imagepull_kube_watch_up")
		waitFor(t, "the secret read refused", func() bool {
			rt.Discovery.Pass(context.Background())
			e := rt.Discovery.secrets.get(nsName{ns, "regcred"})
			return e != nil && e.state == SecretForbidden
		})
	})

	t.Run("the pull-secrets role adds get on secrets, nothing wider", func(t *testing.T) {
		k.BindClusterRole(t, "imagepull-exporter-pull-secrets",
			rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: "testenv", Name: "sa-imagepull-exporter"})
		if !can("get", "secrets") {
			t.Fatal("the pull-secrets role does not allow get on secrets")
		}
		for _, verb := range []string{"list", "watch", "create", "update", "delete"} {
			if can(verb, "secrets") {
				t.Errorf("the pull-secrets role may %s secrets", verb)
			}
		}
		reg, _ := start(t, true)
		waitMetrics(t, reg, upAll(1), "imagepull_kube_watch_up")
		waitMetrics(t, reg, fmt.Sprintf(`
# HELP imagepull_pull_secret_auth_success Whether a pull secret that pods or workloads reference still logs in to a registry their images use (1) or not (0): the registry rejected its credential, or the secret is missing, of the wrong type or unparsable. Checked with only that secret's credential, every auth_check_interval of the registry's module; no series while the answer is unknown.
# TYPE imagepull_pull_secret_auth_success gauge
imagepull_pull_secret_auth_success{namespace="rbac",registry=%q,secret="regcred"} 1
`, r.Addr), "imagepull_pull_secret_auth_success")
	})
}

type namedDoc struct{ name, yaml string }

// clusterRoles picks the ClusterRoles out of a rendered multi-document YAML.
func clusterRoles(t *testing.T, rendered string) []namedDoc {
	t.Helper()
	var out []namedDoc
	dec := yaml.NewDecoder(strings.NewReader(rendered))
	for {
		var obj map[string]any
		if err := dec.Decode(&obj); err != nil {
			if errors.Is(err, io.EOF) {
				return out
			}
			t.Fatalf("rendered YAML: %v", err)
		}
		if obj["kind"] != "ClusterRole" {
			continue
		}
		b, err := yaml.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		name, _ := obj["metadata"].(map[string]any)["name"].(string)
		out = append(out, namedDoc{name, string(b)})
	}
}
