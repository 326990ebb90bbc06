package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"time"
)

// recordHeaders copies the values of the headers names from h into dst,
// keyed prefix+name, rewritten where recordedHeaderRedactions says so and
// then passed through red (a registry may echo a credential in any header).
func recordHeaders(dst map[string][]string, prefix string, h http.Header, names []string, red *Redactor) {
	for _, name := range names {
		vs := h.Values(name)
		if len(vs) == 0 {
			continue
		}
		out := make([]string, len(vs))
		redact := recordedHeaderRedactions[name]
		for i, v := range vs {
			if redact != nil {
				v = redact(v)
			}
			out[i] = red.Redact(v)
		}
		dst[prefix+name] = out
	}
}

// errManifestGet refuses a manifest request that is not a HEAD.
var errManifestGet = errors.New("probe: refusing to send a manifest request other than HEAD (a GET counts as a pull)")

// kindKey carries a request's RequestKind through the context to the
// recorder, so redirects of one request are counted as the same kind.
type kindKey struct{}

func withKind(ctx context.Context, k RequestKind) context.Context {
	return context.WithValue(ctx, kindKey{}, k)
}

// recorder is the RoundTripper of one probe: it sends each request on the
// shared keep-alive transport and writes down every exchange on the wire
// (redirect hops included) with redacted headers, and what the replies say
// about rate limits and the registry's certificate. It never reads a body.
type recorder struct {
	base    http.RoundTripper
	run     *probeRun
	apiHost string // the registry's host, whose certificate is reported
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	kind, _ := req.Context().Value(kindKey{}).(RequestKind)
	if kind == "" {
		kind = KindOther
	}
	if kind == KindManifestGet || (kind == KindManifestHead && req.Method != http.MethodHead) {
		// A manifest GET counts as a Docker Hub pull; the prober has no
		// code path that sends one, and this makes sure none is added.
		return nil, errManifestGet
	}
	rec := Request{Kind: kind, Method: req.Method, URL: redactURL(req.URL), Header: make(map[string][]string, 8)}
	recordHeaders(rec.Header, "> ", req.Header, recordedRequestHeaders, r.run.red)
	start := time.Now()
	resp, err := r.base.RoundTrip(req)
	rec.Duration = time.Since(start)
	if err != nil {
		rec.Err = r.run.red.Redact(err.Error())
		r.run.res.Requests = append(r.run.res.Requests, rec)
		return nil, err
	}
	rec.Status = resp.StatusCode
	recordHeaders(rec.Header, "< ", resp.Header, recordedResponseHeaders, r.run.red)
	r.run.res.Requests = append(r.run.res.Requests, rec)
	r.run.rate.observe(resp.Header)
	if strings.EqualFold(req.URL.Host, r.apiHost) {
		r.run.recognize(recognizeHeaders(resp.Header))
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		r.run.observeRetryAfter(resp.Header)
	}
	// The expiry of a verified chain's leaf only: with insecure_skip_verify
	// nothing is verified (VerifiedChains is empty) and the certificate may
	// be an interceptor's, so the registry's expiry is not known.
	if resp.TLS != nil && len(resp.TLS.VerifiedChains) > 0 && len(resp.TLS.VerifiedChains[0]) > 0 && strings.EqualFold(req.URL.Host, r.apiHost) {
		r.run.res.TLSCertExpiry = resp.TLS.VerifiedChains[0][0].NotAfter
	}
	return resp, nil
}

// phaseTrace sums the connection phases of every request of a probe. The
// callbacks may run on the transport's dialing goroutines, even after the
// request they were started for has been abandoned, hence the mutex.
type phaseTrace struct {
	mu                            sync.Mutex
	resolve, connect, tlsTime     time.Duration
	dnsStart, connStart, tlsStart time.Time
	dialing                       int
	tlsFailed                     bool
}

func (pt *phaseTrace) clientTrace() *httptrace.ClientTrace {
	return &httptrace.ClientTrace{
		DNSStart: func(httptrace.DNSStartInfo) {
			pt.mu.Lock()
			pt.dnsStart = time.Now()
			pt.mu.Unlock()
		},
		DNSDone: func(httptrace.DNSDoneInfo) {
			pt.mu.Lock()
			if !pt.dnsStart.IsZero() {
				pt.resolve += time.Since(pt.dnsStart)
				pt.dnsStart = time.Time{}
			}
			pt.mu.Unlock()
		},
		// Parallel dials (happy eyeballs) count once, from the first start
		// to the last end.
		ConnectStart: func(string, string) {
			pt.mu.Lock()
			if pt.dialing == 0 {
				pt.connStart = time.Now()
			}
			pt.dialing++
			pt.mu.Unlock()
		},
		ConnectDone: func(string, string, error) {
			pt.mu.Lock()
			pt.dialing--
			if pt.dialing == 0 && !pt.connStart.IsZero() {
				pt.connect += time.Since(pt.connStart)
				pt.connStart = time.Time{}
			}
			pt.mu.Unlock()
		},
		TLSHandshakeStart: func() {
			pt.mu.Lock()
			pt.tlsStart = time.Now()
			pt.mu.Unlock()
		},
		TLSHandshakeDone: func(_ tls.ConnectionState, err error) {
			pt.mu.Lock()
			if !pt.tlsStart.IsZero() {
				pt.tlsTime += time.Since(pt.tlsStart)
				pt.tlsStart = time.Time{}
			}
			if err != nil {
				pt.tlsFailed = true
			}
			pt.mu.Unlock()
		},
	}
}

func (pt *phaseTrace) snapshot() (resolve, connect, tlsTime time.Duration, tlsFailed bool) {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	return pt.resolve, pt.connect, pt.tlsTime, pt.tlsFailed
}
