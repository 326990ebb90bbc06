package probe

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestOversizedHeadersAreProtocol: a registry (or whatever answers in its
// place) whose reply headers pass the transport's 256 KiB limit answered,
// with a reply no client accepts: protocol, not connect. No real registry
// can be made to send such headers, hence an httptest server.
func TestOversizedHeadersAreProtocol(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Padding", strings.Repeat("a", 300<<10))
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	p := newProber(t, nil)
	res := probe(t, p, target(t, strings.TrimPrefix(srv.URL, "http://")+"/demo/app:v1", plainModule()))
	wantReason(t, res, ReasonProtocol, "ping", "server response headers exceeded")
}
