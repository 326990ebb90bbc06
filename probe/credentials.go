package probe

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// ModuleKeychain returns the keychain of a module's own credentials, in this
// order of precedence:
//
//   - auth.username with auth.password or auth.password_file: one static
//     credential. The password file is read on every Resolve (every probe),
//     so a rotated file takes effect without a reload; one trailing newline
//     (LF or CRLF) is trimmed, as editors and `echo` add one.
//   - auth.docker_config: a docker config.json (or a directory holding one),
//     read on every Resolve.
//   - auth.credential_provider: the kubelet credential provider plugin of
//     that name (AuthConfig.Provider, collector/credprovider), run for the
//     images its matchImages cover.
//   - the DOCKER_CONFIG environment variable, a directory holding a
//     config.json; a missing file there means anonymous, as for the docker
//     CLI. ~/.docker is deliberately not consulted: an exporter should not
//     pick up whatever credentials the account it runs as happens to have.
//     With --kube.credential-provider-config, the node's plugins follow,
//     as the kubelet tries its config.json and then its plugins.
//   - with --kube.credential-provider-config, the node's plugins: what the
//     kubelet presents for an image no pull secret covers.
//   - anonymous (an empty credential list).
//
// Static credentials are bound to registries (binding.go): for a registry
// outside auth.registries (or, without it, the module's targets'
// registries) the keychain resolves no credential, whoever asks.
//
// Docker config entries match the image's registry host (docker.io ≡
// index.docker.io ≡ https://index.docker.io/v1/); "auth" (base64
// user:password), username/password and identitytoken are understood.
// Credential helpers (credsStore, credHelpers) are not run.
//
// ModuleKeychain fails only for a module that cannot work (a password and a
// password file, a password without a user name); files are checked when
// they are read.
func ModuleKeychain(m Module) (Keychain, error) {
	a := m.Auth
	if a.Password != "" && a.PasswordFile != "" {
		return nil, errors.New("auth: password and password_file are exclusive; set one")
	}
	if a.Username == "" && (a.Password != "" || a.PasswordFile != "") {
		return nil, errors.New("auth: a password or password_file needs a username")
	}
	if a.CredentialProvider != "" && (a.Username != "" || a.DockerConfig != "") {
		return nil, errors.New("auth: credential_provider and username or docker_config are exclusive; set one source of credentials")
	}
	switch {
	case a.Username != "":
		return staticModuleKeychain{user: a.Username, password: a.Password, passwordFile: a.PasswordFile, m: m}, nil
	case a.DockerConfig != "":
		return dockerConfigKeychain{path: a.DockerConfig, mustExist: true}, nil
	case a.CredentialProvider != "":
		if a.Provider == nil {
			return nil, fmt.Errorf("auth: credential_provider %q is set but no credential provider configuration is loaded; give --kube.credential-provider-config and --kube.credential-provider-bin-dir", a.CredentialProvider)
		}
		return providerKeychain{p: a.Provider, registries: a.Registries}, nil
	case os.Getenv("DOCKER_CONFIG") != "":
		dc := dockerConfigKeychain{path: os.Getenv("DOCKER_CONFIG")}
		if a.Provider != nil {
			// The node's own credentials are its config.json and its
			// credential providers, in that order (the kubelet's
			// UnionDockerKeyring{nodeKeyring, plugins}).
			return unionKeychain{dc, providerKeychain{p: a.Provider}}, nil
		}
		return dc, nil
	case a.Provider != nil:
		return providerKeychain{p: a.Provider}, nil
	}
	return anonymousKeychain{}, nil
}

// providerKeychain is a module's credential provider (one plugin, or the
// node's plugins), narrowed to auth.registries when the module sets it. The
// provider binds its credentials itself (its matchImages and response
// keys); registries can only narrow that.
type providerKeychain struct {
	p          CredentialProvider
	registries []string
}

func (k providerKeychain) Resolve(ref Reference) ([]Credential, error) {
	return k.ResolveContext(context.Background(), ref)
}

// ResolveContext implements ContextKeychain.
func (k providerKeychain) ResolveContext(ctx context.Context, ref Reference) ([]Credential, error) {
	if len(k.registries) > 0 && !RegistryBound(k.registries, ref.Registry) {
		return nil, nil
	}
	return k.p.ResolveContext(ctx, ref)
}

// unionKeychain tries each keychain in order and concatenates what they
// resolve, as the kubelet's UnionDockerKeyring does.
type unionKeychain []Keychain

func (u unionKeychain) Resolve(ref Reference) ([]Credential, error) {
	return u.ResolveContext(context.Background(), ref)
}

// ResolveContext implements ContextKeychain.
func (u unionKeychain) ResolveContext(ctx context.Context, ref Reference) ([]Credential, error) {
	var out []Credential
	for _, kc := range u {
		cs, err := ResolveKeychain(ctx, kc, ref)
		if err != nil {
			return nil, err
		}
		out = append(out, cs...)
	}
	return out, nil
}

type anonymousKeychain struct{}

func (anonymousKeychain) Resolve(Reference) ([]Credential, error) { return nil, nil }

type staticModuleKeychain struct {
	user         string
	password     Secret
	passwordFile string
	m            Module // for its binding (binding.go)
}

// maxPasswordFile bounds a password file read at every probe.
const maxPasswordFile = 64 << 10

func (k staticModuleKeychain) Resolve(ref Reference) ([]Credential, error) {
	if k.m.CheckBinding(ref.Registry) != nil {
		// Not a registry the credentials belong to: present nothing, as
		// the kubelet presents nothing for a registry no key matches, and
		// do not even read the password file.
		return nil, nil
	}
	return k.credentials()
}

// credentials reads the static credential, whatever the registry: only
// Resolve (which checks the binding) and the redactor (which must know
// every secret of the module) call it.
func (k staticModuleKeychain) credentials() ([]Credential, error) {
	c := Credential{Username: k.user, Password: k.password, Source: "module auth"}
	if k.passwordFile != "" {
		b, err := ReadFileBounded(k.passwordFile, maxPasswordFile)
		if err != nil {
			return nil, fmt.Errorf("read password_file: %w", err)
		}
		s := strings.TrimSuffix(string(b), "\n")
		s = strings.TrimSuffix(s, "\r")
		if s == "" {
			return nil, fmt.Errorf("password_file %s is empty", k.passwordFile)
		}
		c.Password = Secret(s)
		c.Source = "module auth, password_file " + k.passwordFile
	}
	return []Credential{c}, nil
}

// FileTooLargeError is ReadFileBounded's error for a file over its bound;
// callers add what the file should have been.
type FileTooLargeError struct {
	Path string
	Max  int64
}

func (e *FileTooLargeError) Error() string {
	return fmt.Sprintf("%s is larger than %d bytes", e.Path, e.Max)
}

// ReadFileBounded reads a whole file of at most max bytes: at most max+1
// bytes are read whatever the file is (a FIFO, /dev/zero). Errors name the
// path but never the content. The one bounded read of the exporter's
// local files: password_file, tls.ca_file, docker config and the
// credential provider configuration.
func ReadFileBounded(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(b)) > max {
		return nil, &FileTooLargeError{Path: path, Max: max}
	}
	return b, nil
}

// dockerConfigKeychain reads a docker config.json at every Resolve, so that
// an updated file (a mounted secret) takes effect without a reload.
type dockerConfigKeychain struct {
	path      string // a config.json or a directory holding one
	mustExist bool
}

// dockerConfigFileEntry is an "auths" entry of a docker config.json. Unlike
// the kubelet (keyring.go), the docker CLI and containerd use identitytoken,
// so a module's docker config does too.
type dockerConfigFileEntry struct {
	Auth          string `json:"auth,omitempty"`
	Username      string `json:"username,omitempty"`
	Password      string `json:"password,omitempty"`
	IdentityToken string `json:"identitytoken,omitempty"`
}

func (k dockerConfigKeychain) Resolve(ref Reference) ([]Credential, error) {
	return k.entries(func(key string) bool { return NormalizeRegistry(key) == NormalizeRegistry(ref.Registry) })
}

// all returns the credentials of every entry, whatever its registry: for
// the redactor, which must know every secret the file holds.
func (k dockerConfigKeychain) all() ([]Credential, error) {
	return k.entries(func(string) bool { return true })
}

// entries returns the credentials of the entries whose key match accepts.
func (k dockerConfigKeychain) entries(match func(key string) bool) ([]Credential, error) {
	path := k.path
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		path = filepath.Join(path, "config.json")
	}
	b, err := ReadFileBounded(path, maxDockerConfigSize)
	if err != nil {
		if !k.mustExist && errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("docker config: %w", err)
	}
	var v struct {
		Auths map[string]json.RawMessage `json:"auths"`
	}
	if err := unmarshalQuiet(b, &v); err != nil {
		return nil, fmt.Errorf("docker config %s: %w", path, err)
	}
	keys := make([]string, 0, len(v.Auths))
	for key := range v.Auths {
		if match(key) {
			keys = append(keys, key)
		}
	}
	// Several keys can name one registry ("docker.io" and
	// "https://index.docker.io/v1/"); sorting makes the order reproducible.
	sort.Strings(keys)
	var out []Credential
	for _, key := range keys {
		var e dockerConfigFileEntry
		if err := unmarshalQuiet(v.Auths[key], &e); err != nil {
			return nil, fmt.Errorf("docker config %s entry %q: %w", path, key, err)
		}
		c := Credential{Username: e.Username, Password: Secret(e.Password), IdentityToken: Secret(e.IdentityToken),
			Source: fmt.Sprintf("docker config %s entry %q", path, key)}
		if e.Auth != "" {
			u, p, err := decodeAuthField(e.Auth)
			if err != nil {
				return nil, fmt.Errorf("docker config %s entry %q: %w", path, key, err)
			}
			c.Username, c.Password = u, Secret(p)
		}
		if c.Anonymous() {
			continue
		}
		out = append(out, c)
	}
	return out, nil
}

// credentialID identifies a credential in cache keys without holding it: a
// SHA-256 over its parts, never the plaintext. Anonymous is "anonymous".
func credentialID(c Credential) string {
	if c.Anonymous() {
		return "anonymous"
	}
	h := sha256.New()
	io.WriteString(h, c.Username)
	h.Write([]byte{0})
	io.WriteString(h, string(c.Password))
	h.Write([]byte{0})
	io.WriteString(h, string(c.IdentityToken))
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// credentialsID identifies an ordered list of credentials the same way.
func credentialsID(cs []Credential) string {
	if len(cs) == 0 {
		return "anonymous"
	}
	if len(cs) == 1 {
		return credentialID(cs[0])
	}
	h := sha256.New()
	for _, c := range cs {
		io.WriteString(h, credentialID(c))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}
