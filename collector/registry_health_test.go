package collector

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/imagepull/imagepull_exporter/collector/config"
	"github.com/imagepull/imagepull_exporter/internal/testenv"
	"github.com/imagepull/imagepull_exporter/probe"
)

// TestRegistryJudgedAsAWhole runs the scheduler against real distribution
// registries (issue 11):
//   - an HTTPS registry probed by two modules, one with the registry's CA
//     and one with a wrong CA: the registry is up (imagepull_registry_up 1,
//     no failure reason), the wrong-CA target alone fails with tls, and the
//     join's cause is registry_ok, not tls;
//   - a private registry (token auth) probed without credentials: the
//     target's reason is no_credentials, the registry is up, and the join's
//     cause is registry_ok;
//   - a stopped registry: down, failure reason connect, the join's cause
//     connect.
func TestRegistryJudgedAsAWhole(t *testing.T) {
	tlsReg := testenv.StartRegistry(t, testenv.RegistryOptions{TLS: true})
	tlsReg.Push(t, "team/app", "v1")
	wrongCA := testenv.NewSelfSignedCert(t, "", time.Time{}, "127.0.0.1")

	private := testenv.StartRegistry(t, testenv.RegistryOptions{Auth: testenv.RegistryAuthToken})
	private.Push(t, "team/secret", "v1")

	stopped := testenv.StartRegistry(t, testenv.RegistryOptions{})
	stopped.Push(t, "team/app", "v1")
	stopped.Stop()

	mod := func(ca string, plain bool) probe.Module {
		m := probe.Module{Timeout: 5 * time.Second, Interval: time.Hour, AuthCheckInterval: time.Hour, PlainHTTP: plain}
		m.TLS.CAFile = ca
		return m
	}
	cfg := &config.Config{Modules: map[string]probe.Module{
		"good-ca":  mod(tlsReg.Cert.CertFile, false),
		"wrong-ca": mod(wrongCA.CertFile, false),
		"plain":    mod("", true),
	}}
	target := func(name, image, module string) config.TargetConfig {
		c := tc(t, name, image, time.Hour)
		c.Module = module
		return c
	}
	cfg.Targets = []config.TargetConfig{
		target("healthy", tlsReg.Ref("team/app", "v1"), "good-ca"),
		target("bad-ca", tlsReg.Ref("team/app", "v1"), "wrong-ca"),
		target("private", private.Ref("team/secret", "v1"), "plain"),
		target("down", stopped.Ref("team/app", "v1"), "plain"),
	}
	// Probe every target at once: two targets of one registry are
	// otherwise spread over the (one-hour) interval.
	s := NewScheduler(SchedulerOptions{})
	s.ApplyConfig(cfg)
	for _, r := range s.runners {
		r.delay = 0
	}
	runScheduler(t, s)
	for _, name := range []string{"healthy", "bad-ca", "private", "down"} {
		testenv.WaitFor(t, name+" probed", probed(s, name, 1))
	}

	reason := func(name string) probe.Reason {
		st, _ := status(s, name)
		return st.Last.Reason
	}
	for name, want := range map[string]probe.Reason{
		"healthy": probe.ReasonNone, "bad-ca": probe.ReasonTLS,
		"private": probe.ReasonNoCredentials, "down": probe.ReasonConnect,
	} {
		if got := reason(name); got != want {
			st, _ := status(s, name)
			t.Errorf("target %s: reason %q (%s), want %q", name, got, st.Last.Error, want)
		}
	}
	if st, _ := status(s, "private"); !strings.Contains(st.Last.Error, probe.NoCredentialsHint) {
		t.Errorf("private: error %q lacks the hint %q", st.Last.Error, probe.NoCredentialsHint)
	}

	samples := gather(t, s)
	for _, c := range []struct {
		registry string
		up       float64
		down     probe.Reason // the one failure reason at 1, if any
		cause    string       // the join's cause
	}{
		{tlsReg.Addr, 1, "", CauseRegistryOK},
		{private.Addr, 1, "", CauseRegistryOK},
		{stopped.Addr, 0, probe.ReasonConnect, string(probe.ReasonConnect)},
	} {
		reg := fmt.Sprintf("registry=%q", c.registry)
		if got := value(t, samples, "imagepull_registry_up", reg); got != c.up {
			t.Errorf("imagepull_registry_up{%s} = %v, want %v", reg, got, c.up)
		}
		reasons := series(samples, "imagepull_registry_failure_reason", reg)
		if len(reasons) != 8 {
			t.Errorf("imagepull_registry_failure_reason{%s}: %d series, want one per registry-level reason (8): %v", reg, len(reasons), reasons)
		}
		for _, r := range probe.Reasons {
			if !r.RegistryLevel() {
				if ks := series(samples, "imagepull_registry_failure_reason", reg, fmt.Sprintf("reason=%q", r)); len(ks) != 0 {
					t.Errorf("a series for the non-registry-level reason %s: %v", r, ks)
				}
				continue
			}
			want := 0.0
			if r == c.down {
				want = 1
			}
			if got := value(t, samples, "imagepull_registry_failure_reason", reg, fmt.Sprintf("reason=%q", r)); got != want {
				t.Errorf("imagepull_registry_failure_reason{%s, reason=%q} = %v, want %v", reg, r, got, want)
			}
		}
		if got := s.RegistryCause(c.registry); got != c.cause {
			t.Errorf("RegistryCause(%s) = %q, want %q", c.registry, got, c.cause)
		}
	}
	// The per-target series still say what failed where.
	if got := value(t, samples, "imagepull_probe_failure_reason", `target="bad-ca"`, `reason="tls"`); got != 1 {
		t.Errorf("bad-ca: failure_reason{tls} = %v, want 1", got)
	}
	if got := value(t, samples, "imagepull_probe_failure_reason", `target="private"`, `reason="no_credentials"`); got != 1 {
		t.Errorf("private: failure_reason{no_credentials} = %v, want 1", got)
	}
	// ImageResult: the image's own result, by target name, else by
	// reference among the module-credential targets (a success first).
	ref := func(image string) probe.Reference {
		r, err := probe.ParseReference(image)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r, ok := s.ImageResult("bad-ca", ref(tlsReg.Ref("team/app", "v1"))); !ok || r != probe.ReasonTLS {
		t.Errorf("ImageResult(bad-ca) = %q, %v; want tls", r, ok)
	}
	if r, ok := s.ImageResult("not-a-target", ref(tlsReg.Ref("team/app", "v1"))); !ok || r != probe.ReasonNone {
		t.Errorf("ImageResult(by reference) = %q, %v; want the success", r, ok)
	}
	if _, ok := s.ImageResult("healthy", ref(tlsReg.Ref("team/app", "v9"))); ok {
		t.Error("ImageResult of an unprobed reference says ok")
	}
}
