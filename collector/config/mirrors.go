package config

import (
	"fmt"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/imagepull/imagepull_exporter/collector/mirror"
	"github.com/imagepull/imagepull_exporter/internal/yamlnode"
	"github.com/imagepull/imagepull_exporter/probe"
)

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

// validateMirrors checks the `mirrors:` section and builds its chains into
// cfg.mirrorChains; defined lists the module names.
func (p *parser) validateMirrors(cfg *Config, defined []string) {
	mNode := yamlnode.MapValue(p.root, "mirrors")
	keys := make([]string, 0, len(cfg.Mirrors))
	for k := range cfg.Mirrors {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	cfg.mirrorChains = map[string][]mirror.Host{}
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
			listNode = yamlnode.MapValue(mNode, key)
		}
		if len(list) == 0 {
			p.addf(line, "%s: no mirrors listed; list at least one URL or remove the key", where)
			continue
		}
		if len(list) > mirror.MaxPerRegistry {
			p.addf(line, "%s: %d mirrors, at most %d are probed; shorten the list", where, len(list), mirror.MaxPerRegistry)
			continue
		}
		var chain []mirror.Host
		seen := map[string]bool{}
		ok := true
		for i, e := range list {
			eLine := line
			if listNode != nil && i < len(listNode.Content) {
				eLine = listNode.Content[i].Line
			}
			ewhere := fmt.Sprintf("%s[%d]", where, i)
			h, err := mirror.ParseURL(e.URL)
			if err != nil {
				p.addf(eLine, "%s: %v", ewhere, err)
				ok = false
				continue
			}
			if mirror.IsUpstream(h.Host, reg) {
				p.addf(eLine, "%s: %s is the registry %s itself, not a mirror of it; remove it (the registry is always tried after its mirrors)", ewhere, h.Host, reg)
				ok = false
				continue
			}
			if seen[h.Key] {
				p.addf(eLine, "%s: %s is listed twice; remove one", ewhere, h.Key)
				ok = false
				continue
			}
			seen[h.Key] = true
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
			chain = append(chain, mirror.Host{Host: strings.ToLower(probe.Reference{Registry: reg}.APIHost()),
				Upstream: true, ForTags: true, ForDigests: true, Key: "upstream"})
			cfg.mirrorChains[reg] = chain
		}
	}
}
