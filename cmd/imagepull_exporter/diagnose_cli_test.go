package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagepull/imagepull_exporter/collector/kube"
	"github.com/imagepull/imagepull_exporter/internal/testenv"
)

// diagnose's advice matches the failure, against real registries: a
// plain-HTTP registry gets plain-HTTP advice, never a CA's; an HTTPS one
// with a private CA gets the CA's; an HTTPS registry probed over plain HTTP
// is told to drop plain_http. -o json carries the same diagnosis.
func TestDiagnoseAdviceMatchesTheFailure(t *testing.T) {
	plain := testenv.StartRegistry(t, testenv.RegistryOptions{})
	plainDigest := plain.Push(t, "demo/app", "v1")
	tlsReg := testenv.StartRegistry(t, testenv.RegistryOptions{TLS: true})
	tlsReg.Push(t, "demo/app", "v1")
	cfg := filepath.Join(t.TempDir(), "config.yml")
	writeFile(t, cfg, fmt.Sprintf(`
modules:
  local: {plain_http: true, timeout: 5s}
  private-ca: {timeout: 5s, tls: {ca_file: %q}}
`, tlsReg.Cert.CertFile))
	for _, c := range []struct {
		name           string
		image, module  string
		code           int
		reason, scheme string
		want           []string
		unwant         []string
	}{
		{"plain-HTTP registry, HTTPS module", plain.Ref("demo/app", "v1"), "", 1, "tls", "https",
			[]string{plain.Addr + " speaks plain HTTP, not HTTPS", "plain_http: true", `server = "http://` + plain.Addr + `"`},
			[]string{"ca_file", "ca.crt", " CA ", "--ca-file"}},
		{"plain-HTTP registry, --module local", plain.Ref("demo/app", "v1"), "local", 0, "", "http",
			[]string{"serves v1 as " + plainDigest}, nil},
		{"private CA, default module", tlsReg.Ref("demo/app", "v1"), "", 1, "tls", "https",
			[]string{"signed by a CA this machine does not trust", "tls.ca_file", "certs.d/" + tlsReg.Addr + "/ca.crt"},
			[]string{"plain HTTP"}},
		{"private CA, --module private-ca", tlsReg.Ref("demo/app", "v1"), "private-ca", 0, "", "https", nil, nil},
		{"HTTPS registry, plain-HTTP module", tlsReg.Ref("demo/app", "v1"), "local", 1, "protocol", "http",
			[]string{"answered 400 to plain HTTP", "module local has plain_http: true"}, []string{"certs.d"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := []string{"--config.file", cfg, "diagnose", "image", c.image}
			if c.module != "" {
				args = append(args, "--module", c.module)
			}
			text, errOut, code := runBinary(t, args...)
			if code != c.code {
				t.Errorf("exit %d, want %d\n%s%s", code, c.code, text, errOut)
			}
			for _, w := range c.want {
				if !strings.Contains(text, w) {
					t.Errorf("the advice lacks %q:\n%s", w, text)
				}
			}
			for _, u := range c.unwant {
				if strings.Contains(text, u) {
					t.Errorf("the advice says %q, which does not fit the failure:\n%s", u, text)
				}
			}
			out, errOut, jcode := runBinary(t, append(args, "-o", "json")...)
			var rep kube.DiagnoseReport
			decodeStrict(t, "diagnose -o json", out, &rep)
			wantModule := c.module
			if wantModule == "" {
				wantModule = "default"
			}
			if jcode != c.code || rep.Schema != 1 || rep.Pullable != (c.code == 0) || rep.Pod != nil || len(rep.Images) != 1 {
				t.Fatalf("-o json: exit %d\n%s%s", jcode, out, errOut)
			}
			im := rep.Images[0]
			if im.Image != c.image || im.Reference != c.image || im.Module != wantModule || im.Scheme != c.scheme ||
				im.Pullable != (c.code == 0) || im.Reason != c.reason || im.Kubelet != nil || im.Container != "" {
				t.Errorf("-o json image: %+v", im)
			}
			// The verdict is the text's sentence (a success's ends with
			// its duration, which differs from run to run).
			verdict, _, _ := strings.Cut(im.Verdict, ") in ")
			if !strings.Contains(text, verdict) || verdict == "" {
				t.Errorf("-o json verdict %q is not the text's:\n%s", im.Verdict, text)
			}
		})
	}
	if _, errOut, code := runBinary(t, "--config.file", cfg, "diagnose", "image", plain.Ref("demo/app", "v1"), "--module", "nope"); code != exitFailure ||
		errOut != `imagepull_exporter: module "nope" is not defined in `+cfg+"\n" {
		t.Errorf("--module nope: exit %d, %q", code, errOut)
	}
}
