package kube

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/imagepull/imagepull_exporter/collector/config"
	"github.com/imagepull/imagepull_exporter/internal/testenv"
	"github.com/imagepull/imagepull_exporter/probe"
)

func diagnoser(t *testing.T, client kubernetes.Interface, cfgYAML string) (*Diagnoser, *strings.Builder) {
	t.Helper()
	cfg, err := config.Parse("test.yml", []byte(cfgYAML))
	if err != nil {
		t.Fatal(err)
	}
	p := probe.NewProber(probe.ProberOptions{UserAgent: "imagepull-diagnose-test"})
	t.Cleanup(p.Close)
	out := &strings.Builder{}
	return &Diagnoser{Client: client, Config: cfg, Prober: p, Out: out}, out
}

func wantLines(t *testing.T, out string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if !strings.Contains(out, l) {
			t.Errorf("diagnose output lacks %q:\n%s", l, out)
		}
	}
}

// testDiagnose runs diagnose against a real apiserver and registry: the
// pod's own credentials decide, and the words say what to do.
func testDiagnose(t *testing.T, k *testenv.Kube) {
	const ns = "diagnose"
	k.EnsureNamespace(t, ns)
	kl := kubelet{t: t, client: k.Client}
	r := testenv.StartRegistry(t, testenv.RegistryOptions{Auth: testenv.RegistryAuthBasic,
		Users: map[string]testenv.TokenUser{"puller": {Password: "right-pw-d1a9"}}})
	digest := r.Push(t, "acme/api", "v1.2.3")
	r.Push(t, "acme/api", "v1.1.0")
	r.Push(t, "acme/api", "latest")
	secret := func(name, pw string) *corev1.Secret {
		s := &corev1.Secret{Type: corev1.SecretTypeDockerConfigJson,
			Data: map[string][]byte{corev1.DockerConfigJsonKey: dockerConfigJSON(r.Addr, "puller", pw)}}
		s.Namespace, s.Name = ns, name
		return s
	}
	createSecret(t, k, secret("right", "right-pw-d1a9"))
	createSecret(t, k, secret("wrong", "wrong-pw-44f0"))
	createServiceAccount(t, k, ns, "deployer", "right")
	cfg := configYAML("") + "discovery:\n  modules:\n    - {registry: \"" + r.Addr + "\", module: local}\n"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Every explanation printed, to check at the end that none holds a
	// credential.
	var outputs []*strings.Builder
	newDiagnoser := func(t *testing.T) (*Diagnoser, *strings.Builder) {
		d, out := diagnoser(t, k.Client, cfg)
		outputs = append(outputs, out)
		return d, out
	}

	t.Run("pullable with the service account's secret", func(t *testing.T) {
		kl.pod(podSpec{ns: ns, name: "good", node: "n1", sa: "deployer", ctrs: []ctr{{image: r.Ref("acme/api", "v1.2.3"), running: true}}})
		d, out := newDiagnoser(t)
		ok, err := d.DiagnosePod(ctx, ns, "good")
		if err != nil || !ok {
			t.Fatalf("DiagnosePod = %t, %v; want pullable\n%s", ok, err, out)
		}
		wantLines(t, out.String(),
			"pull secrets: none on the pod, so service account deployer's: right",
			"secret diagnose/right: kubernetes.io/dockerconfigjson with entries for "+r.Addr,
			`user "puller" from secret diagnose/right entry "`+r.Addr+`"`,
			"OK: "+r.Addr+" serves v1.2.3 as "+digest)
	})

	t.Run("wrong secret on the pod", func(t *testing.T) {
		kl.pod(podSpec{ns: ns, name: "bad-secret", node: "n1", secrets: []string{"wrong"},
			ctrs: []ctr{{image: r.Ref("acme/api", "v1.2.3"), waiting: "ErrImagePull"}}})
		d, out := newDiagnoser(t)
		ok, err := d.DiagnosePod(ctx, ns, "bad-secret")
		if err != nil || ok {
			t.Fatalf("DiagnosePod = %t, %v; want not pullable\n%s", ok, err, out)
		}
		wantLines(t, out.String(),
			"pull secrets: the pod's imagePullSecrets: wrong",
			"kubelet: waiting, ErrImagePull",
			"CANNOT PULL: "+r.Addr+` rejected the credentials (user "puller" from secret diagnose/wrong entry "`+r.Addr+`"); the secret holds a wrong or expired password or token: update it`)
	})

	t.Run("missing tag, closest suggested", func(t *testing.T) {
		d, out := newDiagnoser(t)
		ok, err := d.DiagnoseImage(ctx, r.Ref("acme/api", "v1.2.4"), ns, "deployer")
		if err != nil || ok {
			t.Fatalf("DiagnoseImage = %t, %v; want not pullable\n%s", ok, err, out)
		}
		wantLines(t, out.String(),
			"CANNOT PULL: tag v1.2.4 not found in "+r.Addr+"/acme/api (the tag exists as v1.2.3)")
		// Listing tags is a tags/list GET: no manifest GET ever. The
		// registry logs a request after replying to it: wait for the
		// listing, the last request diagnose sent, before counting.
		tagsList := func(l []testenv.AccessLogEntry) bool {
			for _, e := range l {
				if strings.HasPrefix(e.UserAgent, "imagepull-diagnose-test") &&
					strings.HasSuffix(strings.SplitN(e.Path, "?", 2)[0], "/tags/list") {
					return true
				}
			}
			return false
		}
		if !tagsList(r.WaitAccessLogFor(tagsList)) {
			t.Error("no GET /v2/acme/api/tags/list in the registry's access log")
		}
		if gets, _ := r.ManifestRequests(); gets != 0 {
			t.Errorf("the registry saw %d manifest GETs", gets)
		}
	})

	t.Run("no credentials for a private registry", func(t *testing.T) {
		d, out := newDiagnoser(t)
		ok, err := d.DiagnoseImage(ctx, r.Ref("acme/api", "v1.2.3"), ns, "nobody")
		if err != nil || ok {
			t.Fatalf("DiagnoseImage = %t, %v; want not pullable\n%s", ok, err, out)
		}
		wantLines(t, out.String(),
			"none on the pod; service account diagnose/nobody does not exist",
			"credentials: none match this registry, so the pull is anonymous",
			"CANNOT PULL: "+r.Addr+" requires credentials and none of the pull secrets has an entry for "+r.Addr)
	})

	t.Run("invalid reference", func(t *testing.T) {
		d, out := newDiagnoser(t)
		ok, err := d.DiagnoseImage(ctx, "Ghcr.io/ACME/Api:v1", "", "")
		if err != nil || ok {
			t.Fatalf("DiagnoseImage = %t, %v; want not pullable", ok, err)
		}
		wantLines(t, out.String(), "repository name must be lowercase", "(the kubelet reports InvalidImageName)")
	})

	// Issue 10: the node's words next to the exporter's. A node rate
	// limited on an image the exporter pulls: a per-IP limit.
	t.Run("node rate limited, exporter not", func(t *testing.T) {
		img := r.Ref("acme/api", "v1.2.3")
		kl.pod(podSpec{ns: ns, name: "node-limited", node: "n1", sa: "deployer",
			ctrs: []ctr{{image: img, waiting: "ImagePullBackOff", message: backOff132(img, pullErr(err429, img))}}})
		d, out := newDiagnoser(t)
		if _, err := d.DiagnosePod(ctx, ns, "node-limited"); err != nil {
			t.Fatal(err)
		}
		wantLines(t, out.String(),
			"node's cause: rate_limited (classified from the kubelet's message)",
			"OK: "+r.Addr+" serves v1.2.3",
			"nodes and exporter disagree: the node says rate_limited, the exporter's probe is OK: a per-IP pull limit on the nodes' egress address",
			"pull through a mirror or authenticate the pulls")
	})

	// An older kubelet's bare back-off: the cause is in the Failed event.
	t.Run("old kubelet, cause from the event", func(t *testing.T) {
		img := r.Ref("acme/api", "v1.2.4")
		kl.pod(podSpec{ns: ns, name: "old-node", node: "n1", sa: "deployer",
			ctrs: []ctr{{image: img, waiting: "ImagePullBackOff", message: backOffBare(img)}}})
		kl.failedPull(ns, "old-node", "ca", "n7", "old-node.ev1", img, pullErr(errNotFound, img), 4)
		d, out := newDiagnoser(t)
		if ok, err := d.DiagnosePod(ctx, ns, "old-node"); err != nil || ok {
			t.Fatalf("DiagnosePod = %t, %v; want not pullable\n%s", ok, err, out)
		}
		wantLines(t, out.String(),
			"newest Failed event (node n7, ",
			"Failed to pull image \""+img+"\": rpc error: code = NotFound",
			"node's cause: not_found (classified from the newest Failed event)",
			"nodes and exporter agree: not_found")
	})

	// Diagnose names secrets, their registry keys and users, never a
	// password, in clear or as the secrets hold it (base64 of user:password).
	if len(outputs) != 7 {
		t.Fatalf("%d diagnose outputs collected, want one per case", len(outputs))
	}
	for _, out := range outputs {
		for _, pw := range []string{"right-pw-d1a9", "wrong-pw-44f0",
			base64.StdEncoding.EncodeToString([]byte("puller:right-pw-d1a9")),
			base64.StdEncoding.EncodeToString([]byte("puller:wrong-pw-44f0"))} {
			if strings.Contains(out.String(), pw) {
				t.Errorf("diagnose printed %q:\n%s", pw, out)
			}
		}
	}
}

// TestDiagnoseRateLimited: the 429 explanation. Docker Hub cannot be
// reached from here; this is a SIMULATION of its documented pull rate limit
// (docs.docker.com "Docker Hub usage and limits": ratelimit-limit and
// ratelimit-remaining "N;w=SECONDS", docker-ratelimit-source, 429 with
// Retry-After once exhausted) in front of a real registry.
func TestDiagnoseRateLimited(t *testing.T) {
	r := testenv.StartRegistry(t, testenv.RegistryOptions{})
	r.Push(t, "library/nginx", "1.27")
	u, err := url.Parse(r.URL)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	hub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if strings.Contains(req.URL.Path, "/manifests/") {
			w.Header().Set("RateLimit-Limit", "100;w=21600")
			w.Header().Set("RateLimit-Remaining", "0;w=21600")
			w.Header().Set("Docker-RateLimit-Source", "203.0.113.7")
			w.Header().Set("Retry-After", "3600")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		rp.ServeHTTP(w, req)
	}))
	defer hub.Close()
	host := strings.TrimPrefix(hub.URL, "http://")
	d, out := diagnoser(t, nil, configYAML(""))
	d.Config.Discovery.Modules = []config.DiscoveryModule{{Registry: host, Module: "local"}}
	ok, err := d.DiagnoseImage(context.Background(), host+"/library/nginx:1.27", "", "")
	if err != nil || ok {
		t.Fatalf("DiagnoseImage = %t, %v; want not pullable\n%s", ok, err, out)
	}
	wantLines(t, out.String(), "CANNOT PULL: "+host+" answered 429: anonymous pull limit for source 203.0.113.7 is exhausted (0 of 100 per 6h); it asks to retry after 1h0m0s; configure a pull secret or a mirror")
}

func TestSuggestTag(t *testing.T) {
	for _, tt := range []struct {
		missing string
		tags    []string
		want    string
	}{
		{"v1.2.4", []string{"latest", "v1.1.0", "v1.2.3"}, "the tag exists as v1.2.3"},
		{"1.2.3", []string{"v1.2.3", "v2.0.0"}, "the tag exists as v1.2.3"},
		{"V1.2.3", []string{"v1.2.3"}, "the tag exists as v1.2.3"},
		{"release-candidate", []string{"x1", "y2", "z3", "w4"}, "4 tags exist; the closest: w4, x1, y2"},
	} {
		if got := suggestTag(tt.missing, tt.tags); got != tt.want {
			t.Errorf("suggestTag(%q) = %q, want %q", tt.missing, got, tt.want)
		}
	}
}

// A module whose credentials are bound to other registries: diagnose says
// the pull is anonymous and why, instead of that no credential matches.
func TestDiagnoseUnboundModuleCredentials(t *testing.T) {
	r := testenv.StartRegistry(t, testenv.RegistryOptions{})
	r.Push(t, "acme/api", "v1")
	d, out := diagnoser(t, nil, fmt.Sprintf(`modules:
  private:
    plain_http: true
    auth: {username: alice, password: "not-sent-1234", registries: [registry.example.com]}
discovery:
  modules:
    - {registry: %q, module: private}
`, r.Addr))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if ok, err := d.DiagnoseImage(ctx, r.Ref("acme/api", "v1"), "", ""); err != nil || !ok {
		t.Fatalf("DiagnoseImage = %t, %v\n%s", ok, err, out)
	}
	wantLines(t, out.String(), "credentials: none match this registry, so the pull is anonymous",
		`(the credentials of module "private" are not bound to registry `+r.Addr+`: they are bound to registry.example.com; to send them there, add `+r.Addr+` to the module's auth.registries)`)
	if strings.Contains(out.String(), "not-sent-1234") {
		t.Errorf("diagnose shows the password:\n%s", out)
	}
}
