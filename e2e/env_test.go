package e2e_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/imagepull/imagepull_exporter/internal/testenv"
	"github.com/imagepull/imagepull_exporter/mixin"
)

// Shortened `for:` durations, set through the mixin's _config as its README
// says. Each must outlast the transient states the scenarios pass through
// (a probe interval of 2s, one scrape and one evaluation of 1s each), so
// that nothing fires that the test does not expect:
//   - after the registry restarts, its in-memory storage is empty until the
//     test pushes the image again, so one probe may see not_found;
//   - before the first probe, the join's cause is unprobed.
//
// rescheduleRiskFor and every other duration keep their defaults (15m and
// more): the running pods are at reschedule risk during the outage, and that
// alert must stay pending. If it fired, it would be inhibited by
// ImagePullRegistryUnreachable while the outage lasts, but the two resolve
// in different rule groups, up to an evaluation apart, and Alertmanager
// would notify the risk in that gap. So rescheduleRiskFor must be longer
// than any outage the test stages, not only than registryUnreachableFor.
const (
	forDuration = 8 * time.Second
	mixinConfig = `{
  registryUnreachableFor: '8s',
  registryUnreachableKeepFiringFor: '4s',
  registryAuthFailingFor: '8s',
  podsBlockedFor: '8s',
}`
	// notifyWait is the example Alertmanager config's group_wait and
	// group_interval in the test (30s and 5m in the example).
	notifyWait = 2 * time.Second
	// eventually bounds every wait for a state to arrive (for: + scrape +
	// evaluation + group_wait, with room for a loaded 2-core machine). It
	// is a deadline for a hung test, not a performance assertion.
	eventually = 90 * time.Second
)

// Names in the cluster and the registry.
const (
	repo        = "shop/api"
	tag         = "v1"
	missingTag  = "v1.1" // a canary rolled out with a tag that was never pushed
	targetName  = "shop-api"
	pullUser    = "puller"
	nsShop      = "shop"
	nsPayments  = "payments"
	exporterJob = "imagepull-exporter" // the mixin's default imagepullSelector
)

// stack is everything the test runs.
type stack struct {
	reg       *testenv.Registry
	kube      *testenv.Kube
	exporter  *testenv.Process
	prom      *testenv.Prometheus
	am        *testenv.Alertmanager
	hook      *testenv.Webhook
	files     map[string]string // the mixin rendered with mixinConfig
	configDir string

	exporterURL string
	registry    string // the registry label: 127.0.0.1:PORT
	password    string // the puller's real password
	digest      string // what the registry serves for shop/api:v1
	oldDigest   string // what shop/api:v1 was before it was pushed again
	pushImage   func()
	started     time.Time
}

// stackOptions changes what startStackWith builds; the zero value is the
// stack of TestAlerting.
type stackOptions struct {
	// cluster creates the cluster's objects once the apiserver runs; nil
	// means createPods.
	cluster func(t *testing.T, s *stack)
	// config writes the exporter's config.yml into s.configDir; nil means
	// writeExporterConfig with the puller's password.
	config func(t *testing.T, s *stack)
	// flags are added to the exporter's command line.
	flags []string
	// mixinConfig is the mixin's _config override; "" means mixinConfig.
	mixinConfig string
}

// startStack starts every component, creates the cluster's pods and waits
// until Prometheus sees the exporter's probe and join series.
func startStack(t *testing.T) *stack {
	t.Helper()
	return startStackWith(t, stackOptions{})
}

// startStackWith is startStack with the cluster, the exporter's
// configuration, flags and the mixin's _config of opts.
func startStackWith(t *testing.T, opts stackOptions) *stack {
	t.Helper()
	testenv.SkipShort(t, "the whole stack (registry, apiserver, Prometheus, Alertmanager, the exporter binary)")
	s := &stack{password: "pull-" + randomHex(t), started: time.Now()}

	// The registry: basic auth, the image pushed twice under one tag (a
	// rolling tag), so one running pod still has the older digest.
	s.reg = testenv.StartRegistry(t, testenv.RegistryOptions{
		Auth:  testenv.RegistryAuthBasic,
		Users: map[string]testenv.TokenUser{pullUser: {Password: s.password}},
	})
	s.registry = s.reg.Addr
	s.oldDigest = s.reg.Push(t, repo, tag)
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	s.pushImage = func() { s.digest = s.reg.PushImage(t, repo, tag, img) }
	s.pushImage()

	// The cluster, as the kubelets left it.
	s.kube = testenv.StartKube(t, testenv.KubeOptions{})
	if opts.cluster != nil {
		opts.cluster(t, s)
	} else {
		s.createPods(t)
	}

	// The exporter.
	s.configDir = t.TempDir()
	if opts.config != nil {
		opts.config(t, s)
	} else {
		s.writeExporterConfig(t, s.password)
	}
	exporterAddr := testenv.FreeAddr(t)
	s.exporterURL = "http://" + exporterAddr
	s.exporter = testenv.StartProcess(t, "imagepull_exporter", exporterBin, append([]string{
		"--web.listen-address=" + exporterAddr,
		"--config.file=" + filepath.Join(s.configDir, "config.yml"),
		// The admin token: RBAC is proven by collector/kube and deploy/.
		"--kubeconfig=" + s.kube.WriteKubeconfig(s.kube.AdminToken),
		// Above what a 2s interval with 4s auth checks sends, so the
		// budget never skips a probe and every scrape is current.
		"--probe.registry-budget=600",
	}, opts.flags...), nil, s.configDir)
	s.exporter.WaitHTTP(s.exporterURL+"/-/ready", http.StatusOK, time.Minute, nil)

	// The mixin, with short `for:`, into Prometheus; its Alertmanager
	// example pointed at the test's webhook.
	mc := mixinConfig
	if opts.mixinConfig != "" {
		mc = opts.mixinConfig
	}
	s.files, err = mixin.Render(mc)
	if err != nil {
		t.Fatal(err)
	}
	s.hook = testenv.StartWebhook(t)
	amConfig, err := mixin.AlertmanagerExample(s.hook.URL, notifyWait)
	if err != nil {
		t.Fatal(err)
	}
	s.am = testenv.StartAlertmanager(t, testenv.AlertmanagerOptions{Config: amConfig})
	s.prom = testenv.StartPrometheus(t, testenv.PrometheusOptions{
		Config: fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - imagepull-alerts.yaml
  - imagepull-rules.yaml
alerting:
  alertmanagers:
    - static_configs:
        - targets: [%q]
scrape_configs:
  - job_name: %s
    static_configs:
      - targets: [%q]
`, s.am.Addr, exporterJob, exporterAddr),
		RuleFiles: map[string]string{
			"imagepull-alerts.yaml": s.files[mixin.AlertsFile],
			"imagepull-rules.yaml":  s.files[mixin.RulesFile],
		},
	})
	// Registered last, so it runs first: every process still answers.
	t.Cleanup(func() {
		if t.Failed() {
			s.dumpDiagnostics(t)
		}
	})
	return s
}

// exporterConfig probes shop/api:v1 every 2s with the puller's credentials
// (password given inline, so a rotated password is a config reload).
func (s *stack) writeExporterConfig(t *testing.T, password string) {
	t.Helper()
	cfg := fmt.Sprintf(`modules:
%s
targets:
  - name: %s
    image: %s
    module: shop
`, shopModule(password), targetName, s.reg.Ref(repo, tag))
	if err := os.WriteFile(filepath.Join(s.configDir, "config.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

// shopModule is the module `shop`, indented under `modules:`: the
// puller's credentials, a 2s interval and a 4s auth check.
func shopModule(password string) string {
	return fmt.Sprintf(`  shop:
    timeout: 1s
    interval: 2s
    auth_check_interval: 4s
    plain_http: true
    auth:
      username: %s
      password: %q`, pullUser, password)
}

// reloadExporter asks the exporter to reread its config (POST /-/reload).
func (s *stack) reloadExporter(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.exporterURL+"/-/reload", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST /-/reload: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /-/reload: %s: %s", resp.Status, body)
	}
}

// createPods plays the kubelets of two nodes:
//   - shop/api-0 and shop/api-1 run shop/api:v1 on node-a, api-1 still with
//     the digest the tag had before it was pushed again (tag drift);
//   - shop/api-canary waits in ImagePullBackOff on node-b for v1.1, a tag
//     that was never pushed, and its node says so in the words a 1.32+
//     kubelet writes over containerd (a node-reported not_found);
//   - payments/checkout-0 and -1 wait in ImagePullBackOff on node-b for
//     shop/api:v1 with a pull secret that does not exist.
//
// The waiting pods are there before the registry goes down: the critical
// ImagePullRegistryUnreachable needs containers waiting on the registry at
// the moment its probes start failing, or the warning one would start its
// `for:` first, fire alone and be notified on its own.
func (s *stack) createPods(t *testing.T) {
	t.Helper()
	for _, ns := range []string{nsShop, nsPayments} {
		s.kube.EnsureNamespace(t, ns)
	}
	image := s.reg.Ref(repo, tag)
	s.createPod(t, nsShop, "api-0", "node-a", image, running(s.registry+"/"+repo+"@"+s.digest))
	s.createPod(t, nsShop, "api-1", "node-a", image, running(s.registry+"/"+repo+"@"+s.oldDigest))
	s.createPod(t, nsShop, "api-canary", "node-b", s.reg.Ref(repo, missingTag), backOffNotFound(s.reg.Ref(repo, missingTag)))
	for _, name := range []string{"checkout-0", "checkout-1"} {
		s.createPod(t, nsPayments, name, "node-b", image, backOff(image), "shop-registry")
	}
}

// createPod creates a one-container pod and writes its status through the
// status subresource, as the kubelet does.
func (s *stack) createPod(t *testing.T, ns, name, node, image string, st containerState, pullSecrets ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": strings.Split(name, "-")[0]}},
		Spec: corev1.PodSpec{
			NodeName:   node,
			Containers: []corev1.Container{{Name: "app", Image: image, ImagePullPolicy: corev1.PullIfNotPresent}},
		},
	}
	for _, sec := range pullSecrets {
		pod.Spec.ImagePullSecrets = append(pod.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: sec})
	}
	pods := s.kube.Client.CoreV1().Pods(ns)
	created, err := pods.Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod %s/%s: %v", ns, name, err)
	}
	cs := corev1.ContainerStatus{Name: "app", Image: image, ImageID: st.imageID, State: st.state}
	created.Status = corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{cs}}
	if st.state.Running != nil {
		started := true
		created.Status.Phase = corev1.PodRunning
		created.Status.ContainerStatuses[0].Ready = true
		created.Status.ContainerStatuses[0].Started = &started
	}
	if _, err := pods.UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update status of pod %s/%s: %v", ns, name, err)
	}
}

// containerState is what the kubelet reports for the pod's one container.
type containerState struct {
	state   corev1.ContainerState
	imageID string // containerd's repo digest, set once the image was pulled
}

func running(imageID string) containerState {
	return containerState{
		state:   corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}},
		imageID: imageID,
	}
}

func backOff(image string) containerState {
	return containerState{state: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
		Reason:  "ImagePullBackOff",
		Message: fmt.Sprintf("Back-off pulling image %q", image),
	}}}
}

// backOffNotFound is a 1.32+ kubelet's back-off over containerd for a tag
// that does not exist: the pull error follows the back-off text
// (pkg/kubelet/images/image_manager.go; containerd's resolver answers
// errdefs.NotFound, which the CRI returns as code NotFound).
func backOffNotFound(image string) containerState {
	return containerState{state: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
		Reason: "ImagePullBackOff",
		Message: fmt.Sprintf(`Back-off pulling image %[1]q: ErrImagePull: rpc error: code = NotFound desc = failed to pull and unpack image %[1]q: failed to resolve reference %[1]q: %[1]s: not found`,
			image),
	}}}
}

func randomHex(t *testing.T) string {
	t.Helper()
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// waitQuery waits until query returns exactly want: one line per sample,
// `{label="value", ...} value`, sorted (see formatResult).
func (s *stack) waitQuery(t *testing.T, query string, want ...string) {
	t.Helper()
	sort.Strings(want)
	exp := strings.Join(want, "\n")
	s.prom.WaitQuery(t, query, eventually, func(r testenv.QueryResult) bool {
		return formatResult(r) == exp
	})
}

// formatResult renders a vector one sample per line, labels sorted, lines
// sorted; __name__ is left out.
func formatResult(r testenv.QueryResult) string {
	if r.Type == "scalar" {
		return fmt.Sprintf("scalar %g", r.Scalar)
	}
	lines := make([]string, 0, len(r.Samples))
	for _, smp := range r.Samples {
		lines = append(lines, labelString(smp.Metric, "__name__")+" "+fmt.Sprint(smp.Value))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// labelString renders labels as {a="1", b="2"}, sorted, without skip.
func labelString(ls map[string]string, skip ...string) string {
	names := make([]string, 0, len(ls))
	for k := range ls {
		skipped := false
		for _, s := range skip {
			skipped = skipped || k == s
		}
		if !skipped {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, k := range names {
		parts[i] = fmt.Sprintf("%s=%q", k, ls[k])
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// dumpDiagnostics logs what Prometheus and Alertmanager hold, every webhook
// message, and the exporter's imagepull series, for a failed run.
func (s *stack) dumpDiagnostics(t *testing.T) {
	get := func(url string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return string(b)
	}
	t.Logf("--- Prometheus alerts ---\n%s", get(s.prom.URL+"/api/v1/alerts"))
	t.Logf("--- Prometheus rule health ---\n%s", get(s.prom.URL+"/api/v1/rules"))
	t.Logf("--- Alertmanager alerts ---\n%s", get(s.am.URL+"/api/v2/alerts"))
	var b strings.Builder
	for i, m := range s.hook.Messages() {
		fmt.Fprintf(&b, "#%d %s receiver=%s group=%v\n", i, m.Status, m.Receiver, m.GroupLabels)
		for _, a := range m.Alerts {
			ann, _ := json.Marshal(a.Annotations)
			fmt.Fprintf(&b, "    %s %s startsAt=%s endsAt=%s\n      %s\n", a.Status, labelString(a.Labels),
				a.StartsAt.Format(time.RFC3339), a.EndsAt.Format(time.RFC3339), ann)
		}
	}
	t.Logf("--- webhook messages ---\n%s", b.String())
	var series []string
	for _, line := range strings.Split(get(s.exporterURL+"/metrics"), "\n") {
		if strings.HasPrefix(line, "imagepull_") {
			series = append(series, line)
		}
	}
	t.Logf("--- exporter /metrics (imagepull_*) ---\n%s", strings.Join(series, "\n"))
}
