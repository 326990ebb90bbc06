package config

import (
	"fmt"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/imagepull/imagepull_exporter/probe"
)

// validateAuthRegistries checks a module's auth.registries: each entry a
// host glob, and the list only where there are static credentials to bind.
func (p *parser) validateAuthRegistries(where string, a *probe.AuthConfig, n *yaml.Node, line int) {
	if a.Registries == nil {
		return
	}
	keyLine := lineOf(n, line, "auth", "registries")
	if len(a.Registries) == 0 {
		p.addf(keyLine, "%s: auth.registries is empty; list the registry hosts the credentials belong to (e.g. registry.example.com, *.example.com) or remove the key to bind them to the module's targets' registries", where)
	}
	list := mapValue(mapValue(n, "auth"), "registries")
	for i, g := range a.Registries {
		l := keyLine
		if list != nil && i < len(list.Content) {
			l = list.Content[i].Line
		}
		if err := probe.ValidateRegistryGlob(g); err != nil {
			p.addf(l, "%s: auth.registries[%d] %v", where, i, err)
		}
	}
	if !a.HasStaticCredentials() {
		p.addf(keyLine, "%s: auth.registries binds auth.username's credentials, but auth.username is not set; remove auth.registries (docker_config entries are matched by their own registry keys)", where)
	}
}

// bindCredentials fills, for every module with static credentials and no
// auth.registries, the registries its credentials are bound to: those of
// the configured targets that use it, and the configured mirrors that
// name it (probe/binding.go). Discovered targets and /probe never add to
// the binding: they are what it protects against.
func bindCredentials(cfg *Config) {
	bound := map[string]map[string]bool{}
	add := func(module, registry string) {
		if registry == "" {
			return
		}
		if bound[module] == nil {
			bound[module] = map[string]bool{}
		}
		bound[module][probe.NormalizeRegistry(registry)] = true
	}
	for _, t := range cfg.Targets {
		add(t.Module, t.Ref.Registry)
	}
	for _, chain := range cfg.mirrorChains {
		for _, h := range chain {
			if h.Module != "" && !h.Upstream {
				add(h.Module, h.Host)
			}
		}
	}
	for name, m := range cfg.Modules {
		if !m.Auth.HasStaticCredentials() || len(m.Auth.Registries) > 0 {
			continue
		}
		regs := make([]string, 0, len(bound[name]))
		for r := range bound[name] {
			regs = append(regs, r)
		}
		sort.Strings(regs)
		m.Auth.TargetRegistries = regs
		cfg.Modules[name] = m
	}
}

// Warnings returns what is valid but probably not meant, for
// --config.check to print.
func (c *Config) Warnings() []string {
	var out []string
	if m, ok := c.Modules[DefaultModuleName]; ok && m.Auth.HasStaticCredentials() {
		by := "its auth.registries"
		if len(m.Auth.Registries) == 0 {
			by = "the registries of its targets, as it has no auth.registries"
		}
		to := "no registry"
		if bound := m.Auth.BoundRegistries(); len(bound) > 0 {
			to = strings.Join(bound, ", ")
		}
		out = append(out, fmt.Sprintf("module %q has static credentials (auth.username) and is the discovery default: "+
			"discovery falls back to it for any image a pod names. Its credentials are bound to %s (by %s); "+
			"a discovered image on any other registry is probed anonymously. "+
			"Set auth.registries to exactly the registries the credentials belong to, or keep the default module anonymous and map registries to this module under discovery: modules:",
			DefaultModuleName, to, by))
	}
	return out
}
