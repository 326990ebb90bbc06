package probe

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Docker Hub's names. The kubelet (through docker/distribution's reference
// package) normalises short names to DockerHubRegistry; the registry API itself
// lives at DockerHubAPIHost.
const (
	DockerHubRegistry = "docker.io"
	DockerHubAPIHost  = "registry-1.docker.io"
	// dockerHubIndex is the legacy name docker config files use as a key.
	dockerHubIndex = "index.docker.io"
)

// maxNameLength is distribution's limit on the length of a full name
// (registry + "/" + repository).
const maxNameLength = 255

// The grammar of docker/distribution's reference package (reference/regexp.go),
// anchored. It is the grammar the kubelet and containerd accept.
var (
	// pathComponentRE is one path component of a repository: lower-case
	// alphanumerics separated by '.', '_', '__' or any number of '-'.
	pathComponentRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*$`)
	// domainRE is a registry host: DNS labels separated by '.', or a
	// bracketed IPv6 address, with an optional port.
	domainRE = regexp.MustCompile(`^(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$`)
	tagRE    = regexp.MustCompile(`^[\w][\w.-]{0,127}$`)
	digestRE = regexp.MustCompile(`^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$`)
	// anchoredIdentifierRE matches a bare 64-hex image ID, which distribution
	// refuses as a repository name to avoid confusion with image IDs.
	anchoredIdentifierRE = regexp.MustCompile(`^[a-f0-9]{64}$`)
)

// digestHexLen is the hex length of each digest algorithm the OCI image spec
// registers (and go-digest accepts).
var digestHexLen = map[string]int{"sha256": 64, "sha384": 96, "sha512": 128}

// Reference is a normalised image reference. Registry is "docker.io" for Docker
// Hub (however it was spelt), Repository includes "library/" for official Hub
// images, and Tag is "latest" when the reference names neither a tag nor a
// digest. When both a tag and a digest are given, the digest is what gets
// pulled (and probed); the tag is kept for display.
type Reference struct {
	Registry   string
	Repository string
	Tag        string
	Digest     string
}

// ParseReference parses and normalises an image reference the way the kubelet
// does (docker/distribution's ParseNormalizedNamed plus the default tag):
//
//	nginx                      → docker.io/library/nginx:latest
//	user/app:v1                → docker.io/user/app:v1
//	index.docker.io/user/app   → docker.io/user/app:latest
//	localhost:5000/app@sha256:… → localhost:5000/app@sha256:…
//
// The first path component is a registry host when it contains '.' or ':' or
// is "localhost"; otherwise the reference is on Docker Hub.
func ParseReference(s string) (Reference, error) {
	if s == "" {
		return Reference{}, errors.New("invalid image reference: empty")
	}
	if strings.TrimSpace(s) != s {
		return Reference{}, fmt.Errorf("invalid image reference %q: leading or trailing white space", s)
	}
	var r Reference
	name := s
	if i := strings.IndexByte(name, '@'); i >= 0 {
		d := name[i+1:]
		name = name[:i]
		if err := validateDigest(d); err != nil {
			return Reference{}, fmt.Errorf("invalid image reference %q: %w", s, err)
		}
		r.Digest = d
	}
	// A tag follows the last ':' that comes after the last '/', so that a
	// registry port ("host:5000/app") is not mistaken for a tag.
	if i := strings.LastIndexByte(name, ':'); i >= 0 && !strings.Contains(name[i+1:], "/") {
		t := name[i+1:]
		name = name[:i]
		if !tagRE.MatchString(t) {
			return Reference{}, fmt.Errorf("invalid image reference %q: invalid tag %q (letters, digits, '_', '.', '-'; at most 128, not starting with '.' or '-')", s, t)
		}
		r.Tag = t
	}
	if name == "" {
		return Reference{}, fmt.Errorf("invalid image reference %q: empty repository name", s)
	}

	domain, remainder := splitDomain(name)
	if domain == "" {
		return Reference{}, fmt.Errorf("invalid image reference %q: empty registry host", s)
	}
	if !domainRE.MatchString(domain) {
		return Reference{}, fmt.Errorf("invalid image reference %q: invalid registry host %q", s, domain)
	}
	r.Registry = NormalizeRegistry(domain)
	if r.Registry != DockerHubRegistry && !strings.ContainsAny(domain, ".:") && strings.ToLower(domain) != "localhost" {
		// An upper-case first component without '.' or ':' is a host only
		// because of its case: keep the case so that String() round-trips.
		r.Registry = domain
	}
	if r.Registry == DockerHubRegistry && !strings.ContainsRune(remainder, '/') {
		remainder = "library/" + remainder
	}
	if strings.ToLower(remainder) != remainder {
		return Reference{}, fmt.Errorf("invalid image reference %q: repository name must be lowercase", s)
	}
	if anchoredIdentifierRE.MatchString(s) {
		return Reference{}, fmt.Errorf("invalid image reference %q: a repository name cannot be a 64-byte hexadecimal string (that is an image ID)", s)
	}
	for _, c := range strings.Split(remainder, "/") {
		if !pathComponentRE.MatchString(c) {
			return Reference{}, fmt.Errorf("invalid image reference %q: invalid repository path component %q (lower-case letters, digits and single separators '.', '_', '__', '-')", s, c)
		}
	}
	if len(r.Registry)+1+len(remainder) > maxNameLength {
		return Reference{}, fmt.Errorf("invalid image reference %q: name longer than %d characters", s, maxNameLength)
	}
	r.Repository = remainder
	if r.Tag == "" && r.Digest == "" {
		r.Tag = "latest"
	}
	return r, nil
}

// splitDomain splits a name into registry host and repository the way
// docker/distribution's splitDockerDomain does.
func splitDomain(name string) (domain, remainder string) {
	i := strings.IndexByte(name, '/')
	if i == -1 || (!strings.ContainsAny(name[:i], ".:") && name[:i] != "localhost" && strings.ToLower(name[:i]) == name[:i]) {
		return DockerHubRegistry, name
	}
	return name[:i], name[i+1:]
}

// NormalizeRegistry maps the spellings of one registry to one name: Docker
// Hub's docker.io, index.docker.io and registry-1.docker.io (and the docker
// config key https://index.docker.io/v1/) all become "docker.io". A scheme
// and path are dropped, and the host is lower-cased (host names are
// case-insensitive).
func NormalizeRegistry(host string) string {
	h := strings.ToLower(host)
	h = strings.TrimPrefix(h, "https://")
	h = strings.TrimPrefix(h, "http://")
	if i := strings.IndexByte(h, '/'); i >= 0 {
		h = h[:i]
	}
	switch h {
	case DockerHubRegistry, dockerHubIndex, DockerHubAPIHost:
		return DockerHubRegistry
	}
	return h
}

func validateDigest(d string) error {
	if !digestRE.MatchString(d) {
		return fmt.Errorf("invalid digest %q (want algorithm:hex, e.g. sha256:<64 hex digits>)", d)
	}
	algo, hex, _ := strings.Cut(d, ":")
	n, ok := digestHexLen[algo]
	if !ok {
		return fmt.Errorf("invalid digest %q: unsupported algorithm %q (sha256, sha384, sha512)", d, algo)
	}
	if len(hex) != n {
		return fmt.Errorf("invalid digest %q: %s wants %d hex digits, got %d", d, algo, n, len(hex))
	}
	for i := 0; i < len(hex); i++ {
		c := hex[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return fmt.Errorf("invalid digest %q: not lower-case hex", d)
		}
	}
	return nil
}

// String returns the canonical form: registry/repository[:tag][@digest],
// e.g. "docker.io/library/nginx:latest". ParseReference(r.String()) == r.
func (r Reference) String() string {
	var b strings.Builder
	b.Grow(len(r.Registry) + len(r.Repository) + len(r.Tag) + len(r.Digest) + 3)
	b.WriteString(r.Registry)
	b.WriteByte('/')
	b.WriteString(r.Repository)
	if r.Tag != "" {
		b.WriteByte(':')
		b.WriteString(r.Tag)
	}
	if r.Digest != "" {
		b.WriteByte('@')
		b.WriteString(r.Digest)
	}
	return b.String()
}

// Identifier is what the manifest HEAD asks for: the digest when the
// reference is pinned (a digest wins over a tag, as in containerd), else the
// tag.
func (r Reference) Identifier() string {
	if r.Digest != "" {
		return r.Digest
	}
	return r.Tag
}

// APIHost is the host that serves the registry API: "registry-1.docker.io"
// for Docker Hub, else Registry.
func (r Reference) APIHost() string {
	if r.Registry == DockerHubRegistry {
		return DockerHubAPIHost
	}
	return r.Registry
}
