package credprovider_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imagepull/imagepull_exporter/collector/config"
	"github.com/imagepull/imagepull_exporter/collector/credprovider"
	"github.com/imagepull/imagepull_exporter/internal/testenv"
	"github.com/imagepull/imagepull_exporter/probe"
)

// These tests run the real plugin (internal/testenv/credplugin, built by
// the test and speaking the v1 exec API through k8s.io/kubelet's types) as
// the kubelet runs it, against a real distribution registry with token
// auth where a probe needs one.

const testUA = "imagepull_exporter-credprovider-test"

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// plugin is one provider of a test configuration.
type plugin struct {
	name        string
	matchImages []string
	defaultTTL  string            // defaultCacheDuration
	args        []string          // e.g. --mode=hang
	env         map[string]string // besides CREDPLUGIN_DIR
	state       string            // CREDPLUGIN_DIR, created by setup
	bin         string            // the bin directory, set by setup
}

// setup writes the configuration, installs the plugin under each
// provider's name and the credential each hands out, and loads them.
func setup(t *testing.T, c *clock, timeout time.Duration, plugins ...*plugin) *credprovider.Providers {
	t.Helper()
	bin, dir := t.TempDir(), t.TempDir()
	var b strings.Builder
	b.WriteString("apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n")
	for _, p := range plugins {
		testenv.CredentialPlugin(t, bin, p.name)
		p.bin = bin
		p.state = t.TempDir()
		setCredential(t, p, "cloud:token-1")
		ttl := p.defaultTTL
		if ttl == "" {
			ttl = "0s"
		}
		fmt.Fprintf(&b, "  - name: %s\n    apiVersion: credentialprovider.kubelet.k8s.io/v1\n    defaultCacheDuration: %q\n    matchImages:\n", p.name, ttl)
		for _, m := range p.matchImages {
			fmt.Fprintf(&b, "      - %q\n", m)
		}
		if len(p.args) > 0 {
			fmt.Fprintf(&b, "    args: [%s]\n", strings.Join(p.args, ", "))
		}
		fmt.Fprintf(&b, "    env:\n      - {name: CREDPLUGIN_DIR, value: %q}\n", p.state)
		for k, v := range p.env {
			fmt.Fprintf(&b, "      - {name: %s, value: %q}\n", k, v)
		}
	}
	file := filepath.Join(dir, "credential-providers.yaml")
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	ps, err := credprovider.Load(credprovider.Options{ConfigPath: file, BinDir: bin, Now: c.Now, Timeout: timeout})
	if err != nil {
		t.Fatalf("Load:\n%s\n%v", b.String(), err)
	}
	return ps
}

func setCredential(t *testing.T, p *plugin, cred string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(p.state, "credential"), []byte(cred+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func setMode(t *testing.T, p *plugin, mode string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(p.state, "mode"), []byte(mode), 0o600); err != nil {
		t.Fatal(err)
	}
}

func runs(t *testing.T, p *plugin) int { return len(testenv.CredentialPluginRuns(t, p.state)) }

func mustRef(t *testing.T, s string) probe.Reference {
	t.Helper()
	ref, err := probe.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// module loads a configuration module through the real loader, so that
// auth.credential_provider (or the node's providers) is resolved as in
// the exporter.
func module(t *testing.T, ps *credprovider.Providers, auth string) probe.Module {
	t.Helper()
	var opts config.Options
	if ps != nil {
		opts.CredentialProviders = ps
	}
	cfg, err := config.ParseWith("test.yml", []byte("modules:\n  m:\n    plain_http: true\n    timeout: 5s\n"+auth), opts)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Modules["m"]
}

func probeOnce(p *probe.Prober, m probe.Module, ref probe.Reference) probe.Result {
	return p.Probe(context.Background(), probe.Target{Ref: ref, ModuleName: "m", Module: m})
}

// TestShortLivedCredentials: a registry with token auth and no anonymous
// access accepts only the credential the plugin currently hands out. The
// plugin runs once and its answer is cached for the response's
// cacheDuration; the cloud rotates the credential; once the cache entry
// expires the plugin runs again and the probe uses the new credential.
func TestShortLivedCredentials(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{Auth: testenv.RegistryAuthToken,
		Users: map[string]testenv.TokenUser{"cloud": {Password: "token-1", Pull: []string{"**"}}}})
	reg.Push(t, "team/app", "v1")
	reg.Push(t, "team/other", "v1")
	c := newClock()
	pl := &plugin{name: "cloud-credential-provider", matchImages: []string{reg.Addr}, defaultTTL: "12h",
		env: map[string]string{"CREDPLUGIN_CACHE_DURATION": "5m", "CREDPLUGIN_CACHE_KEY_TYPE": "Registry"}}
	ps := setup(t, c, 0, pl)
	m := module(t, ps, "    auth: {credential_provider: cloud-credential-provider}\n")
	prober := probe.NewProber(probe.ProberOptions{UserAgent: testUA, Now: c.Now})
	defer prober.Close()
	app, other := mustRef(t, reg.Ref("team/app", "v1")), mustRef(t, reg.Ref("team/other", "v1"))

	if res := probeOnce(prober, m, app); !res.Success {
		t.Fatalf("first probe: %s: %s", res.Reason, res.Error)
	}
	if res := probeOnce(prober, m, other); !res.Success {
		t.Fatalf("another repository: %s: %s", res.Reason, res.Error)
	}
	if got := testenv.CredentialPluginRuns(t, pl.state); len(got) != 1 || got[0] != reg.Addr+"/team/app" {
		t.Fatalf("plugin runs %v, want one, for %s/team/app (the request names host/repository, as the kubelet's)", got, reg.Addr)
	}

	// The cloud rotates the credential; the old one stops working.
	reg.Issuer.SetUser("cloud", testenv.TokenUser{Password: "token-2", Pull: []string{"**"}})
	setCredential(t, pl, "cloud:token-2")
	c.Advance(4 * time.Minute)
	if _, err := ps.Provider("cloud-credential-provider").Resolve(app); err != nil || runs(t, pl) != 1 {
		t.Fatalf("within cacheDuration: %v, %d runs, want the cached answer", err, runs(t, pl))
	}
	c.Advance(2 * time.Minute) // past the response's 5m, well within defaultCacheDuration
	res := probeOnce(prober, m, app)
	if !res.Success {
		t.Fatalf("after expiry: %s: %s", res.Reason, res.Error)
	}
	if !res.AuthChecked {
		t.Error("a new credential must authenticate afresh (the token cache is keyed by credential)")
	}
	if n := runs(t, pl); n != 2 {
		t.Errorf("plugin runs after expiry %d, want 2", n)
	}

	// An anonymous module on the same registry: no credentials, and the
	// registry asks for them.
	if res := probeOnce(prober, module(t, nil, ""), app); res.Reason != probe.ReasonNoCredentials {
		t.Errorf("anonymous probe: %s: %s, want no_credentials", res.Reason, res.Error)
	}
}

// TestCache: cacheKeyType and cacheDuration as the kubelet reads them,
// counted in plugin runs.
func TestCache(t *testing.T) {
	type lookup struct {
		image   string
		advance time.Duration // before the lookup
		runs    int           // plugin runs after it
	}
	cases := []struct {
		name       string
		defaultTTL string
		env        map[string]string
		lookups    []lookup
	}{
		{"Image: per repository", "1h", map[string]string{"CREDPLUGIN_CACHE_KEY_TYPE": "Image"}, []lookup{
			{"a.example.com/team/app", 0, 1}, {"a.example.com/team/app", 0, 1}, {"a.example.com/team/other", 0, 2}}},
		{"Registry: per host", "1h", map[string]string{"CREDPLUGIN_CACHE_KEY_TYPE": "Registry"}, []lookup{
			{"a.example.com/team/app", 0, 1}, {"a.example.com/team/other", 0, 1}, {"b.example.com/team/app", 0, 2}}},
		{"Global: every covered image", "1h", map[string]string{"CREDPLUGIN_CACHE_KEY_TYPE": "Global", "CREDPLUGIN_AUTH_KEYS": "*.example.com"}, []lookup{
			{"a.example.com/team/app", 0, 1}, {"b.example.com/x", 0, 1}}},
		{"cacheDuration 0: never cached", "1h", map[string]string{"CREDPLUGIN_CACHE_DURATION": "0s"}, []lookup{
			{"a.example.com/team/app", 0, 1}, {"a.example.com/team/app", 0, 2}}},
		{"no cacheDuration: defaultCacheDuration", "10m", nil, []lookup{
			{"a.example.com/team/app", 0, 1}, {"a.example.com/team/app", 9 * time.Minute, 1}, {"a.example.com/team/app", 2 * time.Minute, 2}}},
		{"no cacheDuration, defaultCacheDuration 0: never cached", "0s", nil, []lookup{
			{"a.example.com/team/app", 0, 1}, {"a.example.com/team/app", 0, 2}}},
		{"cacheDuration wins over defaultCacheDuration", "1h", map[string]string{"CREDPLUGIN_CACHE_DURATION": "1m"}, []lookup{
			{"a.example.com/team/app", 0, 1}, {"a.example.com/team/app", 61 * time.Second, 2}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			pl := &plugin{name: "p", matchImages: []string{"*.example.com"}, defaultTTL: tc.defaultTTL, env: tc.env}
			ps := setup(t, c, 0, pl)
			for i, l := range tc.lookups {
				c.Advance(l.advance)
				creds, err := ps.Provider("p").Resolve(mustRef(t, l.image+":v1"))
				if err != nil {
					t.Fatalf("lookup %d: %v", i, err)
				}
				if len(creds) != 1 || creds[0].Username != "cloud" || creds[0].Password != "token-1" {
					t.Errorf("lookup %d of %s: %+v, want the plugin's credential", i, l.image, creds)
				}
				if n := runs(t, pl); n != l.runs {
					t.Errorf("after lookup %d of %s: %d runs, want %d", i, l.image, n, l.runs)
				}
			}
		})
	}
}

// TestConcurrentLookupsRunOnce: probes of one image at once wait for one
// run, as the kubelet's singleflight.
func TestConcurrentLookupsRunOnce(t *testing.T) {
	pl := &plugin{name: "p", matchImages: []string{"*.example.com"}, defaultTTL: "1h"}
	ps := setup(t, newClock(), 0, pl)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := ps.Node().Resolve(mustRef(t, "a.example.com/app:v1")); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := runs(t, pl); n != 1 {
		t.Errorf("%d runs for 8 concurrent lookups, want 1", n)
	}
}

// TestPluginFailures: a plugin that fails to run, hangs or answers garbage
// is the exporter's setup (reason config), never the registry's
// unauthorized; the error says which plugin and what it did, and never
// quotes its output or a credential.
func TestPluginFailures(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{Auth: testenv.RegistryAuthToken,
		Users: map[string]testenv.TokenUser{"cloud": {Password: "token-1", Pull: []string{"**"}}}})
	reg.Push(t, "team/app", "v1")
	ref := mustRef(t, reg.Ref("team/app", "v1"))
	cases := []struct {
		mode string
		want string
	}{
		{"crash", `exited with exit status 1; its stderr ends: AccessDenied: token <redacted> expired for cloud`},
		{"garbage", `answered something that is not a JSON CredentialProviderResponse on stdout (invalid JSON at byte`},
		{"wrong-version", `answered apiVersion "credentialprovider.kubelet.k8s.io/v1beta1", but the configuration says the plugin speaks "credentialprovider.kubelet.k8s.io/v1"`},
		{"no-cache-key", `answered cacheKeyType ""; it must be Image, Registry or Global`},
		{"huge", `answered more than 1048576 bytes on stdout`},
	}
	for _, tc := range cases {
		t.Run(tc.mode, func(t *testing.T) {
			pl := &plugin{name: "cloud", matchImages: []string{reg.Addr}, defaultTTL: "0s"}
			ps := setup(t, newClock(), 0, pl)
			m := module(t, ps, "")
			prober := probe.NewProber(probe.ProberOptions{UserAgent: testUA})
			defer prober.Close()
			// A first run works, so the redactor knows the credential a
			// crashing plugin then prints.
			if res := probeOnce(prober, m, ref); !res.Success {
				t.Fatalf("working plugin: %s: %s", res.Reason, res.Error)
			}
			setMode(t, pl, tc.mode)
			res := probeOnce(prober, m, ref)
			if res.Reason != probe.ReasonConfig || !strings.Contains(res.Error, tc.want) || !strings.Contains(res.Error, `credential provider "cloud"`) {
				t.Errorf("result %s: %s\nwant config with %q", res.Reason, res.Error, tc.want)
			}
			if strings.Contains(res.Error, "token-1") {
				t.Errorf("the error carries the credential: %s", res.Error)
			}
			if res.AuthChecked || len(res.Requests) != 0 {
				t.Errorf("the registry was asked %d requests; a plugin failure asks nothing of it", len(res.Requests))
			}
		})
	}

	t.Run("hang", func(t *testing.T) {
		pl := &plugin{name: "cloud", matchImages: []string{reg.Addr}, defaultTTL: "0s", args: []string{"--mode=hang"}}
		ps := setup(t, newClock(), 3*time.Second, pl)
		prober := probe.NewProber(probe.ProberOptions{UserAgent: testUA})
		defer prober.Close()
		m := module(t, ps, "")
		m.Timeout = time.Second
		start := time.Now()
		res := probeOnce(prober, m, ref)
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("the probe took %s: a hung plugin must cost no more than the probe's timeout (1s)", took)
		}
		if res.Reason != probe.ReasonConfig || !strings.Contains(res.Error, "did not answer before the probe's timeout") {
			t.Errorf("result %s: %s", res.Reason, res.Error)
		}
		// The run goes on, bounded by the plugin timeout, and is then
		// killed: a lookup after that reports the kill and a new run
		// starts.
		time.Sleep(3*time.Second + 500*time.Millisecond)
		_, err := ps.Node().ResolveContext(context.Background(), ref)
		if err == nil || !strings.Contains(err.Error(), "did not answer within 3s and was killed") {
			// The first lookup after the kill may start a second
			// (hanging) run; either way it must not succeed.
			if err == nil {
				t.Fatalf("a hanging plugin resolved credentials")
			}
		}
		if n := runs(t, pl); n < 1 {
			t.Errorf("runs %d", n)
		}
	})

	t.Run("cannot be run", func(t *testing.T) {
		pl := &plugin{name: "cloud", matchImages: []string{reg.Addr}, defaultTTL: "0s"}
		ps := setup(t, newClock(), 0, pl)
		// The plugin disappears after start (an unmounted hostPath).
		if err := os.Remove(filepath.Join(pl.bin, pl.name)); err != nil {
			t.Fatal(err)
		}
		prober := probe.NewProber(probe.ProberOptions{UserAgent: testUA})
		defer prober.Close()
		res := probeOnce(prober, module(t, ps, ""), ref)
		if res.Reason != probe.ReasonConfig || !strings.Contains(res.Error, "cannot be run") {
			t.Errorf("result %s: %s", res.Reason, res.Error)
		}
	})
}

// TestMatchImagesNotCovered: a plugin whose matchImages do not cover the
// image is never run for it (its run log stays empty), and the probe is
// anonymous.
func TestMatchImagesNotCovered(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{Auth: testenv.RegistryAuthToken,
		Users: map[string]testenv.TokenUser{"cloud": {Password: "token-1", Pull: []string{"**"}}}})
	reg.Push(t, "team/app", "v1")
	host, port, _ := strings.Cut(reg.Addr, ":")
	pl := &plugin{name: "cloud", defaultTTL: "1h", matchImages: []string{
		"registry.example.com",      // another host
		host,                        // the host without the port: ports must be equal
		reg.Addr + "/other",         // the registry, another path
		"*.0.1:" + port,             // one label short
		host + ":" + port + "0",     // another port
		"127.*.*.*.1:" + port + "/", // one label too many
	}}
	ps := setup(t, newClock(), 0, pl)
	prober := probe.NewProber(probe.ProberOptions{UserAgent: testUA})
	defer prober.Close()
	ref := mustRef(t, reg.Ref("team/app", "v1"))
	for name, m := range map[string]probe.Module{
		"node's providers":    module(t, ps, ""),
		"credential_provider": module(t, ps, "    auth: {credential_provider: cloud}\n"),
	} {
		res := probeOnce(prober, m, ref)
		if res.Reason != probe.ReasonNoCredentials {
			t.Errorf("%s: %s: %s, want no_credentials (an anonymous probe)", name, res.Reason, res.Error)
		}
	}
	if got := testenv.CredentialPluginRuns(t, pl.state); len(got) != 0 {
		t.Errorf("the plugin ran for %v; its matchImages do not cover %s", got, reg.Addr)
	}
	// The binding check is by host: the "/other" entry names this
	// registry, so /probe may use the module there, and the keychain
	// still resolves nothing for team/app (above).
	if !ps.Provider("cloud").CoversRegistry(reg.Addr) || ps.Provider("cloud").CoversRegistry("other.example.com") {
		t.Error("CoversRegistry does not follow the matchImages' hosts")
	}
}

// TestCredentialsStayHome: a plugin's credential is never sent to another
// host, whoever names it: not when its cached answer (cacheKeyType Global)
// holds an auth key for that host but its matchImages do not cover it,
// and not when its matchImages cover the host but its answer's keys do
// not. The other host is a recording proxy in front of a real registry.
func TestCredentialsStayHome(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{Auth: testenv.RegistryAuthToken,
		Users: map[string]testenv.TokenUser{"cloud": {Password: "token-1", Pull: []string{"**"}}}})
	reg.Push(t, "team/app", "v1")
	attacker := testenv.StartRegistry(t, testenv.RegistryOptions{})
	attacker.Push(t, "team/app", "v1")
	sink := testenv.StartCredentialSink(t, attacker.URL)
	home, away := mustRef(t, reg.Ref("team/app", "v1")), mustRef(t, sink.Addr+"/team/app:v1")

	cases := []struct {
		name        string
		matchImages []string
		authKeys    string
		wantRuns    int // after probing both hosts
	}{
		{"answer names the other host, matchImages do not", []string{reg.Addr}, reg.Addr + "," + sink.Addr, 1},
		// The Global answer is cached: the lookup for the other host,
		// which matchImages cover, reads it, and its keys do not match.
		{"matchImages cover the other host, the answer's keys do not", []string{reg.Addr, sink.Addr}, reg.Addr, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pl := &plugin{name: "cloud", matchImages: tc.matchImages, defaultTTL: "1h",
				env: map[string]string{"CREDPLUGIN_CACHE_KEY_TYPE": "Global", "CREDPLUGIN_AUTH_KEYS": tc.authKeys}}
			ps := setup(t, newClock(), 0, pl)
			prober := probe.NewProber(probe.ProberOptions{UserAgent: testUA})
			defer prober.Close()
			for _, m := range []probe.Module{module(t, ps, ""), module(t, ps, "    auth: {credential_provider: cloud}\n")} {
				if res := probeOnce(prober, m, home); !res.Success {
					t.Fatalf("home: %s: %s", res.Reason, res.Error)
				}
				res := probeOnce(prober, m, away)
				if !res.Success {
					t.Errorf("the other host (anonymous): %s: %s", res.Reason, res.Error)
				}
			}
			if n := runs(t, pl); n != tc.wantRuns {
				t.Errorf("plugin runs %d (%v), want %d", n, testenv.CredentialPluginRuns(t, pl.state), tc.wantRuns)
			}
			if leaks := sink.Leaks("token-1", "cloud:token-1"); len(leaks) > 0 {
				t.Errorf("the other host received the plugin's credential: %+v", leaks)
			}
		})
	}
}
