package config

import (
	"testing"

	"github.com/imagepull/imagepull_exporter/probe"
)

func TestDiscoveryConfig(t *testing.T) {
	cfg, err := Load("testdata/good-discovery.yml")
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.Discovery
	for registry, want := range map[string]string{
		"123456789012.dkr.ecr.eu-west-1.amazonaws.com": "ecr",
		"dkr.ecr.eu-west-1.amazonaws.com":              "default", // '*' needs a label
		"docker.io":                                    "hub",     // index.docker.io in the file
		"index.docker.io":                              "hub",
		"ghcr.io":                                      "default",
	} {
		if got := d.ModuleFor(registry); got != want {
			t.Errorf("ModuleFor(%q) = %q, want %q", registry, got, want)
		}
	}
	for image, want := range map[string]bool{
		"registry.internal.example.com/team/app:v1": true,
		"ghcr.io/acme/api:v1":                       true,
		"ghcr.io/acme/team/deep/api:v1":             true,
		"ghcr.io/acmecorp/api:v1":                   false, // a prefix cut at '/', not a string prefix
		"ghcr.io/other/api:v1":                      false,
		"build.corp/app:v1":                         true,
		"nginx:1.27":                                false,
	} {
		ref, err := probe.ParseReference(image)
		if err != nil {
			t.Fatal(err)
		}
		if got := d.Excluded(ref); got != want {
			t.Errorf("Excluded(%s) = %t, want %t", image, got, want)
		}
	}
	var zero DiscoveryConfig
	if zero.ModuleFor("ghcr.io") != DefaultModuleName || zero.Excluded(probe.Reference{Registry: "ghcr.io", Repository: "a"}) {
		t.Error("the zero DiscoveryConfig must probe everything with the default module")
	}
}
