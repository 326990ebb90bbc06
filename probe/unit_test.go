package probe

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestClassifyTransportError(t *testing.T) {
	live := context.Background()
	expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	dial := func(err error) error {
		return &url.Error{Op: "Get", URL: "https://r/v2/", Err: &net.OpError{Op: "dial", Net: "tcp", Err: err}}
	}
	for _, tc := range []struct {
		name      string
		ctx       context.Context
		err       error
		tlsFailed bool
		want      Reason
	}{
		{"deadline", live, fmt.Errorf("x: %w", context.DeadlineExceeded), false, ReasonTimeout},
		{"expired context wins", expired, dial(syscall.ECONNREFUSED), false, ReasonTimeout},
		{"no such host", live, dial(&net.DNSError{Err: "no such host", Name: "r", IsNotFound: true}), false, ReasonDNS},
		{"dns timeout", live, dial(&net.DNSError{Err: "i/o timeout", Name: "r", IsTimeout: true}), false, ReasonTimeout},
		{"refused", live, dial(syscall.ECONNREFUSED), false, ReasonConnect},
		{"reset", live, dial(syscall.ECONNRESET), false, ReasonConnect},
		{"unreachable", live, dial(syscall.EHOSTUNREACH), false, ReasonConnect},
		{"eof", live, &url.Error{Op: "Get", URL: "u", Err: io.EOF}, false, ReasonConnect},
		{"unknown authority", live, &url.Error{Op: "Get", URL: "u", Err: x509.UnknownAuthorityError{}}, false, ReasonTLS},
		{"hostname", live, x509.HostnameError{Certificate: &x509.Certificate{}, Host: "r"}, false, ReasonTLS},
		{"expired cert", live, x509.CertificateInvalidError{Cert: &x509.Certificate{}, Reason: x509.Expired}, false, ReasonTLS},
		{"plain http answer", live, errors.New("http: server gave HTTP response to HTTPS client"), false, ReasonTLS},
		{"eof during handshake", live, io.EOF, true, ReasonTLS},
		{"net timeout", live, dial(timeoutErr{}), false, ReasonTimeout},
		{"redirect loop", live, &url.Error{Op: "Get", URL: "u", Err: errTooManyRedirects}, false, ReasonProtocol},
		// net/http's text when a reply's headers pass MaxResponseHeaderBytes:
		// the registry answered, badly (not connect).
		{"oversized headers", live, &url.Error{Op: "Get", URL: "u", Err: errors.New("net/http: server response headers exceeded 262144 bytes; aborted")}, false, ReasonProtocol},
	} {
		if got := classifyTransportError(tc.ctx, tc.err, tc.tlsFailed); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestStatusAndCodeReasons(t *testing.T) {
	for code, want := range map[int]Reason{401: ReasonUnauthorized, 403: ReasonForbidden, 404: ReasonNotFound,
		429: ReasonRateLimited, 500: ReasonServerError, 502: ReasonServerError, 503: ReasonServerError, 400: ReasonProtocol, 302: ReasonProtocol} {
		if got := statusReason(code); got != want {
			t.Errorf("status %d: %q, want %q", code, got, want)
		}
	}
	for code, want := range map[string]Reason{"UNAUTHORIZED": ReasonUnauthorized, "DENIED": ReasonForbidden, "NAME_UNKNOWN": ReasonNotFound,
		"MANIFEST_UNKNOWN": ReasonNotFound, "TOOMANYREQUESTS": ReasonRateLimited, "whatever": ReasonNone} {
		if got := codeReason(code); got != want {
			t.Errorf("code %s: %q, want %q", code, got, want)
		}
	}
	code, sum := errorBody([]byte(`{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}`))
	if code != "DENIED" || sum != "DENIED requested access to the resource is denied" {
		t.Errorf("errorBody: %q %q", code, sum)
	}
	if _, sum := errorBody([]byte(`{"details":"incorrect username or password"}`)); sum != "incorrect username or password" {
		t.Errorf("docker hub token error: %q", sum)
	}
	if _, sum := errorBody([]byte("{\"error\":\"invalid_grant\",\"error_description\":\"bad\\u0007" + strings.Repeat("x", 500) + "\"}")); len(sum) > 203 || strings.ContainsRune(sum, 7) {
		t.Errorf("summary not bounded or not printable: %q", sum)
	}
	if code, sum := errorBody([]byte("<html>")); code != "" || sum != "" {
		t.Errorf("non-JSON body: %q %q", code, sum)
	}
}

func TestRedaction(t *testing.T) {
	for in, want := range map[string]string{
		"https://user:pw@r.example/v2/":                                    "https://r.example/v2/",
		"https://auth.example/token?service=s&scope=repository%3Aa%3Apull": "https://auth.example/token?service=s&scope=repository%3Aa%3Apull",
		"https://auth.example/token?access_token=abc&service=s":            "https://auth.example/token?access_token=%3Credacted%3E&service=s",
		"https://s3.example/blob?X-Amz-Signature=abc&X-Amz-Credential=k":   "https://s3.example/blob?X-Amz-Credential=%3Credacted%3E&X-Amz-Signature=%3Credacted%3E",
		"https://r/v2/?password=p&refresh_token=t":                         "https://r/v2/?password=%3Credacted%3E&refresh_token=%3Credacted%3E",
	} {
		u, err := url.Parse(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := redactURL(u); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{"Bearer eyJabc.def.ghi": "Bearer <redacted>", "Basic dXNlcjpwdw==": "Basic <redacted>", "rawtoken": "<redacted>"} {
		if got := redactAuthorization(in); got != want {
			t.Errorf("redactAuthorization(%q) = %q, want %q", in, got, want)
		}
	}
}

// Only the listed headers are recorded, credentials redacted: a bearer
// token sent, a signed redirect received (both in a Location that parses
// and one that does not), a known secret a registry echoes in any header,
// and never a cookie.
func TestRecordHeaders(t *testing.T) {
	sent := http.Header{"Authorization": {"Bearer eyJabc.def.ghi"}, "Accept": {"a", "b"}, "Cookie": {"session=1"}}
	received := http.Header{
		"Location":         {"https://s3.example/blob?X-Amz-Signature=abc", "%zz?sig=abc"},
		"Set-Cookie":       {"session=2"},
		"Retry-After":      {"30"},
		"Www-Authenticate": {`Basic realm="echo pw-s3cret"`},
	}
	got := map[string][]string{}
	red := NewRedactor("pw-s3cret")
	recordHeaders(got, "> ", sent, recordedRequestHeaders, red)
	recordHeaders(got, "< ", received, recordedResponseHeaders, red)
	want := map[string][]string{
		"> Authorization":    {"Bearer <redacted>"},
		"> Accept":           {"a", "b"},
		"< Location":         {"https://s3.example/blob?X-Amz-Signature=%3Credacted%3E", "<unparseable>"},
		"< Retry-After":      {"30"},
		"< Www-Authenticate": {`Basic realm="echo <redacted>"`},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("recorded %q, want %q", got, want)
	}
	// The recording is a copy: changing the request afterwards changes
	// nothing recorded.
	sent["Accept"][0] = "changed"
	if got["> Accept"][0] != "a" {
		t.Error("recorded values share the request's slice")
	}
}

func TestTokenLifetime(t *testing.T) {
	for in, want := range map[int64]time.Duration{
		0:       54 * time.Second, // absent: the spec's 60s, less a tenth
		-5:      54 * time.Second,
		60:      54 * time.Second,
		300:     270 * time.Second,
		3600:    3570 * time.Second, // the margin is at most 30s
		1 << 40: 24*time.Hour - 30*time.Second,
	} {
		if got := tokenLifetime(in); got != want {
			t.Errorf("tokenLifetime(%d) = %v, want %v", in, got, want)
		}
	}
}

func TestModuleKeychain(t *testing.T) {
	hub, _ := ParseReference("nginx")
	local, _ := ParseReference("localhost:5000/app")
	dir := t.TempDir()
	cfg := `{"auths":{
		"https://index.docker.io/v1/": {"auth": "` + base64.StdEncoding.EncodeToString([]byte("hubuser:hub-pw")) + `"},
		"docker.io": {"username": "hub2", "password": "hub2-pw"},
		"localhost:5000": {"identitytoken": "refresh-tok", "username": "<token>"},
		"empty.example": {}
	}}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	kc, err := ModuleKeychain(Module{Auth: AuthConfig{DockerConfig: dir}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := kc.Resolve(hub)
	if err != nil {
		t.Fatal(err)
	}
	// docker.io ≡ https://index.docker.io/v1/; keys in sorted order.
	if len(got) != 2 || got[0].Username != "hub2" || got[1].Username != "hubuser" || got[1].Password != "hub-pw" {
		t.Errorf("docker.io credentials %+v", got)
	}
	got, _ = kc.Resolve(local)
	if len(got) != 1 || got[0].IdentityToken != "refresh-tok" {
		t.Errorf("identity token credentials %+v", got)
	}
	other, _ := ParseReference("ghcr.io/a/b")
	if got, _ := kc.Resolve(other); len(got) != 0 {
		t.Errorf("no entry for ghcr.io, got %+v", got)
	}

	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("file-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	kc, _ = ModuleKeychain(Module{Auth: AuthConfig{Username: "u", PasswordFile: pw, DockerConfig: dir, Registries: []string{"docker.io"}}})
	if got, _ := kc.Resolve(hub); len(got) != 1 || got[0].Password != "file-pw" || got[0].Username != "u" {
		t.Errorf("password_file wins over docker_config: %+v", got)
	}
	t.Setenv("DOCKER_CONFIG", dir)
	kc, _ = ModuleKeychain(Module{})
	if got, _ := kc.Resolve(hub); len(got) != 2 {
		t.Errorf("DOCKER_CONFIG credentials %+v", got)
	}
	t.Setenv("DOCKER_CONFIG", "")
	kc, _ = ModuleKeychain(Module{})
	if got, err := kc.Resolve(hub); len(got) != 0 || err != nil {
		t.Errorf("anonymous: %+v %v", got, err)
	}
	for _, a := range []AuthConfig{{Password: "p"}, {Username: "u", Password: "p", PasswordFile: pw}} {
		if _, err := ModuleKeychain(Module{Auth: a}); err == nil {
			t.Errorf("ModuleKeychain(%+v) accepted an unusable module", a)
		}
	}
	// A broken file never quotes its content (which may hold a password).
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"auths":{"x":{"password":"leaky-pw`), 0o600); err != nil {
		t.Fatal(err)
	}
	kc, _ = ModuleKeychain(Module{Auth: AuthConfig{DockerConfig: dir}})
	if _, err := kc.Resolve(hub); err == nil || strings.Contains(err.Error(), "leaky") {
		t.Errorf("broken docker config: %v", err)
	}
}

func TestCredentialID(t *testing.T) {
	a := Credential{Username: "u", Password: "secret-pw"}
	b := Credential{Username: "u", Password: "other-pw"}
	if credentialID(a) == credentialID(b) || credentialID(Credential{}) != "anonymous" || credentialsID(nil) != "anonymous" {
		t.Errorf("ids: %s %s", credentialID(a), credentialID(b))
	}
	if strings.Contains(credentialID(a), "secret") || credentialsID([]Credential{a, b}) == credentialsID([]Credential{b, a}) {
		t.Errorf("credentialsID must hash, in order")
	}
}
