package collector

import (
	"fmt"
	"net/url"
	"path"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/imagepull/imagepull_exporter/probe"
)

// The mirror chain: where a container runtime really pulls an image from.
//
// A runtime configured with mirrors tries a list of hosts for an image's
// registry, in order, and uses the first that serves it: containerd's
// certs.d/<registry>/hosts.toml `[host."..."]` entries followed by its
// `server` (the registry itself when left out), the older CRI
// `registry.mirrors."<registry>".endpoint` list followed by the registry,
// or CRI-O's registries.conf `[[registry.mirror]]` entries followed by the
// registry's `location` (unless the registry is `blocked`). The exporter
// probes every mirror of a target's registry like a registry (the same
// ping, token and manifest HEAD, containerd's ?ns=<registry> included) and
// compares the digest each mirror serves for a tag with upstream's:
//
//	imagepull_mirror_up{mirror,upstream}        the mirror serves the probed images
//	imagepull_mirror_stale{mirror,upstream,repository,tag}
//	                                            1 when it serves another digest for a tag than upstream
//	imagepull_mirror_fallback{mirror,upstream}  1 when the runtime would try another host after it
//
// Mirrors come from the configuration's `mirrors:` key (the central
// Deployment, which cannot see the nodes' files) and, in node-local mode,
// from the node's runtime configuration (nodelocal.go), which wins for the
// registries it configures.

// MirrorEndpoint is one entry of a `mirrors:` list: a URL, or a mapping
// {url, module} naming the module to probe the mirror with (its timeouts,
// TLS and credentials). Without a module a mirror is probed anonymously
// with the target's module's timeouts and TLS settings: a runtime hands a
// registry's credentials only to that registry's host, never to a mirror.
//
//	mirrors:
//	  docker.io:
//	    - https://mirror.example.com
//	    - {url: "https://harbor.example.com/v2/proxy-hub", module: harbor}
type MirrorEndpoint struct {
	// URL is scheme://host[:port][/path]; a bare host means https. A path
	// that starts with /v2 is the registry API root as is (e.g. a Harbor
	// proxy project, https://harbor.example.com/v2/proxy-hub); to any other
	// path "/v2" is appended, as containerd does for a hosts.toml host. It
	// must not carry credentials.
	URL string `yaml:"url"`
	// Module names a module under modules:; empty means the target's.
	Module string `yaml:"module"`
}

// mirrorEndpointYAML is the mapping form; its name shows in decode errors.
type mirrorEndpointYAML MirrorEndpoint

// UnmarshalYAML accepts a URL string or a {url, module} mapping.
func (e *MirrorEndpoint) UnmarshalYAML(unmarshal func(any) error) error {
	var s string
	if err := unmarshal(&s); err == nil {
		*e = MirrorEndpoint{URL: s}
		return nil
	}
	return unmarshal((*mirrorEndpointYAML)(e))
}

// maxMirrorsPerRegistry bounds the hosts probed per registry and so the
// mirror series; runtimes try them one after the other, and a pull that
// needs more than a few has failed long before.
const maxMirrorsPerRegistry = 8

// MirrorHost is one host of a chain, as a runtime would use it.
type MirrorHost struct {
	// Host is host[:port], lower case: the `mirror` label. Never a URL,
	// never credentials.
	Host string
	// PlainHTTP speaks http:// to the host.
	PlainHTTP bool
	// HTTPFallback tries https and falls back to http when the host
	// answers in plain HTTP (CRI-O `insecure`; containerd http:// hosts
	// with TLS settings).
	HTTPFallback bool
	// Path is the API root ("/v2" unless containerd's override_path or a
	// path in the URL says otherwise).
	Path string
	// Repository is the repository the host serves the image under when
	// it differs from the image's (CRI-O prefix → location rewriting);
	// empty keeps it. Set per image by hostsFor.
	Repository string
	// Namespace sends containerd's ?ns=<registry> to the host.
	Namespace bool
	// ForTags and ForDigests say which references the runtime sends to
	// the host: containerd sends tags only to hosts with both the pull
	// and resolve capabilities and digests to hosts with pull; CRI-O's
	// pull-from-mirror / mirror-by-digest-only restrict a mirror likewise.
	ForTags, ForDigests bool
	// SkipVerify and CAFile configure TLS (hosts.toml skip_verify and ca,
	// legacy registry.configs tls, CRI-O insecure).
	SkipVerify bool
	CAFile     string
	// Module names the module to probe the host with (config mirrors);
	// empty means the target's module without its credentials.
	Module string
	// Upstream marks the registry itself in the chain (containerd's
	// server, CRI-O's location): it is probed as the target, not as a
	// mirror.
	Upstream bool
	// key tells hosts of one chain apart (scheme, host, path).
	key string
}

// usableFor reports whether the runtime sends ref to h.
func (h *MirrorHost) usableFor(ref probe.Reference) bool {
	if ref.Digest != "" {
		return h.ForDigests
	}
	return h.ForTags
}

// parseMirrorURL parses a config mirror URL much as containerd parses a
// hosts.toml host: a bare host means https, and "/v2" is appended to the
// path unless it starts with /v2 (then it is the API root, as with
// override_path).
func parseMirrorURL(raw string) (MirrorHost, error) {
	if raw == "" {
		return MirrorHost{}, fmt.Errorf("the URL is empty; give e.g. https://mirror.example.com")
	}
	s := raw
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return MirrorHost{}, fmt.Errorf("%q is not a URL; give e.g. https://mirror.example.com", redactRawURL(raw))
	}
	if u.User != nil {
		return MirrorHost{}, fmt.Errorf("the URL %q carries credentials; remove them and give the mirror a module with auth: instead ({url: ..., module: ...})", redactRawURL(raw))
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return MirrorHost{}, fmt.Errorf("the URL %q has scheme %q; use https:// or http://", raw, u.Scheme)
	}
	if u.Host == "" || u.Hostname() == "" {
		return MirrorHost{}, fmt.Errorf("the URL %q has no host", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return MirrorHost{}, fmt.Errorf("the URL %q has a query or fragment; give scheme://host[:port][/path] only", raw)
	}
	// A path that starts with /v2 is the API root as is (a Harbor proxy
	// project: /v2/proxy-hub, containerd's override_path); any other path
	// gets "/v2" appended, as containerd does.
	override := u.Path == "/v2" || strings.HasPrefix(u.Path, "/v2/")
	h := MirrorHost{Host: strings.ToLower(u.Host), PlainHTTP: u.Scheme == "http", Path: apiRoot(u.Path, override),
		ForTags: true, ForDigests: true, Namespace: true}
	h.key = u.Scheme + "://" + h.Host + h.Path
	return h, nil
}

// apiRoot is containerd's parseHostConfig path rule: "/v2" when empty, "/v2"
// appended unless the path ends in it or override is set.
func apiRoot(p string, override bool) string {
	if p == "" || p == "/" {
		if override {
			return ""
		}
		return "/v2"
	}
	p = path.Clean(p)
	if !strings.HasSuffix(p, "/v2") && !override {
		p += "/v2"
	}
	return p
}

// redactRawURL drops the userinfo of a URL-ish string for error texts.
func redactRawURL(s string) string {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		rest, scheme = s, ""
	}
	hostPart, tail, _ := strings.Cut(rest, "/")
	if i := strings.LastIndexByte(hostPart, '@'); i >= 0 {
		hostPart = "<redacted>@" + hostPart[i+1:]
	}
	out := hostPart
	if tail != "" {
		out += "/" + tail
	}
	if ok {
		out = scheme + "://" + out
	}
	return out
}

// isUpstreamHost reports whether host (host[:port]) is the registry itself.
func isUpstreamHost(host, registry string) bool {
	h := probe.NormalizeRegistry(host)
	if h == registry {
		return true
	}
	ref := probe.Reference{Registry: registry}
	return h == strings.ToLower(ref.APIHost())
}

// validateMirrors checks the `mirrors:` section and builds its chains into
// cfg.mirrorChains; defined lists the module names.
func (p *parser) validateMirrors(cfg *Config, defined []string) {
	mNode := mapValue(p.root, "mirrors")
	keys := make([]string, 0, len(cfg.Mirrors))
	for k := range cfg.Mirrors {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	cfg.mirrorChains = map[string][]MirrorHost{}
	seenReg := map[string]string{}
	for _, key := range keys {
		line := lineOf(mNode, lineOf(p.root, 0, "mirrors"), key)
		where := fmt.Sprintf("mirrors: %q", key)
		reg := probe.NormalizeRegistry(key)
		if strings.Contains(key, "://") || strings.Contains(key, "/") {
			p.addf(line, "%s: give the registry host as image references name it (e.g. docker.io, ghcr.io, registry.example.com:5000), without scheme or path", where)
			continue
		}
		if _, err := probe.ParseReference(key + "/mirror-check:latest"); err != nil || reg == "" {
			p.addf(line, "%s: %q is not a registry host; give it as image references name it (e.g. docker.io, registry.example.com:5000)", where, key)
			continue
		}
		if other, dup := seenReg[reg]; dup {
			p.addf(line, "%s: names the same registry as %q (both are %s); merge the two lists", where, other, reg)
			continue
		}
		seenReg[reg] = key
		list := cfg.Mirrors[key]
		var listNode *yaml.Node
		if mNode != nil {
			listNode = mapValue(mNode, key)
		}
		if len(list) == 0 {
			p.addf(line, "%s: no mirrors listed; list at least one URL or remove the key", where)
			continue
		}
		if len(list) > maxMirrorsPerRegistry {
			p.addf(line, "%s: %d mirrors, at most %d are probed; shorten the list", where, len(list), maxMirrorsPerRegistry)
			continue
		}
		var chain []MirrorHost
		seen := map[string]bool{}
		ok := true
		for i, e := range list {
			eLine := line
			if listNode != nil && i < len(listNode.Content) {
				eLine = listNode.Content[i].Line
			}
			ewhere := fmt.Sprintf("%s[%d]", where, i)
			h, err := parseMirrorURL(e.URL)
			if err != nil {
				p.addf(eLine, "%s: %v", ewhere, err)
				ok = false
				continue
			}
			if isUpstreamHost(h.Host, reg) {
				p.addf(eLine, "%s: %s is the registry %s itself, not a mirror of it; remove it (the registry is always tried after its mirrors)", ewhere, h.Host, reg)
				ok = false
				continue
			}
			if seen[h.key] {
				p.addf(eLine, "%s: %s is listed twice; remove one", ewhere, h.key)
				ok = false
				continue
			}
			seen[h.key] = true
			if e.Module != "" {
				if _, exists := cfg.Modules[e.Module]; !exists {
					p.addf(eLine, "%s: module %q is not defined (defined: %s); add it under modules: or fix the name", ewhere, e.Module, strings.Join(defined, ", "))
					ok = false
					continue
				}
				h.Module = e.Module
			}
			chain = append(chain, h)
		}
		if ok {
			// A config mirror list models containerd's default: the
			// registry itself is tried after its mirrors.
			chain = append(chain, MirrorHost{Host: strings.ToLower(probe.Reference{Registry: reg}.APIHost()),
				Upstream: true, ForTags: true, ForDigests: true, key: "upstream"})
			cfg.mirrorChains[reg] = chain
		}
	}
}

// MirrorSet is the mirror configuration of one container runtime: for each
// image, the hosts it tries, in order. Build it with ReadNodeMirrors.
type MirrorSet struct {
	// Runtime names where it came from, for logs and the status page:
	// "containerd", "containerd (legacy registry.mirrors)" or "cri-o".
	Runtime string
	// byRegistry holds containerd's chains per registry (normalised) and
	// fallback the chain for every other registry (certs.d/_default, or
	// the legacy "*" mirrors); hosts with an empty Host stand for the
	// registry itself, filled in per image.
	byRegistry map[string][]MirrorHost
	fallback   []MirrorHost
	// crio holds CRI-O's registries, matched by longest prefix.
	crio []crioRegistry
}

// Empty reports whether the set configures no mirror at all.
func (m *MirrorSet) Empty() bool {
	return m == nil || (len(m.byRegistry) == 0 && len(m.fallback) == 0 && len(m.crio) == 0)
}

// HasMirrors reports whether the set sends some image to a host other than
// its registry.
func (m *MirrorSet) HasMirrors() bool {
	if m == nil {
		return false
	}
	if len(m.crio) > 0 {
		return crioHasMirrors(m.crio)
	}
	for reg, hosts := range m.byRegistry {
		for _, h := range hosts {
			if h.Host != "" && !isUpstreamHost(h.Host, reg) {
				return true
			}
		}
	}
	for _, h := range m.fallback {
		if h.Host != "" {
			return true
		}
	}
	return false
}

// hostsFor returns the hosts the runtime tries for ref, in order, upstream
// entries marked; ok is false when the runtime has nothing configured for
// it (it pulls from the registry itself).
func (m *MirrorSet) hostsFor(ref probe.Reference) (hosts []MirrorHost, ok bool) {
	if m == nil {
		return nil, false
	}
	if len(m.crio) > 0 {
		return crioHostsFor(m.crio, ref)
	}
	chain, found := m.byRegistry[ref.Registry]
	if !found {
		if m.fallback == nil {
			return nil, false
		}
		chain = m.fallback
	}
	out := make([]MirrorHost, 0, len(chain))
	for _, h := range chain {
		if h.Host == "" || isUpstreamHost(h.Host, ref.Registry) {
			h.Upstream = true
			h.Host = strings.ToLower(ref.APIHost())
		}
		out = append(out, h)
	}
	return out, true
}

// mirrorPlan is what the scheduler probes for one target: its mirrors, in
// the runtime's order, each with whether another host follows it.
type mirrorPlan struct {
	host     MirrorHost
	fallback bool
}

// planMirrors filters a chain down to the hosts the runtime would send ref
// to and keeps the mirrors among them.
func planMirrors(hosts []MirrorHost, ref probe.Reference) []mirrorPlan {
	var usable []MirrorHost
	for _, h := range hosts {
		if h.usableFor(ref) {
			usable = append(usable, h)
		}
	}
	var out []mirrorPlan
	for i, h := range usable {
		if h.Upstream {
			continue
		}
		out = append(out, mirrorPlan{host: h, fallback: i < len(usable)-1})
	}
	return out
}
