package config

import (
	"fmt"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/imagepull/imagepull_exporter/internal/yamlnode"
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
	list := yamlnode.MapValue(yamlnode.MapValue(n, "auth"), "registries")
	for i, g := range a.Registries {
		l := keyLine
		if list != nil && i < len(list.Content) {
			l = list.Content[i].Line
		}
		if err := probe.ValidateRegistryGlob(g); err != nil {
			p.addf(l, "%s: auth.registries[%d] %v", where, i, err)
		}
	}
	if !a.HasStaticCredentials() && a.CredentialProvider == "" {
		p.addf(keyLine, "%s: auth.registries binds auth.username's or auth.credential_provider's credentials, but neither is set; remove auth.registries (docker_config entries are matched by their own registry keys)", where)
	}
}

// validateCredentialProvider resolves a module's auth.credential_provider
// to a provider of --kube.credential-provider-config. The name is never
// quoted: it sits under auth:, whose values a config error never echoes.
func (p *parser) validateCredentialProvider(where string, a *probe.AuthConfig, n *yaml.Node, line int) {
	if a.CredentialProvider == "" {
		return
	}
	keyLine := lineOf(n, line, "auth", "credential_provider")
	if a.Username != "" || a.DockerConfig != "" {
		p.addf(keyLine, "%s: auth.credential_provider and auth.username or auth.docker_config are both set; use one source of credentials", where)
		return
	}
	cp := p.opts.CredentialProviders
	if cp == nil {
		p.addf(keyLine, "%s: auth.credential_provider names a kubelet credential provider, but no --kube.credential-provider-config is given; give it and --kube.credential-provider-bin-dir, or remove the key", where)
		return
	}
	a.Provider = cp.Provider(a.CredentialProvider)
	if a.Provider == nil {
		p.addf(keyLine, "%s: auth.credential_provider names no provider of %s; use one of: %s", where, cp.Source(), strings.Join(cp.Names(), ", "))
	}
}

// useNodeProviders gives every module without credentials of its own the
// node's credential providers, when --kube.credential-provider-config is
// given: for an image no other credential covers, the kubelet presents
// what its plugins provide, and a probe that is to predict the pull must
// do the same. The providers bind their credentials to the images their
// matchImages cover.
func (p *parser) useNodeProviders(cfg *Config) {
	cp := p.opts.CredentialProviders
	if cp == nil {
		return
	}
	for name, m := range cfg.Modules {
		a := m.Auth
		if a.Username != "" || a.Password != "" || a.PasswordFile != "" || a.DockerConfig != "" || a.CredentialProvider != "" {
			continue
		}
		m.Auth.Provider = cp.Node()
		cfg.Modules[name] = m
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
