package testenv

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
)

// MemRegistry is go-containerregistry's in-process registry (a real
// implementation of the distribution API, in memory, no auth) served on
// loopback, with a wrapper that counts requests and in-flight requests and
// can hold requests at a gate.
type MemRegistry struct {
	Host string
	srv  *httptest.Server

	c *InflightCounter

	mu       sync.Mutex
	requests []string // "METHOD /path"
	gate     chan struct{}
}

// NewMemRegistryHandler returns a fresh in-memory registry.
func NewMemRegistryHandler() http.Handler {
	return ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
}

// InflightCounter counts requests in flight and the most seen at once.
type InflightCounter struct {
	Inflight    atomic.Int64
	MaxInflight atomic.Int64
}

// Enter counts a request in.
func (c *InflightCounter) Enter() {
	n := c.Inflight.Add(1)
	for {
		m := c.MaxInflight.Load()
		if n <= m || c.MaxInflight.CompareAndSwap(m, n) {
			return
		}
	}
}

// StartMemRegistry serves h (a registry handler; several testRegistries may
// share one to see the same repositories under different hosts).
func StartMemRegistry(t testing.TB, h http.Handler) *MemRegistry {
	return StartCountedMemRegistry(t, h, &InflightCounter{})
}

// StartCountedMemRegistry is StartMemRegistry with a shared in-flight
// counter, for registries under several host names.
func StartCountedMemRegistry(t testing.TB, h http.Handler, c *InflightCounter) *MemRegistry {
	t.Helper()
	r := &MemRegistry{c: c}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		c.Enter()
		defer c.Inflight.Add(-1)
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

// Close stops serving: nothing listens at Host any more.
func (r *MemRegistry) Close() { r.srv.Close() }

// Hold makes requests wait until the returned function is called.
func (r *MemRegistry) Hold() (release func()) {
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

// Count returns how many requests matched method and a path containing sub.
func (r *MemRegistry) Count(method, sub string) int {
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

// PushRandom writes a small random image to host/repoTag and returns its
// manifest digest.
func PushRandom(t testing.TB, host, repoTag string) v1.Hash {
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

// WaitFor polls cond until it holds. The deadline only bounds a hung test;
// nothing asserts how long it took.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// HelpOf returns the help text of a metric descriptor, for exposition
// tests that spell the HELP line out.
func HelpOf(d interface{ String() string }) string {
	s := d.String()
	_, rest, _ := strings.Cut(s, `help: "`)
	help, _, _ := strings.Cut(rest, `", `)
	return help
}
