package probe

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/imagepull/imagepull_exporter/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testUA tells the prober's requests apart from pushes in the registry's
// access log.
const testUA = "imagepull_exporter-test"

// startRegistry starts a real registry and, when the test ends, checks its
// access log: no client ever sent a manifest GET.
func startRegistry(t *testing.T, opts testenv.RegistryOptions) *testenv.Registry {
	t.Helper()
	r := testenv.StartRegistry(t, opts)
	t.Cleanup(func() {
		if gets, _ := r.ManifestRequests(); gets != 0 {
			t.Errorf("the registry's access log shows %d manifest GETs, want 0:\n%v", gets, r.AccessLog())
		}
	})
	return r
}

// testClock is an injectable clock for token expiry and auth-check tests.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock { return &testClock{now: time.Now()} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newProber(t testing.TB, clock *testClock) *Prober {
	opts := ProberOptions{UserAgent: testUA}
	if clock != nil {
		opts.Now = clock.Now
	}
	p := NewProber(opts)
	t.Cleanup(p.Close)
	return p
}

// plainModule is a module for an http:// registry with a short timeout.
func plainModule() Module {
	m := DefaultModule
	m.PlainHTTP = true
	m.Timeout = 5 * time.Second
	return m
}

func target(t testing.TB, image string, m Module) Target {
	t.Helper()
	ref, err := ParseReference(image)
	if err != nil {
		t.Fatalf("ParseReference(%q): %v", image, err)
	}
	if m.Auth.HasStaticCredentials() && len(m.Auth.BoundRegistries()) == 0 {
		// As the configuration loader binds a configured target's module
		// (probe/binding.go); the hostile tests bind explicitly.
		m.Auth.TargetRegistries = []string{ref.Registry}
	}
	return Target{Ref: ref, ModuleName: "test", Module: m}
}

// probe runs one probe and checks what every result must satisfy whatever
// its outcome: no secret in any rendering of it, a total phase, a closed
// reason, requests of known kinds and never a manifest GET.
func probe(t testing.TB, p *Prober, tg Target, secrets ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res := p.Probe(ctx, tg)
	checkResult(t, res, secrets...)
	return res
}

func checkResult(t testing.TB, res Result, secrets ...string) {
	t.Helper()
	rendered := fmt.Sprintf("%+v\n%#v\n%s", res, res, res.Error)
	for _, s := range secrets {
		if s != "" && strings.Contains(rendered, s) {
			t.Errorf("result leaks secret %q:\n%s", s, rendered)
		}
	}
	// Every JWT (bearer tokens of the test issuer) starts with the base64
	// of `{"`.
	if strings.Contains(rendered, "eyJ") {
		t.Errorf("result leaks a token:\n%s", rendered)
	}
	if _, ok := res.Phases[PhaseTotal]; !ok || len(res.Phases) != len(Phases) {
		t.Errorf("phases %v: want all of %v", res.Phases, Phases)
	}
	if res.Success != (res.Reason == ReasonNone) {
		t.Errorf("Success %v with reason %q", res.Success, res.Reason)
	}
	known := res.Reason == ReasonNone
	for _, r := range Reasons {
		known = known || r == res.Reason
	}
	if !known {
		t.Errorf("reason %q is not in the closed set", res.Reason)
	}
	if !res.Success && res.Error == "" {
		t.Errorf("failure %q without an error text", res.Reason)
	}
	for _, rq := range res.Requests {
		if rq.Kind == KindManifestGet || (rq.Kind == KindManifestHead && rq.Method != "HEAD") {
			t.Errorf("request %+v: a manifest request that is not a HEAD", rq)
		}
		if strings.Contains(rq.URL, "@") {
			t.Errorf("request URL %q carries userinfo", rq.URL)
		}
		for _, v := range rq.Header["> Authorization"] {
			if !strings.HasSuffix(v, " <redacted>") {
				t.Errorf("Authorization header recorded as %q", v)
			}
		}
	}
}

// kinds lists the request kinds of a result, e.g. "ping token manifest_head".
func kinds(res Result) string {
	var ks []string
	for _, r := range res.Requests {
		ks = append(ks, string(r.Kind))
	}
	return strings.Join(ks, " ")
}

// requestsLine lists method and status of a result's requests, for failure
// messages.
func requestsLine(res Result) string {
	var ks []string
	for _, r := range res.Requests {
		ks = append(ks, fmt.Sprintf("%s %s %s -> %d %s", r.Kind, r.Method, r.URL, r.Status, r.Err))
	}
	return strings.Join(ks, "\n")
}

func wantSuccess(t testing.TB, res Result, digest string) {
	t.Helper()
	if !res.Success {
		t.Fatalf("probe failed: %s: %s\nrequests:\n%s", res.Reason, res.Error, requestsLine(res))
	}
	if digest != "" && res.Digest != digest {
		t.Fatalf("digest %q, want %q (the pushed one)", res.Digest, digest)
	}
}

func wantReason(t testing.TB, res Result, reason Reason, errParts ...string) {
	t.Helper()
	if res.Reason != reason || res.Success {
		t.Fatalf("reason %q (success %v, error %q), want %q\nrequests:\n%s", res.Reason, res.Success, res.Error, reason, requestsLine(res))
	}
	for _, p := range errParts {
		if !strings.Contains(res.Error, p) {
			t.Errorf("error %q does not say %q", res.Error, p)
		}
	}
}

// silentListener accepts connections and never answers: a registry that
// hangs.
func silentListener(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return l.Addr().String()
}
