package probe

import (
	"slices"
	"sort"
)

// Reason is why a probe failed. The set is closed: every failure maps to exactly
// one of the constants below, and metrics expose one series per Reason.
type Reason string

// The closed set of failure reasons.
const (
	ReasonNone          Reason = ""               // the probe succeeded
	ReasonDNS           Reason = "dns"            // the registry host name did not resolve
	ReasonConnect       Reason = "connect"        // TCP connect failed (refused, unreachable, reset)
	ReasonTLS           Reason = "tls"            // TLS handshake or certificate verification failed
	ReasonTimeout       Reason = "timeout"        // the probe deadline passed before an answer
	ReasonUnauthorized  Reason = "unauthorized"   // credentials missing or rejected (401, token endpoint 401)
	ReasonForbidden     Reason = "forbidden"      // 403, DENIED, or insufficient scope
	ReasonNotFound      Reason = "not_found"      // 404, MANIFEST_UNKNOWN, NAME_UNKNOWN
	ReasonRateLimited   Reason = "rate_limited"   // 429 TOOMANYREQUESTS
	ReasonServerError   Reason = "server_error"   // 5xx
	ReasonProtocol      Reason = "protocol"       // a reply that breaks the distribution spec
	ReasonNoCredentials Reason = "no_credentials" // no credentials were presented and the registry asked for them: it is up, the image's state unknown
	ReasonConfig        Reason = "config"         // a local file of the module (password_file, tls.ca_file, docker_config) is missing, unreadable or invalid
)

// Reasons lists every failure reason once, in precedence order: an earlier
// reason is the more fundamental failure, the one that explains the later
// ones when results of one registry disagree (a name that does not resolve
// explains every timeout; a 5xx explains a missing manifest). The
// registry-level reasons (RegistryLevel) come first, the per-image ones
// next, then no_credentials, which says nothing about the image. Health and
// Cause weigh results in this order, metrics expose one series per reason,
// and the mixin's reason lists are tested against it (mixin/mixin_test.go):
// a new reason is added here, at its rank.
//
// ReasonConfig comes last: it is about the exporter's own files, never
// about the registry or an image (Reason.Local), so Health leaves it out and
// its rank only orders the metric series.
var Reasons = []Reason{
	ReasonDNS, ReasonConnect, ReasonTLS, ReasonTimeout, ReasonServerError,
	ReasonRateLimited, ReasonUnauthorized, ReasonProtocol,
	ReasonNotFound, ReasonForbidden,
	ReasonNoCredentials,
	ReasonConfig,
}

// RegistryLevel reports whether r is a failure about the registry itself
// (dns, connect, tls, timeout, server_error, rate_limited, unauthorized,
// protocol): when every probe of a registry fails this way the exporter can
// pull nothing from it, and the registry is down (Health). The others
// (not_found, forbidden) are about one image and say nothing about the
// registry's other images. ReasonNone and reasons outside Reasons are not
// registry-level.
func (r Reason) RegistryLevel() bool {
	switch r {
	case ReasonDNS, ReasonConnect, ReasonTLS, ReasonTimeout,
		ReasonServerError, ReasonRateLimited, ReasonUnauthorized, ReasonProtocol:
		return true
	}
	return false
}

// PerImage reports whether r is about one image (not_found, forbidden):
// the registry answered, and says nothing about its other images.
func (r Reason) PerImage() bool { return r == ReasonNotFound || r == ReasonForbidden }

// PathLevel reports whether r is a failure to get a valid answer over the
// probe's path to the registry (dns, connect, tls, timeout, server_error,
// protocol). When one target fails this way while other probes of its
// registry get answers (Health: up), the failure is that target's: its
// module's TLS or CA, proxy, plain_http, or a broken route, not the
// registry's. rate_limited and unauthorized are registry-level but not
// path-level: they are answers about the prober's source and credentials.
func (r Reason) PathLevel() bool {
	switch r {
	case ReasonDNS, ReasonConnect, ReasonTLS, ReasonTimeout, ReasonServerError, ReasonProtocol:
		return true
	}
	return false
}

// Inconclusive reports whether r (no_credentials) says the registry
// answered but the probe could not learn anything about the image: it
// presented no credentials and was asked for them. The registry is up; the
// pods, with credentials of their own, may well pull the image. Such a
// result is never a cause of anything (a join cause, a workload's image
// unavailable, an auth failure), only a registry that answered.
func (r Reason) Inconclusive() bool { return r == ReasonNoCredentials }

// Local reports whether r is a failure of the exporter's own setup (a
// password_file, CA bundle or docker config it cannot use): the probe never
// asked the registry anything, so such a result is no evidence about the
// registry or the image. Health and the join leave it out; it is neither
// RegistryLevel nor per-image.
func (r Reason) Local() bool { return r == ReasonConfig }

// Evidence is one latest result as Health weighs it.
type Evidence struct {
	// Success is true when the probe succeeded; Reason is then ignored.
	Success bool
	// Reason is why the probe failed. A failure without one counts as
	// ReasonProtocol, as the prober counts an error it cannot classify: a
	// failure must never read as up.
	Reason Reason
	// PerCredential marks a failure that speaks only for the credential
	// used (a pod's pull secret), never for the registry: the registry
	// answered it, so it counts as the registry being up (a PathLevel
	// reason is no answer, whoever's credential).
	PerCredential bool
}

// RegistryHealth is the judgement of one registry (or mirror) over the
// latest results of all its probes: Health's answer.
type RegistryHealth struct {
	// Probed is false when there is no result to judge (none yet, or only
	// Local failures); Up and Reason are then false and ReasonNone.
	Probed bool
	// Up is true when any probe got an answer from the registry: a
	// success, a per-image reason, no_credentials, or a per-credential
	// failure.
	Up bool
	// Reason is, when down, why: the first registry-level reason in
	// Reasons order. When up, it is the cause the Kubernetes join reports
	// for the registry: ReasonNone when any probe succeeded (or only
	// Inconclusive results exist), else the first per-image reason, else
	// the per-credential reason.
	Reason Reason
	// Succeeded is true when at least one probe succeeded.
	Succeeded bool
}

// Health judges a registry (or mirror) from the latest result of each of
// its probes, deterministically whatever the order of ev:
//
//   - results with a Local reason are left out: they say nothing about the
//     registry (a deleted password_file is not the registry's
//     unauthorized). With nothing left, Probed is false.
//   - the registry is up when any probe got an answer from it (a success,
//     a per-image reason, no_credentials, a PerCredential failure), and
//     down only when every probe failed for a registry-level reason. One
//     module's wrong CA next to a probe that succeeds is that target's
//     failure (PathLevel), not the registry's.
//   - down: Reason is the first registry-level reason in Reasons order
//     among the failures (a name that does not resolve explains timeouts).
//   - up: Reason is ReasonNone when any probe succeeded, else the first
//     per-image reason (not_found, then forbidden), else the first
//     per-credential reason (a pull secret's unauthorized), else
//     ReasonNone (only no_credentials: the exporter cannot know);
//     reasons outside Reasons come last, the lexicographically smallest
//     first, reported rather than hidden.
func Health(ev []Evidence) RegistryHealth {
	var h RegistryHealth
	failed := map[Reason]bool{}   // every failure that counts
	answered := map[Reason]bool{} // failures the registry answered
	for _, e := range ev {
		if !e.Success && e.Reason.Local() {
			continue
		}
		h.Probed = true
		switch {
		case e.Success:
			h.Succeeded = true
		default:
			r := e.Reason
			if r == ReasonNone {
				r = ReasonProtocol
			}
			failed[r] = true
			// A per-credential failure is an answer (a pull secret's
			// 401), unless nothing answered at all (a connect failure
			// is nobody's credential).
			if !r.RegistryLevel() || (e.PerCredential && !r.PathLevel()) {
				answered[r] = true
			}
		}
	}
	if !h.Probed {
		return h
	}
	h.Up = h.Succeeded || len(answered) > 0
	if !h.Up {
		for _, r := range Reasons {
			if failed[r] {
				h.Reason = r
				return h
			}
		}
	}
	if h.Succeeded {
		return h
	}
	for _, r := range Reasons {
		if answered[r] && r.PerImage() {
			h.Reason = r
			return h
		}
	}
	for _, r := range Reasons {
		if answered[r] && !r.Inconclusive() {
			h.Reason = r
			return h
		}
	}
	unknown := make([]string, 0, len(answered))
	for r := range answered {
		if !slices.Contains(Reasons, r) {
			unknown = append(unknown, string(r))
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		h.Reason = Reason(unknown[0])
	}
	return h
}
