// Package credprovider runs kubelet credential provider plugins the way the
// kubelet runs them (k8s.io/kubernetes pkg/credentialprovider/plugin, v1.34),
// with the kubelet's own configuration file (a CredentialProviderConfig,
// kubelet.config.k8s.io) and exec API (CredentialProviderRequest on stdin,
// CredentialProviderResponse on stdout, credentialprovider.kubelet.k8s.io),
// through the published API types of k8s.io/kubelet.
//
// The kubelet's semantics are kept on purpose, so that what the exporter
// presents to a registry is what a node presents:
//
//   - a plugin runs only for an image one of its matchImages covers (the
//     kubelet's URLsMatchStr: same number of host labels, each a glob, equal
//     ports, the entry's path a string prefix of the image's);
//   - the request names the image as the kubelet does: host/repository,
//     without tag or digest;
//   - the response's auth entries form a keyring, looked up for the image
//     by their keys (a key that does not match the image contributes
//     nothing), across every plugin in configuration order;
//   - the response is cached per cacheKeyType (Image, Registry, Global) for
//     cacheDuration, or the provider's defaultCacheDuration when the
//     response has none; an explicit 0 is never cached; a lookup tries the
//     image, then its registry, then the global key;
//   - args and env are passed as configured, env after the exporter's own
//     environment (so IRSA's and workload identity's variables reach the
//     plugin, and the configuration overrides them);
//   - the response's apiVersion must be the provider's apiVersion;
//   - concurrent lookups of one image run the plugin once.
//
// Where the exporter must differ, it says so: a plugin that fails to run,
// hangs or answers garbage fails the probe with reason config (the
// kubelet logs it and pulls without its credentials, which would show up
// as the registry's unauthorized: the wrong party blamed); its output is
// never quoted (it may hold credentials); every run is bounded in time
// (the kubelet's one minute) and in output size. Providers that ask for a
// service account token (tokenAttributes) run as the kubelet runs them for
// a pod without a service account: not at all when requireServiceAccount
// is true, else without a token, since the exporter has no pod whose token
// it could request.
package credprovider

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
	kubeletconfigv1 "k8s.io/kubelet/config/v1"
	kubeletconfigv1alpha1 "k8s.io/kubelet/config/v1alpha1"
	sigsjson "sigs.k8s.io/json"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/imagepull/imagepull_exporter/internal/yamlnode"
	"github.com/imagepull/imagepull_exporter/probe"
)

// The configuration group and the versions the kubelet accepts
// (pkg/credentialprovider/plugin: apiVersions of its scheme).
const configKind = "CredentialProviderConfig"

var configVersions = []string{
	kubeletconfigv1.SchemeGroupVersion.String(),
	"kubelet.config.k8s.io/v1beta1",
	kubeletconfigv1alpha1.SchemeGroupVersion.String(),
}

// maxConfigSize bounds one configuration file; a real one is a few hundred
// bytes.
const maxConfigSize = 1 << 20

// ConfigError is a problem of the credential provider configuration,
// naming the file, the line and the fix.
type ConfigError struct {
	File string
	Line int // 0 when the problem has no position
	Msg  string
}

func (e *ConfigError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// ConfigErrors lists every problem found, one per line.
type ConfigErrors []*ConfigError

func (es ConfigErrors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "\n")
}

// providerConfig is one provider as read: the published v1 type, where it
// came from, and the node of its entry for line numbers.
type providerConfig struct {
	kubeletconfigv1.CredentialProvider
	file string
	node *yaml.Node // the providers[i] mapping
}

// readConfig reads the configuration the way the kubelet does: a file, or
// a directory whose *.json, *.yaml and *.yml files are read in lexical
// order and merged (v1.34; a provider name may appear once across them).
func readConfig(path string) ([]providerConfig, error) {
	if path == "" {
		return nil, errors.New("--kube.credential-provider-config is empty; give the CredentialProviderConfig file the nodes' kubelets use (--image-credential-provider-config)")
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("credential provider config: %w; give the file the nodes' kubelets use (--image-credential-provider-config), mounted into the exporter's pod", err)
	}
	files := []string{path}
	if fi.IsDir() {
		files = nil
		entries, err := os.ReadDir(path)
		if err != nil {
			return nil, fmt.Errorf("credential provider config directory: %w", err)
		}
		for _, e := range entries {
			switch filepath.Ext(e.Name()) {
			case ".json", ".yaml", ".yml":
				if !e.IsDir() {
					files = append(files, filepath.Join(path, e.Name()))
				}
			}
		}
		sort.Strings(files)
		if len(files) == 0 {
			return nil, &ConfigError{File: path, Msg: "the directory holds no *.json, *.yaml or *.yml file; point --kube.credential-provider-config at the CredentialProviderConfig file or its directory"}
		}
	}
	var all []providerConfig
	var errs ConfigErrors
	seen := map[string]string{} // provider name -> file:line
	for _, f := range files {
		ps, err := readConfigFile(f)
		if err != nil {
			var ce ConfigErrors
			if errors.As(err, &ce) {
				errs = append(errs, ce...)
				continue
			}
			return nil, err
		}
		for _, p := range ps {
			line := lineOf(p.node, "name")
			if first, dup := seen[p.Name]; dup {
				errs = append(errs, &ConfigError{File: f, Line: line, Msg: fmt.Sprintf("provider %q is already defined at %s; provider names must be unique across the configuration files", p.Name, first)})
				continue
			}
			seen[p.Name] = fmt.Sprintf("%s:%d", f, line)
			all = append(all, p)
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return all, nil
}

// readConfigFile decodes one file strictly (unknown and duplicate fields
// are errors, as with the kubelet's strict codec) into the published type
// of its apiVersion, and validates it with the kubelet's rules.
func readConfigFile(file string) ([]providerConfig, error) {
	data, err := probe.ReadFileBounded(file, maxConfigSize)
	var big *probe.FileTooLargeError
	if errors.As(err, &big) {
		return nil, fmt.Errorf("credential provider config: %w; is it the CredentialProviderConfig?", err)
	}
	if err != nil {
		return nil, fmt.Errorf("credential provider config: %w", err)
	}
	fail := func(line int, format string, args ...any) error {
		return ConfigErrors{{File: file, Line: line, Msg: fmt.Sprintf(format, args...)}}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		line := 0
		if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
			line, _ = strconv.Atoi(m[1])
		}
		return nil, fail(line, "not valid YAML or JSON (%s); fix the syntax", strings.TrimPrefix(yamlLineRE.ReplaceAllString(err.Error(), "$2"), "yaml: "))
	}
	var root *yaml.Node
	if len(doc.Content) > 0 {
		root = doc.Content[0]
	}
	if root == nil || root.Kind != yaml.MappingNode {
		return nil, fail(0, "not a %s: the file must be a mapping with apiVersion, kind and providers", configKind)
	}
	js, err := sigsyaml.YAMLToJSON(data)
	if err != nil {
		return nil, fail(0, "cannot be read as JSON (%v); fix the syntax", err)
	}
	var tm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	_ = sigsjson.UnmarshalCaseSensitivePreserveInts(js, &tm)
	if tm.Kind != configKind {
		return nil, fail(lineOf(root, "kind"), "kind is %q, want %s; is this the kubelet's --image-credential-provider-config file?", tm.Kind, configKind)
	}
	if !slices.Contains(configVersions, tm.APIVersion) {
		return nil, fail(lineOf(root, "apiVersion"), "apiVersion %q is not one the kubelet reads; use %s", tm.APIVersion, strings.Join(configVersions, ", "))
	}
	// Decode strictly into the version's published type, then read the
	// providers through v1's (the versions' provider fields are the
	// same; tokenAttributes, which only v1 has, is caught by the strict
	// pass). v1beta1's CredentialProviderConfig has exactly v1alpha1's
	// fields, and its package (k8s.io/kubelet/config/v1beta1, the whole
	// KubeletConfiguration) would pull k8s.io/component-base into the
	// build for nothing: v1beta1 files are checked with v1alpha1's type.
	var versioned any = &kubeletconfigv1alpha1.CredentialProviderConfig{}
	if tm.APIVersion == kubeletconfigv1.SchemeGroupVersion.String() {
		versioned = &kubeletconfigv1.CredentialProviderConfig{}
	}
	strict, err := sigsjson.UnmarshalStrict(js, versioned, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	if err != nil {
		return nil, fail(0, "does not decode as a %s %s: %s; fix the types of its fields", tm.APIVersion, configKind, quietJSONError(err))
	}
	var errs ConfigErrors
	for _, se := range strict {
		path, what := strictPath(se.Error())
		line, where := lineOfPath(root, path)
		errs = append(errs, &ConfigError{File: file, Line: line, Msg: fmt.Sprintf("%s %q%s: the kubelet refuses this file; remove it or fix its spelling (a provider has name, matchImages, defaultCacheDuration, apiVersion, args, env, tokenAttributes)", what, path, where)})
	}
	if len(errs) > 0 {
		return nil, errs
	}
	var cfg kubeletconfigv1.CredentialProviderConfig
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(js, &cfg); err != nil {
		return nil, fail(0, "does not decode as a %s: %s", configKind, quietJSONError(err))
	}
	list := yamlnode.MapValue(root, "providers")
	out := make([]providerConfig, len(cfg.Providers))
	for i, p := range cfg.Providers {
		out[i] = providerConfig{CredentialProvider: p, file: file}
		if list != nil && list.Kind == yaml.SequenceNode && i < len(list.Content) {
			out[i].node = list.Content[i]
		}
	}
	if errs := validate(file, root, out); len(errs) > 0 {
		sort.SliceStable(errs, func(i, j int) bool { return errs[i].Line < errs[j].Line })
		return nil, errs
	}
	return out, nil
}

// validate applies the kubelet's validateCredentialProviderConfig, with
// errors that name the line and say what to do.
func validate(file string, root *yaml.Node, ps []providerConfig) ConfigErrors {
	var errs ConfigErrors
	add := func(n *yaml.Node, key string, format string, args ...any) {
		line := lineOf(n, key)
		if line == 0 {
			line = lineOf(root, "providers")
		}
		errs = append(errs, &ConfigError{File: file, Line: line, Msg: fmt.Sprintf(format, args...)})
	}
	if len(ps) == 0 {
		add(root, "providers", "providers is empty; list at least one provider (the kubelet refuses an empty list)")
	}
	seen := map[string]bool{}
	for i, p := range ps {
		where := fmt.Sprintf("providers[%d]", i)
		if p.Name != "" {
			where = fmt.Sprintf("provider %q", p.Name)
		}
		switch {
		case p.Name == "":
			add(p.node, "name", "%s: name is missing; it is the plugin's file name in --kube.credential-provider-bin-dir", where)
		case strings.ContainsAny(p.Name, "/ ") || p.Name == "." || p.Name == "..":
			add(p.node, "name", "%s: a provider name cannot contain '/' or spaces, nor be '.' or '..': it is a file name in the bin directory", where)
		case seen[p.Name]:
			add(p.node, "name", "%s is defined twice; provider names must be unique", where)
		}
		seen[p.Name] = true
		if p.APIVersion == "" {
			add(p.node, "apiVersion", "%s: apiVersion is missing; use %s (the exec API the plugin speaks)", where, requestVersions[0])
		} else if !slices.Contains(requestVersions, p.APIVersion) {
			add(p.node, "apiVersion", "%s: apiVersion %q is not an exec API the kubelet speaks; use one of %s", where, p.APIVersion, strings.Join(requestVersions, ", "))
		}
		if len(p.MatchImages) == 0 {
			add(p.node, "matchImages", "%s: matchImages is empty; list the images the plugin serves, e.g. \"*.dkr.ecr.*.amazonaws.com\" (the kubelet requires at least one)", where)
		}
		for j, m := range p.MatchImages {
			if _, err := probe.ParseImageMatch(m); err != nil {
				line := lineOf(p.node, "matchImages")
				if l := yamlnode.MapValue(p.node, "matchImages"); l != nil && l.Kind == yaml.SequenceNode && j < len(l.Content) {
					line = l.Content[j].Line
				}
				errs = append(errs, &ConfigError{File: file, Line: line, Msg: fmt.Sprintf("%s: matchImages[%d] %q is not a valid image match (%v); write host[:port][/path], globs in the host only, e.g. *.azurecr.io", where, j, m, err)})
			}
		}
		switch {
		case p.DefaultCacheDuration == nil:
			add(p.node, "defaultCacheDuration", "%s: defaultCacheDuration is missing; the kubelet requires it (e.g. \"12h\"; \"0s\" caches only what the plugin's answer asks for)", where)
		case p.DefaultCacheDuration.Duration < 0:
			add(p.node, "defaultCacheDuration", "%s: defaultCacheDuration %s is negative; use 0s or more", where, p.DefaultCacheDuration.Duration)
		}
		for j, e := range p.Env {
			if e.Name == "" || strings.ContainsAny(e.Name, "=\x00") {
				add(p.node, "env", "%s: env[%d] has no valid name; give name and value", where, j)
			}
		}
		if ta := p.TokenAttributes; ta != nil {
			if ta.ServiceAccountTokenAudience == "" {
				add(p.node, "tokenAttributes", "%s: tokenAttributes.serviceAccountTokenAudience is missing", where)
			}
			if ta.RequireServiceAccount == nil {
				add(p.node, "tokenAttributes", "%s: tokenAttributes.requireServiceAccount is missing; set true or false", where)
			}
			if p.APIVersion != requestVersions[0] {
				add(p.node, "tokenAttributes", "%s: tokenAttributes needs apiVersion %s", where, requestVersions[0])
			}
			if ta.RequireServiceAccount != nil && !*ta.RequireServiceAccount && len(ta.RequiredServiceAccountAnnotationKeys) > 0 {
				add(p.node, "tokenAttributes", "%s: requireServiceAccount cannot be false when requiredServiceAccountAnnotationKeys is set", where)
			}
			if ta.CacheType != kubeletconfigv1.TokenServiceAccountTokenCacheType && ta.CacheType != kubeletconfigv1.ServiceAccountServiceAccountTokenCacheType {
				add(p.node, "tokenAttributes", "%s: tokenAttributes.cacheType must be %s or %s", where, kubeletconfigv1.TokenServiceAccountTokenCacheType, kubeletconfigv1.ServiceAccountServiceAccountTokenCacheType)
			}
		}
	}
	return errs
}

// findBinary finds a provider's plugin in binDir as the kubelet does
// (exec.LookPath, so a Windows ".exe" is found too), or says what to fix.
func findBinary(binDir string, p providerConfig) (string, error) {
	path, err := exec.LookPath(filepath.Join(binDir, p.Name))
	if err != nil {
		line := lineOf(p.node, "name")
		why := "is not an executable file there"
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, exec.ErrNotFound) {
			why = "does not exist"
		}
		return "", &ConfigError{File: p.file, Line: line, Msg: fmt.Sprintf(
			"provider %q: the plugin %s %s; install it in --kube.credential-provider-bin-dir (the node's --image-credential-provider-bin-dir, mounted read-only) or fix the name",
			p.Name, filepath.Join(binDir, p.Name), why)}
	}
	return path, nil
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// strictPath splits a strict decoding error of sigs.k8s.io/json
// (`unknown field "providers[0].matchImage"`) into the field path and what
// is wrong with it.
func strictPath(msg string) (path, what string) {
	what = "unknown field"
	if strings.HasPrefix(msg, "duplicate field") {
		what = "duplicate field"
	}
	if i := strings.IndexByte(msg, '"'); i >= 0 {
		if p, err := strconv.Unquote(msg[i:]); err == nil {
			return p, what
		}
	}
	return msg, what
}

// lineOfPath finds the line of a field path ("providers[0].matchImage")
// in the document and says which provider it is in.
func lineOfPath(root *yaml.Node, path string) (line int, where string) {
	n := root
	line = root.Line
	for _, part := range strings.Split(path, ".") {
		key, idx := part, -1
		if i := strings.IndexByte(part, '['); i >= 0 && strings.HasSuffix(part, "]") {
			key = part[:i]
			idx, _ = strconv.Atoi(part[i+1 : len(part)-1])
		}
		if k := yamlnode.MapKey(n, key); k != nil {
			line = k.Line
		}
		n = yamlnode.MapValue(n, key)
		if n == nil {
			return line, where
		}
		if idx >= 0 && n.Kind == yaml.SequenceNode && idx < len(n.Content) {
			n = n.Content[idx]
			line = n.Line
			if key == "providers" {
				if name := yamlnode.MapValue(n, "name"); name != nil && name.Value != "" {
					where = fmt.Sprintf(" in provider %q", name.Value)
				}
			}
		}
	}
	return line, where
}

// quietJSONError words a JSON decoding error without quoting the input: a
// type error names the field and the types, a syntax error only that it is
// one.
func quietJSONError(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "cannot unmarshal "); i >= 0 {
		return msg[i:]
	}
	return "invalid JSON"
}

// lineOf is the line of key in mapping n, else n's own line, else 0.
func lineOf(n *yaml.Node, key string) int {
	if k := yamlnode.MapKey(n, key); k != nil {
		return k.Line
	}
	if n != nil {
		return n.Line
	}
	return 0
}
