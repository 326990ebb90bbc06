package kube

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/imagepull/imagepull_exporter/collector"
	"github.com/imagepull/imagepull_exporter/collector/config"
	"github.com/imagepull/imagepull_exporter/internal/testenv"
	"github.com/imagepull/imagepull_exporter/probe"
)

// testAuthCheckAccounting (issue 8, item 1): with --kube.use-pull-secrets
// (and no target discovery, so that the scheduler itself sends nothing to
// the registry), the pull secrets' auth checks are sent through the
// scheduler's Sender: their requests are counted in
// imagepull_registry_requests_total, exactly as the token-auth registry
// and its token issuer logged them. A secret with a wrong password and its
// rotation give refused tokens and a second round of checks.
func testAuthCheckAccounting(t *testing.T, k *testenv.Kube) {
	const ns, ua = "acct-authcheck", "imagepull-acct-authcheck"
	k.EnsureNamespace(t, ns)
	kl := kubelet{t: t, client: k.Client}
	r := testenv.StartRegistry(t, testenv.RegistryOptions{Auth: testenv.RegistryAuthToken,
		Users: map[string]testenv.TokenUser{"puller": {Password: "right-pw-a11c", Pull: []string{"**"}}}})
	r.Push(t, "app", "v1")
	secret := func(name, pw string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Type: corev1.SecretTypeDockerConfigJson,
			Data: map[string][]byte{corev1.DockerConfigJsonKey: dockerConfigJSON(r.Addr, "puller", pw)}}
	}
	createSecret(t, k, secret("right", "right-pw-a11c"))
	createSecret(t, k, secret("wrong", "wrong-pw-5e0f"))
	img := r.Ref("app", "v1")
	kl.pod(podSpec{ns: ns, name: "right", node: "n1", secrets: []string{"right"}, ctrs: []ctr{{image: img, running: true}}})
	kl.pod(podSpec{ns: ns, name: "wrong", node: "n1", secrets: []string{"wrong"}, ctrs: []ctr{{image: img, waiting: "ErrImagePull"}}})

	cfg := configYAML("") + fmt.Sprintf("discovery:\n  modules:\n    - {registry: %q, module: local}\n", r.Addr)
	e := startExporter(t, exporterOptions{rest: k.Config, namespaces: []string{ns}, config: cfg, pullSecret: true, userAgent: ua})
	metrics := prometheus.NewRegistry()
	metrics.MustRegister(e.sched)

	fences := 0
	check := func(what string, musthave ...testenv.KindCode) {
		t.Helper()
		fences++
		mfs, err := metrics.Gather()
		if err != nil {
			t.Fatal(err)
		}
		testenv.WantAgreement(t, what,
			testenv.CountedKindCodes(testenv.Samples(mfs), "imagepull_registry_requests_total", fmt.Sprintf("registry=%q", r.Addr)),
			testenv.LoggedKindCodes(testenv.FilterUA(r.Fence(t, fmt.Sprintf("fence-%d", fences)), ua), r.Issuer.AccessLogBy(ua)),
			musthave...)
	}

	waitFor(t, "both secrets checked", func() bool {
		right, okR := authValue(e, ns, "right", r.Addr)
		wrong, okW := authValue(e, ns, "wrong", r.Addr)
		return okR && right == 1 && okW && wrong == 0
	})
	check("first checks",
		testenv.KindCode{Kind: "ping", Code: "401"}, testenv.KindCode{Kind: "token", Code: "200"},
		testenv.KindCode{Kind: "token", Code: "401"}, testenv.KindCode{Kind: "manifest_head", Code: "200"})

	// The wrong secret is fixed: it is checked again at once.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := k.Client.CoreV1().Secrets(ns).Update(ctx, secret("wrong", "right-pw-a11c"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the rotated secret checked", func() bool {
		v, ok := authValue(e, ns, "wrong", r.Addr)
		return ok && v == 1
	})
	check("after the rotation")

	// A configuration reload keeps counting: the checks go on, so their
	// counts must not be dropped as those of a registry nothing probes.
	cfg2, err := config.Parse("test.yml", []byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	e.sched.ApplyConfig(cfg2)
	check("after a reload")
}

// TestDiagnoseAccounting (issue 8, item 1): what `diagnose` counts
// (Sender.Total) equals the requests the registry logged from it. A found
// tag is one probe; a missing tag is a probe and then the tag listing
// (Prober.ListTags, through the same Sender).
func TestDiagnoseAccounting(t *testing.T) {
	const probeUA = "imagepull-acct-diagnose"
	r := testenv.StartRegistry(t, testenv.RegistryOptions{})
	r.Push(t, "acme/api", "v1.2.3")
	r.Push(t, "acme/api", "v1.1.0")
	d, out := diagnoser(t, nil, configYAML("")+fmt.Sprintf("discovery:\n  modules:\n    - {registry: %q, module: local}\n", r.Addr))
	p := probe.NewProber(probe.ProberOptions{UserAgent: probeUA})
	t.Cleanup(p.Close)
	d.Prober, d.Sender = p, collector.NewSender(nil)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if ok, err := d.DiagnoseImage(ctx, r.Ref("acme/api", "v1.2.3"), "", ""); err != nil || !ok {
		t.Fatalf("DiagnoseImage of a tag that exists = %t, %v\n%s", ok, err, out)
	}
	if ok, err := d.DiagnoseImage(ctx, r.Ref("acme/api", "v1.2.4"), "", ""); err != nil || ok {
		t.Fatalf("DiagnoseImage of a missing tag = %t, %v\n%s", ok, err, out)
	}
	wantLines(t, out.String(), "(the tag exists as v1.2.3)")

	log := r.Fence(t, "fence-diagnose")
	sent := testenv.FilterUA(log, probeUA)
	if got := d.Sender.Total(); got != uint64(len(sent)) {
		t.Errorf("diagnose counted %d requests; the registry logged %d from it:\n%v", got, len(sent), sent)
	}
	if n := testenv.LoggedKindCodes(sent)[testenv.KindCode{Kind: "manifest_head", Code: "404"}]; n != 1 {
		t.Errorf("the registry logged %d HEADs answered 404 from diagnose, want 1: %v", n, sent)
	}
	listed := false
	for _, e := range sent {
		listed = listed || strings.HasSuffix(strings.SplitN(e.Path, "?", 2)[0], "/tags/list")
	}
	if !listed {
		t.Errorf("no tags/list request in the registry's log: %v", sent)
	}
}
