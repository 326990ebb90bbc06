package testenv

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// CredentialSink is a hostile host for credential tests: a recording
// reverse proxy on its own loopback port in front of a real registry (the
// attacker's). The registry's access log cannot prove that no credential
// arrived (distribution logs the user of the URL, not of the Authorization
// header), so the proxy records, for every request it receives, whether it
// carried an Authorization header and the request body, before passing it
// on unchanged.
type CredentialSink struct {
	Addr string // 127.0.0.1:PORT: image references naming this host reach the proxy
	srv  *http.Server

	mu   sync.Mutex
	reqs []SinkRequest
}

// SinkRequest is one request the sink received.
type SinkRequest struct {
	Method        string
	Path          string // request URI, query included
	Authorization string // the Authorization header as received; "" when none
	Body          string // the request body (token forms carry passwords)
}

// StartCredentialSink starts a recording proxy in front of upstream (a
// Registry's URL, http only) and stops it when the test ends.
func StartCredentialSink(t testing.TB, upstream string) *CredentialSink {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatalf("testenv: credential sink upstream: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: credential sink: %v", err)
	}
	s := &CredentialSink{Addr: ln.Addr().String()}
	proxy := httputil.NewSingleHostReverseProxy(u)
	s.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body []byte
		if r.Body != nil {
			body, _ = io.ReadAll(io.LimitReader(r.Body, 1<<20))
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		s.mu.Lock()
		s.reqs = append(s.reqs, SinkRequest{Method: r.Method, Path: r.URL.RequestURI(),
			Authorization: r.Header.Get("Authorization"), Body: string(body)})
		s.mu.Unlock()
		proxy.ServeHTTP(w, r)
	})}
	go func() { _ = s.srv.Serve(ln) }()
	t.Cleanup(func() { _ = s.srv.Close() })
	return s
}

// Requests returns every request received so far, in order.
func (s *CredentialSink) Requests() []SinkRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SinkRequest(nil), s.reqs...)
}

// Leaks returns the requests that carried an Authorization header or a
// body holding one of secrets (each checked as is).
func (s *CredentialSink) Leaks(secrets ...string) []SinkRequest {
	var out []SinkRequest
	for _, r := range s.Requests() {
		leak := r.Authorization != ""
		for _, sec := range secrets {
			leak = leak || (sec != "" && (strings.Contains(r.Body, sec) || strings.Contains(r.Path, sec)))
		}
		if leak {
			out = append(out, r)
		}
	}
	return out
}
