package collector

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imagepull/imagepull_exporter/internal/testenv"
)

// varyingSourceProxy is a SIMULATION of Docker Hub's documented rate-limit
// headers (ratelimit-limit, ratelimit-remaining, docker-ratelimit-source;
// see probe/dockerhub_sim_test.go), which cannot be reached from the test
// machine, in front of a real in-process registry — except that it sends a
// new docker-ratelimit-source on every manifest reply, as a hostile or
// broken registry might (issue 9).
func varyingSourceProxy(t *testing.T, upstream *testenv.MemRegistry) (host string, sent *atomic.Int64) {
	t.Helper()
	u, err := url.Parse("http://" + upstream.Host)
	if err != nil {
		t.Fatal(err)
	}
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(u); pr.Out.Host = u.Host }}
	sent = &atomic.Int64{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/manifests/") {
			n := sent.Add(1)
			w.Header().Set("ratelimit-limit", "100;w=21600")
			w.Header().Set("ratelimit-remaining", "90;w=21600")
			w.Header().Set("docker-ratelimit-source", fmt.Sprintf("203.0.113.%d", n%250))
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), sent
}

// A registry that varies docker-ratelimit-source on every reply yields at
// most maxRateLimitSources source series, the newest ones; the older
// entries are deleted from the map, not only hidden.
func TestRateLimitSourcesBounded(t *testing.T) {
	reg := testenv.StartMemRegistry(t, testenv.NewMemRegistryHandler())
	testenv.PushRandom(t, reg.Host, "demo/app:v1")
	host, sent := varyingSourceProxy(t, reg)

	s := NewScheduler(SchedulerOptions{})
	s.ApplyConfig(testConfig(tc(t, "a", host+"/demo/app:v1", 10*time.Millisecond)))
	runScheduler(t, s)
	testenv.WaitFor(t, "30 replies with a new source each", func() bool { return sent.Load() >= 30 })

	s.regMu.Lock()
	kept := len(s.rateLimits)
	s.regMu.Unlock()
	if kept > maxRateLimitSources {
		t.Errorf("%d rate-limit entries kept, want at most %d", kept, maxRateLimitSources)
	}
	series := testenv.Series(gather(t, s), "imagepull_ratelimit_remaining")
	if len(series) == 0 || len(series) > maxRateLimitSources {
		t.Errorf("%d imagepull_ratelimit_remaining series, want 1..%d:\n%s", len(series), maxRateLimitSources, strings.Join(series, "\n"))
	}
}

// Expired rate limits are deleted when read, and when a registry gets a
// new source, so that the map cannot grow.
func TestRateLimitExpiredDeleted(t *testing.T) {
	now := t0
	s := NewScheduler(SchedulerOptions{Now: func() time.Time { return now }})
	for i := 0; i < 5; i++ {
		s.putRateLimit(rateLimitKey{"r.example", fmt.Sprint(i)}, rateLimitEntry{updated: now})
	}
	now = now.Add(rateLimitTTL + time.Minute)
	s.putRateLimit(rateLimitKey{"r.example", "new"}, rateLimitEntry{updated: now})
	if n := len(s.rateLimits); n != 1 {
		t.Errorf("%d entries after the others expired, want 1", n)
	}
	now = now.Add(rateLimitTTL + time.Minute)
	_ = s.Snapshot()
	if n := len(s.rateLimits); n != 0 {
		t.Errorf("%d entries after a snapshot past their expiry, want 0", n)
	}
}
