package probe

import (
	"crypto/tls"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Endpoint is a mirror of a target's registry: where a container runtime
// configured with mirrors sends the pull instead of the registry itself
// (containerd's hosts.toml `[host."..."]` entries and legacy
// `registry.mirrors`, CRI-O's `[[registry.mirror]]`). A probe with an
// Endpoint talks to the mirror's host, while Target.Ref (the `registry`,
// `repository` and `reference` of every result) stays upstream's, so that
// what the mirror serves can be compared with what upstream serves.
//
// The scheme follows the module's plain_http, as for a registry.
type Endpoint struct {
	// Host is the mirror's host[:port].
	Host string
	// Path is the API root on the mirror; empty means "/v2". containerd
	// uses the host URL's path with "/v2" appended, or the path as is with
	// override_path (e.g. "/v2/proxy-dockerhub" for a Harbor proxy
	// project).
	Path string
	// Repository, when set, is the repository as the mirror names it, in
	// the request path and the token scope: CRI-O rewrites a reference's
	// prefix to the mirror's location, so with prefix "docker.io" and
	// location "mirror.example.com/hub", docker.io/library/nginx is pulled
	// as hub/library/nginx.
	Repository string
	// Namespace, when set, is sent as the `ns` query parameter of the
	// manifest HEAD, as containerd adds ?ns=<registry> to every request it
	// sends to a host other than the image's registry; some mirrors
	// (Spegel, zot, multi-upstream proxies) route on it.
	Namespace string
	// HTTPFallback retries a request over http:// when the mirror answers
	// the TLS handshake in plain HTTP: what containerd does for an http://
	// host that has TLS settings and containers/image (CRI-O) for an
	// `insecure` mirror. Without it such a mirror fails with tls.
	HTTPFallback bool
}

// apiHost is the host the probe talks to: the mirror's, or the registry's
// API host.
func (r *probeRun) apiHost() string {
	if e := r.t.Endpoint; e != nil {
		return e.Host
	}
	return r.t.Ref.APIHost()
}

// apiRoot is the path of the registry API on the host the probe talks to.
func (r *probeRun) apiRoot() string {
	if e := r.t.Endpoint; e != nil && e.Path != "" {
		return "/" + strings.Trim(e.Path, "/")
	}
	return "/v2"
}

// repository is the repository as the host the probe talks to names it.
func (r *probeRun) repository() string {
	if e := r.t.Endpoint; e != nil && e.Repository != "" {
		return e.Repository
	}
	return r.t.Ref.Repository
}

// manifestURL is the URL of the manifest HEAD, with containerd's ns query
// parameter for a mirror.
func (r *probeRun) manifestURL() string {
	u := r.origin + r.apiRoot() + "/" + r.repository() + "/manifests/" + r.t.Ref.Identifier()
	if e := r.t.Endpoint; e != nil && e.Namespace != "" {
		u += "?" + url.Values{"ns": {e.Namespace}}.Encode()
	}
	return u
}

// credentialRef is what credentials are looked up for. For a mirror it is
// the reference as if it lived on the mirror's host: container runtimes
// hand a registry's credentials only to that registry's host (containerd's
// CRI plugin drops the kubelet's credentials for any other host), so
// docker.io's credentials must never reach a mirror of docker.io.
func (r *probeRun) credentialRef() Reference {
	ref := r.t.Ref
	if e := r.t.Endpoint; e != nil {
		ref.Registry = NormalizeRegistry(e.Host)
		ref.Repository = r.repository()
	}
	return ref
}

// endpointTransport wraps the probe's recording transport with the
// plain-HTTP fallback when the endpoint asks for it. The fallback sits above
// the recorder so that the failed https attempt is recorded and counted like
// any request the mirror saw.
func (r *probeRun) endpointTransport(rt http.RoundTripper) http.RoundTripper {
	if e := r.t.Endpoint; e != nil && e.HTTPFallback && !r.m.PlainHTTP {
		return &httpFallback{base: rt, host: e.Host, p: r.p}
	}
	return rt
}

// plainHTTPMemory is how long a mirror found to speak plain HTTP is sent
// straight to http://, so that warm probes do not fail a TLS handshake
// first every time; then https is tried again (a mirror may gain a
// certificate). The Prober remembers such hosts (Prober.plainHTTP).
const plainHTTPMemory = 10 * time.Minute

// httpFallback is containerd's docker.NewHTTPFallback in spirit: send over
// https, and when the server turns out to speak plain HTTP on that port,
// send the same request over http.
type httpFallback struct {
	base http.RoundTripper
	host string
	p    *Prober
}

func (f *httpFallback) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "https" || !strings.EqualFold(req.URL.Host, f.host) {
		return f.base.RoundTrip(req)
	}
	if f.p.knownPlainHTTP(f.host) {
		return f.base.RoundTrip(plainHTTP(req))
	}
	resp, err := f.base.RoundTrip(req)
	if err == nil || !speaksPlainHTTP(err) {
		return resp, err
	}
	if req.Body != nil && req.GetBody == nil {
		return nil, err // the body is spent and cannot be sent again
	}
	f.p.mu.Lock()
	f.p.plainHTTP[f.host] = time.Now()
	f.p.mu.Unlock()
	return f.base.RoundTrip(plainHTTP(req))
}

// knownPlainHTTP reports whether host was found to speak plain HTTP within
// plainHTTPMemory.
func (p *Prober) knownPlainHTTP(host string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	t, ok := p.plainHTTP[host]
	return ok && time.Since(t) < plainHTTPMemory
}

// plainHTTP clones req with the http scheme and a fresh body.
func plainHTTP(req *http.Request) *http.Request {
	c := req.Clone(req.Context())
	u := *req.URL
	u.Scheme = "http"
	c.URL = &u
	if req.GetBody != nil {
		if b, err := req.GetBody(); err == nil {
			c.Body = b
		}
	}
	return c
}

// speaksPlainHTTP reports whether a TLS handshake failed because the server
// answered in plain HTTP.
func speaksPlainHTTP(err error) bool {
	var rh tls.RecordHeaderError
	if errors.As(err, &rh) {
		return true
	}
	return strings.Contains(err.Error(), "first record does not look like a TLS handshake")
}
