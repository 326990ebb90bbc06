package config

import (
	"fmt"
	"path"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/imagepull/imagepull_exporter/internal/yamlnode"
	"github.com/imagepull/imagepull_exporter/probe"
)

// DiscoveryConfig is the `discovery:` section: how the images found in
// Kubernetes (--kube.discover-targets) are probed. The zero value probes
// every discovered image with the "default" module.
//
//	discovery:
//	  modules:
//	    - registry: "*.dkr.ecr.*.amazonaws.com"
//	      module: ecr
//	  exclude:
//	    - registry.internal.example.com   # a whole registry
//	    - docker.io/library/busybox       # one repository (and any below it)
type DiscoveryConfig struct {
	// Modules choose the module per registry: the first entry whose
	// registry pattern matches the image's registry wins; no match means
	// the "default" module.
	Modules []DiscoveryModule `yaml:"modules"`
	// Exclude lists patterns of images never probed. A pattern matches the
	// image's registry/repository or any leading part of it cut at a '/',
	// so "ghcr.io/acme" excludes ghcr.io/acme/* at any depth and
	// "*.internal" excludes every registry host ending in .internal.
	// Patterns are path.Match globs ('*' does not cross '/').
	Exclude []string `yaml:"exclude"`
}

// DiscoveryModule maps registries to a module.
type DiscoveryModule struct {
	// Registry is a path.Match glob over the normalised registry host
	// (lower case, "docker.io" for Docker Hub, with the port if any), e.g.
	// "*.dkr.ecr.*.amazonaws.com" or "registry.example.com:5000".
	Registry string `yaml:"registry"`
	// Module names a module under modules:.
	Module string `yaml:"module"`
}

// ModuleFor returns the module discovery uses for registry: the first
// matching entry's, else DefaultModuleName.
func (d DiscoveryConfig) ModuleFor(registry string) string {
	registry = probe.NormalizeRegistry(registry)
	for _, m := range d.Modules {
		if ok, _ := path.Match(normalizeRegistryPattern(m.Registry), registry); ok {
			return m.Module
		}
	}
	return DefaultModuleName
}

// Excluded reports whether discovery leaves ref out.
func (d DiscoveryConfig) Excluded(ref probe.Reference) bool {
	name := ref.Registry + "/" + ref.Repository
	for _, p := range d.Exclude {
		p = normalizeExcludePattern(p)
		for cut := len(name); cut > 0; {
			if ok, _ := path.Match(p, name[:cut]); ok {
				return true
			}
			cut = strings.LastIndexByte(name[:cut], '/')
		}
	}
	return false
}

// normalizeRegistryPattern lower-cases a registry pattern and maps Docker
// Hub's spellings to docker.io, as image references are.
func normalizeRegistryPattern(p string) string {
	return probe.NormalizeRegistry(p)
}

func normalizeExcludePattern(p string) string {
	host, rest, found := strings.Cut(p, "/")
	host = probe.NormalizeRegistry(host)
	if !found {
		return host
	}
	return host + "/" + rest
}

// validateDiscovery checks the discovery: section; defined lists the module
// names.
func (p *parser) validateDiscovery(cfg *Config, defined []string) {
	dNode := yamlnode.MapValue(p.root, "discovery")
	dLine := lineOf(p.root, 0, "discovery")
	modsNode := yamlnode.MapValue(dNode, "modules")
	for i, m := range cfg.Discovery.Modules {
		where := fmt.Sprintf("discovery: modules[%d]", i)
		line := dLine
		var item *yaml.Node
		if modsNode != nil && i < len(modsNode.Content) {
			item = modsNode.Content[i]
			line = item.Line
		}
		if m.Registry == "" {
			p.addf(line, "%s: registry is missing; add e.g. `registry: \"*.dkr.ecr.*.amazonaws.com\"`", where)
		} else if strings.Contains(m.Registry, "/") {
			p.addf(lineOf(item, line, "registry"), "%s: registry %q holds a '/'; give a registry host pattern only (use exclude: for repositories)", where, m.Registry)
		} else if _, err := path.Match(m.Registry, ""); err != nil {
			p.addf(lineOf(item, line, "registry"), "%s: registry pattern %q is not a valid glob (%v); fix the brackets or escape them", where, m.Registry, err)
		}
		if m.Module == "" {
			p.addf(line, "%s: module is missing; name one of: %s", where, strings.Join(defined, ", "))
		} else if _, ok := cfg.Modules[m.Module]; !ok {
			p.addf(lineOf(item, line, "module"), "%s: module %q is not defined (defined: %s); add it under modules: or fix the name", where, m.Module, strings.Join(defined, ", "))
		}
	}
	exNode := yamlnode.MapValue(dNode, "exclude")
	for i, e := range cfg.Discovery.Exclude {
		line := dLine
		if exNode != nil && i < len(exNode.Content) {
			line = exNode.Content[i].Line
		}
		if e == "" {
			p.addf(line, "discovery: exclude[%d] is empty; remove it or give a registry or registry/repository pattern", i)
		} else if _, err := path.Match(e, ""); err != nil {
			p.addf(line, "discovery: exclude[%d]: pattern %q is not a valid glob (%v); fix the brackets or escape them", i, e, err)
		}
	}
}
