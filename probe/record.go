package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Headers kept in Result.Requests. Only these are copied, so a header the
// prober does not know (a cookie, a vendor's session header) never reaches
// the debug page. Those that can carry a credential are kept with their
// values passed through recordedHeaderRedactions.
var (
	recordedRequestHeaders  = []string{"Accept", "Authorization", "Content-Type", "User-Agent"}
	recordedResponseHeaders = []string{
		"Content-Type", "Content-Length", "Docker-Content-Digest", "Docker-Distribution-Api-Version",
		"Www-Authenticate", "Location", "Retry-After",
		"Ratelimit-Limit", "Ratelimit-Remaining", "Docker-Ratelimit-Source",
	}
	recordedHeaderRedactions = map[string]func(string) string{
		"Authorization": redactAuthorization,
		// Redirects to blob stores carry signatures in the query.
		"Location": redactLocation,
	}
)

// recordHeaders copies the values of the headers names from h into dst,
// keyed prefix+name, redacted where recordedHeaderRedactions says so.
func recordHeaders(dst map[string][]string, prefix string, h http.Header, names []string) {
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
			out[i] = v
		}
		dst[prefix+name] = out
	}
}

// Query parameters whose values are replaced in recorded URLs (token
// endpoints and redirects to blob stores carry secrets in the query).
var secretQueryParams = []string{"token", "password", "secret", "signature", "sig", "credential", "code", "key", "auth"}

// redactURL renders u without userinfo and with secret query values
// replaced by "<redacted>".
func redactURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	c := *u
	c.User = nil
	if c.RawQuery != "" {
		q := c.Query()
		changed := false
		for k, vs := range q {
			lk := strings.ToLower(k)
			for _, s := range secretQueryParams {
				if strings.Contains(lk, s) || strings.HasPrefix(lk, "x-amz-") || strings.HasPrefix(lk, "x-goog-") {
					for i := range vs {
						vs[i] = "<redacted>"
					}
					changed = true
					break
				}
			}
		}
		if changed {
			c.RawQuery = q.Encode()
		}
	}
	return c.String()
}

// redactAuthorization keeps the scheme of an Authorization value and drops
// the credential: "Bearer <redacted>".
func redactAuthorization(v string) string {
	scheme, _, found := strings.Cut(v, " ")
	if !found || scheme == "" {
		return "<redacted>"
	}
	return scheme + " <redacted>"
}

// redactLocation is redactURL for a Location value.
func redactLocation(v string) string {
	u, err := url.Parse(v)
	if err != nil {
		return "<unparseable>"
	}
	return redactURL(u)
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
	rec := Request{Kind: kind, Method: req.Method, URL: redactURL(req.URL), Header: map[string][]string{}}
	recordHeaders(rec.Header, "> ", req.Header, recordedRequestHeaders)
	start := time.Now()
	resp, err := r.base.RoundTrip(req)
	rec.Duration = time.Since(start)
	if err != nil {
		rec.Err = r.run.scrub(err.Error())
		r.run.res.Requests = append(r.run.res.Requests, rec)
		return nil, err
	}
	rec.Status = resp.StatusCode
	recordHeaders(rec.Header, "< ", resp.Header, recordedResponseHeaders)
	r.run.res.Requests = append(r.run.res.Requests, rec)
	r.run.rate.observe(resp.Header)
	if resp.StatusCode == http.StatusTooManyRequests {
		r.run.observeRetryAfter(resp.Header)
	}
	if resp.TLS != nil && len(resp.TLS.PeerCertificates) > 0 && strings.EqualFold(req.URL.Host, r.apiHost) {
		r.run.res.TLSCertExpiry = resp.TLS.PeerCertificates[0].NotAfter
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
	unverifiedLeaf                *x509.Certificate
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
				var ve *tls.CertificateVerificationError
				if errors.As(err, &ve) && len(ve.UnverifiedCertificates) > 0 {
					pt.unverifiedLeaf = ve.UnverifiedCertificates[0]
				}
			}
			pt.mu.Unlock()
		},
	}
}

func (pt *phaseTrace) snapshot() (resolve, connect, tlsTime time.Duration, tlsFailed bool, leaf *x509.Certificate) {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	return pt.resolve, pt.connect, pt.tlsTime, pt.tlsFailed, pt.unverifiedLeaf
}
