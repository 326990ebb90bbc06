package probe

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imagepull/imagepull_exporter/internal/testenv"
)

// dockerHubSim is a SIMULATION of Docker Hub's documented pull rate limit
// (docs.docker.com, "Docker Hub usage and limits" / "pull rate limit"),
// which cannot be reached from the test machine. It is a reverse proxy in
// front of a real registry that behaves as the documentation says Docker Hub
// does:
//
//   - manifest replies carry `ratelimit-limit: 100;w=21600`,
//     `ratelimit-remaining: N;w=21600` and `docker-ratelimit-source: <ip>`;
//   - a manifest GET counts as a pull and spends one; a HEAD does not;
//   - when nothing remains, manifest requests are answered 429
//     TOOMANYREQUESTS with Retry-After;
//   - paid or unlimited accounts get no rate-limit headers at all.
//
// Modes also send malformed header values, which the real Hub does not
// document but a prober must survive.
type dockerHubSim struct {
	srv *httptest.Server

	mu         sync.Mutex
	limit      int
	remaining  int
	source     string
	retryAfter string
	mode       string // "" (documented headers), "none", "malformed"
	gets       int
	heads      int
}

func startDockerHubSim(t *testing.T, upstream *testenv.Registry) *dockerHubSim {
	t.Helper()
	u, err := url.Parse(upstream.URL)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	rp := &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(u); pr.Out.Host = u.Host },
		Transport: tr,
	}
	s := &dockerHubSim{limit: 100, remaining: 100, source: "203.0.113.7", retryAfter: "3600"}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/manifests/") || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
			rp.ServeHTTP(w, r)
			return
		}
		s.mu.Lock()
		if r.Method == http.MethodGet {
			s.gets++
		} else {
			s.heads++
		}
		exhausted := s.remaining <= 0
		if !exhausted && r.Method == http.MethodGet {
			s.remaining-- // a GET is a pull
		}
		h := w.Header()
		switch s.mode {
		case "":
			h.Set("RateLimit-Limit", strconv.Itoa(s.limit)+";w=21600")
			h.Set("RateLimit-Remaining", strconv.Itoa(s.remaining)+";w=21600")
			h.Set("Docker-RateLimit-Source", s.source)
		case "malformed":
			h.Set("RateLimit-Limit", ";w=21600")
			h.Set("RateLimit-Remaining", "NaN;w=21600")
			h.Set("Docker-RateLimit-Source", "")
			h.Add("Docker-RateLimit-Source", "two values")
		}
		retryAfter := s.retryAfter
		s.mu.Unlock()
		if exhausted {
			if retryAfter != "" {
				h.Set("Retry-After", retryAfter)
			}
			h.Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusTooManyRequests)
			if r.Method == http.MethodGet {
				_, _ = w.Write([]byte(`{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit."}]}`))
			}
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		s.srv.Close()
		tr.CloseIdleConnections()
	})
	return s
}

func (s *dockerHubSim) addr() string { return strings.TrimPrefix(s.srv.URL, "http://") }

func (s *dockerHubSim) set(f func(s *dockerHubSim)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

func (s *dockerHubSim) counts() (remaining, gets, heads int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.remaining, s.gets, s.heads
}

func TestRateLimitDockerHubSimulation(t *testing.T) {
	r := startRegistry(t, testenv.RegistryOptions{Auth: testenv.RegistryAuthToken, Users: map[string]testenv.TokenUser{"": {Pull: []string{"**"}}}})
	digest := r.Push(t, "ratelimitpreview/test", "latest")
	hub := startDockerHubSim(t, r)
	p := newProber(t, nil)
	tg := target(t, hub.addr()+"/ratelimitpreview/test:latest", plainModule())

	t.Run("documented headers; probing spends no pulls", func(t *testing.T) {
		hub.set(func(s *dockerHubSim) { s.remaining = 76 })
		for i := 0; i < 5; i++ {
			res := probe(t, p, tg)
			wantSuccess(t, res, digest)
			want := RateLimit{Limit: 100, Remaining: 76, Window: 6 * time.Hour, Source: "203.0.113.7"}
			if res.RateLimit == nil || *res.RateLimit != want {
				t.Fatalf("probe %d: rate limit %+v, want %+v", i, res.RateLimit, want)
			}
			if res.MalformedHeaders != 0 {
				t.Fatalf("malformed %v", res.MalformedHeaderNames)
			}
		}
		remaining, gets, heads := hub.counts()
		if remaining != 76 || gets != 0 || heads != 5 {
			t.Fatalf("after 5 probes: remaining %d, %d GETs, %d HEADs; want 76, 0, 5", remaining, gets, heads)
		}
	})
	t.Run("exhausted: 429 with Retry-After", func(t *testing.T) {
		hub.set(func(s *dockerHubSim) { s.remaining = 0 })
		res := probe(t, p, tg)
		wantReason(t, res, ReasonRateLimited, "429", "retry after 1h0m0s")
		if res.RetryAfter != time.Hour {
			t.Errorf("RetryAfter %v, want 1h", res.RetryAfter)
		}
		if res.RateLimit == nil || res.RateLimit.Remaining != 0 || res.RateLimit.Limit != 100 {
			t.Errorf("rate limit %+v: the 429 carries the exhausted count", res.RateLimit)
		}
	})
	t.Run("exhausted: HTTP-date Retry-After", func(t *testing.T) {
		hub.set(func(s *dockerHubSim) { s.retryAfter = time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat) })
		res := probe(t, p, tg)
		wantReason(t, res, ReasonRateLimited)
		if res.RetryAfter < 85*time.Second || res.RetryAfter > 90*time.Second {
			t.Errorf("RetryAfter %v, want about 90s", res.RetryAfter)
		}
	})
	t.Run("exhausted: malformed Retry-After", func(t *testing.T) {
		hub.set(func(s *dockerHubSim) { s.retryAfter = "soon" })
		res := probe(t, p, tg)
		wantReason(t, res, ReasonRateLimited)
		if res.RetryAfter != 0 || res.MalformedHeaders != 1 || res.MalformedHeaderNames[0] != HeaderRetryAfter {
			t.Errorf("RetryAfter %v malformed %v", res.RetryAfter, res.MalformedHeaderNames)
		}
	})
	t.Run("recovered: a success carries no Retry-After", func(t *testing.T) {
		hub.set(func(s *dockerHubSim) { s.remaining = 100; s.retryAfter = "3600" })
		res := probe(t, p, tg)
		wantSuccess(t, res, digest)
		if res.RetryAfter != 0 || res.RateLimit == nil || res.RateLimit.Remaining != 100 {
			t.Errorf("RetryAfter %v rate limit %+v", res.RetryAfter, res.RateLimit)
		}
	})
	t.Run("malformed headers are ignored and counted", func(t *testing.T) {
		hub.set(func(s *dockerHubSim) { s.mode = "malformed" })
		res := probe(t, p, tg)
		wantSuccess(t, res, digest)
		if res.RateLimit != nil {
			t.Errorf("rate limit %+v from malformed headers", res.RateLimit)
		}
		want := []string{HeaderRateLimitLimit, HeaderRateLimitRemaining, HeaderRateLimitSource}
		if res.MalformedHeaders != 3 || strings.Join(res.MalformedHeaderNames, ",") != strings.Join(want, ",") {
			t.Errorf("malformed %d %v, want %v", res.MalformedHeaders, res.MalformedHeaderNames, want)
		}
	})
	t.Run("no headers: paid or unlimited account", func(t *testing.T) {
		hub.set(func(s *dockerHubSim) { s.mode = "none" })
		res := probe(t, p, tg)
		wantSuccess(t, res, digest)
		if res.RateLimit != nil || res.MalformedHeaders != 0 {
			t.Errorf("rate limit %+v malformed %v: want none", res.RateLimit, res.MalformedHeaderNames)
		}
	})
	if _, gets, _ := hub.counts(); gets != 0 {
		t.Errorf("the prober sent %d manifest GETs through the simulated Hub", gets)
	}
}
