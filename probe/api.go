package probe

import "context"

// Credential is one set of credentials to present to a registry.
type Credential struct {
	Username string
	Password Secret
	// IdentityToken is an OAuth2 refresh token (docker config "identitytoken");
	// when set it is used with the OAuth2 POST token flow instead of Password.
	IdentityToken Secret
	// Source says where the credential came from, for humans and logs
	// (e.g. "module default", "docker config /root/.docker/config.json",
	// "secret ns/name"). It never contains the secret itself.
	Source string
}

// Anonymous reports whether the credential carries nothing.
func (c Credential) Anonymous() bool {
	return c.Username == "" && c.Password == "" && c.IdentityToken == ""
}

// Keychain resolves the credentials to try for an image reference, in the order
// the kubelet would try them. An empty slice means anonymous. This is the seam
// through which Kubernetes pull secrets reach the prober without probe/
// importing Kubernetes.
type Keychain interface {
	Resolve(ref Reference) ([]Credential, error)
}

// Target is one thing to probe: an image reference, the module that says how,
// and where the credentials come from.
type Target struct {
	Ref        Reference
	ModuleName string // cache key for transports and tokens; the module's name in the config
	Module     Module
	// Keychain overrides the module's own credentials when non-nil (pull secrets).
	Keychain Keychain
	// Endpoint, when non-nil, sends the probe to a mirror of Ref's registry
	// instead of the registry itself, the way a container runtime
	// configured with mirrors pulls (probe/mirror.go). Ref, and so
	// Result.Ref, stays the upstream reference.
	Endpoint *Endpoint
}

// ContextKeychain is a Keychain whose resolution may wait on something
// outside the process (a kubelet credential provider plugin runs): the
// prober calls ResolveContext with the probe's context, so that the probe's
// timeout bounds the wait. Resolve is the same with no deadline of the
// caller's (the keychain's own bounds still apply).
type ContextKeychain interface {
	Keychain
	ResolveContext(ctx context.Context, ref Reference) ([]Credential, error)
}

// ResolveKeychain resolves kc for ref with ctx when kc can use one.
func ResolveKeychain(ctx context.Context, kc Keychain, ref Reference) ([]Credential, error) {
	if ck, ok := kc.(ContextKeychain); ok {
		return ck.ResolveContext(ctx, ref)
	}
	return kc.Resolve(ref)
}

// SetupError is a keychain failure that is the exporter's own setup, not
// the registry's answer: a credential provider plugin that cannot be run,
// hangs or answers garbage, a file that cannot be read. Nothing was asked
// of the registry, so the probe's reason is config, never unauthorized.
// Its text must already be free of credentials.
type SetupError struct{ Err error }

func (e *SetupError) Error() string { return e.Err.Error() }

// Unwrap returns the underlying error.
func (e *SetupError) Unwrap() error { return e.Err }

// CredentialProvider is a source of short-lived credentials that a module
// can draw on (AuthConfig.Provider): one kubelet credential provider plugin,
// or every plugin of the node's configuration (collector/credprovider). It
// binds what it hands out itself: it resolves nothing for an image its
// matchImages do not cover, and only the credentials whose response keys
// match the image.
type CredentialProvider interface {
	ContextKeychain
	// Name says which provider this is, for errors and diagnose:
	// `credential provider "ecr-credential-provider"`.
	Name() string
	// CoversRegistry reports whether the provider may be asked about an
	// image on registry (host[:port]) at all: some matchImages entry's
	// host matches it. It is the provider's side of Module.CheckBinding.
	CoversRegistry(registry string) bool
	// Known returns the credentials the provider holds now (its cache),
	// without running anything: redactors must know them, and building a
	// redactor must never run a plugin.
	Known() []Credential
}

// CredentialProviders is the set of kubelet credential provider plugins a
// configuration's modules can use (--kube.credential-provider-config).
type CredentialProviders interface {
	// Names lists the providers in the order of their configuration.
	Names() []string
	// Provider returns one provider; nil when there is none of that name.
	// It returns the same value for the same name every time.
	Provider(name string) CredentialProvider
	// Node returns every provider as the node's kubelet uses them: each
	// one whose matchImages cover an image runs, and their credentials
	// form one keyring. It returns the same value every time.
	Node() CredentialProvider
	// Source names the configuration (its file), for errors.
	Source() string
}
