package config

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/imagepull/imagepull_exporter/probe"
)

// The exact error text of every invalid file: the errors are the user
// interface of --config.check, so a change in wording is a change in behaviour.
var invalidConfigs = map[string]string{
	"invalid-auth-registries.yml": `testdata/invalid-auth-registries.yml:8: module "private": auth.registries[1] holds a scheme; give the registry host only, without https://
testdata/invalid-auth-registries.yml:9: module "private": auth.registries[2] is not a registry host: it holds a path, user name or space; give host[:port] only, e.g. registry.example.com or *.example.com
testdata/invalid-auth-registries.yml:10: module "private": auth.registries[3] holds a character not allowed in a host glob; use letters, digits, '-', '.', '*' and a :port ('*' is the only wildcard, as in the kubelet's keyring: '[' and '?' are not)
testdata/invalid-auth-registries.yml:11: module "private": auth.registries[4] is empty; remove it or give a registry host glob such as *.example.com
testdata/invalid-auth-registries.yml:15: module "hub": auth.registries binds auth.username's or auth.credential_provider's credentials, but neither is set; remove auth.registries (docker_config entries are matched by their own registry keys)
testdata/invalid-auth-registries.yml:20: module "empty": auth.registries is empty; list the registry hosts the credentials belong to (e.g. registry.example.com, *.example.com) or remove the key to bind them to the module's targets' registries`,
	// A value under auth: is never echoed, whatever its form or length
	// (item 6 of issue 9): the structural rule (locateValue) words it
	// without the value, and the scrub (authSecrets) removes every scalar
	// found under auth: from every problem text.
	"invalid-auth-secret-alias.yml":         `testdata/invalid-auth-secret-alias.yml:4: module "m": auth: want a mapping, got a string (not shown: a value under auth: may be a password)`,
	"invalid-auth-secret-escaped.yml":       `testdata/invalid-auth-secret-escaped.yml:3: module "m": auth: want a mapping, got a string (not shown: a value under auth: may be a password)`,
	"invalid-auth-secret-list.yml":          `testdata/invalid-auth-secret-list.yml:3: module "m": auth: want a mapping, got a list`,
	"invalid-auth-secret-long.yml":          `testdata/invalid-auth-secret-long.yml:3: module "m": auth: want a mapping, got a string (not shown: a value under auth: may be a password)`,
	"invalid-auth-secret-number.yml":        `testdata/invalid-auth-secret-number.yml:3: module "m": auth: want a mapping, got a number (not shown: a value under auth: may be a password)`,
	"invalid-auth-secret-password-file.yml": `testdata/invalid-auth-secret-password-file.yml:5: module "m": auth.password_file: testdata/<redacted>: no such file or directory; fix the path (relative paths are relative to the config file) or its permissions`,
	"invalid-auth-secret-password-map.yml":  `testdata/invalid-auth-secret-password-map.yml:5: module "m": auth: password: want a string, got a mapping`,
	"invalid-auth-secret-short.yml":         `testdata/invalid-auth-secret-short.yml:3: module "m": auth: want a mapping, got a string (not shown: a value under auth: may be a password)`,
	"invalid-auth-secret-string.yml":        `testdata/invalid-auth-secret-string.yml:3: module "m": auth: want a mapping, got a string (not shown: a value under auth: may be a password)`,
	"invalid-auth-secret-unknown-key.yml": `testdata/invalid-auth-secret-unknown-key.yml:6: module "m": auth: unknown key "passwd"; did you mean "password"? (valid keys: username, password, password_file, docker_config, registries, credential_provider)
testdata/invalid-auth-secret-unknown-key.yml:7: module "m": auth: unknown key "<redacted>"; fix the spelling or remove it (valid keys: username, password, password_file, docker_config, registries, credential_provider)`,
	"invalid-auth-type.yml":       `testdata/invalid-auth-type.yml:5: module "private": auth: password: want a string, got a list`,
	"invalid-bool.yml":            `testdata/invalid-bool.yml:3: module "local": plain_http: "yes please" is not a boolean; write true or false`,
	"invalid-ca-file-missing.yml": `testdata/invalid-ca-file-missing.yml:4: module "internal": tls.ca_file: /nonexistent/ca.pem: no such file or directory; fix the path (relative paths are relative to the config file)`,
	"invalid-ca-file-not-pem.yml": `testdata/invalid-ca-file-not-pem.yml:4: module "internal": tls.ca_file testdata/password.txt holds no PEM certificate; point it at a CA bundle`,
	"invalid-discovery.yml": `testdata/invalid-discovery.yml:7: discovery: modules[1]: registry pattern "[bad" is not a valid glob (syntax error in pattern); fix the brackets or escape them
testdata/invalid-discovery.yml:8: discovery: modules[1]: module "nope" is not defined (defined: default, ecr); add it under modules: or fix the name
testdata/invalid-discovery.yml:9: discovery: modules[2]: registry is missing; add e.g. ` + "`registry: \"*.dkr.ecr.*.amazonaws.com\"`" + `
testdata/invalid-discovery.yml:10: discovery: modules[3]: registry "ghcr.io/acme" holds a '/'; give a registry host pattern only (use exclude: for repositories)
testdata/invalid-discovery.yml:12: discovery: modules[4]: module is missing; name one of: default, ecr
testdata/invalid-discovery.yml:15: discovery: exclude[1] is empty; remove it or give a registry or registry/repository pattern
testdata/invalid-discovery.yml:16: discovery: exclude[2]: pattern "ghcr.io/[x" is not a valid glob (syntax error in pattern); fix the brackets or escape them`,
	"invalid-discovery-types.yml": `testdata/invalid-discovery-types.yml:4: discovery: modules[0]: unknown key "modul"; did you mean "module"? (valid keys: registry, module)
testdata/invalid-discovery-types.yml:5: discovery: exclude: want a list of strings, got the string "ghcr.io"`,
	"invalid-mirrors.yml": `testdata/invalid-mirrors.yml:5: mirrors: "docker.io"[0]: the URL "https://<redacted>@mirror.example.com" carries credentials; remove them and give the mirror a module with auth: instead ({url: ..., module: ...})
testdata/invalid-mirrors.yml:6: mirrors: "docker.io"[1]: the URL "ftp://mirror.example.com" has scheme "ftp"; use https:// or http://
testdata/invalid-mirrors.yml:7: mirrors: "docker.io"[2]: registry-1.docker.io is the registry docker.io itself, not a mirror of it; remove it (the registry is always tried after its mirrors)
testdata/invalid-mirrors.yml:9: mirrors: "docker.io"[4]: https://mirror.example.com/v2 is listed twice; remove one
testdata/invalid-mirrors.yml:10: mirrors: "docker.io"[5]: module "nope" is not defined (defined: default, harbor); add it under modules: or fix the name
testdata/invalid-mirrors.yml:11: mirrors: "docker.io"[6]: the URL is empty; give e.g. https://mirror.example.com
testdata/invalid-mirrors.yml:12: mirrors: "index.docker.io": names the same registry as "docker.io" (both are docker.io); merge the two lists
testdata/invalid-mirrors.yml:13: mirrors: "https://ghcr.io": give the registry host as image references name it (e.g. docker.io, ghcr.io, registry.example.com:5000), without scheme or path
testdata/invalid-mirrors.yml:14: mirrors: "quay.io": no mirrors listed; list at least one URL or remove the key`,
	"invalid-mirrors-types.yml": `testdata/invalid-mirrors-types.yml:3: mirrors: "docker.io"[0]: unknown key "modul"; did you mean "module"? (valid keys: url, module)
testdata/invalid-mirrors-types.yml:4: want a mirror URL or a mapping {url, module}, got a list
testdata/invalid-mirrors-types.yml:5: want a list of mirror URLs, got the string "https:/..."`,
	// No value under auth: is quoted, not even a provider's name.
	"invalid-credential-provider.yml": `testdata/invalid-credential-provider.yml:4: module "ecr": auth.credential_provider names a kubelet credential provider, but no --kube.credential-provider-config is given; give it and --kube.credential-provider-bin-dir, or remove the key
testdata/invalid-credential-provider.yml:9: module "both": auth.credential_provider and auth.username or auth.docker_config are both set; use one source of credentials`,
	"invalid-docker-config-missing.yml": `testdata/invalid-docker-config-missing.yml:4: module "dc": auth.docker_config: testdata/<redacted>: no such file or directory; point it at a docker config.json or the directory holding one`,
	"invalid-duplicate-key.yml":         `testdata/invalid-duplicate-key.yml:4: key "timeout" is already set at line 3; remove one of them`,
	"invalid-duplicate-target.yml": `testdata/invalid-duplicate-target.yml:4: target "hub": the name is already used by the target at line 2; target names must be unique (a target without name: is named after its image)
testdata/invalid-duplicate-target.yml:7: target "alpine": the name is already used by the target at line 6; target names must be unique (a target without name: is named after its image)`,
	"invalid-duration-no-unit.yml": `testdata/invalid-duration-no-unit.yml:4: target "hub": interval: "60" has no unit; write a duration such as 60s or 1m30s`,
	"invalid-duration.yml":         `testdata/invalid-duration.yml:3: module "default": timeout: "10 sec" is not a duration; write a number with a unit, e.g. 30s, 1m30s, 2h`,
	"invalid-health.yml": `testdata/invalid-health.yml:3: module "typo": health "harbour" is not one of auto, harbor, quay, artifactory, nexus, none; did you mean "harbor"?
testdata/invalid-health.yml:5: module "unknown": health "gitlab" is not one of auto, harbor, quay, artifactory, nexus, none; use auto (the default: read the health API of a registry recognised as one of these products), a product, or none
testdata/invalid-health.yml:7: module "empty": health "" is not one of auto, harbor, quay, artifactory, nexus, none; use auto (the default: read the health API of a registry recognised as one of these products), a product, or none`,
	"invalid-health-type.yml": `testdata/invalid-health-type.yml:3: module "list": health: want one of auto, harbor, quay, artifactory, nexus, none, got a list`,
	"invalid-image.yml": `testdata/invalid-image.yml:3: target "upper": invalid image reference "docker.io/Library/Nginx": repository name must be lowercase; fix the image reference
testdata/invalid-image.yml:5: target "tag": invalid image reference "nginx:-bad": invalid tag "-bad" (letters, digits, '_', '.', '-'; at most 128, not starting with '.' or '-'); fix the image reference`,
	"invalid-missing-image.yml": "testdata/invalid-missing-image.yml:2: target \"nothing\": image is missing; add e.g. `image: docker.io/library/busybox:latest`",
	"invalid-nonpositive-durations.yml": `testdata/invalid-nonpositive-durations.yml:3: module "zero": timeout must be positive, got 0s; use e.g. 10s
testdata/invalid-nonpositive-durations.yml:4: module "zero": auth_check_interval must be positive, got -5m0s; use e.g. 15m`,
	"invalid-not-a-mapping.yml":         `testdata/invalid-not-a-mapping.yml:1: the file must be a mapping with the keys modules: and targets:, got a list`,
	"invalid-password-and-file.yml":     `testdata/invalid-password-and-file.yml:6: module "private": auth.password and auth.password_file are both set; keep only one`,
	"invalid-password-file-missing.yml": `testdata/invalid-password-file-missing.yml:5: module "private": auth.password_file: testdata/<redacted>: no such file or directory; fix the path (relative paths are relative to the config file) or its permissions`,
	"invalid-syntax.yml":                `testdata/invalid-syntax.yml:4: invalid YAML: did not find expected key`,
	"invalid-target-interval.yml": `testdata/invalid-target-interval.yml:7: target "fast": interval 5s is shorter than module "default"'s timeout 10s; raise the interval or lower the module's timeout
testdata/invalid-target-interval.yml:10: target "backwards": interval -1m0s is negative; use a positive duration or leave it out to use the module's`,
	"invalid-targets-type.yml":          `testdata/invalid-targets-type.yml:1: targets: want a list of targets, got the string "nginx"`,
	"invalid-timeout-over-interval.yml": `testdata/invalid-timeout-over-interval.yml:3: module "slow": timeout 2m0s is longer than interval 1m0s; lower the timeout or raise the interval`,
	"invalid-undefined-module.yml":      `testdata/invalid-undefined-module.yml:12: target "x": module "foo" is not defined (defined: default, ecr); add it under modules: or fix the name`,
	"invalid-unknown-auth-key.yml":      `testdata/invalid-unknown-auth-key.yml:5: module "private": auth: unknown key "pasword"; did you mean "password"? (valid keys: username, password, password_file, docker_config, registries, credential_provider)`,
	"invalid-unknown-module-key.yml":    `testdata/invalid-unknown-module-key.yml:4: module "default": unknown key "intervall"; did you mean "interval"? (valid keys: timeout, interval, auth_check_interval, plain_http, tls, auth, health)`,
	"invalid-unknown-target-key.yml":    `testdata/invalid-unknown-target-key.yml:4: target "hub": unknown key "modul"; did you mean "module"? (valid keys: name, image, module, interval)`,
	"invalid-unknown-top-key.yml":       `testdata/invalid-unknown-top-key.yml:3: unknown top-level key "target"; did you mean "targets"? (valid keys: modules, targets, discovery, mirrors)`,
	"invalid-username-only.yml":         `testdata/invalid-username-only.yml:4: module "private": auth.username is set without a password; add auth.password or auth.password_file`,
}

func TestLoadConfigInvalid(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid-*.yml")
	if err != nil {
		t.Fatal(err)
	}
	// Every file has an expectation and every expectation a file, so that
	// a new testdata file cannot go untested.
	if len(files) != len(invalidConfigs) {
		t.Errorf("%d testdata/invalid-*.yml files, %d expectations", len(files), len(invalidConfigs))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			want, ok := invalidConfigs[filepath.Base(f)]
			if !ok {
				t.Fatalf("no expected error for %s; add it to invalidConfigs", f)
			}
			cfg, err := Load(f)
			if err == nil {
				t.Fatalf("Load(%s) = %+v, want error", f, cfg)
			}
			if got := err.Error(); got != want {
				t.Errorf("error:\n got: %s\nwant: %s", got, want)
			}
			// Passwords in these files must never be echoed back.
			for _, secret := range []string{"hunter2", "do-not-print",
				"SuperSe", "SuperSecretKey456", "98765432109876", "9876543", "Sb9", "Secret", "er\\Sec", `Sup\"er`} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error text reveals the secret %q: %s", secret, err)
				}
			}
		})
	}
}

func TestLoadConfigGood(t *testing.T) {
	cfg, err := Load("testdata/good.yml")
	if err != nil {
		t.Fatal(err)
	}
	def := cfg.Modules["default"]
	if def.Timeout != 5*time.Second || def.Interval != 30*time.Second || def.AuthCheckInterval != 10*time.Minute {
		t.Errorf("default module = %+v", def)
	}
	// Keys left out take probe.DefaultModule's values.
	inline := cfg.Modules["inline"]
	if inline.Timeout != probe.DefaultTimeout || inline.Interval != probe.DefaultInterval || inline.AuthCheckInterval != probe.DefaultAuthCheckInterval {
		t.Errorf("inline module did not get defaults: %+v", inline)
	}
	if inline.Auth.Username != "bob" || inline.Auth.Password != "hunter2-inline" ||
		!reflect.DeepEqual(inline.Auth.Registries, []string{"*.example.com", "ghcr.io"}) {
		t.Errorf("inline auth = %+v", inline.Auth)
	}
	// A module with nothing under it is all defaults.
	if got := cfg.Modules["empty"]; !reflect.DeepEqual(got, probe.DefaultModule) {
		t.Errorf("empty module = %+v, want probe.DefaultModule", got)
	}
	// Relative paths are relative to the config file.
	if got, want := cfg.Modules["private"].Auth.PasswordFile, filepath.Join("testdata", "password.txt"); got != want {
		t.Errorf("password_file = %q, want %q", got, want)
	}
	if got, want := cfg.Modules["internal"].TLS.CAFile, filepath.Join("testdata", "ca.pem"); got != want {
		t.Errorf("ca_file = %q, want %q", got, want)
	}
	if got, want := cfg.Modules["dockercfg"].Auth.DockerConfig, filepath.Join("testdata", "docker-config.json"); got != want {
		t.Errorf("docker_config = %q, want %q", got, want)
	}
	if !cfg.Modules["local"].PlainHTTP {
		t.Error("local module: plain_http not set")
	}
	// health: defaults to auto; a product or none as written.
	for name, want := range map[string]probe.HealthSetting{"default": probe.HealthAuto, "private": "harbor", "local": probe.HealthNone} {
		if got := cfg.Modules[name].Health; got != want {
			t.Errorf("module %s: health = %q, want %q", name, got, want)
		}
	}

	if len(cfg.Targets) != 4 {
		t.Fatalf("%d targets, want 4", len(cfg.Targets))
	}
	hub := cfg.Targets[0]
	if hub.Name != "hub" || hub.Module != "default" || hub.Ref.String() != "docker.io/library/nginx:latest" {
		t.Errorf("hub target = %+v", hub)
	}
	if got := hub.EffectiveInterval(cfg); got != 30*time.Second {
		t.Errorf("hub interval = %s, want the default module's 30s", got)
	}
	app := cfg.Targets[1]
	if app.Name != "registry.example.com/team/app:v1" {
		t.Errorf("a target without name is named after its image, got %q", app.Name)
	}
	if got := app.EffectiveInterval(cfg); got != 5*time.Minute {
		t.Errorf("app interval = %s, want its own 5m", got)
	}
	if cfg.Targets[2].Ref.Digest == "" || cfg.Targets[2].Ref.Identifier() != cfg.Targets[2].Ref.Digest {
		t.Errorf("pinned target ref = %+v", cfg.Targets[2].Ref)
	}
}

func TestLoadConfigEmpty(t *testing.T) {
	for _, f := range []string{"testdata/good-empty.yml", "testdata/good-no-targets.yml"} {
		cfg, err := Load(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if len(cfg.Targets) != 0 {
			t.Errorf("%s: %d targets", f, len(cfg.Targets))
		}
		// A config without a default module still has one, so that
		// targets (and /probe) can name none.
		if _, ok := cfg.Modules[DefaultModuleName]; !ok {
			t.Errorf("%s: no default module", f)
		}
	}
}

func TestDefaultConfig(t *testing.T) {
	cfg, err := LoadDefault()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"dockerhub-ratelimit":     "docker.io/ratelimitpreview/test:latest",
		"registry-k8s-io-pause":   "registry.k8s.io/pause:3.10",
		"ghcr-containerd-busybox": "ghcr.io/containerd/busybox:1.36",
		"quay-prometheus-busybox": "quay.io/prometheus/busybox:latest",
		"mcr-kubernetes-pause":    "mcr.microsoft.com/oss/kubernetes/pause:3.6",
	}
	if len(cfg.Targets) != len(want) {
		t.Errorf("%d targets, want %d", len(cfg.Targets), len(want))
	}
	for _, tc := range cfg.Targets {
		if want[tc.Name] != tc.Ref.String() {
			t.Errorf("target %q = %s, want %s", tc.Name, tc.Ref, want[tc.Name])
		}
	}
}

func TestSafeConfigReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	reg := prometheus.NewPedanticRegistry()
	sc := NewSafeConfig(reg)
	overlay, err := Parse("overlay", []byte("modules: {demo: {plain_http: true}}\ntargets: [{name: demo, image: 127.0.0.1:1/demo/hello:v1, module: demo}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	sc.SetOverlay(overlay)

	write("targets: [{name: one, image: nginx}]\n")
	if err := sc.ReloadConfig(path); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(sc.reloadSuccess); got != 1 {
		t.Errorf("reload_successful = %v after a good load", got)
	}
	if ts := testutil.ToFloat64(sc.reloadTime); ts < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("success timestamp = %v", ts)
	}
	if names := targetNames(sc.Get()); names != "one,demo" {
		t.Errorf("targets = %s, want one,demo (the overlay is merged)", names)
	}

	write("targets: [{name: two, image: nginx, modul: x}]\n")
	err = sc.ReloadConfig(path)
	if err == nil || !strings.Contains(err.Error(), `config.yml:1: target "two": unknown key "modul"`) {
		t.Fatalf("reload of a bad file: err = %v", err)
	}
	if got := testutil.ToFloat64(sc.reloadSuccess); got != 0 {
		t.Errorf("reload_successful = %v after a bad load", got)
	}
	if names := targetNames(sc.Get()); names != "one,demo" {
		t.Errorf("a bad file replaced the running config: targets = %s", names)
	}

	// The overlay's names clash with the file's: the reload fails, the
	// running config stays.
	write("targets: [{name: demo, image: nginx}]\n")
	if err := sc.ReloadConfig(path); err == nil || !strings.Contains(err.Error(), `target "demo" is defined twice`) {
		t.Errorf("clash with the overlay: err = %v", err)
	}
	if names := targetNames(sc.Get()); names != "one,demo" {
		t.Errorf("targets = %s after a failed reload", names)
	}

	write("targets: [{name: two, image: nginx}]\n")
	if err := sc.ReloadConfig(path); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(sc.reloadSuccess); got != 1 {
		t.Errorf("reload_successful = %v after recovering", got)
	}
	if names := targetNames(sc.Get()); names != "two,demo" {
		t.Errorf("targets = %s", names)
	}

	// An empty path loads the embedded default.
	if err := sc.ReloadConfig(""); err != nil {
		t.Fatal(err)
	}
	if n := len(sc.Get().Targets); n != 6 {
		t.Errorf("embedded default + overlay: %d targets, want 6", n)
	}
	if _, err := testutil.GatherAndLint(reg); err != nil {
		t.Error(err)
	}
}

func targetNames(c *Config) string {
	var names []string
	for _, t := range c.Targets {
		names = append(names, t.Name)
	}
	return strings.Join(names, ",")
}

// FuzzLoadConfig checks that no input makes the loader panic, and that
// whatever it accepts is internally consistent.
func FuzzLoadConfig(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yml")
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(bytes.Clone(defaultConfigYAML))
	f.Add([]byte("modules: {a: {timeout: 1s, interval: 1s}}\ntargets: [{image: nginx, module: a}, {image: nginx}]"))
	f.Add([]byte("&a [*a]"))
	f.Add([]byte("modules: &m {default: *m}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.yml", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.yml") {
				t.Errorf("error does not name the file: %v", err)
			}
			return
		}
		names := map[string]bool{}
		for _, tc := range cfg.Targets {
			if names[tc.Name] {
				t.Errorf("accepted duplicate target %q", tc.Name)
			}
			names[tc.Name] = true
			m, ok := cfg.Modules[tc.Module]
			if !ok {
				t.Errorf("accepted target %q with undefined module %q", tc.Name, tc.Module)
			}
			if tc.Ref.Registry == "" || tc.Ref.Repository == "" {
				t.Errorf("accepted target %q with empty reference %+v", tc.Name, tc.Ref)
			}
			if m.Timeout <= 0 || tc.EffectiveInterval(cfg) < m.Timeout {
				t.Errorf("accepted target %q with timeout %s, interval %s", tc.Name, m.Timeout, tc.EffectiveInterval(cfg))
			}
		}
	})
}
