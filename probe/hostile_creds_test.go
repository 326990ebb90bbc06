package probe

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/imagepull/imagepull_exporter/internal/testenv"
)

// Issue 9, item 1: a module's static credentials are bound to registries.
// These cases play the attacker: a second real registry on another
// loopback port, fronted by a recording proxy (testenv.CredentialSink,
// since the registry's access log does not record Authorization headers),
// whose records must never show the module's credentials.

func TestRegistryBound(t *testing.T) {
	for _, tc := range []struct {
		bound    []string
		registry string
		want     bool
	}{
		{[]string{"registry.example.com"}, "registry.example.com", true},
		{[]string{"Registry.Example.COM"}, "registry.example.com", true},
		{[]string{"registry.example.com"}, "evil.example", false},
		{[]string{"registry.example.com"}, "registry.example.com.evil.example", false},
		{[]string{"registry.example.com"}, "registry.example.com:5000", false}, // a key without a port never matches one with a port
		{[]string{"registry:5000"}, "registry:5000", true},
		{[]string{"registry:5000"}, "registry:5001", false},
		{[]string{"registry:5000"}, "registry", false},
		{[]string{"127.0.0.1:5000"}, "127.0.0.1:5001", false},
		{[]string{"*.example.com"}, "a.example.com", true},
		{[]string{"*.example.com"}, "example.com", false},       // same number of labels, as the kubelet
		{[]string{"*.example.com"}, "a.b.example.com", false},   // '*' does not cross a dot
		{[]string{"*.example.com"}, "a.example.com:443", false}, // nor add a port
		{[]string{"*.dkr.ecr.*.amazonaws.com"}, "1234.dkr.ecr.eu-west-1.amazonaws.com", true},
		{[]string{"*.dkr.ecr.*.amazonaws.com"}, "1234.dkr.ecr.eu-west-1.evil.com", false},
		{[]string{"docker.io"}, "docker.io", true},
		{[]string{"index.docker.io"}, "docker.io", true},      // Docker Hub's names are one registry
		{[]string{"registry-1.docker.io"}, "docker.io", true}, // ditto
		{[]string{"docker.io"}, "ghcr.io", false},
		{[]string{"[::1]:5000"}, "[::1]:5000", true}, // an IPv6 literal is matched by name, not as a glob
		{[]string{"[::1]:5000"}, "[::1]:5001", false},
		{[]string{"ghcr.io", "quay.io"}, "quay.io", true},
		{nil, "registry.example.com", false}, // bound to nothing: sent nowhere
		{[]string{""}, "registry.example.com", false},
		{[]string{"[bad"}, "registry.example.com", false}, // an invalid glob matches nothing
		{[]string{"registry.example.com"}, "registry.example.com/path", false},
		{[]string{"registry.example.com"}, "", false},
	} {
		if got := RegistryBound(tc.bound, tc.registry); got != tc.want {
			t.Errorf("RegistryBound(%q, %q) = %v, want %v", tc.bound, tc.registry, got, tc.want)
		}
	}
}

func TestValidateRegistryGlob(t *testing.T) {
	for _, tc := range []struct {
		glob string
		want string // "" means valid; else a substring of the error
	}{
		{"registry.example.com", ""},
		{"*.example.com", ""},
		{"registry:5000", ""},
		{"127.0.0.1:5000", ""},
		{"[::1]:5000", ""},
		{"*.dkr.ecr.*.amazonaws.com", ""},
		{"", "is empty"},
		{"https://registry.example.com", "holds a scheme; give the registry host only, without https://"},
		{"registry.example.com/team", "is not a registry host"},
		{"user@registry.example.com", "is not a registry host"},
		{"registry.example.com:", "has an empty port"},
		{"registry.example.com:*", "a port cannot be a glob"},
		{"registry..example.com", "empty host label"},
		{".example.com", "empty host label"},
		{"reg[0-9].example.com", "holds a character not allowed in a host glob"},
		{"reg?.example.com", "holds a character not allowed in a host glob"},
		{"[::1", "not a valid IPv6 literal"},
		{"*", "matches every registry host of 1 label(s)"},
		{"*.*", "matches every registry host of 2 label(s)"},
		{"*.*:5000", "matches every registry host of 2 label(s)"},
		{"*.*.example.com", ""},
	} {
		err := ValidateRegistryGlob(tc.glob)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("ValidateRegistryGlob(%q) = %v, want valid", tc.glob, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("ValidateRegistryGlob(%q) = %v, want an error with %q", tc.glob, err, tc.want)
		}
		// The entry sits under auth:, whose values a config error never
		// echoes (a pasted password looks like any string).
		if err != nil && len(tc.glob) > 3 && strings.Contains(err.Error(), tc.glob) {
			t.Errorf("ValidateRegistryGlob(%q) = %v: the error quotes the entry", tc.glob, err)
		}
	}
}

// The keychain is where the binding is enforced: every caller resolves a
// module's credentials through it.
func TestModuleKeychainBinding(t *testing.T) {
	bound, _ := ParseReference("registry.example.com/team/app:v1")
	other, _ := ParseReference("evil.example/x/y:1")
	for _, tc := range []struct {
		name string
		auth AuthConfig
		ref  Reference
		want int
	}{
		{"explicit binding, bound registry", AuthConfig{Username: "u", Password: "pw-1234", Registries: []string{"registry.example.com"}}, bound, 1},
		{"explicit binding, other registry", AuthConfig{Username: "u", Password: "pw-1234", Registries: []string{"registry.example.com"}}, other, 0},
		{"glob binding", AuthConfig{Username: "u", Password: "pw-1234", Registries: []string{"*.example.com"}}, bound, 1},
		{"targets' registries", AuthConfig{Username: "u", Password: "pw-1234", TargetRegistries: []string{"registry.example.com"}}, bound, 1},
		{"targets' registries, other registry", AuthConfig{Username: "u", Password: "pw-1234", TargetRegistries: []string{"registry.example.com"}}, other, 0},
		{"explicit binding wins over the targets'", AuthConfig{Username: "u", Password: "pw-1234", Registries: []string{"ghcr.io"}, TargetRegistries: []string{"registry.example.com"}}, bound, 0},
		{"bound to nothing", AuthConfig{Username: "u", Password: "pw-1234"}, bound, 0},
		// An unbound registry does not even read the password file, so a
		// missing one is no error there.
		{"password file, other registry", AuthConfig{Username: "u", PasswordFile: "/nonexistent/pw", Registries: []string{"registry.example.com"}}, other, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kc, err := ModuleKeychain(Module{Auth: tc.auth})
			if err != nil {
				t.Fatal(err)
			}
			got, err := kc.Resolve(tc.ref)
			if err != nil || len(got) != tc.want {
				t.Errorf("Resolve(%s) = %+v, %v; want %d credentials", tc.ref, got, err, tc.want)
			}
			m := Module{Auth: tc.auth}
			if berr := m.CheckBinding(tc.ref.Registry); (berr == nil) != (tc.want == 1) {
				t.Errorf("CheckBinding(%s) = %v, want it to agree with Resolve", tc.ref.Registry, berr)
			}
		})
	}
	var ue *UnboundError
	err := Module{Auth: AuthConfig{Username: "u", Password: "pw-1234", Registries: []string{"registry.example.com", "*.corp.example"}}}.CheckBinding("evil.example")
	if !errors.As(err, &ue) {
		t.Fatalf("CheckBinding: %v, want an *UnboundError", err)
	}
	ue.Module = "private"
	want := `the credentials of module "private" are not bound to registry evil.example: they are bound to registry.example.com, *.corp.example; to send them there, add evil.example to the module's auth.registries`
	if err.Error() != want || strings.Contains(err.Error(), "pw-1234") {
		t.Errorf("UnboundError:\n got: %s\nwant: %s", err, want)
	}
	// docker_config modules and anonymous ones are not bound here.
	if err := (Module{Auth: AuthConfig{DockerConfig: "/x"}}).CheckBinding("evil.example"); err != nil {
		t.Errorf("docker_config module: %v", err)
	}
	if err := DefaultModule.CheckBinding("evil.example"); err != nil {
		t.Errorf("anonymous module: %v", err)
	}
}

// A probe through the prober: the bound registry still authenticates; the
// attacker's registry, named with the same module (as /probe, discovery or
// a pod would), receives no Authorization header and no password, and the
// probe runs anonymously as the kubelet's pull would.
func TestHostileRegistryGetsNoModuleCredentials(t *testing.T) {
	const user, pw = "alice", "alice-bound-pw-7f3a"
	victim := startRegistry(t, testenv.RegistryOptions{Auth: testenv.RegistryAuthBasic,
		Users: map[string]testenv.TokenUser{user: {Password: pw}}})
	victim.Push(t, "team/app", "v1")
	attackerReg := startRegistry(t, testenv.RegistryOptions{Auth: testenv.RegistryAuthBasic})
	attackerReg.Push(t, "x/y", "1")
	sink := testenv.StartCredentialSink(t, attackerReg.URL)
	basic := base64.StdEncoding.EncodeToString([]byte(user + ":" + pw))

	for _, tc := range []struct {
		name string
		auth AuthConfig
	}{
		{"auth.registries", AuthConfig{Username: user, Password: Secret(pw), Registries: []string{victim.Addr}}},
		{"targets' registries", AuthConfig{Username: user, Password: Secret(pw), TargetRegistries: []string{victim.Addr}}},
		{"bound by glob", AuthConfig{Username: user, Password: Secret(pw), Registries: []string{"127.0.0.*:" + strings.Split(victim.Addr, ":")[1]}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newProber(t, nil)
			m := plainModule()
			m.Auth = tc.auth

			res := probe(t, p, target(t, victim.Ref("team/app", "v1"), m), pw, basic)
			if !res.Success || !res.AuthOK {
				t.Fatalf("bound registry: %s %s, want an authenticated success", res.Reason, res.Error)
			}

			before := len(sink.Requests())
			res = probe(t, p, target(t, sink.Addr+"/x/y:1", m), pw, basic)
			if res.Success || res.Reason != ReasonNoCredentials {
				t.Errorf("attacker's registry: %v %s %s, want an anonymous probe answered no_credentials", res.Success, res.Reason, res.Error)
			}
			// The failure says why no credential was presented.
			if want := `(probed anonymously: the credentials of module "test" are not bound to registry ` + sink.Addr; !strings.Contains(res.Error, want) {
				t.Errorf("error %q lacks %q", res.Error, want)
			}
			if len(sink.Requests()) == before {
				t.Fatal("the sink saw no request: the case proves nothing")
			}
			if leaks := sink.Leaks(pw); len(leaks) > 0 {
				t.Errorf("the attacker's host received credentials: %+v", leaks)
			}
		})
	}
}

// A mirror probe resolves credentials for the mirror's host: the
// module's credentials, bound to the upstream registry, never reach it.
func TestMirrorGetsNoModuleCredentials(t *testing.T) {
	const user, pw = "alice", "alice-mirror-pw-2c9e"
	upstream := startRegistry(t, testenv.RegistryOptions{Auth: testenv.RegistryAuthBasic,
		Users: map[string]testenv.TokenUser{user: {Password: pw}}})
	upstream.Push(t, "team/app", "v1")
	mirrorReg := startRegistry(t, testenv.RegistryOptions{Auth: testenv.RegistryAuthBasic})
	mirrorReg.Push(t, "team/app", "v1")
	sink := testenv.StartCredentialSink(t, mirrorReg.URL)

	p := newProber(t, nil)
	m := plainModule()
	m.Auth = AuthConfig{Username: user, Password: Secret(pw), Registries: []string{upstream.Addr}}
	tg := target(t, upstream.Ref("team/app", "v1"), m)
	tg.Endpoint = &Endpoint{Host: sink.Addr}
	res := probe(t, p, tg, pw)
	if res.Success {
		t.Errorf("mirror probe succeeded: the mirror requires credentials the probe must not have")
	}
	if len(sink.Requests()) == 0 {
		t.Fatal("the mirror saw no request: the case proves nothing")
	}
	if leaks := sink.Leaks(pw); len(leaks) > 0 {
		t.Errorf("the mirror received the module's credentials: %+v", leaks)
	}
}
