package probe

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/imagepull/imagepull_exporter/internal/testenv"
)

func TestProbeAnonymousRegistry(t *testing.T) {
	r := startRegistry(t, testenv.RegistryOptions{})
	digest := r.Push(t, "demo/app", "v1")
	index := r.PushIndex(t, "demo/multi", "v1", 2)
	p := newProber(t, nil)
	m := plainModule()

	t.Run("tag", func(t *testing.T) {
		res := probe(t, p, target(t, r.Ref("demo/app", "v1"), m))
		wantSuccess(t, res, digest)
		if res.MediaType != string(types.DockerManifestSchema2) {
			t.Errorf("media type %q, want %q", res.MediaType, types.DockerManifestSchema2)
		}
		// /v2/ answers 200: no auth step, no token.
		if got := kinds(res); got != "ping manifest_head" {
			t.Errorf("requests %q, want ping then manifest_head", got)
		}
		if !res.AuthChecked || !res.AuthOK {
			t.Errorf("AuthChecked %v AuthOK %v, want both on a cold probe", res.AuthChecked, res.AuthOK)
		}
		if res.Phases[PhasePing] <= 0 || res.Phases[PhaseManifest] <= 0 || res.Phases[PhaseConnect] <= 0 {
			t.Errorf("phases %v: ping, manifest and connect must be measured on a cold probe", res.Phases)
		}
		if res.Phases[PhaseAuth] != 0 || res.Phases[PhaseTLS] != 0 {
			t.Errorf("phases %v: no auth step and no TLS against an anonymous http registry", res.Phases)
		}
		if res.Phases[PhaseTotal] < res.Phases[PhasePing]+res.Phases[PhaseManifest] {
			t.Errorf("total %v is less than ping + manifest (%v)", res.Phases[PhaseTotal], res.Phases)
		}
		if res.RateLimit != nil || res.MalformedHeaders != 0 || !res.TLSCertExpiry.IsZero() {
			t.Errorf("rate limit %+v malformed %d cert %v: a plain registry sends none", res.RateLimit, res.MalformedHeaders, res.TLSCertExpiry)
		}
		head := res.Requests[len(res.Requests)-1]
		if head.Method != "HEAD" || head.URL != r.URL+"/v2/demo/app/manifests/v1" || head.Status != 200 {
			t.Errorf("manifest request %+v", head)
		}
		accept := strings.Join(head.Header["> Accept"], ",")
		for _, mt := range []types.MediaType{types.OCIImageIndex, types.OCIManifestSchema1, types.DockerManifestList, types.DockerManifestSchema2} {
			if !strings.Contains(accept, string(mt)) {
				t.Errorf("Accept %q lacks %s", accept, mt)
			}
		}
		if got := head.Header["< Docker-Content-Digest"]; len(got) != 1 || got[0] != digest {
			t.Errorf("recorded digest header %v", got)
		}
	})
	t.Run("digest", func(t *testing.T) {
		res := probe(t, p, target(t, r.Addr+"/demo/app@"+digest, m))
		wantSuccess(t, res, digest)
		if !strings.HasSuffix(res.Requests[len(res.Requests)-1].URL, "/manifests/"+digest) {
			t.Errorf("HEAD %q does not ask for the digest", res.Requests[len(res.Requests)-1].URL)
		}
	})
	t.Run("tag and digest: the digest is what is probed", func(t *testing.T) {
		res := probe(t, p, target(t, r.Addr+"/demo/app:nonexistent@"+digest, m))
		wantSuccess(t, res, digest)
	})
	t.Run("multi-platform index", func(t *testing.T) {
		// containerd resolves a multi-platform tag to the index digest,
		// which the full Accept set makes the registry return.
		res := probe(t, p, target(t, r.Ref("demo/multi", "v1"), m))
		wantSuccess(t, res, index)
		if res.MediaType != string(types.OCIImageIndex) {
			t.Errorf("media type %q, want the index", res.MediaType)
		}
	})
	t.Run("missing tag", func(t *testing.T) {
		res := probe(t, p, target(t, r.Ref("demo/app", "nope"), m))
		wantReason(t, res, ReasonNotFound, "404", "not found")
	})
	t.Run("missing repository", func(t *testing.T) {
		res := probe(t, p, target(t, r.Ref("demo/nothing-here", "v1"), m))
		wantReason(t, res, ReasonNotFound, "404")
	})
	t.Run("digest not in the repository", func(t *testing.T) {
		res := probe(t, p, target(t, r.Addr+"/demo/app@"+testDigest, m))
		wantReason(t, res, ReasonNotFound)
	})
}

// TestWarmProbeIsOneRequest: with the transport kept alive and the auth
// cached, a probe sends exactly one request, counted both in the Result and
// in the registry's own access log.
func TestWarmProbeIsOneRequest(t *testing.T) {
	for _, tc := range []struct {
		name      string
		opts      testenv.RegistryOptions
		module    func(*testenv.Registry) Module
		coldKinds string
	}{
		{"anonymous", testenv.RegistryOptions{}, func(*testenv.Registry) Module { return plainModule() }, "ping manifest_head"},
		{"basic", testenv.RegistryOptions{Auth: testenv.RegistryAuthBasic}, func(r *testenv.Registry) Module {
			m := plainModule()
			m.Auth = AuthConfig{Username: r.AdminUser, Password: Secret(r.AdminPassword)}
			return m
		}, "ping ping manifest_head"},
		{"bearer over TLS", testenv.RegistryOptions{Auth: testenv.RegistryAuthToken, TLS: true}, func(r *testenv.Registry) Module {
			m := DefaultModule
			m.TLS.CAFile = r.Cert.CertFile
			m.Auth = AuthConfig{Username: r.AdminUser, Password: Secret(r.AdminPassword)}
			return m
		}, "ping token manifest_head"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := startRegistry(t, tc.opts)
			digest := r.Push(t, "demo/app", "v1")
			p := newProber(t, nil)
			tg := target(t, r.Ref("demo/app", "v1"), tc.module(r))

			cold := probe(t, p, tg, r.AdminPassword)
			wantSuccess(t, cold, digest)
			if got := kinds(cold); got != tc.coldKinds {
				t.Fatalf("cold probe requests %q, want %q", got, tc.coldKinds)
			}
			toRegistry := 0
			for _, rq := range cold.Requests {
				if strings.HasPrefix(rq.URL, r.URL+"/") {
					toRegistry++
				}
			}
			if logged := waitAccessLogBy(r, toRegistry); len(logged) != toRegistry {
				t.Errorf("access log has %d requests of the prober, the result %d to the registry", len(logged), toRegistry)
			}
			before := len(r.AccessLog())
			for i := 0; i < 3; i++ {
				warm := probe(t, p, tg, r.AdminPassword)
				wantSuccess(t, warm, digest)
				if got := kinds(warm); got != "manifest_head" {
					t.Fatalf("warm probe %d requests %q, want only manifest_head", i, got)
				}
				if warm.AuthChecked {
					t.Errorf("warm probe %d redid auth", i)
				}
				// A reused connection: no connect, no handshake.
				if warm.Phases[PhaseConnect] != 0 || warm.Phases[PhaseTLS] != 0 {
					t.Errorf("warm probe %d phases %v: the connection was not reused", i, warm.Phases)
				}
				if r.Cert != nil && !warm.TLSCertExpiry.Equal(r.Cert.Cert.NotAfter) {
					t.Errorf("warm probe TLSCertExpiry %v, want %v", warm.TLSCertExpiry, r.Cert.Cert.NotAfter)
				}
			}
			byProber := waitAccessLogBy(r, toRegistry+3)
			if len(byProber) != toRegistry+3 || len(r.AccessLog()) != before+3 {
				t.Fatalf("three warm probes made %d requests in the access log (%d in all), want 3:\n%v", len(byProber)-toRegistry, len(r.AccessLog())-before, byProber)
			}
			for _, e := range byProber[toRegistry:] {
				if e.Method != "HEAD" || !strings.HasSuffix(e.Path, "/v2/demo/app/manifests/v1") || e.Status != 200 {
					t.Errorf("warm probe request %+v, want the manifest HEAD", e)
				}
			}
			if tc.opts.Auth == testenv.RegistryAuthToken {
				if cold.TLSCertExpiry.IsZero() || cold.Phases[PhaseTLS] == 0 || cold.Phases[PhaseAuth] == 0 {
					t.Errorf("cold probe over TLS: cert %v phases %v", cold.TLSCertExpiry, cold.Phases)
				}
				// The realm is http://localhost:PORT: a name to resolve.
				if cold.Phases[PhaseResolve] == 0 {
					t.Errorf("cold probe phases %v: resolving localhost for the realm was not timed", cold.Phases)
				}
			}
		})
	}
}

func TestBasicAuth(t *testing.T) {
	r := startRegistry(t, testenv.RegistryOptions{Auth: testenv.RegistryAuthBasic,
		Users: map[string]testenv.TokenUser{"alice": {Password: "alice-pw-1"}, "bob": {Password: "bob-pw-2"}}})
	digest := r.Push(t, "demo/app", "v1")
	p := newProber(t, nil)
	secrets := []string{"alice-pw-1", "bob-pw-2", "wrong-pw-3", r.AdminPassword,
		base64.StdEncoding.EncodeToString([]byte("alice:alice-pw-1")), base64.StdEncoding.EncodeToString([]byte("alice:wrong-pw-3"))}
	withAuth := func(a AuthConfig) Target {
		m := plainModule()
		m.Auth = a
		return target(t, r.Ref("demo/app", "v1"), m)
	}

	t.Run("password", func(t *testing.T) {
		wantSuccess(t, probe(t, p, withAuth(AuthConfig{Username: "alice", Password: "alice-pw-1"}), secrets...), digest)
	})
	t.Run("wrong password", func(t *testing.T) {
		res := probe(t, p, withAuth(AuthConfig{Username: "alice", Password: "wrong-pw-3"}), secrets...)
		wantReason(t, res, ReasonUnauthorized, "401", "module auth")
		if !res.AuthChecked || res.AuthOK {
			t.Errorf("AuthChecked %v AuthOK %v, want a failed auth check", res.AuthChecked, res.AuthOK)
		}
		// The failed check sends no HEAD.
		if got := kinds(res); got != "ping ping" {
			t.Errorf("requests %q", got)
		}
	})
	t.Run("anonymous", func(t *testing.T) {
		// No credentials and a registry that asks for them: the registry
		// is up, and whether the pods can pull is unknown (issue 11).
		res := probe(t, p, target(t, r.Ref("demo/app", "v1"), plainModule()), secrets...)
		wantReason(t, res, ReasonNoCredentials, "none are configured", NoCredentialsHint)
	})
	t.Run("missing tag with valid credentials", func(t *testing.T) {
		res := probe(t, p, target(t, r.Ref("demo/app", "v9"), Module{PlainHTTP: true, Auth: AuthConfig{Username: "bob", Password: "bob-pw-2"}}), secrets...)
		wantReason(t, res, ReasonNotFound)
	})
	t.Run("password_file rotation", func(t *testing.T) {
		pwFile := filepath.Join(t.TempDir(), "password")
		if err := os.WriteFile(pwFile, []byte("wrong-pw-3\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		tg := withAuth(AuthConfig{Username: "alice", PasswordFile: pwFile})
		wantReason(t, probe(t, p, tg, secrets...), ReasonUnauthorized)
		// Rotated on disk: the next probe reads the new password, no reload.
		if err := os.WriteFile(pwFile, []byte("alice-pw-1\r\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		wantSuccess(t, probe(t, p, tg, secrets...), digest)
		if err := os.Remove(pwFile); err != nil {
			t.Fatal(err)
		}
		// A deleted password_file is the exporter's problem, not the
		// registry's unauthorized: nothing was asked of the registry.
		res := probe(t, p, tg, secrets...)
		wantReason(t, res, ReasonConfig, "password_file", "no such file")
		if res.AuthChecked {
			t.Error("AuthChecked is set although no credential reached the registry")
		}
		if err := os.Mkdir(pwFile, 0o700); err != nil { // unreadable as a file
			t.Fatal(err)
		}
		wantReason(t, probe(t, p, tg, secrets...), ReasonConfig, "password_file")
		if len(res.Requests) != 0 {
			t.Errorf("requests %q sent without credentials", kinds(res))
		}
	})
	t.Run("docker config", func(t *testing.T) {
		dir := t.TempDir()
		auth := base64.StdEncoding.EncodeToString([]byte("alice:alice-pw-1"))
		cfg := fmt.Sprintf(`{"auths":{"other.example":{"auth":"eDp5"},"%s":{"auth":"%s"}}}`, r.Addr, auth)
		if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		wantSuccess(t, probe(t, p, withAuth(AuthConfig{DockerConfig: dir}), secrets...), digest)
		wantSuccess(t, probe(t, p, withAuth(AuthConfig{DockerConfig: filepath.Join(dir, "config.json")}), secrets...), digest)
		t.Setenv("DOCKER_CONFIG", dir)
		wantSuccess(t, probe(t, p, withAuth(AuthConfig{}), secrets...), digest)
		t.Setenv("DOCKER_CONFIG", t.TempDir()) // no config.json there: anonymous
		wantReason(t, probe(t, p, withAuth(AuthConfig{}), secrets...), ReasonNoCredentials)

		bad := fmt.Sprintf(`{"auths":{"%s":{"auth":"%s"}}}`, r.Addr, base64.StdEncoding.EncodeToString([]byte("alice:wrong-pw-3")))
		if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		res := probe(t, p, withAuth(AuthConfig{DockerConfig: dir}), secrets...)
		wantReason(t, res, ReasonUnauthorized, "docker config")
		if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"auths": {"x": "alice-pw-1`), 0o600); err != nil {
			t.Fatal(err)
		}
		// A docker config that cannot be read or parsed at probe time is
		// the exporter's problem (config), not the registry's.
		wantReason(t, probe(t, p, withAuth(AuthConfig{DockerConfig: dir}), secrets...), ReasonConfig, "invalid JSON")
		wantReason(t, probe(t, p, withAuth(AuthConfig{DockerConfig: filepath.Join(dir, "missing.json")}), secrets...), ReasonConfig, "no such file")
	})
	t.Run("keychain tries every credential in order", func(t *testing.T) {
		tg := target(t, r.Ref("demo/app", "v1"), plainModule())
		tg.Keychain = staticKeychain{
			{Username: "alice", Password: "wrong-pw-3", Source: "secret ns/first"},
			{Username: "bob", Password: "bob-pw-2", Source: "secret ns/second"},
		}
		res := probe(t, p, tg, secrets...)
		wantSuccess(t, res, digest)
		if got := kinds(res); got != "ping ping ping manifest_head" {
			t.Errorf("requests %q: want the ping, one check per credential, the HEAD", got)
		}
		tg.Keychain = staticKeychain{
			{Username: "alice", Password: "wrong-pw-3", Source: "secret ns/first"},
			{Username: "bob", Password: "wrong-pw-3", Source: "secret ns/second"},
		}
		wantReason(t, probe(t, p, tg, secrets...), ReasonUnauthorized, "all 2 credentials were rejected", "secret ns/second")
	})
	t.Run("module errors", func(t *testing.T) {
		res := probe(t, p, withAuth(AuthConfig{Username: "alice", Password: "alice-pw-1", PasswordFile: "/x"}), secrets...)
		wantReason(t, res, ReasonConfig, "exclusive")
	})
}

type staticKeychain []Credential

func (k staticKeychain) Resolve(Reference) ([]Credential, error) { return k, nil }

func TestBearerAuth(t *testing.T) {
	r := startRegistry(t, testenv.RegistryOptions{Auth: testenv.RegistryAuthToken, Users: map[string]testenv.TokenUser{
		"":      {Pull: []string{"public/*"}},                                   // anonymous pulls of public/*
		"carol": {Password: "carol-pw-1", Pull: []string{"public/*", "team/*"}}, // team/* is private
		"dave":  {Password: "dave-pw-2", Pull: []string{"**"}},                  // may pull everything
	}})
	pub := r.Push(t, "public/app", "v1")
	priv := r.Push(t, "team/app", "v1")
	p := newProber(t, nil)
	secrets := []string{"carol-pw-1", "dave-pw-2", "wrong-pw-3", r.AdminPassword}
	tgt := func(repo, tag string, a AuthConfig) Target {
		m := plainModule()
		m.Auth = a
		return target(t, r.Ref(repo, tag), m)
	}

	t.Run("anonymous token", func(t *testing.T) {
		res := probe(t, p, tgt("public/app", "v1", AuthConfig{}), secrets...)
		wantSuccess(t, res, pub)
		if got := kinds(res); got != "ping token manifest_head" {
			t.Errorf("requests %q", got)
		}
		tok := res.Requests[1]
		if tok.Method != "GET" || !strings.Contains(tok.URL, "scope=repository%3Apublic%2Fapp%3Apull") || !strings.Contains(tok.URL, "service=imagepull-test-registry") {
			t.Errorf("token request %+v: want an anonymous GET with service and pull scope", tok)
		}
		if h := res.Requests[2].Header["> Authorization"]; len(h) != 1 || h[0] != "Bearer <redacted>" {
			t.Errorf("HEAD Authorization recorded as %v", h)
		}
	})
	t.Run("credentials: OAuth2 POST", func(t *testing.T) {
		gets0, posts0 := r.Issuer.Requests()
		res := probe(t, p, tgt("team/app", "v1", AuthConfig{Username: "carol", Password: "carol-pw-1"}), secrets...)
		wantSuccess(t, res, priv)
		gets, posts := r.Issuer.Requests()
		if posts-posts0 != 1 || gets != gets0 {
			t.Errorf("token requests: %d POST %d GET, want one POST", posts-posts0, gets-gets0)
		}
		if res.Requests[1].Method != "POST" || res.Requests[1].URL != r.Issuer.URL {
			t.Errorf("token request %+v", res.Requests[1])
		}
	})
	t.Run("POST not supported: GET with basic auth", func(t *testing.T) {
		r.Issuer.SetRejectPOST(true)
		defer r.Issuer.SetRejectPOST(false)
		res := probe(t, p, tgt("team/app", "v1", AuthConfig{Username: "dave", Password: "dave-pw-2"}), secrets...)
		wantSuccess(t, res, priv)
		if got := kinds(res); got != "ping token token manifest_head" || res.Requests[1].Status != 404 || res.Requests[2].Method != "GET" {
			t.Errorf("requests:\n%s\nwant the POST answered 404, then a GET", requestsLine(res))
		}
	})
	t.Run("identity token: OAuth2 refresh_token grant", func(t *testing.T) {
		dir := t.TempDir()
		// This issuer's refresh tokens are "user:password".
		cfg := fmt.Sprintf(`{"auths":{"%s":{"auth":"%s","identitytoken":"dave:dave-pw-2"}}}`, r.Addr, base64.StdEncoding.EncodeToString([]byte("<token>:")))
		if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		res := probe(t, p, tgt("team/app", "v1", AuthConfig{DockerConfig: dir}), append(secrets, "dave:dave-pw-2")...)
		wantSuccess(t, res, priv)
	})
	t.Run("wrong password", func(t *testing.T) {
		res := probe(t, p, tgt("team/app", "v1", AuthConfig{Username: "carol", Password: "wrong-pw-3"}), secrets...)
		wantReason(t, res, ReasonUnauthorized, "401", "incorrect username or password")
		// The POST is refused with 401, which containerd (and so the
		// prober) also takes as "try the GET" (Artifactory answers 401 to
		// a POST it does not support).
		if got := kinds(res); got != "ping token token" {
			t.Errorf("requests %q", got)
		}
		if !res.AuthChecked || res.AuthOK {
			t.Errorf("AuthChecked %v AuthOK %v", res.AuthChecked, res.AuthOK)
		}
	})
	t.Run("unknown user", func(t *testing.T) {
		wantReason(t, probe(t, p, tgt("public/app", "v1", AuthConfig{Username: "mallory", Password: "wrong-pw-3"}), secrets...), ReasonUnauthorized)
	})
	t.Run("missing tag", func(t *testing.T) {
		wantReason(t, probe(t, p, tgt("public/app", "v2", AuthConfig{}), secrets...), ReasonNotFound)
	})
	t.Run("missing repository with a grant", func(t *testing.T) {
		wantReason(t, probe(t, p, tgt("team/ghost", "v1", AuthConfig{Username: "dave", Password: "dave-pw-2"}), secrets...), ReasonNotFound)
	})
	t.Run("keychain: first credential rejected, second works", func(t *testing.T) {
		tg := tgt("team/app", "v1", AuthConfig{})
		tg.Keychain = staticKeychain{
			{Username: "carol", Password: "wrong-pw-3", Source: "secret a"},
			{Username: "dave", Password: "dave-pw-2", Source: "secret b"},
		}
		wantSuccess(t, probe(t, p, tg, secrets...), priv)
	})
}

// TestInsufficientScopeIsForbidden documents what the probe can and cannot
// tell on a Docker Hub style registry. Docker Hub's token endpoint hands
// out a token for any repository scope; for a repository that does not
// exist, and for a private one the caller may not pull, the token simply
// lacks the pull grant, and the manifest HEAD is answered
// 401 WWW-Authenticate: Bearer ...,error="insufficient_scope". The two
// replies are identical, so with anonymous or unprivileged credentials the
// probe cannot tell a missing repository from a private one; it reports
// forbidden and says "does not exist or is private". The test issuer
// behaves the same way (a token without the grant) and the real registry
// answers exactly that way.
func TestInsufficientScopeIsForbidden(t *testing.T) {
	r := startRegistry(t, testenv.RegistryOptions{Auth: testenv.RegistryAuthToken, Users: map[string]testenv.TokenUser{
		"":    {Pull: []string{"public/*"}},
		"eve": {Password: "eve-pw-1", Pull: []string{"public/*"}},
	}})
	r.Push(t, "private/app", "v1")
	p := newProber(t, nil)
	for _, tc := range []struct {
		name, repo string
		auth       AuthConfig
	}{
		{"private repository, anonymous", "private/app", AuthConfig{}},
		{"missing repository, anonymous", "private/ghost", AuthConfig{}},
		{"private repository, unprivileged user", "private/app", AuthConfig{Username: "eve", Password: "eve-pw-1"}},
		{"missing repository, unprivileged user", "private/ghost", AuthConfig{Username: "eve", Password: "eve-pw-1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := plainModule()
			m.Auth = tc.auth
			res := probe(t, p, target(t, r.Ref(tc.repo, "v1"), m), "eve-pw-1")
			if tc.auth.Username == "" {
				// Anonymous: the registry wants credentials the probe
				// does not have, so nothing is known of the image.
				wantReason(t, res, ReasonNoCredentials, "insufficient_scope", "does not exist or is private", NoCredentialsHint)
			} else {
				wantReason(t, res, ReasonForbidden, "insufficient_scope", "does not exist or is private", "with credentials that can pull it")
			}
			// The token exchange itself worked: auth is fine, access is not.
			if !res.AuthOK {
				t.Errorf("AuthOK false: the token endpoint did issue a token")
			}
			head := res.Requests[len(res.Requests)-1]
			if head.Status != 401 || !strings.Contains(strings.Join(head.Header["< Www-Authenticate"], ""), `error="insufficient_scope"`) {
				t.Errorf("HEAD %+v: want the registry's 401 insufficient_scope", head)
			}
		})
	}
}

// TestAuthCheckInterval: a warm prober redoes ping + token exchange when the
// module's auth check interval has passed, and when the token expired.
func TestAuthCheckInterval(t *testing.T) {
	r := startRegistry(t, testenv.RegistryOptions{Auth: testenv.RegistryAuthToken, Users: map[string]testenv.TokenUser{"": {Pull: []string{"**"}}}})
	digest := r.Push(t, "demo/app", "v1")
	clock := newTestClock()
	p := newProber(t, clock)
	m := plainModule()
	m.AuthCheckInterval = 15 * time.Minute
	tg := target(t, r.Ref("demo/app", "v1"), m)
	step := func(advance time.Duration, wantKinds string, wantChecked bool) {
		t.Helper()
		clock.Advance(advance)
		res := probe(t, p, tg)
		wantSuccess(t, res, digest)
		if got := kinds(res); got != wantKinds || res.AuthChecked != wantChecked {
			t.Fatalf("after %v: requests %q AuthChecked %v, want %q %v", advance, got, res.AuthChecked, wantKinds, wantChecked)
		}
		if wantChecked && !res.AuthOK {
			t.Fatalf("auth check failed")
		}
	}
	// Tokens that outlive the auth check interval (used for 3570s).
	r.Issuer.SetExpiresIn(3600)
	step(0, "ping token manifest_head", true)
	step(time.Minute, "manifest_head", false)
	step(13*time.Minute, "manifest_head", false)
	step(time.Minute+time.Second, "ping token manifest_head", true) // 15m after the check
	step(time.Minute, "manifest_head", false)

	// A token without expires_in lives the spec's default 60s.
	r.Issuer.SetExpiresIn(0)
	step(15*time.Minute, "ping token manifest_head", true)
	step(50*time.Second, "manifest_head", false)
	step(5*time.Second, "ping token manifest_head", true) // 55s > 60s - 6s margin
}

// TestRejectedCachedToken: a 401 to a warm HEAD drops the cached token and
// fails that probe (no silent retry); the next probe authenticates afresh.
func TestRejectedCachedToken(t *testing.T) {
	r := startRegistry(t, testenv.RegistryOptions{Auth: testenv.RegistryAuthToken, Users: map[string]testenv.TokenUser{"": {Pull: []string{"**"}}}})
	digest := r.Push(t, "demo/app", "v1")
	p := newProber(t, nil)
	tg := target(t, r.Ref("demo/app", "v1"), plainModule())
	wantSuccess(t, probe(t, p, tg), digest)

	// Revoke: the registry no longer accepts the cached token (a token
	// signed by another key, as after a key rotation at the issuer).
	p.mu.Lock()
	if len(p.auths) != 1 {
		t.Fatalf("%d cached auths, want 1", len(p.auths))
	}
	for k, st := range p.auths {
		parts := strings.Split(st.token, ".")
		st.token = parts[0] + "." + parts[1] + ".c2lnbmF0dXJl"
		p.auths[k] = st
	}
	p.mu.Unlock()

	res := probe(t, p, tg)
	wantReason(t, res, ReasonUnauthorized, "cached token was rejected")
	if got := kinds(res); got != "manifest_head" {
		t.Errorf("requests %q: want the single HEAD, no retry", got)
	}
	p.mu.Lock()
	n := len(p.auths)
	p.mu.Unlock()
	if n != 0 {
		t.Errorf("the rejected token is still cached")
	}
	res = probe(t, p, tg)
	wantSuccess(t, res, digest)
	if got := kinds(res); got != "ping token manifest_head" || !res.AuthChecked {
		t.Errorf("requests %q AuthChecked %v: want a fresh auth", got, res.AuthChecked)
	}
}

func TestRegistryOutage(t *testing.T) {
	r := startRegistry(t, testenv.RegistryOptions{})
	digest := r.Push(t, "demo/app", "v1")
	p := newProber(t, nil)
	tg := target(t, r.Ref("demo/app", "v1"), plainModule())
	wantSuccess(t, probe(t, p, tg), digest)

	r.Stop()
	res := probe(t, p, tg)
	wantReason(t, res, ReasonConnect, "manifest HEAD "+r.URL+"/v2/demo/app/manifests/v1", "refused")
	res = probe(t, p, tg)
	wantReason(t, res, ReasonConnect)

	r.Start()
	// In-memory storage: the restarted registry is empty.
	wantReason(t, probe(t, p, tg), ReasonNotFound)
	digest = r.Push(t, "demo/app", "v1")
	wantSuccess(t, probe(t, p, tg), digest)
}

func TestTimeout(t *testing.T) {
	addr := silentListener(t)
	p := newProber(t, nil)
	m := plainModule()
	m.Timeout = 300 * time.Millisecond
	res := probe(t, p, target(t, addr+"/demo/app:v1", m))
	wantReason(t, res, ReasonTimeout, "ping GET http://"+addr+"/v2/", "deadline")
	if res.Phases[PhaseTotal] < m.Timeout {
		t.Errorf("total %v shorter than the timeout %v", res.Phases[PhaseTotal], m.Timeout)
	}
	if len(res.Requests) != 1 || res.Requests[0].Status != 0 || res.Requests[0].Err == "" {
		t.Errorf("requests %+v: want one ping without a reply", res.Requests)
	}
}

func TestDNSFailure(t *testing.T) {
	p := newProber(t, nil)
	// RFC 6761: .invalid never resolves.
	res := probe(t, p, target(t, "registry.imagepull.invalid/demo/app:v1", DefaultModule))
	wantReason(t, res, ReasonDNS, "no such host")
}

func TestTLS(t *testing.T) {
	r := startRegistry(t, testenv.RegistryOptions{TLS: true})
	digest := r.Push(t, "demo/app", "v1")
	p := newProber(t, nil)

	t.Run("self-signed, not trusted", func(t *testing.T) {
		res := probe(t, p, target(t, r.Ref("demo/app", "v1"), DefaultModule))
		wantReason(t, res, ReasonTLS, "certificate")
		// An unverified certificate may be anyone's (an interceptor's):
		// its expiry is not the registry's and is not reported.
		if !res.TLSCertExpiry.IsZero() {
			t.Errorf("TLSCertExpiry %v from a certificate that did not verify, want none", res.TLSCertExpiry)
		}
		if res.Phases[PhaseTLS] == 0 {
			t.Errorf("phases %v: the failed handshake was not timed", res.Phases)
		}
	})
	t.Run("ca_file", func(t *testing.T) {
		m := DefaultModule
		m.TLS.CAFile = r.Cert.CertFile
		res := probe(t, p, target(t, r.Ref("demo/app", "v1"), m))
		wantSuccess(t, res, digest)
		if !res.TLSCertExpiry.Equal(r.Cert.Cert.NotAfter) || res.Phases[PhaseTLS] == 0 {
			t.Errorf("TLSCertExpiry %v phases %v", res.TLSCertExpiry, res.Phases)
		}
	})
	t.Run("insecure_skip_verify", func(t *testing.T) {
		m := DefaultModule
		m.TLS.InsecureSkipVerify = true
		res := probe(t, p, target(t, r.Ref("demo/app", "v1"), m))
		wantSuccess(t, res, digest)
		// Nothing was verified: no expiry is exported for the registry.
		if !res.TLSCertExpiry.IsZero() {
			t.Errorf("TLSCertExpiry %v with insecure_skip_verify, want none", res.TLSCertExpiry)
		}
	})
	t.Run("ca_file that does not exist", func(t *testing.T) {
		m := DefaultModule
		m.TLS.CAFile = filepath.Join(t.TempDir(), "nope.pem")
		res := probe(t, p, target(t, r.Ref("demo/app", "v1"), m))
		wantReason(t, res, ReasonConfig, "ca_file", "no such file")
		if len(res.Requests) != 0 {
			t.Errorf("requests %q sent", kinds(res))
		}
	})
	t.Run("ca_file that holds no PEM", func(t *testing.T) {
		m := DefaultModule
		m.TLS.CAFile = filepath.Join(t.TempDir(), "ca.pem")
		if err := os.WriteFile(m.TLS.CAFile, []byte("not a certificate\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		wantReason(t, probe(t, p, target(t, r.Ref("demo/app", "v1"), m)), ReasonConfig, "holds no PEM")
	})
	t.Run("plain http to a TLS registry", func(t *testing.T) {
		res := probe(t, p, target(t, r.Ref("demo/app", "v1"), plainModule()))
		wantReason(t, res, ReasonProtocol, "400")
	})
	t.Run("https to a plain registry", func(t *testing.T) {
		plain := startRegistry(t, testenv.RegistryOptions{})
		res := probe(t, p, target(t, plain.Ref("demo/app", "v1"), DefaultModule))
		wantReason(t, res, ReasonTLS, "plain_http")
	})
}

func TestInvalidTarget(t *testing.T) {
	p := newProber(t, nil)
	res := probe(t, p, Target{Module: DefaultModule})
	wantReason(t, res, ReasonProtocol, "incomplete image reference")
}

// waitAccessLogBy waits until the registry has logged n requests of the
// prober (it logs after replying, so the log can lag the client), and
// returns them; more than n means extra requests.
func waitAccessLogBy(r *testenv.Registry, n int) []testenv.AccessLogEntry {
	deadline := time.Now().Add(5 * time.Second)
	for {
		l := r.AccessLogBy(testUA)
		if len(l) >= n || time.Now().After(deadline) {
			// A moment more, so that an unexpected extra request shows.
			time.Sleep(50 * time.Millisecond)
			return r.AccessLogBy(testUA)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
