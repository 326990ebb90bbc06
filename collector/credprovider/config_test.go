package credprovider

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigErrors: the configuration errors are what an operator reads
// when the exporter refuses to start, so each names the file, the line and
// the fix, and every rule the kubelet enforces is enforced here.
func TestConfigErrors(t *testing.T) {
	cases := []struct {
		name, file, want string
	}{
		{"unknown field", `apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
  - name: ecr-credential-provider
    matchImage: ["*.dkr.ecr.*.amazonaws.com"]
    defaultCacheDuration: 12h
    apiVersion: credentialprovider.kubelet.k8s.io/v1
`, `FILE:5: unknown field "providers[0].matchImage" in provider "ecr-credential-provider": the kubelet refuses this file; remove it or fix its spelling (a provider has name, matchImages, defaultCacheDuration, apiVersion, args, env, tokenAttributes)`},
		{"wrong kind", `apiVersion: kubelet.config.k8s.io/v1
kind: KubeletConfiguration
`, `FILE:2: kind is "KubeletConfiguration", want CredentialProviderConfig; is this the kubelet's --image-credential-provider-config file?`},
		{"wrong apiVersion", `{"apiVersion": "kubelet.config.k8s.io/v2", "kind": "CredentialProviderConfig", "providers": []}`,
			`FILE:1: apiVersion "kubelet.config.k8s.io/v2" is not one the kubelet reads; use kubelet.config.k8s.io/v1, kubelet.config.k8s.io/v1beta1, kubelet.config.k8s.io/v1alpha1`},
		{"kubelet's rules", `apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
  - name: bin/ecr
    matchImages: []
    apiVersion: credentialprovider.kubelet.k8s.io/v2
  - name: gcp
    matchImages:
      - "gcr.io"
      - "[bad"
    defaultCacheDuration: -1m
`, `FILE:4: provider "bin/ecr": a provider name cannot contain '/' or spaces, nor be '.' or '..': it is a file name in the bin directory
FILE:4: provider "bin/ecr": defaultCacheDuration is missing; the kubelet requires it (e.g. "12h"; "0s" caches only what the plugin's answer asks for)
FILE:5: provider "bin/ecr": matchImages is empty; list the images the plugin serves, e.g. "*.dkr.ecr.*.amazonaws.com" (the kubelet requires at least one)
FILE:6: provider "bin/ecr": apiVersion "credentialprovider.kubelet.k8s.io/v2" is not an exec API the kubelet speaks; use one of credentialprovider.kubelet.k8s.io/v1, credentialprovider.kubelet.k8s.io/v1beta1, credentialprovider.kubelet.k8s.io/v1alpha1
FILE:7: provider "gcp": apiVersion is missing; use credentialprovider.kubelet.k8s.io/v1 (the exec API the plugin speaks)
FILE:10: provider "gcp": matchImages[1] "[bad" is not a valid image match (parse "https://[bad": missing ']' in host); write host[:port][/path], globs in the host only, e.g. *.azurecr.io
FILE:11: provider "gcp": defaultCacheDuration -1m0s is negative; use 0s or more`},
		{"tokenAttributes only in v1", `apiVersion: kubelet.config.k8s.io/v1alpha1
kind: CredentialProviderConfig
providers:
  - name: p
    matchImages: ["x.io"]
    defaultCacheDuration: 1m
    apiVersion: credentialprovider.kubelet.k8s.io/v1
    tokenAttributes: {serviceAccountTokenAudience: a, requireServiceAccount: true, cacheType: Token}
`, `FILE:8: unknown field "providers[0].tokenAttributes" in provider "p": the kubelet refuses this file; remove it or fix its spelling (a provider has name, matchImages, defaultCacheDuration, apiVersion, args, env, tokenAttributes)`},
		{"plugin missing", `apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
  - name: ecr-credential-provider
    matchImages: ["*.dkr.ecr.*.amazonaws.com"]
    defaultCacheDuration: 12h
    apiVersion: credentialprovider.kubelet.k8s.io/v1
`, `FILE:4: provider "ecr-credential-provider": the plugin BIN/ecr-credential-provider does not exist; install it in --kube.credential-provider-bin-dir (the node's --image-credential-provider-bin-dir, mounted read-only) or fix the name`},
		{"syntax", "apiVersion: kubelet.config.k8s.io/v1\nkind: [\n", `FILE:2: not valid YAML or JSON (did not find expected node content); fix the syntax`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir, bin := t.TempDir(), t.TempDir()
			file := filepath.Join(dir, "credential-providers.yaml")
			if err := os.WriteFile(file, []byte(tc.file), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(Options{ConfigPath: file, BinDir: bin})
			want := strings.NewReplacer("FILE", file, "BIN", bin).Replace(tc.want)
			if err == nil || err.Error() != want {
				t.Errorf("error:\n got: %v\nwant: %s", err, want)
			}
		})
	}
}

// TestConfigDirectory: a directory is read as the kubelet 1.34 reads it,
// its *.json, *.yaml and *.yml files in lexical order, and a provider name
// may appear only once across them.
func TestConfigDirectory(t *testing.T) {
	dir, bin := t.TempDir(), t.TempDir()
	provider := func(name string) string {
		return `{"apiVersion": "kubelet.config.k8s.io/v1", "kind": "CredentialProviderConfig", "providers": [
  {"name": "` + name + `", "matchImages": ["x.io"], "defaultCacheDuration": "1m", "apiVersion": "credentialprovider.kubelet.k8s.io/v1"}]}`
	}
	for name, content := range map[string]string{"10-b.json": provider("b"), "20-a.yml": provider("a"), "README": "not read"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"a", "b"} {
		if err := os.WriteFile(filepath.Join(bin, n), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ps, err := Load(Options{ConfigPath: dir, BinDir: bin})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(ps.Names(), ","); got != "b,a" {
		t.Errorf("providers %s, want b,a (the files' order)", got)
	}
	if err := os.WriteFile(filepath.Join(dir, "30-dup.yaml"), []byte(provider("b")), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(Options{ConfigPath: dir, BinDir: bin})
	want := filepath.Join(dir, "30-dup.yaml") + `:2: provider "b" is already defined at ` + filepath.Join(dir, "10-b.json") + `:2; provider names must be unique across the configuration files`
	if err == nil || err.Error() != want {
		t.Errorf("error:\n got: %v\nwant: %s", err, want)
	}
}
