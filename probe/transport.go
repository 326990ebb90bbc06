package probe

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
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
	fingerprint string
	rt          *http.Transport
	lastUsed    time.Time
}

// maxCAFile bounds a CA bundle read.
const maxCAFile = 4 << 20

func transportFingerprint(m Module) string {
	fp := fmt.Sprintf("plain=%t insecure=%t timeout=%s interval=%s ca=%q", m.PlainHTTP, m.TLS.InsecureSkipVerify, m.Timeout, m.Interval, m.TLS.CAFile)
	if m.TLS.CAFile != "" {
		if fi, err := os.Stat(m.TLS.CAFile); err == nil {
			fp += fmt.Sprintf(" %d %d", fi.Size(), fi.ModTime().UnixNano())
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

	rt, err := newTransport(m)
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
func newTransport(m Module) (*http.Transport, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: m.TLS.InsecureSkipVerify} //nolint:gosec // opt-in per module
	if m.TLS.CAFile != "" {
		pem, err := readBounded(m.TLS.CAFile, maxCAFile)
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
		DialContext:            (&net.Dialer{Timeout: m.Timeout, KeepAlive: 30 * time.Second}).DialContext,
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
