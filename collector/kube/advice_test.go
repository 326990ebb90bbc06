package kube

import (
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/imagepull/imagepull_exporter/probe"
)

// The TLS advice follows what failed. The plain-HTTP and unknown-CA cases
// run against real registries in cmd/imagepull_exporter
// (TestDiagnoseAdviceMatchesTheFailure); the expired certificate and the
// wrong name, which testenv's registries cannot be made to serve, are
// checked here with the texts crypto/x509 itself produces.
func TestTLSAdvice(t *testing.T) {
	ref, err := probe.ParseReference("registry.example.com:5000/team/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	cert := &x509.Certificate{DNSNames: []string{"other.example.com"}, NotAfter: time.Unix(0, 0)}
	wrap := func(e error) string {
		return "ping GET https://registry.example.com:5000/v2/: tls: failed to verify certificate: " + e.Error()
	}
	for _, c := range []struct {
		name, err    string
		want, unwant []string
	}{
		{"expired", wrap(x509.CertificateInvalidError{Cert: cert, Reason: x509.Expired}),
			[]string{"the certificate of registry.example.com:5000 has expired or is not yet valid: renew it"}, []string{"ca_file", "plain"}},
		{"wrong name", wrap(x509.HostnameError{Certificate: cert, Host: "registry.example.com"}),
			[]string{"is issued for other names", "reissue it with registry.example.com:5000"}, []string{"ca_file", "plain"}},
		{"unknown authority", wrap(x509.UnknownAuthorityError{Cert: cert}),
			[]string{"signed by a CA this machine does not trust", "module default the CA (tls.ca_file, or probe --ca-file)", "certs.d/registry.example.com:5000/ca.crt"}, []string{"plain"}},
		{"plain HTTP", "ping GET https://registry.example.com:5000/v2/: http: server gave HTTP response to HTTPS client",
			[]string{"speaks plain HTTP, not HTTPS", `server = "http://registry.example.com:5000"`}, []string{"ca_file", "ca.crt"}},
		{"other", "ping GET https://registry.example.com:5000/v2/: remote error: tls: handshake failure",
			[]string{"TLS with registry.example.com:5000 failed"}, nil},
	} {
		got := tlsAdvice(ref, "default", probe.Result{Ref: ref, Reason: probe.ReasonTLS, Error: c.err})
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: %q lacks %q", c.name, got, w)
			}
		}
		for _, u := range c.unwant {
			if strings.Contains(got, u) {
				t.Errorf("%s: %q says %q, which does not fit", c.name, got, u)
			}
		}
	}
}
