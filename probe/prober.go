package probe

import (
	"context"
	"time"
)

// ProberOptions configures a Prober.
type ProberOptions struct {
	// UserAgent is sent with every request; empty means "imagepull_exporter".
	UserAgent string
	// Now returns the current time; nil means time.Now. Tests inject it to
	// move past token expiry and auth-check intervals without sleeping.
	Now func() time.Time
}

// Prober probes targets. It is shared by every probe of a scheduler and is
// safe for concurrent use: it caches keep-alive transports per module and
// registry, and bearer tokens per registry, scope and credential, so that a
// warm probe sends exactly one request (the manifest HEAD).
type Prober struct {
	opts ProberOptions
}

// NewProber returns a Prober with empty caches.
func NewProber(opts ProberOptions) *Prober {
	if opts.UserAgent == "" {
		opts.UserAgent = "imagepull_exporter"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Prober{opts: opts}
}

// Probe probes one target once. It never retries: one probe is one attempt,
// and its Result says how it went.
func (p *Prober) Probe(ctx context.Context, t Target) Result {
	start := p.opts.Now()
	return Result{Ref: t.Ref, Start: start, Reason: ReasonProtocol, Error: "not implemented yet",
		Phases: map[Phase]time.Duration{PhaseTotal: 0}}
}

// Close closes idle connections of every cached transport.
func (p *Prober) Close() {}

// ModuleKeychain returns the keychain of a module's own credentials: static
// username + password or password_file, else the docker config file the
// module names, else the one in $DOCKER_CONFIG, else anonymous.
func ModuleKeychain(m Module) (Keychain, error) {
	return staticKeychain(nil), nil
}

type staticKeychain []Credential

func (k staticKeychain) Resolve(Reference) ([]Credential, error) { return k, nil }
