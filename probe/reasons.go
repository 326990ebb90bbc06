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
	ReasonNone         Reason = ""             // the probe succeeded
	ReasonDNS          Reason = "dns"          // the registry host name did not resolve
	ReasonConnect      Reason = "connect"      // TCP connect failed (refused, unreachable, reset)
	ReasonTLS          Reason = "tls"          // TLS handshake or certificate verification failed
	ReasonTimeout      Reason = "timeout"      // the probe deadline passed before an answer
	ReasonUnauthorized Reason = "unauthorized" // credentials missing or rejected (401, token endpoint 401)
	ReasonForbidden    Reason = "forbidden"    // 403, DENIED, or insufficient scope
	ReasonNotFound     Reason = "not_found"    // 404, MANIFEST_UNKNOWN, NAME_UNKNOWN
	ReasonRateLimited  Reason = "rate_limited" // 429 TOOMANYREQUESTS
	ReasonServerError  Reason = "server_error" // 5xx
	ReasonProtocol     Reason = "protocol"     // a reply that breaks the distribution spec
	ReasonConfig       Reason = "config"       // a local file of the module (password_file, tls.ca_file, docker_config) is missing, unreadable or invalid
)

// Reasons lists every failure reason once, in precedence order: an earlier
// reason is the more fundamental failure, the one that explains the later
// ones when results of one registry disagree (a name that does not resolve
// explains every timeout; a 5xx explains a missing manifest). The
// registry-level reasons (RegistryLevel) come first, the per-image ones
// last. Cause weighs results in this order, metrics expose one series per
// reason, and the mixin's reason lists are tested against it
// (mixin/mixin_test.go): a new reason is added here, at its rank.
//
// ReasonConfig comes last: it is about the exporter's own files, never
// about the registry or an image (Reason.Local), so Cause leaves it out and
// its rank only orders the metric series.
var Reasons = []Reason{
	ReasonDNS, ReasonConnect, ReasonTLS, ReasonTimeout, ReasonServerError,
	ReasonRateLimited, ReasonUnauthorized, ReasonProtocol,
	ReasonNotFound, ReasonForbidden,
	ReasonConfig,
}

// RegistryLevel reports whether r is a failure about the registry itself
// (dns, connect, tls, timeout, server_error, rate_limited, unauthorized,
// protocol): the exporter can pull nothing from it, so such a failure wins
// over per-image results. The others (not_found, forbidden) are about one
// image and say nothing about the registry's other images. ReasonNone and
// reasons outside Reasons are not registry-level.
func (r Reason) RegistryLevel() bool {
	switch r {
	case ReasonDNS, ReasonConnect, ReasonTLS, ReasonTimeout,
		ReasonServerError, ReasonRateLimited, ReasonUnauthorized, ReasonProtocol:
		return true
	}
	return false
}

// Local reports whether r is a failure of the exporter's own setup (a
// password_file, CA bundle or docker config it cannot use): the probe never
// asked the registry anything, so such a result is no evidence about the
// registry or the image. Cause and the join leave it out; it is neither
// RegistryLevel nor per-image.
func (r Reason) Local() bool { return r == ReasonConfig }

// Evidence is one latest result as Cause weighs it.
type Evidence struct {
	// Success is true when the probe succeeded; Reason is then ignored.
	Success bool
	// Reason is why the probe failed. A failure without one counts as
	// ReasonProtocol, as the prober counts an error it cannot classify: a
	// failure must never read as up.
	Reason Reason
	// PerCredential marks a failure that speaks only for the credential
	// used (a pod's pull secret), never for the registry: it cannot make a
	// registry-level cause, and any success outweighs it.
	PerCredential bool
}

// Cause summarises the latest results of one registry (or mirror) into one
// reason: ReasonNone when the registry serves, else why it does not. probed
// is false when ev is empty, and the reason is then ReasonNone.
//
// Results with a Local reason are left out: they say nothing about the
// registry (a deleted password_file is not the registry's unauthorized).
// Only Local failures give ReasonNone and probed false, as no result does.
//
// Precedence, deterministic whatever the order of ev:
//  1. the first registry-level reason, in Reasons order, among failures that
//     are not PerCredential: a failure about the registry itself explains
//     every other result;
//  2. else ReasonNone when any result succeeded;
//  3. else, among all failures, the first per-image reason in Reasons order
//     (not_found, then forbidden);
//  4. then the first remaining reason in Reasons order (a pull secret's
//     unauthorized);
//  5. then reasons outside Reasons, the lexicographically smallest first,
//     reported rather than hidden.
func Cause(ev []Evidence) (reason Reason, probed bool) {
	ev = slices.DeleteFunc(slices.Clone(ev), func(e Evidence) bool { return !e.Success && e.Reason.Local() })
	if len(ev) == 0 {
		return ReasonNone, false
	}
	registry := map[Reason]bool{} // failures that speak for the registry
	failed := map[Reason]bool{}   // every failure, per-credential ones too
	ok := false
	for _, e := range ev {
		if !e.Success && e.Reason == ReasonNone {
			e.Reason = ReasonProtocol
		}
		switch {
		case e.Success:
			ok = true
		case e.PerCredential:
			failed[e.Reason] = true
		default:
			failed[e.Reason] = true
			registry[e.Reason] = true
		}
	}
	for _, r := range Reasons {
		if r.RegistryLevel() && registry[r] {
			return r, true
		}
	}
	if ok {
		return ReasonNone, true
	}
	for _, r := range Reasons {
		if !r.RegistryLevel() && !r.Local() && failed[r] {
			return r, true
		}
	}
	for _, r := range Reasons {
		if failed[r] {
			return r, true
		}
	}
	unknown := make([]string, 0, len(failed))
	for r := range failed {
		unknown = append(unknown, string(r))
	}
	sort.Strings(unknown)
	return Reason(unknown[0]), true
}
