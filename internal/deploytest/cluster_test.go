package deploytest_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	dt "github.com/imagepull/imagepull_exporter/internal/deploytest"
	"github.com/imagepull/imagepull_exporter/internal/testenv"
)

var (
	exporterOnce   sync.Once
	exporterPath   string
	exporterErr    error
	exporterRemove = func() {}
)

func TestMain(m *testing.M) {
	code := m.Run()
	exporterRemove()
	if code == 0 {
		if err := goleak.Find(testenv.KubeLeakOptions()...); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// exporterBinary builds the exporter once per test binary, without -race:
// the footprint benchmark measures the binary as deployed. Under -short it
// skips t instead of building.
func exporterBinary(t testing.TB) string {
	t.Helper()
	testenv.SkipShort(t, "the exporter binary (go build)")
	exporterOnce.Do(func() {
		var remove func()
		if exporterPath, remove, exporterErr = testenv.BuildExporter(false); exporterErr == nil {
			exporterRemove = remove
		}
	})
	if exporterErr != nil {
		t.Fatal(exporterErr)
	}
	return exporterPath
}

// kubectl runs bin/kubectl as the admin (token "") or token's holder, with a
// discovery cache of its own (never ~/.kube), failing the test on an error.
func kubectl(t *testing.T, k *testenv.Kube, token string, stdin []byte, args ...string) string {
	t.Helper()
	var in io.Reader
	if stdin != nil {
		in = strings.NewReader(string(stdin))
	}
	out, err := k.Kubectl(t, token, in, append([]string{"--cache-dir", t.TempDir()}, args...)...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return out
}

// rendering is one variant of what deploy/ ships, as kubectl applies it.
type rendering struct {
	name string
	yaml []byte
	// restricted: the pods pass the `restricted` Pod Security level, so
	// the apiserver must not warn about them.
	restricted bool
}

func renderings(t *testing.T) []rendering {
	var out []rendering
	for _, ov := range overlays {
		out = append(out, rendering{"kustomize " + ov.dir, dt.KustomizeYAML(t, ov.dir), !strings.Contains(ov.dir, "node-")})
	}
	all := dt.Combine(t, allComponents...)
	out = append(out, rendering{"kustomize all components", dt.KustomizeYAML(t, all), false})
	for _, sets := range [][]string{
		nil,
		{"pullSecrets.enabled=true"},
		{"sharding.enabled=true"},
		{"nodeProbe.enabled=true"},
		{"networkPolicy.enabled=true"},
		{"webConfig.enabled=true"},
		{"credentials.enabled=true"},
		{"credentialProviders.enabled=true"},
		{"nodeProbe.enabled=true", "nodeProbe.credentialProviders.enabled=true"},
		{"dashboards.enabled=true"},
		allSets,
		chartOptions,
	} {
		out = append(out, rendering{fmt.Sprintf("helm %v", sets), dt.HelmTemplateYAML(t, sets...), !slices.Contains(sets, "nodeProbe.enabled=true")})
	}
	return out
}

// TestCluster applies what deploy/ ships to a real kube-apiserver (with
// RBAC, Pod Security admission and the prometheus-operator CRDs) and runs
// the exporter under the base ServiceAccount's own token.
func TestCluster(t *testing.T) {
	k := testenv.StartKube(t, testenv.KubeOptions{})
	k.InstallCRDs(t, testenv.PrometheusOperatorCRDs(t)...)
	// The namespace for real, as the base declares it (Pod Security
	// `restricted`): a server dry run creates nothing, so namespaced
	// objects need it to exist.
	base := dt.Kustomize(t, "deploy/base")
	nsYAML, err := yaml.Marshal(dt.Find(t, base, "Namespace", dt.Namespace))
	if err != nil {
		t.Fatal(err)
	}
	kubectl(t, k, "", nsYAML, "apply", "-f", "-")

	// Every variant is accepted by the apiserver as it would be applied:
	// schemas (the CRDs' included), RBAC objects, admission. Pod Security
	// is evaluated too: the restricted variants draw no warning, and the
	// node probe (hostNetwork, hostPath) does, which shows the check ran.
	t.Run("server dry run", func(t *testing.T) {
		for _, r := range renderings(t) {
			t.Run(r.name, func(t *testing.T) {
				objs, err := dt.Parse(r.yaml)
				if err != nil {
					t.Fatal(err)
				}
				out := kubectl(t, k, "", r.yaml, "apply", "--dry-run=server", "-f", "-")
				if n := strings.Count(out, "(server dry run)"); n != len(objs) {
					t.Errorf("%d of %d objects accepted:\n%s", n, len(objs), out)
				}
				warned := strings.Contains(out, "would violate PodSecurity")
				if r.restricted && warned {
					t.Errorf("Pod Security warnings for a variant meant to be restricted:\n%s", out)
				}
				if !r.restricted && (!warned || !strings.Contains(out, "hostNetwork") || !strings.Contains(out, "hostPath")) {
					t.Errorf("want the apiserver to warn that the node probe is beyond `restricted` (hostNetwork, hostPath):\n%s", out)
				}
			})
		}
	})

	t.Run("rbac", func(t *testing.T) { testRBAC(t, k) })
}

// testRBAC proves the base role is enough, and no more: the exporter runs
// with the base ServiceAccount's token (from TokenRequest, as a projected
// token volume gets it) and every watch comes up; the same token cannot
// read a Secret; with the pull-secrets overlay applied it can get one, and
// still neither list nor watch them.
func testRBAC(t *testing.T, k *testenv.Kube) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin := exporterBinary(t)
	base := dt.KustomizeYAML(t, "deploy/base")
	kubectl(t, k, "", base, "apply", "-f", "-")
	token := k.ServiceAccountToken(t, dt.Namespace, "imagepull-exporter")
	sa := k.ClientFor(t, token)

	// A pull secret of some team, written by the admin.
	k.EnsureNamespace(t, "team-a")
	if _, err := k.Client.CoreV1().Secrets("team-a").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "regcred"},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{}}`)},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	type access struct {
		verb, group, resource, namespace string
		allowed                          bool
	}
	check := func(t *testing.T, want []access) {
		t.Helper()
		for _, a := range want {
			r, err := sa.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
				Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
					Verb: a.verb, Group: a.group, Resource: a.resource, Namespace: a.namespace,
				}},
			}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if r.Status.Allowed != a.allowed {
				t.Errorf("%s %s/%s in %q: allowed %v, want %v", a.verb, a.group, a.resource, a.namespace, r.Status.Allowed, a.allowed)
			}
		}
	}
	// RBAC authorizes from an informer cache: a binding just applied takes
	// effect a moment later. Wait for one permission the step grants before
	// judging them all (the check itself stays exact).
	waitAllowed := func(t *testing.T, a access) {
		t.Helper()
		for ctx.Err() == nil {
			r, err := sa.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
				Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
					Verb: a.verb, Group: a.group, Resource: a.resource, Namespace: a.namespace,
				}},
			}, metav1.CreateOptions{})
			if err == nil && r.Status.Allowed {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("%s %s/%s in %q never became allowed", a.verb, a.group, a.resource, a.namespace)
	}
	baseAccess := []access{
		{"list", "", "pods", "", true}, {"watch", "", "pods", "", true},
		{"list", "", "nodes", "", true}, {"watch", "", "nodes", "", true},
		{"list", "", "events", "team-a", true}, {"watch", "", "events", "", true},
		// Events are read, never written, and only in the core group.
		{"create", "", "events", "team-a", false}, {"list", "events.k8s.io", "events", "", false},
		{"list", "apps", "deployments", "", true}, {"watch", "apps", "statefulsets", "", true},
		{"watch", "apps", "daemonsets", "", true}, {"list", "batch", "jobs", "", true}, {"watch", "batch", "cronjobs", "", true},
		// Nothing the informers do not use: no get, no writes.
		{"get", "", "pods", "team-a", false}, {"create", "", "pods", "team-a", false},
		{"delete", "apps", "deployments", "team-a", false}, {"list", "", "configmaps", "", false},
	}

	t.Run("base", func(t *testing.T) {
		waitAllowed(t, access{"list", "", "pods", "", true})
		check(t, append(slices.Clone(baseAccess),
			access{"get", "", "secrets", "team-a", false}, access{"list", "", "secrets", "", false},
			access{"list", "", "serviceaccounts", "", false}))
		_, err := sa.CoreV1().Secrets("team-a").Get(ctx, "regcred", metav1.GetOptions{})
		if !apierrors.IsForbidden(err) {
			t.Errorf("reading a Secret with the base role: %v, want 403 Forbidden", err)
		}
		runExporter(t, k, bin, token, base, []string{"pods", "nodes", "events", "deployments", "statefulsets", "daemonsets", "jobs", "cronjobs"})
	})

	t.Run("pull-secrets", func(t *testing.T) {
		overlay := dt.KustomizeYAML(t, "deploy/overlays/pull-secrets")
		kubectl(t, k, "", overlay, "apply", "-f", "-")
		waitAllowed(t, access{"get", "", "secrets", "team-a", true})
		check(t, append(slices.Clone(baseAccess),
			access{"get", "", "secrets", "team-a", true}, access{"get", "", "secrets", "kube-system", true},
			// By name only: never the whole cluster's secrets.
			access{"list", "", "secrets", "", false}, access{"watch", "", "secrets", "", false},
			access{"list", "", "secrets", "team-a", false}, access{"update", "", "secrets", "team-a", false},
			access{"list", "", "serviceaccounts", "", true}, access{"watch", "", "serviceaccounts", "", true}))
		s, err := sa.CoreV1().Secrets("team-a").Get(ctx, "regcred", metav1.GetOptions{})
		if err != nil || s.Name != "regcred" {
			t.Errorf("reading a Secret with the pull-secrets role: %v", err)
		}
		runExporter(t, k, bin, token, overlay, []string{"pods", "nodes", "serviceaccounts", "events", "deployments", "statefulsets", "daemonsets", "jobs", "cronjobs"})
	})
}

var watchUpRE = regexp.MustCompile(`(?m)^imagepull_kube_watch_up\{resource="([a-z]+)"\} ([0-9.e+-]+)$`)

// runExporter runs the exporter the way the rendering's Deployment does
// (its args and its ConfigMap's config), with a kubeconfig for token in
// place of the in-cluster service account, and waits until its /metrics
// report every resource's watch up. The exporter must not log a single
// forbidden request.
func runExporter(t *testing.T, k *testenv.Kube, bin, token string, rendered []byte, resources []string) {
	t.Helper()
	objs, err := dt.Parse(rendered)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	addr := testenv.FreeAddr(t)
	dep := dt.Find(t, objs, "Deployment", "imagepull-exporter")
	args := deployedArgs(t, k, objs, dep, dir, addr, token, nil)
	p := testenv.StartProcess(t, "imagepull_exporter", bin, args, []string{"KUBECONFIG=", goMemLimit(t, dep)}, dir)
	p.WaitHTTP("http://"+addr+"/-/ready", http.StatusOK, time.Minute, nil)

	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	var last string
	deadline := time.Now().Add(2 * time.Minute)
	for {
		up := map[string]string{}
		resp, err := client.Get("http://" + addr + "/metrics")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = string(b)
			for _, m := range watchUpRE.FindAllStringSubmatch(last, -1) {
				up[m[1]] = m[2]
			}
		}
		var got []string
		for r, v := range up {
			if v == "1" {
				got = append(got, r)
			}
		}
		sort.Strings(got)
		want := slices.Clone(resources)
		sort.Strings(want)
		if slices.Equal(got, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("imagepull_kube_watch_up is 1 for %q, want exactly %q; watch series:\n%s", got, want, grepLines(last, "imagepull_kube_watch"))
		}
		time.Sleep(250 * time.Millisecond)
	}
	if out := strings.ToLower(p.Output()); strings.Contains(out, "forbidden") {
		t.Errorf("the exporter met a forbidden request with this role:\n%s", grepLines(p.Output(), "orbidden"))
	}
}

// deployedArgs returns the command line the workload's container runs,
// pointed at this machine: the rendering's ConfigMap config.yml, written to
// dir without its public canary targets (tests send nothing to the
// internet; edit, when not nil, changes more), the listen address addr, and
// a kubeconfig for token in place of the in-cluster service account.
func deployedArgs(t testing.TB, k *testenv.Kube, objs []dt.Object, workload dt.Object, dir, addr, token string, edit func(config map[string]any)) []string {
	t.Helper()
	cm := dt.Find(t, objs, "ConfigMap", "imagepull-exporter")
	var config map[string]any
	if err := yaml.Unmarshal([]byte(dt.Get(cm, "data", "config.yml").(string)), &config); err != nil {
		t.Fatal(err)
	}
	delete(config, "targets")
	if edit != nil {
		edit(config)
	}
	b, err := yaml.Marshal(config)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, a := range strs(dt.Get(workload, "spec", "template", "spec", "containers", "0", "args")) {
		switch {
		case strings.HasPrefix(a, "--config.file="):
			a = "--config.file=" + cfg
		case strings.HasPrefix(a, "--web.listen-address="):
			a = "--web.listen-address=" + addr
		}
		args = append(args, a)
	}
	return append(args, "--kubeconfig="+k.WriteKubeconfig(token))
}

func grepLines(s, sub string) string {
	var b strings.Builder
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), sub) {
			b.WriteString(sc.Text() + "\n")
		}
	}
	return b.String()
}

// goMemLimit is the GOMEMLIMIT the kubelet hands the workload's container
// (resourceFieldRef limits.memory: the limit in bytes).
func goMemLimit(t testing.TB, workload dt.Object) string {
	t.Helper()
	limit, ok := dt.Get(workload, "spec", "template", "spec", "containers", "0", "resources", "limits", "memory").(string)
	if !ok {
		t.Fatalf("%s has no memory limit", workload.Key())
	}
	q, err := resource.ParseQuantity(limit)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("GOMEMLIMIT=%d", q.Value())
}
