package credprovider_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/imagepull/imagepull_exporter/collector/config"
	"github.com/imagepull/imagepull_exporter/collector/kube"
	"github.com/imagepull/imagepull_exporter/internal/testenv"
	"github.com/imagepull/imagepull_exporter/probe"
)

// TestDiagnoseExplainsTheProviders: `diagnose image` with the node's
// credential providers says, per provider, whether the kubelet would run
// it for the image and what it answered (registry keys, never the
// credential); with the covering plugin working the image is pullable
// with its credentials; with that plugin crashing, diagnose names the
// failure and probes as the node would, without that plugin's credentials
// (here: none, so the registry asks for them).
func TestDiagnoseExplainsTheProviders(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{Auth: testenv.RegistryAuthToken,
		Users: map[string]testenv.TokenUser{"cloud": {Password: "token-1", Pull: []string{"**"}}}})
	reg.Push(t, "team/app", "v1")
	c := newClock()
	covering := &plugin{name: "cloud-credential-provider", matchImages: []string{reg.Addr}}
	elsewhere := &plugin{name: "gcr-credential-provider", matchImages: []string{"*.gcr.io"}}
	ps := setup(t, c, 0, covering, elsewhere)
	// The default module has no credentials of its own: it uses every
	// provider, as the node does.
	cfg, err := config.ParseWith("test.yml", []byte("modules:\n  default:\n    plain_http: true\n    timeout: 5s\n"),
		config.Options{CredentialProviders: ps})
	if err != nil {
		t.Fatal(err)
	}
	image := reg.Ref("team/app", "v1")
	diagnose := func() (bool, string) {
		t.Helper()
		prober := probe.NewProber(probe.ProberOptions{UserAgent: testUA, Now: c.Now})
		defer prober.Close()
		var out bytes.Buffer
		d := &kube.Diagnoser{Config: cfg, Prober: prober, Out: &out, CredentialProviders: ps}
		ok, err := d.DiagnoseImage(context.Background(), image, "", "")
		if err != nil {
			t.Fatalf("DiagnoseImage: %v\n%s", err, out.String())
		}
		if strings.Contains(out.String(), "token-1") {
			t.Errorf("diagnose output carries the plugin's credential:\n%s", out.String())
		}
		return ok, out.String()
	}
	wantLines := func(out string, lines ...string) {
		t.Helper()
		for _, l := range lines {
			if !strings.Contains(out, l) {
				t.Errorf("diagnose output lacks %q:\n%s", l, out)
			}
		}
	}

	ok, out := diagnose()
	if !ok {
		t.Errorf("with the covering plugin working: not pullable\n%s", out)
	}
	wantLines(out,
		"credential providers of ",
		"- cloud-credential-provider: answered credentials for "+reg.Addr,
		"- gcr-credential-provider: not run: its matchImages (*.gcr.io) do not cover "+reg.Addr+"/team/app",
	)
	if n := runs(t, elsewhere); n != 0 {
		t.Errorf("the plugin whose matchImages miss the image ran %d times", n)
	}

	setMode(t, covering, "crash")
	c.Advance(24 * time.Hour) // past any cache entry
	ok, out = diagnose()
	if ok {
		t.Errorf("with the covering plugin crashing: pullable\n%s", out)
	}
	wantLines(out,
		"- cloud-credential-provider: FAILED: ",
		"(probing as the node would: without the failed plugin's credentials)",
		"CANNOT PULL: "+reg.Addr+" requires credentials",
	)
}
