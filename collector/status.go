package collector

import "github.com/imagepull/imagepull_exporter/probe"

// Causes the Kubernetes join reports besides the probe failure reasons.
const (
	// CauseRegistryOK: the registry probes healthy, so a pull problem is per
	// image or per credential (a missing tag, a wrong secret).
	CauseRegistryOK = "registry_ok"
	// CauseUnprobed: no probe target covers the registry.
	CauseUnprobed = "unprobed"
	// CauseUnknown: a node reported a pull error the classifier cannot
	// place in the probe's reason set (collector/kube PullErrorCause).
	CauseUnknown = "unknown"
)

// ProbeStatus is what the Kubernetes join reads from the scheduler: the latest
// probe results, summarised per registry and per tag. The scheduler implements
// it; it must be safe for concurrent use and cheap (no probing, no I/O).
type ProbeStatus interface {
	// RegistryCause returns the registry's current cause: a probe.Reason
	// (as string) when its probes fail, CauseRegistryOK when they succeed,
	// CauseUnprobed when no target covers the registry. The registry is the
	// normalised host ("docker.io" for Docker Hub). When targets of one
	// registry disagree, a failure that is about the registry itself (dns,
	// connect, tls, timeout, server_error, rate_limited, unauthorized,
	// protocol) wins over per-image results (not_found, forbidden); an
	// unauthorized answer to pull secrets is per credential, not the
	// registry's (Scheduler.RegistryCause has the full precedence).
	RegistryCause(registry string) string
	// TagResult returns the latest probe result of registry/repository:tag:
	// the digest the registry serves now, or the failure reason; ok is false
	// when that tag is not probed.
	TagResult(registry, repository, tag string) (digest string, reason probe.Reason, ok bool)
}
