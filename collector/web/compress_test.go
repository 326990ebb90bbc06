package web

import (
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func TestAcceptsGzip(t *testing.T) {
	for _, c := range []struct {
		values []string
		want   bool
	}{
		{nil, false},
		{[]string{"gzip"}, true},
		{[]string{"GZIP"}, true},
		{[]string{"x-gzip"}, true},
		{[]string{"identity"}, false},
		{[]string{"zstd, gzip;q=0.5"}, true},
		{[]string{"gzip;q=0"}, false},
		{[]string{"gzip; q=0.0, identity"}, false},
		{[]string{"deflate", "gzip"}, true},
		{[]string{"gzipped"}, false},
		{[]string{"*"}, false}, // a wildcard gets the body as it is: valid, and cheaper
	} {
		if got := acceptsGzip(c.values); got != c.want {
			t.Errorf("acceptsGzip(%q) = %v, want %v", c.values, got, c.want)
		}
	}
}

// /metrics through Gzip: compressed for a client that asks, plain for one
// that does not, the same exposition either way, and an error answer
// (promhttp's 500 for a failing collector) intact.
func TestGzipMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "test_series", Help: "A series."}, []string{"n"})
	reg.MustRegister(g)
	for i := range 500 {
		g.WithLabelValues(strings.Repeat("x", i%17) + string(rune('a'+i%26)) + strings.Repeat("y", i%5)).Set(float64(i))
	}
	srv := httptest.NewServer(Gzip(promhttp.HandlerFor(reg, promhttp.HandlerOpts{DisableCompression: true})))
	defer srv.Close()

	get := func(enc string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		if enc != "" {
			req.Header.Set("Accept-Encoding", enc)
		}
		// A Transport of its own with compression off: the test sees the
		// bytes as sent.
		resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, b
	}
	plainResp, plain := get("")
	if ce := plainResp.Header.Get("Content-Encoding"); ce != "" {
		t.Errorf("no Accept-Encoding: Content-Encoding %q, want none", ce)
	}
	if !strings.Contains(string(plain), `test_series{n="a"} 0`) {
		t.Fatalf("plain body lacks the series:\n%.300s", plain)
	}
	gzResp, gz := get("gzip")
	if ce := gzResp.Header.Get("Content-Encoding"); ce != "gzip" {
		t.Fatalf("Accept-Encoding gzip: Content-Encoding %q, want gzip", ce)
	}
	if v := gzResp.Header.Values("Vary"); len(v) == 0 || !strings.Contains(strings.Join(v, ","), "Accept-Encoding") {
		t.Errorf("Vary %q, want Accept-Encoding", v)
	}
	if len(gz) >= len(plain)/2 {
		t.Errorf("gzip body %d bytes for %d plain: not compressed", len(gz), len(plain))
	}
	zr, err := gzip.NewReader(strings.NewReader(string(gz)))
	if err != nil {
		t.Fatal(err)
	}
	unz, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if string(unz) != string(plain) {
		t.Errorf("gzip body decodes to %d bytes that differ from the %d plain ones", len(unz), len(plain))
	}

	// A collector that fails: promhttp answers 500 with its text, which
	// must arrive whole and readable.
	bad := prometheus.NewRegistry()
	bad.MustRegister(failingCollector{})
	srv2 := httptest.NewServer(Gzip(promhttp.HandlerFor(bad, promhttp.HandlerOpts{DisableCompression: true})))
	defer srv2.Close()
	// The default Transport asks for gzip itself and decodes the answer.
	resp, err := http.Get(srv2.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError || !resp.Uncompressed || !strings.Contains(string(b), "collector failed on purpose") {
		t.Errorf("failing collector: %s (decoded from gzip: %v) %q, want a gzipped 500 naming the error", resp.Status, resp.Uncompressed, b)
	}
}

type failingCollector struct{}

var failingDesc = prometheus.NewDesc("test_failing", "Fails.", nil, nil)

func (failingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- failingDesc }
func (failingCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.NewInvalidMetric(failingDesc, errTestCollector)
}

var errTestCollector = &testError{"collector failed on purpose"}

type testError struct{ s string }

func (e *testError) Error() string { return e.s }
