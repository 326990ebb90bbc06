package collector

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testRegistry is go-containerregistry's in-process registry (a real
// implementation of the distribution API, in memory, no auth) served on
// loopback, with a wrapper that counts requests and in-flight requests and
// can hold requests at a gate.
type testRegistry struct {
	Host string
	srv  *httptest.Server

	c *inflightCounter

	mu       sync.Mutex
	requests []string // "METHOD /path"
	gate     chan struct{}
}

// newRegistryHandler returns a fresh in-memory registry.
func newRegistryHandler() http.Handler {
	return ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
}

// inflightCounter counts requests in flight and the most seen at once.
type inflightCounter struct {
	inflight    atomic.Int64
	maxInflight atomic.Int64
}

func (c *inflightCounter) enter() {
	n := c.inflight.Add(1)
	for {
		m := c.maxInflight.Load()
		if n <= m || c.maxInflight.CompareAndSwap(m, n) {
			return
		}
	}
}

// startRegistry serves h (a registry handler; several testRegistries may
// share one to see the same repositories under different hosts). c counts
// in-flight requests; nil means a counter of its own.
func startRegistry(t *testing.T, h http.Handler) *testRegistry {
	return startCountedRegistry(t, h, &inflightCounter{})
}

func startCountedRegistry(t *testing.T, h http.Handler, c *inflightCounter) *testRegistry {
	t.Helper()
	r := &testRegistry{c: c}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		c.enter()
		defer c.inflight.Add(-1)
		r.mu.Lock()
		r.requests = append(r.requests, req.Method+" "+req.URL.Path)
		gate := r.gate
		r.mu.Unlock()
		if gate != nil {
			select {
			case <-gate:
			case <-req.Context().Done():
				return
			}
		}
		h.ServeHTTP(w, req)
	}))
	t.Cleanup(r.srv.Close)
	r.Host = strings.TrimPrefix(r.srv.URL, "http://")
	return r
}

// hold makes requests wait until the returned function is called.
func (r *testRegistry) hold() (release func()) {
	ch := make(chan struct{})
	r.mu.Lock()
	r.gate = ch
	r.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			r.mu.Lock()
			r.gate = nil
			r.mu.Unlock()
			close(ch)
		})
	}
}

// count returns how many requests matched method and a path containing sub.
func (r *testRegistry) count(method, sub string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, q := range r.requests {
		m, p, _ := strings.Cut(q, " ")
		if m == method && strings.Contains(p, sub) {
			n++
		}
	}
	return n
}

// push writes a small random image to host/repoTag and returns its
// manifest digest.
func push(t *testing.T, host, repoTag string) v1.Hash {
	t.Helper()
	ref, err := name.ParseReference(host+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(128, 1)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	if err := remote.Write(ref, img, remote.WithTransport(tr)); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// waitFor polls cond until it holds. The deadline only bounds a hung test;
// nothing asserts how long it took.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
