package probe

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"sort"
	"strings"
)

// This file reproduces the kubelet's credential matching over docker config
// JSON (k8s.io/kubernetes pkg/credentialprovider: BasicDockerKeyring, config.go
// and secrets.MakeDockerKeyring, v1.34), without importing Kubernetes, so that
// a probe made with a pod's pull secrets presents exactly the credentials the
// kubelet would present, in the same order. Where the kubelet's rules are
// surprising (plain string path prefixes, the index.docker.io fallback) they
// are kept on purpose: the point is to predict what the kubelet does, not
// what it should do.

// DockerConfigEntry is one credential of a docker config file, as the kubelet
// reads it: username and password, or "auth" (base64 of "user:password"),
// which wins over both. The kubelet ignores "email", "identitytoken" and
// "registrytoken" in pull secrets, and so does this type.
type DockerConfigEntry struct {
	Username string
	Password Secret
}

// DockerConfig maps a registry key ("https://index.docker.io/v1/",
// "registry.example.com/team", "*.dkr.ecr.*.amazonaws.com") to its credential.
type DockerConfig map[string]DockerConfigEntry

// dockerConfigEntryJSON mirrors the kubelet's dockerConfigEntryWithAuth.
type dockerConfigEntryJSON struct {
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	Auth     string `json:"auth,omitempty"`
	// Email is unused, but the kubelet decodes it as a string, so a
	// non-string email makes the kubelet reject the whole secret.
	Email string `json:"email,omitempty"`
}

// maxDockerConfigSize bounds what is parsed; Kubernetes secrets are at most
// 1 MiB, so anything larger is not a pull secret.
const maxDockerConfigSize = 1 << 20

// ParseDockerConfigJSON parses the ".dockerconfigjson" form
// ({"auths": {KEY: ENTRY}}) of secrets of type kubernetes.io/dockerconfigjson
// and of ~/.docker/config.json. Errors never quote the input, so a malformed
// secret cannot leak into a log line.
func ParseDockerConfigJSON(blob []byte) (DockerConfig, error) {
	var v struct {
		Auths map[string]json.RawMessage `json:"auths"`
	}
	if err := unmarshalQuiet(blob, &v); err != nil {
		return nil, fmt.Errorf("parse .dockerconfigjson: %w", err)
	}
	cfg, err := decodeEntries(v.Auths)
	if err != nil {
		return nil, fmt.Errorf("parse .dockerconfigjson: %w", err)
	}
	return cfg, nil
}

// ParseDockercfg parses the legacy ".dockercfg" form ({KEY: ENTRY}, no
// "auths" wrapper) of secrets of type kubernetes.io/dockercfg.
func ParseDockercfg(blob []byte) (DockerConfig, error) {
	var v map[string]json.RawMessage
	if err := unmarshalQuiet(blob, &v); err != nil {
		return nil, fmt.Errorf("parse .dockercfg: %w", err)
	}
	cfg, err := decodeEntries(v)
	if err != nil {
		return nil, fmt.Errorf("parse .dockercfg: %w", err)
	}
	return cfg, nil
}

// unmarshalQuiet is json.Unmarshal with errors that say where, never what:
// encoding/json's syntax errors quote the offending character, which may be
// part of a password.
func unmarshalQuiet(blob []byte, v any) error {
	if len(blob) > maxDockerConfigSize {
		return fmt.Errorf("larger than %d bytes", maxDockerConfigSize)
	}
	err := json.Unmarshal(blob, v)
	if err == nil {
		return nil
	}
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return fmt.Errorf("invalid JSON at byte %d", syn.Offset)
	}
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		return fmt.Errorf("invalid JSON: %s where %s was expected at byte %d", typ.Value, typ.Type, typ.Offset)
	}
	return errors.New("invalid JSON")
}

func decodeEntries(raw map[string]json.RawMessage) (DockerConfig, error) {
	cfg := make(DockerConfig, len(raw))
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		var e dockerConfigEntryJSON
		if err := unmarshalQuiet(raw[k], &e); err != nil {
			return nil, fmt.Errorf("entry %q: %w", k, err)
		}
		entry := DockerConfigEntry{Username: e.Username, Password: Secret(e.Password)}
		if e.Auth != "" {
			u, p, err := decodeAuthField(e.Auth)
			if err != nil {
				return nil, fmt.Errorf("entry %q: %w", k, err)
			}
			entry = DockerConfigEntry{Username: u, Password: Secret(p)}
		}
		cfg[k] = entry
	}
	return cfg, nil
}

// decodeAuthField decodes "auth" like the kubelet's
// decodeDockerConfigFieldAuth: padded standard base64 when it ends in '=',
// else unpadded; base64 ignores newlines (but not spaces); the decoded text
// must hold a ':'.
func decodeAuthField(field string) (username, password string, err error) {
	var decoded []byte
	if strings.HasSuffix(strings.TrimSpace(field), "=") {
		decoded, err = base64.StdEncoding.DecodeString(field)
	} else {
		decoded, err = base64.RawStdEncoding.DecodeString(field)
	}
	if err != nil {
		var ce base64.CorruptInputError
		if errors.As(err, &ce) {
			return "", "", fmt.Errorf("auth field is not valid base64 (at byte %d)", int64(ce))
		}
		return "", "", errors.New("auth field is not valid base64")
	}
	u, p, ok := strings.Cut(string(decoded), ":")
	if !ok {
		return "", "", errors.New("unable to parse auth field, must be formatted as base64(username:password)")
	}
	return u, p, nil
}

// DockerKeyring is the kubelet's BasicDockerKeyring: docker config entries
// indexed by normalised key, looked up by image name. It implements Keychain.
// Build it with Add, then share it: Lookup and Resolve are safe for
// concurrent use once no Add runs.
//
// Matching rules (each is the kubelet's):
//   - Keys lose their scheme, and a path of "/v1/" or "/v2/" (or
//     "/v1/rest") is treated as the host alone, so "https://index.docker.io/v1/"
//     is the key "index.docker.io".
//   - A key matches an image when the host has the same number of dot
//     separated labels and each label matches as a glob
//     ("*.dkr.ecr.*.amazonaws.com"), the ports are equal (a key without a
//     port never matches an image with one), and the key's path is a string
//     prefix of the image's path ("quay.io/team" also matches
//     "quay.io/teamwork/app": the kubelet compares strings, not path segments).
//   - Every matching key contributes, most specific first: keys are tried in
//     reverse lexical order, so "quay.io/team" comes before "quay.io". Within
//     a key, credentials keep the order they were added in (secret order).
//   - docker.io ≡ index.docker.io: when nothing matched and the image is on
//     Docker Hub, the credentials keyed "index.docker.io" (the docker CLI's
//     "https://index.docker.io/v1/") are used. A key "docker.io" matches Hub
//     images directly.
//
// One deliberate difference: key hosts are lower-cased, because Reference
// lower-cases registry hosts (host names are case-insensitive) and the kubelet
// would otherwise compare the spelling of the key with that of the image.
type DockerKeyring struct {
	index []string // distinct keys, reverse-sorted
	creds map[string][]Credential
}

// dockerHubIndexKey is the key the kubelet falls back to for Docker Hub images.
const dockerHubIndexKey = dockerHubIndex

// Add adds every entry of cfg, each credential's Source being source (e.g.
// "secret NS/NAME") followed by the entry's key. Entries whose key does not
// parse as a URL are skipped, as the kubelet skips them.
func (k *DockerKeyring) Add(source string, cfg DockerConfig) {
	if k.creds == nil {
		k.creds = make(map[string][]Credential)
	}
	// The kubelet ranges over a map here (random order for two entries that
	// normalise to one key); sorting makes the order reproducible.
	locs := make([]string, 0, len(cfg))
	for loc := range cfg {
		locs = append(locs, loc)
	}
	sort.Strings(locs)
	for _, loc := range locs {
		key, ok := normalizeKeyringKey(loc)
		if !ok {
			continue
		}
		e := cfg[loc]
		src := fmt.Sprintf("%s entry %q", source, loc)
		if source == "" {
			src = fmt.Sprintf("entry %q", loc)
		}
		if _, seen := k.creds[key]; !seen {
			k.index = append(k.index, key)
		}
		k.creds[key] = append(k.creds[key], Credential{Username: e.Username, Password: e.Password, Source: src})
	}
	sort.Sort(sort.Reverse(sort.StringSlice(k.index)))
}

// normalizeKeyringKey turns a docker config key into the kubelet's index key:
// host[:port][/path], scheme removed, "/v1/" and "/v2/" prefixes of the path
// dropped.
func normalizeKeyringKey(loc string) (string, bool) {
	value := loc
	if !strings.HasPrefix(value, "https://") && !strings.HasPrefix(value, "http://") {
		value = "https://" + value
	}
	parsed, err := url.Parse(value)
	if err != nil {
		return "", false
	}
	p := parsed.Path
	if strings.HasPrefix(p, "/v2/") || strings.HasPrefix(p, "/v1/") {
		p = p[3:]
	}
	host := strings.ToLower(parsed.Host)
	if p != "" && p != "/" {
		return host + p, true
	}
	return host, true
}

// Keys returns the normalised keys in lookup order (most specific first).
// Keys are not secret; diagnose shows them to explain a match or a miss.
func (k *DockerKeyring) Keys() []string {
	return append([]string(nil), k.index...)
}

// Lookup returns every credential whose key matches image, in the order the
// kubelet tries them; nil when none matches (the kubelet then pulls
// anonymously). image is what the kubelet passes: the normalised name without
// tag or digest, e.g. "docker.io/library/nginx" or "registry:5000/team/app".
func (k *DockerKeyring) Lookup(image string) []Credential {
	var ret []Credential
	for _, key := range k.index {
		if ok, _ := urlsMatchStr(key, image); ok {
			ret = append(ret, k.creds[key]...)
		}
	}
	if len(ret) > 0 {
		return ret
	}
	if isDefaultRegistryMatch(image) {
		if c, ok := k.creds[dockerHubIndexKey]; ok {
			return append([]Credential(nil), c...)
		}
	}
	return nil
}

// Resolve implements Keychain: the credentials the kubelet would try for ref,
// in order, without repeats of an identical username and password (trying a
// credential twice cannot change the outcome; the first source is kept).
func (k *DockerKeyring) Resolve(ref Reference) ([]Credential, error) {
	all := k.Lookup(ref.Registry + "/" + ref.Repository)
	out := all[:0:0]
	type up struct {
		u string
		p Secret
	}
	seen := make(map[up]bool, len(all))
	for _, c := range all {
		if seen[up{c.Username, c.Password}] {
			continue
		}
		seen[up{c.Username, c.Password}] = true
		out = append(out, c)
	}
	return out, nil
}

// isDefaultRegistryMatch reports whether image is pulled from Docker Hub,
// judged from its first path component as the kubelet does.
func isDefaultRegistryMatch(image string) bool {
	parts := strings.SplitN(image, "/", 2)
	if len(parts[0]) == 0 {
		return false
	}
	if len(parts) == 1 {
		return true
	}
	if parts[0] == DockerHubRegistry || parts[0] == dockerHubIndex {
		return true
	}
	return !strings.ContainsAny(parts[0], ".:")
}

// parseSchemelessURL parses host[:port][/path] by lending it a scheme.
func parseSchemelessURL(s string) (*url.URL, error) {
	u, err := url.Parse("https://" + s)
	if err != nil {
		return nil, err
	}
	u.Scheme = ""
	return u, nil
}

func splitURL(u *url.URL) (parts []string, port string) {
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		host, port = u.Host, ""
	}
	return strings.Split(host, "."), port
}

func urlsMatchStr(glob, target string) (bool, error) {
	g, err := parseSchemelessURL(glob)
	if err != nil {
		return false, err
	}
	t, err := parseSchemelessURL(target)
	if err != nil {
		return false, err
	}
	return urlsMatch(g, t)
}

// urlsMatch is the kubelet's URLsMatch: same port, same number of host
// labels each matching as a glob, and the glob's path a prefix of the
// target's. Wildcards work in the host only.
func urlsMatch(glob, target *url.URL) (bool, error) {
	gParts, gPort := splitURL(glob)
	tParts, tPort := splitURL(target)
	if gPort != tPort {
		return false, nil
	}
	if len(gParts) != len(tParts) {
		return false, nil
	}
	if !strings.HasPrefix(target.Path, glob.Path) {
		return false, nil
	}
	for i, gp := range gParts {
		ok, err := filepath.Match(gp, tParts[i])
		if err != nil {
			return false, fmt.Errorf("key host label %q: %w", gp, err)
		}
		if !ok {
			return false, nil
		}
	}
	return true, nil
}

// MatchImage is the kubelet's URLsMatchStr, exported for the credential
// provider plugins' matchImages (collector/credprovider): glob and image
// are host[:port][/path] without a scheme; the hosts have the same number
// of dot-separated labels, each matching as a glob, the ports are equal
// and glob's path is a string prefix of image's.
func MatchImage(glob, image string) (bool, error) {
	return urlsMatchStr(glob, image)
}

// ParseImageMatch checks a matchImages entry the way the kubelet validates
// it (ParseSchemelessURL) and returns its host[:port], the part a registry
// must match for the entry to cover any of its images.
func ParseImageMatch(glob string) (host string, err error) {
	u, err := parseSchemelessURL(glob)
	if err != nil {
		return "", err
	}
	return u.Host, nil
}
