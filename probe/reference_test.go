package probe

import (
	"strings"
	"testing"
)

const (
	testDigest  = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	testDigest2 = "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
)

var referenceCases = []struct {
	in      string
	want    Reference
	canon   string
	errPart string
}{
	{in: "nginx", want: Reference{"docker.io", "library/nginx", "latest", ""}, canon: "docker.io/library/nginx:latest"},
	{in: "nginx:1.27", want: Reference{"docker.io", "library/nginx", "1.27", ""}, canon: "docker.io/library/nginx:1.27"},
	{in: "library/nginx", want: Reference{"docker.io", "library/nginx", "latest", ""}},
	{in: "docker.io/nginx", want: Reference{"docker.io", "library/nginx", "latest", ""}},
	{in: "index.docker.io/nginx", want: Reference{"docker.io", "library/nginx", "latest", ""}},
	{in: "registry-1.docker.io/library/nginx:latest", want: Reference{"docker.io", "library/nginx", "latest", ""}},
	{in: "Docker.IO/user/app", want: Reference{"docker.io", "user/app", "latest", ""}},
	{in: "ratelimitpreview/test:latest", want: Reference{"docker.io", "ratelimitpreview/test", "latest", ""}},
	{in: "user/app:v1", want: Reference{"docker.io", "user/app", "v1", ""}},
	{in: "docker.io/a/b/c:v1", want: Reference{"docker.io", "a/b/c", "v1", ""}},
	{in: "localhost/app", want: Reference{"localhost", "app", "latest", ""}},
	{in: "localhost:5000/app:v2", want: Reference{"localhost:5000", "app", "v2", ""}, canon: "localhost:5000/app:v2"},
	{in: "127.0.0.1:5000/team/app", want: Reference{"127.0.0.1:5000", "team/app", "latest", ""}},
	{in: "[::1]:5000/app", want: Reference{"[::1]:5000", "app", "latest", ""}},
	{in: "registry.k8s.io/pause:3.10", want: Reference{"registry.k8s.io", "pause", "3.10", ""}},
	{in: "ghcr.io/org/img@" + testDigest, want: Reference{"ghcr.io", "org/img", "", testDigest}, canon: "ghcr.io/org/img@" + testDigest},
	{in: "nginx@" + testDigest, want: Reference{"docker.io", "library/nginx", "", testDigest}},
	{in: "quay.io/a/b:v1@" + testDigest, want: Reference{"quay.io", "a/b", "v1", testDigest}, canon: "quay.io/a/b:v1@" + testDigest},
	{in: "a_b__c-d---e/f", want: Reference{"docker.io", "a_b__c-d---e/f", "latest", ""}},
	{in: "MyRegistry/app", want: Reference{"MyRegistry", "app", "latest", ""}}, // upper case first component is a host, as in distribution
	{in: "Registry.Example.COM/app", want: Reference{"registry.example.com", "app", "latest", ""}},
	{in: "LOCALHOST/app", want: Reference{"localhost", "app", "latest", ""}},
	{in: "host:5000/app:Tag_1.0-rc", want: Reference{"host:5000", "app", "Tag_1.0-rc", ""}},

	{in: "", errPart: "empty"},
	{in: " nginx", errPart: "white space"},
	{in: "Nginx", errPart: "must be lowercase"},
	{in: "user/App", errPart: "must be lowercase"},
	{in: "ghcr.io/Org/app", errPart: "must be lowercase"},
	{in: "nginx:", errPart: "invalid tag"},
	{in: "nginx:-x", errPart: "invalid tag"},
	{in: "nginx:" + strings.Repeat("a", 129), errPart: "invalid tag"},
	{in: "nginx@sha256:abc", errPart: "wants 64 hex digits"},
	{in: "nginx@md5:" + strings.Repeat("a", 32), errPart: "unsupported algorithm"},
	{in: "nginx@sha256:" + strings.Repeat("A", 64), errPart: "not lower-case hex"},
	{in: "nginx@", errPart: "invalid digest"},
	{in: "host:5000/", errPart: "invalid repository path component"},
	{in: ":tag", errPart: "empty repository"},
	{in: "a//b", errPart: "invalid repository path component"},
	{in: "-a/b", errPart: "invalid repository path component"},
	{in: "-a.com/b", errPart: "invalid registry host"},
	{in: "host:port/app", errPart: "invalid registry host"},
	{in: "app/-x", errPart: "invalid repository path component"},
	{in: "app/x-", errPart: "invalid repository path component"},
	{in: "a/b!c", errPart: "invalid repository path component"},
	{in: strings.Repeat("a", 64) + "0", want: Reference{"docker.io", "library/" + strings.Repeat("a", 64) + "0", "latest", ""}},
	{in: strings.Repeat("ab", 32), errPart: "64-byte hexadecimal"},
	{in: "example.com/" + strings.Repeat("a", 250), errPart: "longer than 255"},
}

func TestParseReference(t *testing.T) {
	for _, tc := range referenceCases {
		got, err := ParseReference(tc.in)
		if tc.errPart != "" {
			if err == nil {
				t.Errorf("ParseReference(%q) = %+v, want error containing %q", tc.in, got, tc.errPart)
			} else if !strings.Contains(err.Error(), tc.errPart) {
				t.Errorf("ParseReference(%q) error = %q, want it to contain %q", tc.in, err, tc.errPart)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseReference(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("ParseReference(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
		if tc.canon != "" && got.String() != tc.canon {
			t.Errorf("ParseReference(%q).String() = %q, want %q", tc.in, got.String(), tc.canon)
		}
		back, err := ParseReference(got.String())
		if err != nil || back != got {
			t.Errorf("round trip of %q via %q = %+v, %v", tc.in, got.String(), back, err)
		}
	}
}

func TestReferenceIdentifierAndAPIHost(t *testing.T) {
	for _, tc := range []struct {
		in, id, host string
	}{
		{"nginx", "latest", "registry-1.docker.io"},
		{"index.docker.io/a/b:v1", "v1", "registry-1.docker.io"},
		{"ghcr.io/a/b:v1@" + testDigest, testDigest, "ghcr.io"}, // the digest wins over the tag
		{"localhost:5000/a@" + testDigest2, testDigest2, "localhost:5000"},
	} {
		r, err := ParseReference(tc.in)
		if err != nil {
			t.Fatalf("ParseReference(%q): %v", tc.in, err)
		}
		if r.Identifier() != tc.id || r.APIHost() != tc.host {
			t.Errorf("%q: Identifier %q APIHost %q, want %q %q", tc.in, r.Identifier(), r.APIHost(), tc.id, tc.host)
		}
	}
}

func TestNormalizeRegistry(t *testing.T) {
	for in, want := range map[string]string{
		"docker.io":                    "docker.io",
		"index.docker.io":              "docker.io",
		"registry-1.docker.io":         "docker.io",
		"https://index.docker.io/v1/":  "docker.io",
		"http://Registry.Example:5000": "registry.example:5000",
		"ghcr.io":                      "ghcr.io",
	} {
		if got := NormalizeRegistry(in); got != want {
			t.Errorf("NormalizeRegistry(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParseReference(f *testing.F) {
	for _, tc := range referenceCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseReference(s)
		if err != nil {
			return
		}
		if r.Registry == "" || r.Repository == "" || (r.Tag == "" && r.Digest == "") {
			t.Fatalf("ParseReference(%q) = %+v: incomplete", s, r)
		}
		back, err := ParseReference(r.String())
		if err != nil {
			t.Fatalf("ParseReference(%q).String() = %q does not parse: %v", s, r.String(), err)
		}
		if back != r {
			t.Fatalf("round trip of %q: %+v != %+v", s, back, r)
		}
		if r.Identifier() == "" || r.APIHost() == "" {
			t.Fatalf("%q: empty Identifier or APIHost", s)
		}
	})
}
