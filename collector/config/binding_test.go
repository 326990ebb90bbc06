package config

import (
	"reflect"
	"strings"
	"testing"
)

// Without auth.registries a module's static credentials are bound to the
// registries of the configured targets (and mirrors) that use it, and to
// nothing else: discovered targets and /probe never widen the binding.
func TestCredentialBinding(t *testing.T) {
	cfg, err := Parse("binding.yml", []byte(`
modules:
  private:
    auth: {username: alice, password: hunter2-binding}
  explicit:
    auth: {username: bob, password: hunter2-binding, registries: ["*.example.com"]}
  unused:
    auth: {username: carol, password: hunter2-binding}
  harbor:
    auth: {username: dave, password: hunter2-binding}
  anon: {}
targets:
  - {name: a, image: registry.example.com/team/app:v1, module: private}
  - {name: b, image: Registry.Example.COM:5000/team/app:v1, module: private}
  - {name: c, image: nginx, module: private}
  - {name: d, image: ghcr.io/x/y:1, module: explicit}
  - {name: e, image: quay.io/x/y:1}
mirrors:
  docker.io:
    - {url: "https://harbor.example.com/v2/proxy-hub", module: harbor}
`))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]string{
		"private":  {"docker.io", "registry.example.com", "registry.example.com:5000"},
		"explicit": {"*.example.com"}, // auth.registries as written; its targets add nothing
		"unused":   {},
		"harbor":   {"harbor.example.com"},
		"anon":     nil,
	} {
		got := cfg.Modules[name].Auth.BoundRegistries()
		if len(got) == 0 && len(want) == 0 {
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("module %q bound to %q, want %q", name, got, want)
		}
	}
	if err := cfg.Modules["explicit"].CheckBinding("ghcr.io"); err == nil {
		t.Errorf("explicit auth.registries must not be widened by the module's targets")
	}
	if len(cfg.Warnings()) != 0 {
		t.Errorf("warnings %q, want none: the default module is anonymous", cfg.Warnings())
	}
}

// --config.check warns when discovery falls back to a module with static
// credentials for any image a pod names.
func TestWarningCredentialedDiscoveryDefault(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"bound by targets", `
modules:
  default:
    auth: {username: alice, password: hunter2-warning}
targets:
  - image: registry.example.com/team/app:v1
`, `module "default" has static credentials (auth.username) and is the discovery default: discovery falls back to it for any image a pod names. Its credentials are bound to registry.example.com (by the registries of its targets, as it has no auth.registries); a discovered image on any other registry is probed anonymously. Set auth.registries to exactly the registries the credentials belong to, or keep the default module anonymous and map registries to this module under discovery: modules:`},
		{"bound to nothing", `
modules:
  default:
    auth: {username: alice, password: hunter2-warning}
`, `Its credentials are bound to no registry (by the registries of its targets, as it has no auth.registries)`},
		{"explicit", `
modules:
  default:
    auth: {username: alice, password: hunter2-warning, registries: ["*.corp.example"]}
`, `Its credentials are bound to *.corp.example (by its auth.registries)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse("warn.yml", []byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			w := cfg.Warnings()
			if len(w) != 1 || !strings.Contains(w[0], tc.want) || strings.Contains(w[0], "hunter2") {
				t.Errorf("warnings:\n%q\nwant one with:\n%s", w, tc.want)
			}
		})
	}
}
