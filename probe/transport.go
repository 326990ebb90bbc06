package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"
)

// transportKey identifies a cached keep-alive transport: one per module and
// registry origin, so that modules with different TLS settings never share
// connections and a warm probe finds its connection open.
type transportKey struct {
	module string
	origin string // scheme://host[:port] of the registry API
}

type transportEntry struct {
	// fingerprint of the settings the transport was built from; a reload
	// that changes them (or a rewritten CA file) builds a new transport.
	fingerprint transportFP
	rt          *http.Transport
	lastUsed    time.Time
}

// maxCAFile bounds a CA bundle read.
const maxCAFile = 4 << 20

// transportFP is the fingerprint of the settings a transport is built
// from: comparable, so that a warm probe checks it without formatting a
// string (a fmt.Sprintf per probe was 8% of the exporter's CPU).
type transportFP struct {
	plain, insecure   bool
	timeout, interval time.Duration
	caFile            string
	caSize, caModTime int64 // of the CA file, when it could be read
	caStat            bool
}

func transportFingerprint(m Module) transportFP {
	fp := transportFP{plain: m.PlainHTTP, insecure: m.TLS.InsecureSkipVerify, timeout: m.Timeout, interval: m.Interval, caFile: m.TLS.CAFile}
	if m.TLS.CAFile != "" {
		if fi, err := os.Stat(m.TLS.CAFile); err == nil {
			fp.caSize, fp.caModTime, fp.caStat = fi.Size(), fi.ModTime().UnixNano(), true
		}
	}
	return fp
}

// transport returns the cached transport for the module and origin, making
// one when there is none or the module's transport settings changed.
func (p *Prober) transport(module, origin string, m Module, now time.Time) (*http.Transport, error) {
	key := transportKey{module, origin}
	fp := transportFingerprint(m)
	p.mu.Lock()
	if e := p.transports[key]; e != nil && e.fingerprint == fp {
		e.lastUsed = now
		p.mu.Unlock()
		return e.rt, nil
	}
	p.mu.Unlock()

	rt, err := newTransport(m, origin)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if e := p.transports[key]; e != nil {
		if e.fingerprint == fp {
			// Another probe built it meanwhile; use that one.
			rt.CloseIdleConnections()
			e.lastUsed = now
			return e.rt, nil
		}
		e.rt.CloseIdleConnections()
	}
	p.transports[key] = &transportEntry{fingerprint: fp, rt: rt, lastUsed: now}
	return rt, nil
}

// newTransport builds a keep-alive transport bounded by the module timeout
// at every step. It is a plain net/http transport on purpose, not
// go-containerregistry's remote/transport: that one retries 429 and 5xx
// replies and temporary errors, which would hide failures, spend a
// registry's request budget and blur the phases. (net/http itself may
// resend a request once when a kept-alive connection turns out to be closed
// before any reply; that request never reached a live connection, and
// without the resend keep-alive would produce false connect failures.)
//
// origin is the registry's own scheme://host[:port]: the one host the
// transport may reach at a link-local or metadata address (guardedDial).
func newTransport(m Module, origin string) (*http.Transport, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: m.TLS.InsecureSkipVerify} //nolint:gosec // opt-in per module
	if m.TLS.CAFile != "" {
		pem, err := ReadFileBounded(m.TLS.CAFile, maxCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls ca_file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("tls ca_file " + m.TLS.CAFile + " holds no PEM certificate")
		}
		tc.RootCAs = pool
	}
	// Connections must outlive the probe interval to be reused by the next
	// probe; registries close idle connections themselves when they want.
	idle := m.Interval + 30*time.Second
	if idle < 90*time.Second {
		idle = 90 * time.Second
	}
	if idle > 15*time.Minute {
		idle = 15 * time.Minute
	}
	return &http.Transport{
		Proxy:                  http.ProxyFromEnvironment,
		DialContext:            guardedDial(&net.Dialer{Timeout: m.Timeout, KeepAlive: 30 * time.Second}, originHost(origin)),
		TLSClientConfig:        tc,
		TLSHandshakeTimeout:    m.Timeout,
		ResponseHeaderTimeout:  m.Timeout,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           64,
		MaxIdleConnsPerHost:    16,
		IdleConnTimeout:        idle,
		MaxResponseHeaderBytes: 256 << 10,
		DisableCompression:     true,
	}, nil
}

// The credentials policy of the transport: where a probe's requests may go.
// A registry names other hosts in two places, the bearer realm of its
// challenge and the Location of a redirect, and both are outside input (a
// /probe caller can name any registry). The rules, enforced here and in
// fetchToken (token.go) whatever the credential:
//
//   - a link-local or cloud metadata address is never dialed, unless it is
//     the registry's own host (an operator may run one there): checked on
//     the resolved address, so a name that resolves to 169.254.169.254 is
//     refused like the literal;
//   - a redirect never goes from https to http;
//   - Authorization and request bodies never follow a redirect to another
//     origin (scheme, host and port; net/http drops Authorization only when
//     the host name changes, and replays a 307/308 body anywhere).
//
// A request refused by the policy fails with a policyError, which the probe
// reports as ReasonProtocol: the registry sent us somewhere it must not.

// maxRedirects bounds redirects of one request (token realms and some
// registries redirect; containerd follows them too).
const maxRedirects = 3

var errTooManyRedirects = fmt.Errorf("more than %d redirects", maxRedirects)

// policyError is a request the credentials policy refused to send.
type policyError struct{ msg string }

func (e *policyError) Error() string { return e.msg }

// isPolicyError reports whether err, or an error it wraps, is a
// policyError.
func isPolicyError(err error) bool {
	var pe *policyError
	return errors.As(err, &pe)
}

// forbiddenPrefixes are the addresses no realm or redirect may reach: the
// link-local ranges, where every cloud serves its instance metadata and
// credentials (169.254.169.254 on AWS, GCP, Azure, OpenStack; AWS's IPv6
// IMDS fd00:ec2::254 is a unique-local address, hence listed alone).
var forbiddenPrefixes = []netip.Prefix{
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("fe80::/10"),
	netip.MustParsePrefix("fd00:ec2::254/128"),
}

// forbiddenAddr reports whether a is a link-local or metadata address, in
// any of its spellings (IPv4-mapped IPv6, with a zone).
func forbiddenAddr(a netip.Addr) bool {
	a = a.WithZone("").Unmap() // Prefix.Contains is false for zoned addresses
	for _, p := range forbiddenPrefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// forbiddenHost reports whether host (a URL's Hostname) is a literal
// link-local or metadata address.
func forbiddenHost(host string) bool {
	a, err := netip.ParseAddr(host)
	return err == nil && forbiddenAddr(a)
}

// originHost is the host name of a scheme://host[:port] origin.
func originHost(origin string) string {
	u, err := url.Parse(origin)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

// guardedDial dials like d, except that a connection to a link-local or
// metadata address is refused before it is made (in the dialer's Control
// hook, which sees every resolved address tried) unless the name dialed is
// registryHost. Through a proxy the proxy resolves names, and only the
// proxy's own address is checked here.
func guardedDial(d *net.Dialer, registryHost string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	guarded := *d
	guarded.Control = func(_, address string, _ syscall.RawConn) error {
		if ap, err := netip.ParseAddrPort(address); err == nil && forbiddenAddr(ap.Addr()) {
			return &policyError{msg: "refusing to connect to " + address + ": a link-local or cloud metadata address is never contacted unless it is the registry itself"}
		}
		return nil
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if host, _, err := net.SplitHostPort(addr); err == nil && registryHost != "" && strings.EqualFold(host, registryHost) {
			return d.DialContext(ctx, network, addr)
		}
		return guarded.DialContext(ctx, network, addr)
	}
}

// newClient is the HTTP client of one probe run on rt: the redirect policy
// lives here so that Probe and ListTags follow the same rules.
func newClient(rt http.RoundTripper) *http.Client {
	return &http.Client{Transport: rt, CheckRedirect: checkRedirect}
}

// checkRedirect applies redirectPolicy to a hop net/http is about to send:
// it refuses the hop or drops its Authorization header.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > maxRedirects {
		return errTooManyRedirects
	}
	chain := make([]*url.URL, len(via))
	for i, v := range via {
		chain[i] = v.URL
	}
	keepAuth, err := redirectPolicy(chain, req.URL, req.Body != nil && req.Body != http.NoBody)
	if err != nil {
		return err
	}
	if !keepAuth {
		req.Header.Del("Authorization")
		req.Header.Del("Proxy-Authorization")
		req.Header.Del("Cookie")
	}
	return nil
}

// redirectPolicy decides a redirect to next of a request sent along chain
// (chain[0] is the URL first asked for, the last one the URL that answered
// with the redirect); hasBody says the hop would resend the request body
// (a 307 or 308). It returns whether the hop may keep the Authorization
// header: only when the hop and every URL before it are of the first URL's
// origin, so that a credential, once it left, is not sent after the
// redirect target comes back. A hop from https to http is refused, and so
// is a body (the OAuth2 form carries the password) for another origin, and
// a hop to a literal link-local or metadata address on another host.
func redirectPolicy(chain []*url.URL, next *url.URL, hasBody bool) (keepAuth bool, err error) {
	if len(chain) == 0 || next == nil {
		return false, &policyError{msg: "redirect without a request"}
	}
	for _, u := range chain {
		if strings.EqualFold(u.Scheme, "https") && !strings.EqualFold(next.Scheme, "https") {
			return false, &policyError{msg: "refusing a redirect from https to " + printable(next.Scheme, 20) + " (" + redactURL(next) + ")"}
		}
	}
	if h := next.Hostname(); forbiddenHost(h) && !asciiEqualFold(h, chain[0].Hostname()) {
		// Also checked at dial time on every resolved address; this
		// catches the literal when a proxy dials for us.
		return false, &policyError{msg: "refusing a redirect to " + redactURL(next) + ": a link-local or cloud metadata address is never contacted unless it is the registry itself"}
	}
	keepAuth = true
	for _, u := range append(chain[1:len(chain):len(chain)], next) {
		keepAuth = keepAuth && sameOrigin(chain[0], u)
	}
	if hasBody && !keepAuth {
		return false, &policyError{msg: "refusing to resend a request body (credentials) on a redirect to another origin (" + redactURL(next) + ")"}
	}
	return keepAuth, nil
}

// sameOrigin reports whether a and b have the same scheme, host and port
// (RFC 6454), with the scheme's default port filled in. Case is folded for
// ASCII letters only: strings.EqualFold would also take the long s "ſ" for
// "s", and so two host names that are not the same for one.
func sameOrigin(a, b *url.URL) bool {
	return asciiEqualFold(a.Scheme, b.Scheme) && asciiEqualFold(a.Hostname(), b.Hostname()) &&
		effectivePort(a) == effectivePort(b)
}

func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

func effectivePort(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
		return "443"
	case "http":
		return "80"
	}
	return ""
}
