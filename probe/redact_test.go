package probe

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestRedactor(t *testing.T) {
	alice := Credential{Username: "alice", Password: "hunter22", Source: "test"}
	for _, tc := range []struct {
		name    string
		secrets []string
		creds   []Credential
		in      string
		want    string
	}{
		{"known secret", nil, []Credential{alice}, "password hunter22 here", "password <redacted> here"},
		{"every occurrence", []string{"s3cr3t-x"}, nil, "s3cr3t-x and s3cr3t-x.", "<redacted> and <redacted>."},
		{"registry echoes the Basic header", nil, []Credential{alice},
			"401: bad header " + b64("alice:hunter22") + " given", "401: bad header <redacted> given"},
		{"echoed Basic value without padding", nil, []Credential{{Username: "bob", Password: "pw-1234"}},
			"got " + strings.TrimRight(b64("bob:pw-1234"), "=") + "!", "got <redacted>!"},
		{"base64 of a short password", nil, []Credential{{Username: "carol", Password: "abc"}},
			"abc echoed as " + b64("carol:abc"), "abc echoed as <redacted>"},
		{"identity token and its Basic form", nil, []Credential{{Username: "<token>", IdentityToken: "refresh-xyz-1"}},
			"refresh-xyz-1 / " + b64("<token>:refresh-xyz-1"), "<redacted> / <redacted>"},
		{"a secret that contains another is replaced whole", []string{"pass", "my-pass-word"}, nil,
			"x my-pass-word y pass z", "x <redacted> y <redacted> z"},
		{"overlapping secrets leave no fragment", []string{"abcdef", "defghi"}, nil,
			"<abcdefghi>", "<<redacted>>"},
		{"whitespace-trimmed form", []string{"file-pass-1234\n\n"}, nil,
			"said file-pass-1234.", "said <redacted>."},
		{"query-escaped form", []string{"p@ss word!"}, nil,
			"form password2=p%40ss+word%21&x=1", "form password2=<redacted>&x=1"},
		{"too short to replace", []string{"abc"}, nil, "abc abcd", "abc abcd"},
		{"Bearer header", nil, nil, "> Authorization: Bearer eyJhbGciOiJFUzI1NiJ9", "> Authorization: Bearer <redacted>"},
		{"Basic header", nil, nil, "> Authorization: Basic YWxpY2U6aHVudGVyMjI=", "> Authorization: Basic <redacted>"},
		{"opaque bearer token", nil, nil, "Bearer gho_16C7e42F292c6912E7710c838347Ae178B4a, then", "Bearer <redacted>, then"},
		{"words after the scheme are not tokens", nil, nil,
			"bearer challenge realm is not an http(s) URL; Basic authentication required", "bearer challenge realm is not an http(s) URL; Basic authentication required"},
		{"a challenge is not a token", nil, nil,
			`Www-Authenticate: Bearer realm="https://auth.example.com/token",service="x"`, `Www-Authenticate: Bearer realm="https://auth.example.com/token",service="x"`},
		{"unquoted realm", nil, nil, "Bearer realm=https://auth.example.com/token", "Bearer realm=https://auth.example.com/token"},
		{"token JSON", nil, nil, `{"token":"abc.def.ghi","access_token":"x","expires_in":300}`, `{"token":"<redacted>","access_token":"<redacted>","expires_in":300}`},
		{"query values", nil, nil, "GET /token?service=x&access_token=abcdef&scope=repository%3Aa%3Apull",
			"GET /token?service=x&access_token=<redacted>&scope=repository%3Aa%3Apull"},
		{"signed redirect", nil, nil, "https://s3.example/blob?X-Amz-Signature=abc&X-Amz-Date=1",
			"https://s3.example/blob?X-Amz-Signature=<redacted>&X-Amz-Date=<redacted>"},
		{"bare form field", nil, nil, "grant_type=password password=pw-1&x", "grant_type=password password=<redacted>&x"},
		{"already redacted URL stays", nil, nil, "GET https://r/t?token=%3Credacted%3E", "GET https://r/t?token=%3Credacted%3E"},
		{"nothing secret", []string{"s3cr3t-x"}, []Credential{alice}, "manifest HEAD https://r/v2/a/manifests/v1: 404", "manifest HEAD https://r/v2/a/manifests/v1: 404"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRedactor(tc.secrets...)
			r.AddCredentials(tc.creds...)
			if got := r.Redact(tc.in); got != tc.want {
				t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// A nil or zero Redactor applies the shape rules only.
func TestRedactorZero(t *testing.T) {
	var nilR *Redactor
	for _, r := range []*Redactor{nilR, {}} {
		if got := r.Redact("Bearer eyJabc.def.ghi hunter22"); got != "Bearer <redacted> hunter22" {
			t.Errorf("Redact = %q", got)
		}
	}
}

// ModuleRedactor knows a module's secrets as its keychain reads them: a
// password file with more than the one trailing newline the keychain
// trims, and a docker config's auth field.
func TestModuleRedactor(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte("file-pass-1234\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "config.json")
	if err := os.WriteFile(cfg, []byte(`{"auths":{"r.example":{"auth":"`+b64("dave:dc-pass-77")+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	ref := Reference{Registry: "r.example", Repository: "a", Tag: "v1"}
	for _, tc := range []struct {
		name string
		m    Module
		in   string
		want string
	}{
		{"password", Module{Auth: AuthConfig{Username: "alice", Password: "hunter22"}},
			"hunter22 " + b64("alice:hunter22"), "<redacted> <redacted>"},
		{"password file", Module{Auth: AuthConfig{Username: "bob", PasswordFile: pwFile}},
			"said file-pass-1234 twice: file-pass-1234. " + b64("bob:file-pass-1234"), "said <redacted> twice: <redacted>. <redacted>"},
		{"docker config", Module{Auth: AuthConfig{DockerConfig: cfg}},
			"dc-pass-77 " + b64("dave:dc-pass-77"), "<redacted> <redacted>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ModuleRedactor(tc.m, ref).Redact(tc.in); got != tc.want {
				t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// The shape rules' filter (shapeMayMatch) only skips regexps that cannot
// match: with and without it the spans are the same, case folding
// included (regexp's (?i) matches "baſic", U+017F).
func TestShapeSpansFilter(t *testing.T) {
	seeds := []string{
		"", "sha256:0123456789abcdef", "application/vnd.oci.image.index.v1+json", "registry/2.0",
		"> Authorization: Bearer eyJhbGciOiJFUzI1NiJ9", "BASIC YWxpY2U6aHVudGVyMjI=", "baſic YWxpY2U6aHVudGVyMjI=", "BEAREr\tabcdefgh12",
		"xbearer abcdefgh1234", `{"token":"abc.def.ghi"}`, `{"PASSWORD" : "p"}`, "a?token=x&b=1", "password=pw-1",
		"Bearer realm=https://auth.example.com/token", "bearer", "basi", "b", "béarer Zm9vYmFyYmF6",
	}
	f := func(s string) {
		got, want := shapeSpansOf(s, false), shapeSpansOf(s, true)
		if len(got) != len(want) {
			t.Fatalf("shapeSpans(%q) = %v, want %v", s, got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("shapeSpans(%q) = %v, want %v", s, got, want)
			}
		}
	}
	for _, s := range seeds {
		f(s)
		for _, t := range seeds { // and each pair, joined
			f(s + " " + t)
		}
	}
}

func FuzzShapeSpansFilter(f *testing.F) {
	for _, s := range []string{"Bearer eyJhbGciOiJFUzI1NiJ9", "baſic YWxpY2U6aHVudGVyMjI=", `{"token":"x"}`, "a?token=x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, want := shapeSpansOf(s, false), shapeSpansOf(s, true)
		if len(got) != len(want) {
			t.Fatalf("shapeSpans(%q) = %v, want %v", s, got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("shapeSpans(%q) = %v, want %v", s, got, want)
			}
		}
	})
}
