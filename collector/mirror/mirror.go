// Package mirror reads where a container runtime really pulls an image
// from: containerd's hosts.toml and config.toml, CRI-O's registries.conf
// (a node's files, in node-local mode), and plans the mirrors the scheduler
// probes for each image.
package mirror

import (
	"fmt"
	"net/url"
	"path"
	"strings"

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
// from the node's runtime configuration (node.go), which wins for the
// registries it configures.

// MaxPerRegistry bounds the hosts probed per registry and so the
// mirror series; runtimes try them one after the other, and a pull that
// needs more than a few has failed long before.
const MaxPerRegistry = 8

// Host is one host of a chain, as a runtime would use it.
type Host struct {
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
	// empty keeps it. Set per image by HostsFor.
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
	// Key tells hosts of one chain apart (scheme, host, path).
	Key string
}

// UsableFor reports whether the runtime sends ref to h.
func (h *Host) UsableFor(ref probe.Reference) bool {
	if ref.Digest != "" {
		return h.ForDigests
	}
	return h.ForTags
}

// ParseURL parses a config mirror URL much as containerd parses a
// hosts.toml host: a bare host means https, and "/v2" is appended to the
// path unless it starts with /v2 (then it is the API root, as with
// override_path).
func ParseURL(raw string) (Host, error) {
	if raw == "" {
		return Host{}, fmt.Errorf("the URL is empty; give e.g. https://mirror.example.com")
	}
	s := raw
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return Host{}, fmt.Errorf("%q is not a URL; give e.g. https://mirror.example.com", redactRawURL(raw))
	}
	if u.User != nil {
		return Host{}, fmt.Errorf("the URL %q carries credentials; remove them and give the mirror a module with auth: instead ({url: ..., module: ...})", redactRawURL(raw))
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return Host{}, fmt.Errorf("the URL %q has scheme %q; use https:// or http://", raw, u.Scheme)
	}
	if u.Host == "" || u.Hostname() == "" {
		return Host{}, fmt.Errorf("the URL %q has no host", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return Host{}, fmt.Errorf("the URL %q has a query or fragment; give scheme://host[:port][/path] only", raw)
	}
	// A path that starts with /v2 is the API root as is (a Harbor proxy
	// project: /v2/proxy-hub, containerd's override_path); any other path
	// gets "/v2" appended, as containerd does.
	override := u.Path == "/v2" || strings.HasPrefix(u.Path, "/v2/")
	h := Host{Host: strings.ToLower(u.Host), PlainHTTP: u.Scheme == "http", Path: apiRoot(u.Path, override),
		ForTags: true, ForDigests: true, Namespace: true}
	h.Key = u.Scheme + "://" + h.Host + h.Path
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

// IsUpstream reports whether host (host[:port]) is the registry itself.
func IsUpstream(host, registry string) bool {
	h := probe.NormalizeRegistry(host)
	if h == registry {
		return true
	}
	ref := probe.Reference{Registry: registry}
	return h == strings.ToLower(ref.APIHost())
}

// Set is the mirror configuration of one container runtime: for each
// image, the hosts it tries, in order. NodeReader.Read builds it from a
// node's runtime files.
type Set struct {
	// Runtime names where it came from, for logs and the status page:
	// "containerd", "containerd (legacy registry.mirrors)" or "cri-o".
	Runtime string
	// byRegistry holds containerd's chains per registry (normalised) and
	// fallback the chain for every other registry (certs.d/_default, or
	// the legacy "*" mirrors); hosts with an empty Host stand for the
	// registry itself, filled in per image.
	byRegistry map[string][]Host
	fallback   []Host
	// crio holds CRI-O's registries, matched by longest prefix.
	crio []crioRegistry
}

// HasMirrors reports whether the set sends some image to a host other than
// its registry.
func (m *Set) HasMirrors() bool {
	if m == nil {
		return false
	}
	if len(m.crio) > 0 {
		return crioHasMirrors(m.crio)
	}
	for reg, hosts := range m.byRegistry {
		for _, h := range hosts {
			if h.Host != "" && !IsUpstream(h.Host, reg) {
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

// HostsFor returns the hosts the runtime tries for ref, in order, upstream
// entries marked; ok is false when the runtime has nothing configured for
// it (it pulls from the registry itself).
func (m *Set) HostsFor(ref probe.Reference) (hosts []Host, ok bool) {
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
	out := make([]Host, 0, len(chain))
	for _, h := range chain {
		if h.Host == "" || IsUpstream(h.Host, ref.Registry) {
			h.Upstream = true
			h.Host = strings.ToLower(ref.APIHost())
		}
		out = append(out, h)
	}
	return out, true
}

// Step is one mirror the scheduler probes for a target, in the runtime's
// order.
type Step struct {
	Host Host
	// Fallback is true when the runtime tries another host after this one.
	Fallback bool
}

// Plan filters a chain down to the hosts the runtime would send ref
// to and keeps the mirrors among them.
func Plan(hosts []Host, ref probe.Reference) []Step {
	var usable []Host
	for _, h := range hosts {
		if h.UsableFor(ref) {
			usable = append(usable, h)
		}
	}
	var out []Step
	for i, h := range usable {
		if h.Upstream {
			continue
		}
		out = append(out, Step{Host: h, Fallback: i < len(usable)-1})
	}
	return out
}
