package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/imagepull/imagepull_exporter/collector/web"
	"github.com/imagepull/imagepull_exporter/internal/testenv"
)

// runBinaryStdin runs the exporter to completion with stdin and returns
// its output and exit code.
func runBinaryStdin(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, exporterBin(t), args...)
	// kingpin wraps help to $COLUMNS (else the terminal's width, else
	// 80): pin it, so help line counts do not depend on the shell.
	cmd.Env = append(os.Environ(), "COLUMNS=80")
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return out.String(), errOut.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running %v: %v", args, err)
	}
	return out.String(), errOut.String(), 0
}

// Each command's --help lists its own flags: `probe --help` is not the
// server's hundred lines (issue 14).
func TestHelpShowsEachCommandsFlags(t *testing.T) {
	for _, c := range []struct {
		args          []string
		want, unwant  []string
		maxLines      int
		wantUsageLine string
	}{
		// 55: the probe's own flags, the credential provider flags (a
		// probe resolves credentials as the node would) among them.
		{[]string{"probe", "--help"},
			[]string{"-]plain-http", "-]insecure", "--ca-file", "--username", "-]password-stdin", "--output", "--module", "--config.file",
				"--kube.credential-provider-config", "--kube.credential-provider-bin-dir"},
			[]string{"--web.listen-address", "--kube.namespaces", "--probe.concurrency", "--log.level", "--shard", "--password="},
			55, "usage: imagepull_exporter probe [<flags>] <image>"},
		{[]string{"diagnose", "image", "--help"},
			[]string{"--module", "--kubeconfig", "--namespace", "--service-account", "--output", "--kube.credential-provider-config"},
			[]string{"--web.listen-address", "--kube.namespaces", "plain-http"},
			45, "usage: imagepull_exporter diagnose image [<flags>] <image>"},
		{[]string{"serve", "--help"},
			[]string{"--web.listen-address", "--web.config.file", "--kube.namespaces", "-]kube.watch-events", "--kubeconfig",
				"--log.level", "--log.format", "--shard", "--node.name", "-]config.check", "-]web.enable-probe-endpoint"},
			[]string{"plain-http", "password-stdin"},
			0, "usage: imagepull_exporter serve [<flags>]"},
		{[]string{"--help"},
			[]string{"--config.file", "serve*", "probe [<flags>] <image>", "diagnose image"},
			[]string{"--web.listen-address", "--kube.namespaces", "--kube.credential-provider-config"},
			40, "usage: imagepull_exporter [<flags>] <command>"},
	} {
		out, errOut, code := runBinary(t, c.args...)
		if code != 0 {
			t.Errorf("%v: exit %d\n%s", c.args, code, errOut)
			continue
		}
		if !strings.HasPrefix(out, c.wantUsageLine) {
			t.Errorf("%v: starts %q, want %q", c.args, strings.SplitN(out, "\n", 2)[0], c.wantUsageLine)
		}
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("%v lacks %s:\n%s", c.args, w, out)
			}
		}
		for _, u := range c.unwant {
			if strings.Contains(out, u) {
				t.Errorf("%v lists %s, which is not its flag:\n%s", c.args, u, out)
			}
		}
		if n := strings.Count(out, "\n"); c.maxLines > 0 && n > c.maxLines {
			t.Errorf("%v is %d lines, want at most %d", c.args, n, c.maxLines)
		}
	}
}

// The server's flags work without naming serve, as every manifest of
// deploy/ passes them; and they belong after their command.
func TestServeIsTheDefaultCommand(t *testing.T) {
	for _, c := range []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"--web.listen-address=127.0.0.1:0", "--log.level=debug", "--kube.max-registries=3", "--no-kube.watch-events", "--shard=0", "--total-shards=1", "--config.check"},
			0, "default.yml (embedded): OK: 1 modules, 5 targets\n", ""},
		{[]string{"serve", "--config.check", "--log.format=json"}, 0, "default.yml (embedded): OK: 1 modules, 5 targets\n", ""},
		{[]string{"--log.level=loud", "--config.check"}, 2, "", "imagepull_exporter: unrecognized log level loud; see --help\n"},
		// A server flag before another command is refused, not ignored.
		{[]string{"--web.listen-address=127.0.0.1:0", "probe", "x"}, 2, "", "imagepull_exporter: unexpected probe; see --help\n"},
		{[]string{"probe", "x", "--web.listen-address=127.0.0.1:0"}, 2, "", "imagepull_exporter: unknown long flag '--web.listen-address'; see --help\n"},
		{[]string{"probe", "-o", "yaml", "x"}, 2, "", "imagepull_exporter: enum value must be one of text,json, got 'yaml'; see --help\n"},
	} {
		stdout, stderr, code := runBinary(t, c.args...)
		if code != c.code || stdout != c.stdout || stderr != c.stderr {
			t.Errorf("%v:\n exit %d, stdout %q, stderr %q\nwant exit %d, stdout %q, stderr %q", c.args, code, stdout, stderr, c.code, c.stdout, c.stderr)
		}
	}
}

// decodeStrict decodes one JSON document into v, refusing unknown fields
// and trailing data: the documented shape is the whole shape.
func decodeStrict(t *testing.T, what, doc string, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(doc))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v\n%s", what, err, doc)
	}
	if dec.More() {
		t.Fatalf("%s: more than one JSON document:\n%s", what, doc)
	}
}

// probe's flags build a module on the fly (no configuration file), against
// real registries: plain HTTP with basic auth, and HTTPS with a private CA.
func TestProbeFlagsWithoutConfig(t *testing.T) {
	pw := randomString("stdin-pw-")
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{Auth: testenv.RegistryAuthBasic,
		Users: map[string]testenv.TokenUser{"alice": {Password: pw}}})
	digest := reg.Push(t, "demo/app", "v1")
	img := reg.Ref("demo/app", "v1")
	secrets := []string{pw, base64.StdEncoding.EncodeToString([]byte("alice:" + pw)), "wrong-" + pw,
		base64.StdEncoding.EncodeToString([]byte("alice:wrong-" + pw))}

	t.Run("text", func(t *testing.T) {
		out, errOut, code := runBinaryStdin(t, pw+"\n", "probe", "--plain-http", "--username", "alice", "--password-stdin", img, "-v")
		if code != 0 {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
		for _, want := range []string{"module:      default, with --plain-http --username\n", "result:      success\n",
			"digest:      " + digest + "\n", "auth:        ok\n", "> Authorization: Basic <redacted>"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		assertNoSecret(t, "probe output", out+errOut, secrets)
	})

	t.Run("json", func(t *testing.T) {
		out, errOut, code := runBinaryStdin(t, pw+"\r\n", "probe", "--plain-http", "--username", "alice", "--password-stdin", "-o", "json", "-v", img)
		if code != 0 {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
		assertNoSecret(t, "probe -o json", out+errOut, secrets)
		var r web.ProbeReport
		decodeStrict(t, "probe -o json", out, &r)
		if r.Schema != 1 || r.Image != img || r.Registry != reg.Addr || r.Repository != "demo/app" || r.Reference != "v1" ||
			r.Module != "default" || !reflect.DeepEqual(r.Overrides, []string{"plain-http", "username"}) || r.Scheme != "http" ||
			!r.Success || r.Reason != "" || r.Error != "" || r.Digest != digest ||
			r.MediaType != "application/vnd.docker.distribution.manifest.v2+json" || r.RateLimit != nil || r.TLSCertExpiry != nil ||
			!r.Auth.Checked || !r.Auth.OK || r.Phases["total"] <= 0 {
			t.Errorf("probe -o json:\n%s", out)
		}
		var kinds []string
		for _, rq := range r.Requests {
			kinds = append(kinds, fmt.Sprintf("%s %s %d", rq.Kind, rq.Method, rq.Status))
		}
		// Basic auth: the unauthenticated ping, the ping with the
		// credentials, then the HEAD (no token exchange).
		if want := []string{"ping GET 401", "ping GET 200", "manifest_head HEAD 200"}; !reflect.DeepEqual(kinds, want) {
			t.Errorf("requests %v, want %v", kinds, want)
		}
		if h := r.Requests[len(r.Requests)-1].Headers["> Authorization"]; len(h) != 1 || h[0] != "Basic <redacted>" {
			t.Errorf("-v headers: Authorization %q, want it sent and redacted", h)
		}
		// Without -v, no headers.
		out, _, _ = runBinaryStdin(t, pw, "probe", "--plain-http", "--username", "alice", "--password-stdin", "-o", "json", img)
		if strings.Contains(out, `"headers"`) {
			t.Errorf("headers without -v:\n%s", out)
		}
	})

	t.Run("failures", func(t *testing.T) {
		for _, c := range []struct {
			stdin  string
			args   []string
			reason string
			scheme string
		}{
			{"wrong-" + pw + "\n", []string{"--plain-http", "--username", "alice", "--password-stdin"}, "unauthorized", "http"},
			// The registry speaks plain HTTP; the default module, HTTPS.
			{"", nil, "tls", "https"},
			// Anonymous, where the registry asks for credentials.
			{"", []string{"--plain-http"}, "no_credentials", "http"},
		} {
			args := append(append([]string{"probe", "-o", "json"}, c.args...), reg.Ref("demo/app", "v1"))
			out, errOut, code := runBinaryStdin(t, c.stdin, args...)
			assertNoSecret(t, fmt.Sprint(args), out+errOut, secrets)
			var r web.ProbeReport
			decodeStrict(t, fmt.Sprint(args), out, &r)
			if code != exitFailure || r.Success || r.Reason != c.reason || r.Scheme != c.scheme || r.Error == "" {
				t.Errorf("%v: exit %d, success %v, reason %q, scheme %q, error %q; want exit 1, reason %s over %s",
					args, code, r.Success, r.Reason, r.Scheme, r.Error, c.reason, c.scheme)
			}
		}
	})

	t.Run("usage", func(t *testing.T) {
		_, headsBefore := reg.ManifestRequests()
		for _, c := range []struct {
			stdin, want string
			args        []string
		}{
			{"", "--password-stdin needs --username", []string{"--password-stdin"}},
			{"", "--username needs --password-stdin", []string{"--username", "alice"}},
			{"", "stdin holds no password", []string{"--username", "alice", "--password-stdin"}},
			{"\nsecond-line", "stdin holds no password", []string{"--username", "alice", "--password-stdin"}},
			{strings.Repeat("x", 70<<10) + "\n", "longer than 64 KiB", []string{"--username", "alice", "--password-stdin"}},
			{"", "--plain-http excludes --insecure and --ca-file", []string{"--plain-http", "--insecure"}},
			{"", "--ca-file: open /nonexistent/ca.pem: no such file or directory", []string{"--ca-file", "/nonexistent/ca.pem"}},
			{"", "holds no PEM certificate", []string{"--ca-file", filepath.Join(testenv.RepoRoot(t), "go.mod")}},
		} {
			args := append(append([]string{"probe", "-o", "json"}, c.args...), img)
			out, errOut, code := runBinaryStdin(t, c.stdin, args...)
			if code != exitUsage || out != "" || !strings.Contains(errOut, c.want) {
				t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2, nothing on stdout, %q", c.args, code, out, errOut, c.want)
			}
		}
		// A usage error is said before anything is sent.
		if _, heads := reg.ManifestRequests(); heads != headsBefore {
			t.Errorf("usage errors sent %d manifest HEADs, want none", heads-headsBefore)
		}
	})

	t.Run("tls", func(t *testing.T) {
		tlsReg := testenv.StartRegistry(t, testenv.RegistryOptions{TLS: true})
		tlsDigest := tlsReg.Push(t, "demo/app", "v1")
		timg := tlsReg.Ref("demo/app", "v1")
		for _, c := range []struct {
			args       []string
			code       int
			reason     string
			certExpiry bool
		}{
			{nil, 1, "tls", false},
			{[]string{"--ca-file", tlsReg.Cert.CertFile}, 0, "", true},
			{[]string{"--insecure"}, 0, "", false},
			{[]string{"--plain-http"}, 1, "protocol", false},
		} {
			args := append(append([]string{"probe", "-o", "json"}, c.args...), timg)
			out, errOut, code := runBinary(t, args...)
			var r web.ProbeReport
			decodeStrict(t, fmt.Sprint(args), out, &r)
			if code != c.code || r.Reason != c.reason || (r.TLSCertExpiry != nil) != c.certExpiry {
				t.Errorf("%v: exit %d, reason %q, tls_cert_expiry %v; want exit %d, reason %q, expiry set %v\n%s",
					c.args, code, r.Reason, r.TLSCertExpiry, c.code, c.reason, c.certExpiry, out+errOut)
			}
			if c.code == 0 && (r.Digest != tlsDigest || r.Scheme != "https") {
				t.Errorf("%v: digest %s scheme %s, want %s over https", c.args, r.Digest, r.Scheme, tlsDigest)
			}
			if c.certExpiry && !r.TLSCertExpiry.Equal(tlsReg.Cert.Cert.NotAfter) {
				t.Errorf("tls_cert_expiry %v, want the certificate's %v", r.TLSCertExpiry, tlsReg.Cert.Cert.NotAfter)
			}
		}
	})
}

// With --config.file and --module, the flags adjust the module: the
// transport flags replace its plain_http and tls, --username its
// credentials; what they do not name stays.
func TestProbeFlagsAdjustAModule(t *testing.T) {
	r := startRealRegistry(t) // modules inline (alice), file (bob), wrong: all plain_http
	img := r.reg.Addr + "/demo/app:v1"
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yml")
	writeFile(t, cfg, fmt.Sprintf(`
modules:
  https-alice:
    timeout: 3s
    auth: {username: alice, password: %q, registries: [%q]}
`, r.alicePW, r.reg.Addr))
	secrets := append(r.secrets(), "not-"+r.alicePW)
	for _, c := range []struct {
		name      string
		stdin     string
		args      []string
		code      int
		overrides []string
		reason    string
	}{
		// The module's HTTPS fails against this plain-HTTP registry...
		{"module as is", "", []string{"--config.file", cfg, "--module", "https-alice"}, 1, []string{}, "tls"},
		// ...--plain-http fixes the transport and keeps alice's credentials.
		{"--plain-http keeps the credentials", "", []string{"--config.file", cfg, "--module", "https-alice", "--plain-http"}, 0, []string{"plain-http"}, ""},
		// The wrong password of module "wrong" is replaced.
		{"--username replaces the credentials", r.bobPW + "\n", []string{"--config.file", r.configPath, "--module", "wrong", "--username", "bob", "--password-stdin"}, 0, []string{"username"}, ""},
		{"module wrong as is", "", []string{"--config.file", r.configPath, "--module", "wrong"}, 1, []string{}, "unauthorized"},
	} {
		args := append(append([]string{"probe", "-o", "json"}, c.args...), img)
		out, errOut, code := runBinaryStdin(t, c.stdin, args...)
		assertNoSecret(t, c.name, out+errOut, secrets)
		var rep web.ProbeReport
		decodeStrict(t, c.name, out, &rep)
		if code != c.code || rep.Reason != c.reason || !reflect.DeepEqual(rep.Overrides, c.overrides) {
			t.Errorf("%s: exit %d, reason %q, overrides %q; want exit %d, reason %q, overrides %q\n%s%s",
				c.name, code, rep.Reason, rep.Overrides, c.code, c.reason, c.overrides, out, errOut)
		}
		if c.code == 0 && (!rep.Auth.OK || rep.Digest != r.digest) {
			t.Errorf("%s: auth ok %v, digest %s; want authenticated, %s", c.name, rep.Auth.OK, rep.Digest, r.digest)
		}
	}
}
