package web

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/imagepull/imagepull_exporter/collector"
	"github.com/imagepull/imagepull_exporter/collector/config"
	"github.com/imagepull/imagepull_exporter/internal/testenv"
	"github.com/imagepull/imagepull_exporter/probe"
)

// Issue 9, item 1, from the outside: whoever names a host (a /probe
// caller, a pod under discovery, a mirror list) cannot make the exporter
// send a module's static credentials there. The victim is a real registry
// with htpasswd; the attacker's host is a second real registry on another
// loopback port, fronted by a recording proxy (testenv.CredentialSink):
// distribution's access log records the URL's user, not the Authorization
// header, so only the proxy can prove that no credential arrived.

type hostileEnv struct {
	victim   *testenv.Registry
	attacker *testenv.Registry
	sink     *testenv.CredentialSink
	pw       string
	cfg      *config.Config
}

// startHostileEnv starts both registries and parses, through the real
// config loader, a configuration whose credentialed modules are bound the
// way an operator would bind them: "private" by its targets (no
// auth.registries), "default" (the discovery default) by auth.registries.
func startHostileEnv(t *testing.T, extra string) *hostileEnv {
	t.Helper()
	e := &hostileEnv{pw: "alice-hostile-pw-5d1c"}
	e.victim = testenv.StartRegistry(t, testenv.RegistryOptions{Auth: testenv.RegistryAuthBasic,
		Users: map[string]testenv.TokenUser{"alice": {Password: e.pw}}})
	e.victim.Push(t, "team/app", "v1")
	e.attacker = testenv.StartRegistry(t, testenv.RegistryOptions{Auth: testenv.RegistryAuthBasic})
	e.attacker.Push(t, "x/y", "1")
	e.sink = testenv.StartCredentialSink(t, e.attacker.URL)
	e.cfg = e.parseConfig(t, "hostile.yml", extra)
	return e
}

// noCredentialsAtSink fails the test when the attacker's host received an
// Authorization header or the password.
func (e *hostileEnv) noCredentialsAtSink(t *testing.T) {
	t.Helper()
	if leaks := e.sink.Leaks(e.pw); len(leaks) > 0 {
		t.Errorf("the attacker's host received credentials: %+v", leaks)
	}
}

func TestProbeRefusesUnboundRegistry(t *testing.T) {
	e := startHostileEnv(t, "")
	h := NewProbeHandler(ProbeHandlerOptions{Config: func() *config.Config { return e.cfg }})
	for _, module := range []string{"private", "default", ""} {
		q := "/probe?target=" + url.QueryEscape(e.sink.Addr+"/x/y:1")
		if module != "" {
			q += "&module=" + module
		}
		code, _, body := get(t, h, q)
		name := module
		if name == "" {
			name = "default"
		}
		bound := e.victim.Addr
		for _, want := range []string{
			fmt.Sprintf(`refused: the credentials of module %q are not bound to registry %s`, name, e.sink.Addr),
			"they are bound to " + bound,
			"add " + e.sink.Addr + " to the module's auth.registries",
		} {
			if code != 403 || !strings.Contains(body, want) {
				t.Errorf("GET %s: %d %q, want 403 with %q", q, code, body, want)
			}
		}
		if strings.Contains(body, e.pw) {
			t.Errorf("the refusal shows the password: %s", body)
		}
	}
	// ?debug=true is refused the same way.
	if code, _, _ := get(t, h, "/probe?debug=true&module=private&target="+url.QueryEscape(e.sink.Addr+"/x/y:1")); code != 403 {
		t.Errorf("/probe?debug=true: %d, want 403", code)
	}
	if reqs := e.sink.Requests(); len(reqs) != 0 {
		t.Errorf("a refused /probe sent %d requests to the attacker's host, want 0: %+v", len(reqs), reqs)
	}

	// The bound registry still works through /probe, with the credentials.
	code, _, body := get(t, h, "/probe?module=private&target="+url.QueryEscape(e.victim.Ref("team/app", "v1")))
	if code != 200 || !strings.Contains(body, "imagepull_probe_success{") || !strings.Contains(body, "} 1") {
		t.Errorf("/probe of the bound registry: %d\n%s", code, body)
	}
	// An anonymous module may still probe any registry: it has nothing to leak.
	e.cfg.Modules["anon"] = probe.Module{Timeout: 5 * time.Second, Interval: time.Hour, AuthCheckInterval: time.Hour, PlainHTTP: true}
	if code, _, _ := get(t, h, "/probe?module=anon&target="+url.QueryEscape(e.sink.Addr+"/x/y:1")); code != 200 {
		t.Errorf("/probe with an anonymous module: %d, want 200", code)
	}
	if len(e.sink.Requests()) == 0 {
		t.Errorf("the anonymous /probe reached nothing: the sink is not in the path")
	}
	e.noCredentialsAtSink(t)
}

// The scheduler: the configured target on the bound registry authenticates;
// a discovered target naming the attacker's host with the credentialed
// module (or falling back to the credentialed discovery default) is probed
// anonymously; a mirror of the victim's registry gets nothing.
func TestScheduledDiscoveredAndMirrorProbesKeepCredentialsHome(t *testing.T) {
	// The mirror is declared once the sink's address is known: parse twice.
	e := startHostileEnv(t, "")
	mirrored := startHostileEnvMirror(t, e)
	prober := probe.NewProber(probe.ProberOptions{})
	defer prober.Close()
	s := collector.NewScheduler(collector.SchedulerOptions{Prober: prober})
	s.ApplyConfig(mirrored)
	attackRef, err := probe.ParseReference(e.sink.Addr + "/x/y:1")
	if err != nil {
		t.Fatal(err)
	}
	s.SetDiscovered([]collector.DiscoveredTarget{
		// A short interval: the scheduler spreads first probes over it.
		{Name: "pod-private", Ref: attackRef, Module: "private", Interval: time.Second},
		{Name: "pod-default", Ref: attackRef, Interval: time.Second}, // discovery's fallback module
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	defer func() { cancel(); <-done }()

	byName := func(name string) collector.TargetStatus {
		for _, ts := range s.Snapshot().Targets {
			if ts.Name == name {
				return ts
			}
		}
		return collector.TargetStatus{}
	}
	testenv.WaitFor(t, "every target probed once", func() bool {
		for _, n := range []string{"victim", "pod-private", "pod-default"} {
			if byName(n).Last == nil {
				return false
			}
		}
		return true
	})
	if v := byName("victim").Last; !v.Success || !v.AuthOK {
		t.Errorf("the scheduled target on the bound registry: %s %s, want an authenticated success", v.Reason, v.Error)
	}
	for _, n := range []string{"pod-private", "pod-default"} {
		if l := byName(n).Last; l.Success || l.Reason != probe.ReasonNoCredentials {
			t.Errorf("discovered %s on the attacker's host: %v %s %s, want an anonymous probe answered no_credentials", n, l.Success, l.Reason, l.Error)
		}
		if l := byName(n).Last; !strings.Contains(l.Error, "probed anonymously: the credentials of module") {
			t.Errorf("discovered %s: error %q does not say why no credential was presented", n, l.Error)
		}
	}
	testenv.WaitFor(t, "the mirror probed", func() bool {
		for _, r := range e.sink.Requests() {
			if strings.Contains(r.Path, "/team/app/") {
				return true
			}
		}
		return false
	})
	if len(e.sink.Requests()) == 0 {
		t.Fatal("the attacker's host saw no request: the case proves nothing")
	}
	e.noCredentialsAtSink(t)
}

// parseConfig parses, through the real config loader, a configuration
// whose credentialed modules are bound the way an operator would bind them,
// with extra appended (more top-level keys).
func (e *hostileEnv) parseConfig(t *testing.T, name, extra string) *config.Config {
	t.Helper()
	cfg, err := config.Parse(name, []byte(fmt.Sprintf(`
modules:
  default:
    plain_http: true
    timeout: 5s
    interval: 1h
    auth: {username: alice, password: %[1]s, registries: ["%[2]s"]}
  private:
    plain_http: true
    timeout: 5s
    interval: 1h
    auth: {username: alice, password: %[1]s}
targets:
  - {name: victim, image: "%[2]s/team/app:v1", module: private}
%[3]s`, e.pw, e.victim.Addr, extra)))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// startHostileEnvMirror parses e's configuration again with the sink as a
// mirror of the victim's registry (probed with the target's module, so
// anonymously: a runtime never hands a registry's credentials to a mirror).
func startHostileEnvMirror(t *testing.T, e *hostileEnv) *config.Config {
	t.Helper()
	return e.parseConfig(t, "hostile-mirror.yml", fmt.Sprintf("mirrors:\n  %q:\n    - \"http://%s\"\n", e.victim.Addr, e.sink.Addr))
}
