// Package probe probes one container image reference the way the kubelet pulls it:
// ping /v2/, read the WWW-Authenticate challenge, exchange a token, and HEAD the
// manifest. It knows registries and HTTP, nothing of Prometheus or Kubernetes; one
// call probes one target and returns a plain Result.
package probe

import (
	"time"
)

// Phase names one timed step of a probe.
type Phase string

// The phases of a probe. Resolve, connect and TLS come from net/http/httptrace
// and are zero when a kept-alive connection was reused; ping, auth and manifest
// are the wall time of the HTTP exchanges of that step (including any
// resolve/connect/tls inside them). Total is the whole probe.
const (
	PhaseResolve  Phase = "resolve"
	PhaseConnect  Phase = "connect"
	PhaseTLS      Phase = "tls"
	PhasePing     Phase = "ping"
	PhaseAuth     Phase = "auth"
	PhaseManifest Phase = "manifest"
	PhaseTotal    Phase = "total"
)

// Phases lists every phase in a stable order.
var Phases = []Phase{PhaseResolve, PhaseConnect, PhaseTLS, PhasePing, PhaseAuth, PhaseManifest, PhaseTotal}

// RequestKind classifies an HTTP request the prober sends.
type RequestKind string

// The kinds of request a probe can send. KindManifestGet exists so that it can be
// counted and shown to stay at zero: a manifest GET counts as a Docker Hub pull.
const (
	KindPing         RequestKind = "ping"
	KindToken        RequestKind = "token"
	KindManifestHead RequestKind = "manifest_head"
	KindManifestGet  RequestKind = "manifest_get"
	KindOther        RequestKind = "other" // e.g. tags/list in diagnose; never sent by a plain probe
	// KindHealth is a read of a registry product's own health API
	// (health.go): at most one per registry and auth_check_interval, and
	// only to a registry whose product is recognised or configured.
	KindHealth RequestKind = "health"
)

// RequestKinds lists every request kind in a stable order.
var RequestKinds = []RequestKind{KindPing, KindToken, KindManifestHead, KindManifestGet, KindOther, KindHealth}

// RateLimit is what a registry said about its pull rate limit in the
// ratelimit-limit / ratelimit-remaining / docker-ratelimit-source headers
// (Docker Hub's documented form "N;w=SECONDS").
type RateLimit struct {
	Limit     float64       // pulls allowed per window
	Remaining float64       // pulls left in the current window
	Window    time.Duration // window length, from ";w="
	Source    string        // docker-ratelimit-source: the IP or account the limit applies to
}

// Request is one HTTP exchange of a probe, kept for /probe?debug=true and for
// request accounting. Header values that carry credentials are redacted before
// they are stored here.
type Request struct {
	Kind     RequestKind
	Method   string
	URL      string // scheme://host/path?query, never with userinfo; token query values redacted
	Status   int    // 0 when no response arrived
	Duration time.Duration
	Header   map[string][]string // selected request and response headers, redacted; keys prefixed "> " (sent) and "< " (received)
	Err      string              // redacted error text, when the exchange failed
}

// Result is the outcome of one probe of one image reference.
type Result struct {
	Ref   Reference // the normalised reference that was probed
	Start time.Time

	Success bool
	Reason  Reason // ReasonNone on success
	Error   string // human-readable, credential-free explanation of the failure

	// Phases holds the duration of each phase; PhaseTotal is always set.
	Phases map[Phase]time.Duration

	// AuthChecked is true when this probe redid ping + token exchange (a cold
	// probe, or the periodic auth check). AuthOK says whether that succeeded.
	AuthChecked bool
	AuthOK      bool

	Digest    string // Docker-Content-Digest of the HEAD, what containerd would resolve
	MediaType string // Content-Type of the HEAD

	RateLimit  *RateLimit    // nil when the registry sent no rate-limit headers
	RetryAfter time.Duration // from Retry-After on a 429, else 0
	// MalformedHeaders counts rate-limit / Retry-After header values that were
	// present but could not be parsed; they are ignored.
	MalformedHeaders int
	// MalformedHeaderNames names the header of each malformed value counted
	// in MalformedHeaders (lower case: "ratelimit-limit",
	// "ratelimit-remaining", "docker-ratelimit-source", "retry-after"), for
	// imagepull_malformed_headers_total{header}.
	MalformedHeaderNames []string

	TLSCertExpiry time.Time // NotAfter of the registry's leaf certificate from a verified chain; zero over plain HTTP, with insecure_skip_verify, or when no handshake succeeded

	Requests []Request // every request this probe sent, in order

	// Product is the registry product the registry's own replies to this
	// probe showed (health.go: the /v2/ challenge's realm and service,
	// product headers), "" when none did. The registry's health API is
	// read only for a product recognised so, or configured.
	Product Product
}
