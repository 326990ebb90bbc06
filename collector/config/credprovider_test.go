package config

import (
	"context"
	"strings"
	"testing"

	"github.com/imagepull/imagepull_exporter/probe"
)

// fakeProviders stands in for collector/credprovider's Providers: the
// loader only names and hands out providers.
type fakeProviders map[string]*fakeProvider

type fakeProvider struct{ name string }

func (f *fakeProvider) Name() string                                        { return `credential provider "` + f.name + `"` }
func (f *fakeProvider) Resolve(probe.Reference) ([]probe.Credential, error) { return nil, nil }
func (f *fakeProvider) ResolveContext(context.Context, probe.Reference) ([]probe.Credential, error) {
	return nil, nil
}
func (f *fakeProvider) CoversRegistry(r string) bool { return strings.HasSuffix(r, ".amazonaws.com") }
func (f *fakeProvider) Known() []probe.Credential    { return nil }

func (f fakeProviders) Names() []string { return []string{"ecr-credential-provider", "gcp"} }
func (f fakeProviders) Provider(name string) probe.CredentialProvider {
	if p, ok := f[name]; ok {
		return p
	}
	return nil
}
func (f fakeProviders) Node() probe.CredentialProvider { return f["node"] }
func (f fakeProviders) Source() string                 { return "/etc/kubernetes/credential-providers.yaml" }

func testProviders() fakeProviders {
	return fakeProviders{"ecr-credential-provider": {"ecr"}, "gcp": {"gcp"}, "node": {"node"}}
}

// TestCredentialProviderModules: auth.credential_provider resolves to the
// named provider, auth.registries may narrow it, and every module without
// credentials of its own (the implicit default too) gets the node's
// providers; modules with their own credentials keep them.
func TestCredentialProviderModules(t *testing.T) {
	cp := testProviders()
	cfg, err := ParseWith("test.yml", []byte(`
modules:
  ecr:
    auth:
      credential_provider: ecr-credential-provider
      registries: ["123456789012.dkr.ecr.eu-west-1.amazonaws.com"]
  static:
    auth: {username: alice, password: hunter2}
  anonymous:
    timeout: 5s
`), Options{CredentialProviders: cp})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]probe.CredentialProvider{
		"ecr": cp["ecr-credential-provider"], "static": nil, "anonymous": cp["node"], DefaultModuleName: cp["node"],
	} {
		if got := cfg.Modules[name].Auth.Provider; got != want {
			t.Errorf("module %s: Provider = %v, want %v", name, got, want)
		}
	}
	m := cfg.Modules["ecr"]
	if err := m.CheckBinding("123456789012.dkr.ecr.eu-west-1.amazonaws.com"); err != nil {
		t.Errorf("bound registry refused: %v", err)
	}
	err = m.CheckBinding("999999999999.dkr.ecr.eu-west-1.amazonaws.com")
	if err == nil || !strings.Contains(err.Error(), `credential provider "ecr"`) || !strings.Contains(err.Error(), "auth.registries") {
		t.Errorf("a registry the provider covers but auth.registries does not: %v", err)
	}
	if err := m.CheckBinding("registry.example.com"); err == nil {
		t.Error("a registry the provider does not cover was not refused")
	}

	// Without the flag, nothing is filled in.
	cfg, err = Parse("test.yml", []byte("modules:\n  anonymous: {timeout: 5s}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p := cfg.Modules["anonymous"].Auth.Provider; p != nil {
		t.Errorf("Provider without credential providers = %v", p)
	}
}

// TestCredentialProviderUnknownName: the error names the line, the
// configuration and the providers there, never the value written.
func TestCredentialProviderUnknownName(t *testing.T) {
	_, err := ParseWith("test.yml", []byte(`modules:
  ecr:
    auth:
      credential_provider: ecr-credential-providr
`), Options{CredentialProviders: testProviders()})
	want := `test.yml:4: module "ecr": auth.credential_provider names no provider of /etc/kubernetes/credential-providers.yaml; use one of: ecr-credential-provider, gcp`
	if err == nil || err.Error() != want {
		t.Errorf("error:\n got: %v\nwant: %s", err, want)
	}
}
