package probe

import (
	"encoding/base64"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// The tables below are ported from the kubelet's
// pkg/credentialprovider/keyring_test.go and config_test.go (Kubernetes
// v1.34.4), so that a change in our matching that the kubelet would not make
// fails here.

func TestURLsMatch(t *testing.T) {
	tests := []struct {
		glob, target string
		want         bool
	}{
		// match when there is no path component
		{"*.kubernetes.io", "prefix.kubernetes.io", true},
		{"prefix.*.io", "prefix.kubernetes.io", true},
		{"prefix.kubernetes.*", "prefix.kubernetes.io", true},
		{"*-good.kubernetes.io", "prefix-good.kubernetes.io", true},
		// match with path components
		{"*.kubernetes.io/blah", "prefix.kubernetes.io/blah", true},
		{"prefix.*.io/foo", "prefix.kubernetes.io/foo/bar", true},
		// match with path components and ports
		{"*.kubernetes.io:1111/blah", "prefix.kubernetes.io:1111/blah", true},
		{"prefix.*.io:1111/foo", "prefix.kubernetes.io:1111/foo/bar", true},
		// no match when number of parts mismatch
		{"*.kubernetes.io", "kubernetes.io", false},
		{"*.*.kubernetes.io", "prefix.kubernetes.io", false},
		{"*.*.kubernetes.io", "kubernetes.io", false},
		{"*kubernetes.io", "a.kubernetes.io", false},
		// match when number of parts match
		{"*kubernetes.io", "kubernetes.io", true},
		{"*.*.*.kubernetes.io", "a.b.c.kubernetes.io", true},
		// no match when some parts mismatch
		{"kubernetes.io", "kubernetes.com", false},
		{"k*.io", "quay.io", false},
		// no match when ports mismatch
		{"*.kubernetes.io:1234/blah", "prefix.kubernetes.io:1111/blah", false},
		{"prefix.*.io/foo", "prefix.kubernetes.io:1111/foo/bar", false},
		// ECR, the glob the issue names
		{"*.dkr.ecr.*.amazonaws.com", "123456789012.dkr.ecr.eu-west-1.amazonaws.com/app", true},
		{"*.dkr.ecr.*.amazonaws.com", "123456789012.dkr.ecr.eu-west-1.amazonaws.com.cn/app", false},
		// the kubelet compares paths as strings, not segments
		{"quay.io/team", "quay.io/teamwork/app", true},
		// a malformed glob never matches
		{"[.example.com", "a.example.com", false},
	}
	for _, tt := range tests {
		got, _ := urlsMatchStr(tt.glob, tt.target)
		if got != tt.want {
			t.Errorf("urlsMatch(%q, %q) = %t, want %t", tt.glob, tt.target, got, tt.want)
		}
	}
}

func authBlob(loc, user, pass string) []byte {
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	return fmt.Appendf(nil, `{%q: {"email": "foo@bar.baz", "auth": %q}}`, loc, auth)
}

func mustDockercfg(t *testing.T, blob []byte) DockerConfig {
	t.Helper()
	cfg, err := ParseDockercfg(blob)
	if err != nil {
		t.Fatalf("ParseDockercfg: %v", err)
	}
	return cfg
}

func TestDockerKeyringForGlob(t *testing.T) {
	tests := []struct{ glob, target string }{
		{"https://hello.kubernetes.io", "hello.kubernetes.io"},
		{"https://*.docker.io", "prefix.docker.io"},
		{"https://prefix.*.io", "prefix.docker.io"},
		{"https://prefix.docker.*", "prefix.docker.io"},
		{"https://*.docker.io/path", "prefix.docker.io/path"},
		{"https://prefix.*.io/path", "prefix.docker.io/path/subpath"},
		{"https://prefix.docker.*/path", "prefix.docker.io/path"},
		{"https://*.docker.io:8888", "prefix.docker.io:8888"},
		{"https://prefix.*.io:8888", "prefix.docker.io:8888"},
		{"https://prefix.docker.*:8888", "prefix.docker.io:8888"},
		{"https://*.docker.io/path:1111", "prefix.docker.io/path:1111"},
		{"https://*.docker.io/v1/", "prefix.docker.io/path:1111"},
		{"https://*.docker.io/v2/", "prefix.docker.io/path:1111"},
		{"https://prefix.docker.*/path:1111", "prefix.docker.io/path:1111"},
		{"prefix.docker.io:1111", "prefix.docker.io:1111/path"},
		{"*.docker.io:1111", "prefix.docker.io:1111/path"},
	}
	for _, tt := range tests {
		var k DockerKeyring
		k.Add("test", mustDockercfg(t, authBlob(tt.glob, "foo", "bar")))
		creds := k.Lookup(tt.target + "/foo/bar")
		if len(creds) != 1 {
			t.Errorf("key %q, image %q: got %d credentials, want 1", tt.glob, tt.target, len(creds))
			continue
		}
		if creds[0].Username != "foo" || creds[0].Password != "bar" {
			t.Errorf("key %q: got %q/%q, want foo/bar", tt.glob, creds[0].Username, string(creds[0].Password))
		}
	}
}

func TestKeyringMiss(t *testing.T) {
	tests := []struct{ glob, lookup string }{
		{"https://hello.kubernetes.io", "world.mesos.org/foo/bar"},
		{"https://*.docker.com", "prefix.docker.io"},
		{"https://suffix.*.io", "prefix.docker.io"},
		{"https://prefix.docker.c*", "prefix.docker.io"},
		{"https://prefix.*.io/path:1111", "prefix.docker.io/path/subpath:1111"},
		{"suffix.*.io", "prefix.docker.io"},
		// Docker Hub credentials are not sent elsewhere.
		{"https://index.docker.io/v1/", "world.mesos.org/foo/bar"},
		// registry-1.docker.io is the API host, not a key the kubelet maps.
		{"registry-1.docker.io", "docker.io/library/nginx"},
	}
	for _, tt := range tests {
		var k DockerKeyring
		k.Add("test", mustDockercfg(t, authBlob(tt.glob, "foo", "bar")))
		if got := k.Lookup(tt.lookup + "/foo/bar"); len(got) != 0 {
			t.Errorf("key %q, image %q: got %d credentials, want none", tt.glob, tt.lookup, len(got))
		}
	}
}

func TestKeyringDockerHub(t *testing.T) {
	// The ways a Hub image can be spelt, against the key docker login
	// writes: the kubelet falls back to index.docker.io for any of them.
	for _, key := range []string{"https://index.docker.io/v1/", "index.docker.io"} {
		for _, image := range []string{"google/docker-registry", "jenkins", "index.docker.io/google/docker-registry", "docker.io/library/nginx"} {
			var k DockerKeyring
			k.Add("secret ns/hub", mustDockercfg(t, authBlob(key, "foo", "bar")))
			got := k.Lookup(image)
			if len(got) != 1 || got[0].Username != "foo" {
				t.Errorf("key %q, image %q: got %v, want the foo credential", key, image, got)
			}
		}
	}
	// A "docker.io" key matches by host, so only the normalised name the
	// kubelet passes (and Resolve builds) hits it.
	for _, key := range []string{"docker.io", "https://docker.io"} {
		for _, image := range []string{"docker.io/library/nginx", "docker.io/google/docker-registry"} {
			var k DockerKeyring
			k.Add("secret ns/hub", mustDockercfg(t, authBlob(key, "foo", "bar")))
			got := k.Lookup(image)
			if len(got) != 1 || got[0].Username != "foo" {
				t.Errorf("key %q, image %q: got %v, want the foo credential", key, image, got)
			}
		}
	}
	// Resolve normalises the reference first: "nginx" is docker.io/library/nginx.
	var k DockerKeyring
	k.Add("secret ns/hub", mustDockercfg(t, authBlob("https://index.docker.io/v1/", "foo", "bar")))
	ref, err := ParseReference("nginx:1.27")
	if err != nil {
		t.Fatal(err)
	}
	got, err := k.Resolve(ref)
	if err != nil || len(got) != 1 || got[0].Source != `secret ns/hub entry "https://index.docker.io/v1/"` {
		t.Fatalf("Resolve(nginx) = %v, %v; want the hub credential", got, err)
	}
}

func TestIsDefaultRegistryMatch(t *testing.T) {
	for image, want := range map[string]bool{
		"foo/bar":                 true,
		"docker.io/foo/bar":       true,
		"index.docker.io/foo/bar": true,
		"foo":                     true,
		"":                        false,
		"registry.tld/foo/bar":    false,
		"registry:5000/foo/bar":   false,
		"myhostdocker.io/foo/bar": false,
	} {
		if got := isDefaultRegistryMatch(image); got != want {
			t.Errorf("isDefaultRegistryMatch(%q) = %t, want %t", image, got, want)
		}
	}
}

func names(cs []Credential) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Username)
	}
	return out
}

func TestDockerKeyringLookup(t *testing.T) {
	var k DockerKeyring
	k.Add("s", DockerConfig{
		"bar.example.com/pong": {Username: "grace", Password: "squash"},
		"bar.example.com":      {Username: "ada", Password: "smash"},
	})
	tests := []struct {
		image string
		want  []string
	}{
		{"bar.example.com", []string{"ada"}},                    // direct match
		{"bar.example.com/pong", []string{"grace", "ada"}},      // deeper match first, then the host
		{"bar.example.com/ping", []string{"ada"}},               // no direct match, deeper path ignored
		{"bar.example.com/pongz", []string{"grace", "ada"}},     // match first part of path token
		{"bar.example.com/pong/pang", []string{"grace", "ada"}}, // regardless of sub-path
		{"example.com", nil},                                    // no host match
		{"foo.example.com", nil},                                // no host match
	}
	for _, tt := range tests {
		if got := names(k.Lookup(tt.image)); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Lookup(%q) = %v, want %v", tt.image, got, tt.want)
		}
	}
}

// TestIssue3797: entries with a scheme and a /v1/ path match images on that
// host (kubernetes issue 3797).
func TestIssue3797(t *testing.T) {
	var k DockerKeyring
	k.Add("s", DockerConfig{"https://quay.io/v1/": {Username: "rex", Password: "tiny arms"}})
	for _, image := range []string{"quay.io", "quay.io/foo", "quay.io/foo/bar"} {
		if got := names(k.Lookup(image)); !reflect.DeepEqual(got, []string{"rex"}) {
			t.Errorf("Lookup(%q) = %v, want [rex]", image, got)
		}
	}
}

func TestKeyringAllMatchesInOrder(t *testing.T) {
	// Two secrets, as a pod lists them: every matching credential comes back,
	// most specific key first, secrets in order within a key. (k8schain stops
	// at the first; the kubelet tries each until one pulls.)
	var k DockerKeyring
	k.Add("secret ns/first", DockerConfig{
		"registry.example.com":      {Username: "first-host", Password: "a"},
		"registry.example.com/team": {Username: "first-team", Password: "b"},
	})
	k.Add("secret ns/second", DockerConfig{
		"https://registry.example.com/v2/": {Username: "second-host", Password: "c"},
		"*.example.com":                    {Username: "second-glob", Password: "d"},
		"registry.example.com:5000":        {Username: "second-port", Password: "e"},
	})
	ref := Reference{Registry: "registry.example.com", Repository: "team/app", Tag: "v1"}
	got, err := k.Resolve(ref)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"first-team", "first-host", "second-host", "second-glob"}
	if !reflect.DeepEqual(names(got), want) {
		t.Fatalf("Resolve = %v, want %v", names(got), want)
	}
	if got[2].Source != `secret ns/second entry "https://registry.example.com/v2/"` {
		t.Errorf("source = %q", got[2].Source)
	}
	// The port key matches only the image with that port.
	got, _ = k.Resolve(Reference{Registry: "registry.example.com:5000", Repository: "app", Tag: "v1"})
	if !reflect.DeepEqual(names(got), []string{"second-port"}) {
		t.Errorf("port image: got %v, want [second-port]", names(got))
	}
	if want := []string{"registry.example.com:5000", "registry.example.com/team", "registry.example.com", "*.example.com"}; !reflect.DeepEqual(k.Keys(), want) {
		t.Errorf("Keys() = %v, want %v", k.Keys(), want)
	}
}

func TestKeyringResolveDropsRepeats(t *testing.T) {
	var k DockerKeyring
	k.Add("secret ns/a", DockerConfig{"docker.io": {Username: "u", Password: "p"}})
	k.Add("secret ns/b", DockerConfig{"docker.io": {Username: "u", Password: "p"}})
	if got := k.Lookup("docker.io/library/nginx"); len(got) != 2 {
		t.Fatalf("Lookup keeps what the kubelet tries: got %d, want 2", len(got))
	}
	got, _ := k.Resolve(Reference{Registry: "docker.io", Repository: "library/nginx", Tag: "latest"})
	if len(got) != 1 || got[0].Source != `secret ns/a entry "docker.io"` {
		t.Fatalf("Resolve = %v, want the first one only", got)
	}
	var empty DockerKeyring
	if got, err := empty.Resolve(Reference{Registry: "docker.io", Repository: "library/nginx"}); got != nil || err != nil {
		t.Fatalf("empty keyring: %v, %v; want nil (anonymous)", got, err)
	}
}

func TestKeyringHostCase(t *testing.T) {
	var k DockerKeyring
	k.Add("s", DockerConfig{"Registry.Example.COM": {Username: "u", Password: "p"}})
	ref, err := ParseReference("Registry.Example.COM/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := k.Resolve(ref); len(got) != 1 {
		t.Fatalf("mixed-case key and image host: got %d credentials, want 1", len(got))
	}
}

func TestDecodeAuthField(t *testing.T) {
	tests := []struct {
		in         string
		user, pass string
		fail       bool
	}{
		{in: "Zm9vOmJhcg==", user: "foo", pass: "bar"},
		{in: "Zm9vOmJhcg", user: "foo", pass: "bar"},       // unpadded
		{in: "Zm9vOm\nJhcg==\n", user: "foo", pass: "bar"}, // newlines are ignored
		{in: base64.RawStdEncoding.EncodeToString([]byte("foo:bar")), user: "foo", pass: "bar"},
		{in: base64.StdEncoding.EncodeToString([]byte("u:p:with:colons")), user: "u", pass: "p:with:colons"},
		{in: "cGFudHM=", fail: true},      // no colon
		{in: "Zm9vOmJhcg== ", fail: true}, // only newlines are ignored
		{in: "pants", fail: true},         // bad base64
	}
	for _, tt := range tests {
		u, p, err := decodeAuthField(tt.in)
		if (err != nil) != tt.fail {
			t.Errorf("decodeAuthField(%q): err = %v, want fail=%t", tt.in, err, tt.fail)
		}
		if u != tt.user || p != tt.pass {
			t.Errorf("decodeAuthField(%q) = %q, %q; want %q, %q", tt.in, u, p, tt.user, tt.pass)
		}
	}
}

func TestParseDockerConfig(t *testing.T) {
	tests := []struct {
		name    string
		json    bool // .dockerconfigjson (else .dockercfg)
		in      string
		want    DockerConfig
		wantErr string
	}{
		{name: "dockerconfigjson", json: true,
			in:   `{"auths": {"http://foo.example.com":{"username": "foo", "password": "bar", "email": "foo@example.com"}, "http://bar.example.com":{"username": "bar", "password": "baz"}}}`,
			want: DockerConfig{"http://foo.example.com": {"foo", "bar"}, "http://bar.example.com": {"bar", "baz"}}},
		{name: "dockercfg", in: `{"http://foo.example.com":{"username": "foo", "password": "bar", "email": "foo@example.com"}}`,
			want: DockerConfig{"http://foo.example.com": {"foo", "bar"}}},
		{name: "auth wins over username and password", json: true,
			in:   `{"auths": {"r.io": {"username": "foo", "password": "bar", "auth": "cGluZzpwb25n"}}}`,
			want: DockerConfig{"r.io": {"ping", "pong"}}},
		{name: "identitytoken is ignored as by the kubelet", json: true,
			in:   `{"auths": {"r.io": {"identitytoken": "tok"}}}`,
			want: DockerConfig{"r.io": {}}},
		{name: "no auths", json: true, in: `{}`, want: DockerConfig{}},
		{name: "truncated", json: true, in: `{"auths": {"r.io": {"password": "hunter2"`, wantErr: "parse .dockerconfigjson: invalid JSON"},
		{name: "bad auth", json: true, in: `{"auths": {"r.io": {"auth": "pants"}}}`, wantErr: `parse .dockerconfigjson: entry "r.io": auth field is not valid base64 (at byte 4)`},
		{name: "wrong type", in: `{"r.io": {"email": false}}`, wantErr: `parse .dockercfg: entry "r.io": invalid JSON: bool where string was expected at byte 15`},
		{name: "syntax error does not quote the input", in: `{"r.io": {"password": "s3cr3t"x}}`, wantErr: "parse .dockercfg: invalid JSON at byte 31"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parse := ParseDockercfg
			if tt.json {
				parse = ParseDockerConfigJSON
			}
			got, err := parse([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want prefix %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "s3cr3t") || strings.Contains(err.Error(), "hunter2") {
					t.Fatalf("error text leaks the secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

// FuzzDockerKeyring feeds arbitrary docker config blobs and image names: the
// parser and the matcher never panic, errors never carry a password, and
// every credential returned is one the blob holds, looked up deterministically.
func FuzzDockerKeyring(f *testing.F) {
	f.Add([]byte(`{"auths":{"https://index.docker.io/v1/":{"auth":"Zm9vOmJhcg=="}}}`), "docker.io/library/nginx")
	f.Add([]byte(`{"*.dkr.ecr.*.amazonaws.com":{"username":"AWS","password":"pw"}}`), "1.dkr.ecr.us-east-1.amazonaws.com/app")
	f.Add([]byte(`{"auths":{"quay.io/team":{"username":"a","password":"b"},"quay.io":{"username":"c","password":"d"}}}`), "quay.io/team/x")
	f.Add([]byte(`{"[::1]:5000":{"username":"a","password":"b"}}`), "[::1]:5000/app")
	f.Add([]byte(`{"r.io":{"password":"s3cr3tXYZ"x}}`), "r.io/a")
	f.Fuzz(func(t *testing.T, blob []byte, image string) {
		for _, parse := range []func([]byte) (DockerConfig, error){ParseDockerConfigJSON, ParseDockercfg} {
			cfg, err := parse(blob)
			if err != nil {
				if strings.Contains(err.Error(), "s3cr3tXYZ") {
					t.Fatalf("error leaks a password: %v", err)
				}
				continue
			}
			var k DockerKeyring
			k.Add("fuzz", cfg)
			a := k.Lookup(image)
			if b := k.Lookup(image); !reflect.DeepEqual(a, b) {
				t.Fatalf("Lookup(%q) not deterministic", image)
			}
			for _, c := range a {
				found := false
				for _, e := range cfg {
					if e.Username == c.Username && e.Password == c.Password {
						found = true
					}
				}
				if !found {
					t.Fatalf("Lookup(%q) returned a credential not in the config", image)
				}
			}
			if ref, err := ParseReference(image); err == nil {
				if _, err := k.Resolve(ref); err != nil {
					t.Fatal(err)
				}
			}
		}
	})
}
