package collector

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/imagepull/imagepull_exporter/collector/config"
	"github.com/imagepull/imagepull_exporter/internal/testenv"
	"github.com/imagepull/imagepull_exporter/probe"
)

const mirrorTestUA = "imagepull_exporter-mirror-test"

// copyImage copies repo:tag from one registry to another, as a mirror sync
// job would (crane copy): it reads the image (a manifest GET, by the test,
// not the prober) and writes it.
func copyImage(t *testing.T, from, to *testenv.Registry, repo, tag string) {
	t.Helper()
	src, err := name.ParseReference(from.Ref(repo, tag), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	img, err := remote.Image(src, remote.WithTransport(tr), remote.WithContext(ctx))
	if err != nil {
		t.Fatalf("read %s: %v", src, err)
	}
	to.PushImage(t, repo, tag, img)
}

// gatherSeries returns the samples of g (keyed as testenv.Samples keys
// them) of the named metric families only.
func gatherSeries(t *testing.T, g prometheus.Gatherer, names ...string) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	all := testenv.Samples(mfs)
	out := map[string]float64{}
	for _, name := range names {
		for _, k := range testenv.Series(all, name) {
			out[k] = all[k]
		}
	}
	return out
}

// The mirror chain against real registries: an upstream, a pull-through
// cache of it (distribution's proxy mode) and a mirror filled by copying,
// the kind a nightly sync job keeps. When the upstream tag moves, the
// pull-through cache follows it (distribution 2.8 asks the remote for a tag
// on every request while the remote answers) and the copied mirror goes
// stale; the exporter says so, and never GETs a manifest from any of them.
func TestMirrorChainRealRegistries(t *testing.T) {
	upstream := testenv.StartRegistry(t, testenv.RegistryOptions{})
	first := upstream.Push(t, "team/app", "v1")
	cache := testenv.StartRegistry(t, testenv.RegistryOptions{ProxyRemoteURL: upstream.URL})
	copied := testenv.StartRegistry(t, testenv.RegistryOptions{})
	copyImage(t, upstream, copied, "team/app", "v1")

	cfg, err := config.Parse("mirrors.yml", []byte(fmt.Sprintf(`
modules:
  local: {timeout: 5s, interval: 1h, plain_http: true}
mirrors:
  %[1]q: ["http://%[2]s", "http://%[3]s"]
targets:
  - {name: app, image: "%[1]s/team/app:v1", module: local}
`, upstream.Addr, cache.Addr, copied.Addr)))
	if err != nil {
		t.Fatal(err)
	}
	prober := probe.NewProber(probe.ProberOptions{UserAgent: mirrorTestUA})
	s := NewScheduler(SchedulerOptions{Prober: prober})
	s.ApplyConfig(cfg)
	reg := prometheus.NewRegistry()
	reg.MustRegister(s)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := s.runners["app"]
	probeNow := func() {
		t.Helper()
		s.probeOnce(ctx, r)
	}

	names := []string{"imagepull_mirror_up", "imagepull_mirror_stale", "imagepull_mirror_fallback"}
	up, st, fb := func(m string) string {
		return fmt.Sprintf(`imagepull_mirror_up{mirror=%q,upstream=%q}`, m, upstream.Addr)
	}, func(m string) string {
		return fmt.Sprintf(`imagepull_mirror_stale{mirror=%q,repository="team/app",tag="v1",upstream=%q}`, m, upstream.Addr)
	}, func(m string) string {
		return fmt.Sprintf(`imagepull_mirror_fallback{mirror=%q,upstream=%q}`, m, upstream.Addr)
	}
	check := func(want map[string]float64) {
		t.Helper()
		got := gatherSeries(t, reg, names...)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("mirror series:\n got %v\nwant %v", got, want)
		}
	}

	probeNow()
	if st, _ := status(s, "app"); st.Digest != first {
		t.Fatalf("upstream probe: digest %q, want %q (%v)", st.Digest, first, st.Last)
	}
	check(map[string]float64{
		up(cache.Addr): 1, up(copied.Addr): 1,
		st(cache.Addr): 0, st(copied.Addr): 0,
		fb(cache.Addr): 1, fb(copied.Addr): 1,
	})

	// The tag moves upstream.
	second := upstream.Push(t, "team/app", "v1")
	probeNow()
	if st, _ := status(s, "app"); st.Digest != second {
		t.Fatalf("upstream probe after the push: digest %q, want %q", st.Digest, second)
	}
	check(map[string]float64{
		up(cache.Addr): 1, up(copied.Addr): 1,
		st(cache.Addr): 0, st(copied.Addr): 1,
		fb(cache.Addr): 1, fb(copied.Addr): 1,
	})

	// The sync job catches up: the copied mirror is fresh again.
	copyImage(t, upstream, copied, "team/app", "v1")
	probeNow()
	check(map[string]float64{
		up(cache.Addr): 1, up(copied.Addr): 1,
		st(cache.Addr): 0, st(copied.Addr): 0,
		fb(cache.Addr): 1, fb(copied.Addr): 1,
	})

	// The copied mirror goes away: it is down, and says why; stale needs
	// an answer from both, so its series goes.
	copied.Stop()
	probeNow()
	check(map[string]float64{
		up(cache.Addr): 1, up(copied.Addr): 0,
		st(cache.Addr): 0,
		fb(cache.Addr): 1, fb(copied.Addr): 1,
	})
	why := gatherSeries(t, reg, "imagepull_mirror_failure_reason")
	if v := why[fmt.Sprintf(`imagepull_mirror_failure_reason{mirror=%q,reason="connect",upstream=%q}`, copied.Addr, upstream.Addr)]; v != 1 {
		t.Errorf("failure reason of the stopped mirror: %v", why)
	}

	// Every request the prober sent to a mirror carried containerd's ns,
	// none was a manifest GET, and the requests are counted per mirror.
	for _, rg := range []*testenv.Registry{upstream, cache, copied} {
		for _, e := range rg.AccessLogBy(mirrorTestUA) {
			if strings.Contains(e.Path, "/manifests/") && e.Method != http.MethodHead {
				t.Errorf("%s: the prober sent %s %s", rg.Addr, e.Method, e.Path)
			}
			// url.Values encoding, as containerd's: ?ns=127.0.0.1%3A5000.
			if rg == cache && strings.Contains(e.Path, "/manifests/") && !strings.HasSuffix(e.Path, "?ns="+url.QueryEscape(upstream.Addr)) {
				t.Errorf("%s: mirror request %s without ?ns=%s", rg.Addr, e.Path, upstream.Addr)
			}
		}
	}
	heads := 0
	for _, e := range cache.AccessLogBy(mirrorTestUA) {
		if e.Method == http.MethodHead {
			heads++
		}
	}
	reqs := gatherSeries(t, reg, "imagepull_mirror_requests_total", "imagepull_registry_requests_total")
	key := fmt.Sprintf(`imagepull_mirror_requests_total{code="200",kind="manifest_head",mirror=%q,upstream=%q}`, cache.Addr, upstream.Addr)
	if heads != 4 || reqs[key] != 4 {
		t.Errorf("pull-through cache: %d HEADs in its access log, %v counted; want 4 and 4:\n%v", heads, reqs[key], reqs)
	}
	for k := range reqs {
		if strings.Contains(k, "manifest_get") {
			t.Errorf("a manifest GET was counted: %s", k)
		}
		if strings.HasPrefix(k, "imagepull_registry_requests_total") && !strings.Contains(k, upstream.Addr) {
			t.Errorf("mirror requests counted as registry requests: %s", k)
		}
	}
}

// TestMirrorCauseLeavesConfigOut: probes of a mirror that failed on the
// exporter's own files say nothing of the mirror: it is neither up nor
// down (no ImagePullMirrorDown), and beside other results they do not
// count.
func TestMirrorCauseLeavesConfigOut(t *testing.T) {
	cfgFail := &probe.Result{Reason: probe.ReasonConfig}
	if c, known := mirrorCause([]*probe.Result{cfgFail, cfgFail}); known {
		t.Errorf("only config failures: cause %q, known; want unknown", c)
	}
	if c, known := mirrorCause([]*probe.Result{cfgFail, {Reason: probe.ReasonNotFound}}); !known || c != probe.ReasonNotFound {
		t.Errorf("config and not_found: %q, %t; want not_found", c, known)
	}
	if c, known := mirrorCause([]*probe.Result{cfgFail, {Success: true}}); !known || c != probe.ReasonNone {
		t.Errorf("config and a success: %q, %t; want up", c, known)
	}
}
