package probe

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
)

// A module's static credentials (auth.username with auth.password or
// auth.password_file) belong to the registries they were issued by. They
// are bound to those registries here, in the one place every caller goes
// through (ModuleKeychain's Resolve): scheduled targets, discovered
// images, mirrors, /probe, diagnose and the auth checks all get a module's
// credentials from it, so none of them can hand the credentials to another
// host, whoever names it.
//
// The binding is auth.registries, a list of host globs matched as the
// kubelet's keyring matches a docker config key (DockerKeyring:
// "*.example.com" matches "a.example.com" but not "example.com" or
// "a.b.example.com"; a port must be equal, so "registry:5000" matches only
// port 5000). When auth.registries is empty, the configuration loader binds
// the credentials to the registries of the configured targets (and
// configured mirrors) that use the module (AuthConfig.TargetRegistries). A
// module bound to nothing sends its static credentials nowhere.
//
// For a registry outside the binding the keychain resolves no credential,
// so the probe runs anonymously. That is what the kubelet does: it presents
// only the credentials whose key matches the image's registry, and pulls
// anonymously when none does, so an anonymous probe still predicts the
// pull. /probe refuses such a request outright (403, see
// collector/web) because its caller asked for a module's credentials it
// cannot have. docker_config modules are unaffected: they already match
// their entries by host.

// HasStaticCredentials reports whether a is a static credential
// (auth.username), the kind that is bound to registries.
func (a AuthConfig) HasStaticCredentials() bool { return a.Username != "" }

// BoundRegistries returns the registries a's static credentials may be sent
// to: auth.registries when set, else the registries of the targets using
// the module.
func (a AuthConfig) BoundRegistries() []string {
	if len(a.Registries) > 0 {
		return a.Registries
	}
	return a.TargetRegistries
}

// UnboundError says that a module's static credentials are not bound to a
// registry. Its text names the module when the caller set Module.
type UnboundError struct {
	Module   string   // the module's name; may be empty
	Registry string   // the registry that was asked for
	Bound    []string // the registries the credentials are bound to
	// Provider names the module's credential provider when the
	// credentials come from one (auth.credential_provider).
	Provider string
}

func (e *UnboundError) Error() string {
	mod := "the module"
	if e.Module != "" {
		mod = fmt.Sprintf("module %q", e.Module)
	}
	if e.Provider != "" {
		narrowed := ""
		if len(e.Bound) > 0 {
			narrowed = " and to its auth.registries " + strings.Join(e.Bound, ", ")
		}
		return fmt.Sprintf("the credentials of %s come from %s and are bound to the images its matchImages cover%s; "+
			"registry %s is not among them: add it to the provider's matchImages (in the credential provider configuration) or to auth.registries",
			mod, e.Provider, narrowed, e.Registry)
	}
	bound := "no registry (no auth.registries, and no configured target uses the module)"
	if len(e.Bound) > 0 {
		bound = strings.Join(e.Bound, ", ")
	}
	return fmt.Sprintf("the credentials of %s are not bound to registry %s: they are bound to %s; "+
		"to send them there, add %s to the module's auth.registries", mod, e.Registry, bound, e.Registry)
}

// CheckBinding returns nil when m may present its credentials to registry
// (a normalised registry host[:port], Reference.Registry): m has no static
// credentials, or registry is one it is bound to. Otherwise it returns an
// *UnboundError; its Module is left empty for the caller to fill.
func (m Module) CheckBinding(registry string) error {
	if a := m.Auth; a.CredentialProvider != "" && a.Provider != nil && a.Username == "" && a.DockerConfig == "" {
		if a.Provider.CoversRegistry(registry) && (len(a.Registries) == 0 || RegistryBound(a.Registries, registry)) {
			return nil
		}
		return &UnboundError{Registry: registry, Bound: a.Registries, Provider: a.Provider.Name()}
	}
	if !m.Auth.HasStaticCredentials() {
		return nil
	}
	bound := m.Auth.BoundRegistries()
	if RegistryBound(bound, registry) {
		return nil
	}
	return &UnboundError{Registry: registry, Bound: bound}
}

// RegistryBound reports whether registry (host[:port]) matches one of the
// bound host globs. Docker Hub's names (docker.io, index.docker.io,
// registry-1.docker.io) are one registry on both sides. An entry matches
// when it is the registry's normalised name, or when it matches as a
// kubelet keyring key: the same number of dot-separated labels, each a glob
// (filepath.Match), and equal ports. An invalid glob matches nothing.
func RegistryBound(bound []string, registry string) bool {
	if registry == "" || strings.ContainsAny(registry, "/?#@") {
		return false
	}
	reg := NormalizeRegistry(registry)
	for _, b := range bound {
		g := strings.ToLower(strings.TrimSpace(b))
		if g == "" {
			continue
		}
		// An exact name first: an IPv6 literal ("[::1]:5000") is not a
		// glob, and Docker Hub's aliases normalise to one name.
		if NormalizeRegistry(g) == reg {
			return true
		}
		if ok, err := urlsMatchStr(g, reg); err == nil && ok {
			return true
		}
	}
	return false
}

// ValidateRegistryGlob checks one auth.registries entry: a host glob with an
// optional port, no scheme, path, user info or empty label. Only '*' is a
// wildcard: the kubelet's keyring parses its keys as URLs, where '[' and '?'
// do not survive, so neither would mean what the author meant. An IPv6
// literal ("[::1]:5000") is accepted and matched by name. The error says
// what is wrong in words a config file's author can act on, and never
// quotes the entry: it sits under auth:, and a config error echoes no value
// from there (a pasted password looks like any other string).
func ValidateRegistryGlob(g string) error {
	switch {
	case strings.TrimSpace(g) == "":
		return fmt.Errorf("is empty; remove it or give a registry host glob such as *.example.com")
	case strings.Contains(g, "://"):
		return fmt.Errorf("holds a scheme; give the registry host only, without https://")
	case strings.ContainsAny(g, "/@ \t\\"):
		return fmt.Errorf("is not a registry host: it holds a path, user name or space; give host[:port] only, e.g. registry.example.com or *.example.com")
	}
	if strings.HasPrefix(g, "[") {
		if host, _, err := net.SplitHostPort(g); err == nil && net.ParseIP(host) != nil {
			return nil
		}
		if net.ParseIP(strings.Trim(g, "[]")) != nil && strings.HasSuffix(g, "]") {
			return nil
		}
		return fmt.Errorf("is not a valid IPv6 literal; write it as [2001:db8::1]:5000")
	}
	host, port, hasPort := strings.Cut(g, ":")
	if hasPort {
		if port == "" {
			return fmt.Errorf("has an empty port")
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("has a port that is not a number from 1 to 65535 (a port cannot be a glob)")
		}
	}
	labels := strings.Split(host, ".")
	wild := 0
	for _, l := range labels {
		if strings.Trim(l, "*") == "" {
			wild++
		}
	}
	if wild == len(labels) && !slices.Contains(labels, "") {
		// "*", "*.*": every registry of that many labels, the attacker's
		// included. The kubelet would accept it; a binding would be void.
		return fmt.Errorf("matches every registry host of %d label(s); name the registry's domain, e.g. *.example.com", len(labels))
	}
	for _, l := range labels {
		if l == "" {
			return fmt.Errorf("has an empty host label (a leading, trailing or double dot)")
		}
		for _, c := range l {
			if !(c == '*' || c == '-' || c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
				return fmt.Errorf("holds a character not allowed in a host glob; use letters, digits, '-', '.', '*' and a :port ('*' is the only wildcard, as in the kubelet's keyring: '[' and '?' are not)")
			}
		}
	}
	return nil
}

// resolveUnbound resolves kc for ref ignoring a static keychain's binding,
// for the redactor: it must know a module's secrets whatever registry a
// text came from.
func resolveUnbound(kc Keychain, ref Reference) ([]Credential, error) {
	switch k := kc.(type) {
	case staticModuleKeychain:
		return k.credentials()
	case providerKeychain, unionKeychain:
		// A redactor must never run a plugin: it knows what the
		// provider holds now.
		return knownSecrets(k), nil
	}
	return kc.Resolve(ref)
}

// knownSecrets returns every credential kc holds without resolving
// anything that could run a plugin: a provider's cache, a docker config's
// entries, a static credential.
func knownSecrets(kc Keychain) []Credential {
	switch k := kc.(type) {
	case staticModuleKeychain:
		cs, _ := k.credentials()
		return cs
	case dockerConfigKeychain:
		cs, _ := k.all()
		return cs
	case providerKeychain:
		return k.p.Known()
	case unionKeychain:
		var out []Credential
		for _, c := range k {
			out = append(out, knownSecrets(c)...)
		}
		return out
	}
	return nil
}

// unboundIn is m's binding error for registry with the module's name
// filled in, or nil.
func unboundIn(m Module, name, registry string) error {
	err := m.CheckBinding(registry)
	var ue *UnboundError
	if errors.As(err, &ue) {
		ue.Module = name
	}
	return err
}
