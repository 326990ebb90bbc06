package probe

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
