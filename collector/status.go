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
	// RegistryCause returns the registry's current cause: the down reason
	// (a registry-level probe.Reason, as string) when every probe of the
	// registry fails for a registry-level reason; when it is up,
	// CauseRegistryOK, or the per-image or per-credential reason when no
	// probe succeeded; CauseUnprobed when no target covers the registry.
	// The registry is the normalised host ("docker.io" for Docker Hub).
	// It is CauseOf(RegistryHealth(registry)) (Scheduler.RegistryCause has
	// the full precedence).
	RegistryCause(registry string) string
	// RegistryHealth judges the registry over the latest result of every
	// target of it (probe.Health): up when any probe got an answer.
	RegistryHealth(registry string) probe.RegistryHealth
	// ImageResult returns the latest probe result for ref with the
	// credentials of the target named target (a discovered target: the
	// pull secrets the kubelet would use, or the module's), else of a
	// target probing exactly ref with its module's credentials: ReasonNone
	// for a success, else the failure reason. ok is false when nothing
	// has probed ref yet.
	ImageResult(target string, ref probe.Reference) (reason probe.Reason, ok bool)
	// TagResult returns the latest probe result of registry/repository:tag:
	// the digest the registry serves now, or the failure reason; ok is false
	// when that tag is not probed.
	TagResult(registry, repository, tag string) (digest string, reason probe.Reason, ok bool)
	// AttributeCause returns the cause that cause, a failure reported for
	// registry outside the exporter's probes (a node's pull error), counts
	// as: server_error for unauthorized while the registry's own health
	// API reports its auth backend down, else cause itself. It is the
	// scheduler's one attribution rule (health.go), which its own probe
	// results already went through.
	AttributeCause(registry, cause string) string
}
