package probe

// The hostile-registry cases of the token exchange and redirect policy
// (issue 9, items 2 and 3). Real registries (testenv) cannot be made to
// point their realm at plain http, at a metadata address, to answer with a
// wrong-case token field or to redirect credentials elsewhere, so the
// httptest servers here play the hostile registry, the hostile realm and
// the "other origin" that must never see a credential; each records what
// reached it. The well-behaved side of each rule is checked against a real
// registry and token issuer.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imagepull/imagepull_exporter/internal/testenv"
)

const hostileDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// seen is one request a hostile server received.
type seen struct {
	Method, Path, Auth, Body string
}

// hostile is a loopback server playing a hostile registry or realm: it
// answers with h and records every request it receives.
type hostile struct {
	*httptest.Server
	mu  sync.Mutex
	got []seen
}

func startHostile(t *testing.T, useTLS bool, h http.HandlerFunc) *hostile {
	t.Helper()
	hs := &hostile{}
	hs.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
		hs.mu.Lock()
		hs.got = append(hs.got, seen{r.Method, r.URL.Path, r.Header.Get("Authorization"), string(b)})
		hs.mu.Unlock()
		h(w, r)
	}))
	if useTLS {
		hs.StartTLS()
	} else {
		hs.Start()
	}
	t.Cleanup(hs.Close)
	return hs
}

func (hs *hostile) requests() []seen {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	return append([]seen(nil), hs.got...)
}

func (hs *hostile) host() string {
	return strings.TrimPrefix(strings.TrimPrefix(hs.URL, "https://"), "http://")
}

// bearerRegistry answers /v2/ with a Bearer challenge naming realm, and a
// manifest HEAD with a digest when it carries "Bearer "+wantToken.
func bearerRegistry(t *testing.T, useTLS bool, realm, wantToken string) *hostile {
	return startHostile(t, useTLS, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "Bearer "+wantToken && strings.Contains(r.URL.Path, "/manifests/") {
			w.Header().Set("Docker-Content-Digest", hostileDigest)
			return
		}
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm=%q,service="hostile"`, realm))
		w.WriteHeader(http.StatusUnauthorized)
	})
}

// tokenRealm answers every token request with body.
func tokenRealm(t *testing.T, useTLS bool, body string) *hostile {
	return startHostile(t, useTLS, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, body)
	})
}

func tlsModule() Module {
	m := DefaultModule
	m.Timeout = 5 * time.Second
	m.TLS.InsecureSkipVerify = true // the httptest certificate
	return m
}

func credTarget(t *testing.T, image string, m Module, c ...Credential) Target {
	tg := target(t, image, m)
	tg.Keychain = staticKeychain(c)
	return tg
}

var alice = Credential{Username: "alice", Password: "alice-pw-9", Source: "secret ns/alice"}

// A realm on plain http for an https registry gets no credential: the
// probe fails as protocol and the realm is not contacted. Anonymous
// requests carry nothing secret and may use it.
func TestRealmPlainHTTPForHTTPSRegistry(t *testing.T) {
	realm := tokenRealm(t, false, `{"token":"anon-token-1"}`)
	reg := bearerRegistry(t, true, realm.URL+"/token", "anon-token-1")
	p := newProber(t, nil)

	res := probe(t, p, credTarget(t, reg.host()+"/demo/app:v1", tlsModule(), alice), "alice-pw-9")
	wantReason(t, res, ReasonProtocol, "plain http for an https registry", "secret ns/alice")
	if got := realm.requests(); len(got) != 0 {
		t.Errorf("the plain-http realm received %+v, want nothing", got)
	}
	if got := kinds(res); got != "ping" {
		t.Errorf("requests %q, want only the ping", got)
	}

	res = probe(t, p, credTarget(t, reg.host()+"/demo/app:v1", tlsModule()))
	wantSuccess(t, res, hostileDigest)
	for _, s := range realm.requests() {
		if s.Auth != "" || s.Body != "" {
			t.Errorf("anonymous token request %+v carries a credential", s)
		}
	}
}

// The well-behaved case, against a real registry: an https registry with
// an https realm gets the credential by the OAuth2 POST.
func TestRealmHTTPSRegistryWithHTTPSRealm(t *testing.T) {
	r := startRegistry(t, testenv.RegistryOptions{Auth: testenv.RegistryAuthToken, TLS: true, Users: map[string]testenv.TokenUser{
		"erin": {Password: "erin-pw-4", Pull: []string{"**"}},
	}})
	digest := r.Push(t, "team/app", "v1")
	m := DefaultModule
	m.TLS.CAFile = r.Cert.CertFile
	res := probe(t, newProber(t, nil), credTarget(t, r.Ref("team/app", "v1"), m, Credential{Username: "erin", Password: "erin-pw-4", Source: "test"}), "erin-pw-4")
	wantSuccess(t, res, digest)
	if _, posts := r.Issuer.Requests(); posts != 1 {
		t.Errorf("%d token POSTs, want 1", posts)
	}
}

// A realm at a link-local or metadata address is never contacted, in any
// spelling of the address, with or without credentials.
func TestRealmMetadataAddressRefused(t *testing.T) {
	p := newProber(t, nil)
	for _, realm := range []string{
		"http://169.254.169.254/latest/api/token",
		"http://169.254.170.2/v2/credentials",
		"http://[fd00:ec2::254]/latest/api/token",
		"http://[::ffff:169.254.169.254]/token",
		"http://[fe80::1%25lo]:8080/token",
	} {
		t.Run(realm, func(t *testing.T) {
			reg := bearerRegistry(t, false, realm, "never")
			for _, c := range [][]Credential{nil, {alice}} {
				res := probe(t, p, credTarget(t, reg.host()+"/demo/app:v1", plainModule(), c...), "alice-pw-9")
				wantReason(t, res, ReasonProtocol, "link-local or cloud metadata address")
				if got := kinds(res); got != "ping" {
					t.Errorf("requests %q, want only the ping:\n%s", got, requestsLine(res))
				}
			}
		})
	}
}

// A redirect to a metadata address is refused before it is followed, and
// the transport's dialer refuses such an address whatever named it: the
// check runs in the dialer's Control hook on every resolved address, so a
// host name resolving to 169.254.169.254 meets the same refusal as the
// literal dialed here (no resolver here can be made to answer that).
func TestRedirectToMetadataAddressRefused(t *testing.T) {
	reg := startHostile(t, false, func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/manifests/") {
			http.Redirect(w, r, "http://169.254.169.254:80/latest/meta-data/iam/", http.StatusFound)
		}
	})
	res := probe(t, newProber(t, nil), credTarget(t, reg.host()+"/demo/app:v1", plainModule()))
	wantReason(t, res, ReasonProtocol, "never contacted")
	for _, rq := range res.Requests {
		if strings.Contains(rq.URL, "169.254.169.254") {
			t.Errorf("request %+v: the metadata address was tried", rq)
		}
	}

	// The dialer alone, without the prober: refused at once (no timeout).
	rt, err := newTransport(plainModule(), reg.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, u := range []string{"http://169.254.169.254/", "http://[fd00:ec2::254]/", "https://[fe80::1%25lo]:443/"} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		resp, err := rt.RoundTrip(req)
		if err == nil {
			resp.Body.Close()
		}
		if !isPolicyError(err) {
			t.Errorf("%s: %v, want a refusal by policy", u, err)
		}
	}
}

// A reply whose token is under a key of another case ("Token", as cloud
// metadata services answer) is not a token: the probe fails and the
// registry never sees it as a bearer.
func TestTokenReplyFieldCase(t *testing.T) {
	p := newProber(t, nil)
	for _, tc := range []struct {
		body string
		ok   bool
	}{
		{`{"token":"good-token-1"}`, true},
		{`{"access_token":"good-token-1"}`, true},
		{`{"Token":"good-token-1"}`, false},
		{`{"TOKEN":"good-token-1","expires_in":300}`, false},
		{`{"Access_Token":"good-token-1"}`, false},
		{`{"token":"good token-1"}`, false},
		{`{"token":["good-token-1"]}`, false},
	} {
		t.Run(tc.body, func(t *testing.T) {
			realm := tokenRealm(t, false, tc.body)
			reg := bearerRegistry(t, false, realm.URL+"/token", "good-token-1")
			res := probe(t, p, credTarget(t, reg.host()+"/demo/app:v1", plainModule()))
			if tc.ok {
				wantSuccess(t, res, hostileDigest)
				return
			}
			wantReason(t, res, ReasonProtocol, "token GET")
			if strings.Contains(res.Error, "good") {
				t.Errorf("error %q quotes the reply", res.Error)
			}
			for _, s := range reg.requests() {
				if s.Auth != "" {
					t.Errorf("the registry received Authorization %q on %s %s", s.Auth, s.Method, s.Path)
				}
			}
		})
	}
}

// Redirects never carry Authorization or a body to another origin, even
// one that differs only by port, and never go from https to http.
func TestRedirectPolicyOnTheWire(t *testing.T) {
	p := newProber(t, nil)
	// other plays a second origin on the same host, another port: it must
	// never see a credential.
	other := startHostile(t, false, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/token" {
			_, _ = io.WriteString(w, `{"token":"other-token"}`)
		}
	})
	noCredentials := func(t *testing.T) {
		t.Helper()
		for _, s := range other.requests() {
			if s.Auth != "" || strings.Contains(s.Body, "alice") {
				t.Errorf("the other origin received %+v", s)
			}
		}
	}

	t.Run("basic auth to another port", func(t *testing.T) {
		reg := startHostile(t, false, func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") == "" {
				w.Header().Set("WWW-Authenticate", `Basic realm="hostile"`)
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			http.Redirect(w, r, other.URL+r.URL.Path, http.StatusTemporaryRedirect)
		})
		res := probe(t, p, credTarget(t, reg.host()+"/demo/app:v1", plainModule(), alice), "alice-pw-9")
		if res.Success {
			t.Errorf("probe succeeded through a redirect to another origin")
		}
		noCredentials(t)
		for _, rq := range res.Requests {
			if strings.Contains(rq.URL, other.host()) && len(rq.Header["> Authorization"]) != 0 {
				t.Errorf("hop %+v recorded with Authorization", rq)
			}
		}
		if n := len(other.requests()); n == 0 {
			t.Errorf("the redirect was not followed at all; the test proves nothing")
		}
	})

	t.Run("307 on the token POST to another origin", func(t *testing.T) {
		realm := startHostile(t, false, func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, other.URL+"/token", http.StatusTemporaryRedirect)
		})
		reg := bearerRegistry(t, false, realm.URL+"/token", "other-token")
		before := len(other.requests())
		res := probe(t, p, credTarget(t, reg.host()+"/demo/app:v1", plainModule(), alice), "alice-pw-9")
		wantReason(t, res, ReasonProtocol, "request body")
		if got := other.requests()[before:]; len(got) != 0 {
			t.Errorf("the other origin received %+v, want nothing", got)
		}
		if got := realm.requests(); len(got) != 1 || got[0].Method != http.MethodPost || !strings.Contains(got[0].Body, "alice-pw-9") {
			t.Errorf("the realm received %+v, want the one POST", got)
		}
	})

	t.Run("308 on the token GET to another origin drops Basic", func(t *testing.T) {
		realm := startHostile(t, false, func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost {
				w.WriteHeader(http.StatusNotFound) // no OAuth2: the GET with Basic follows
				return
			}
			http.Redirect(w, r, other.URL+"/token", http.StatusPermanentRedirect)
		})
		reg := bearerRegistry(t, false, realm.URL+"/token", "other-token")
		before := len(other.requests())
		probe(t, p, credTarget(t, reg.host()+"/demo/app:v1", plainModule(), alice), "alice-pw-9")
		if got := other.requests()[before:]; len(got) != 1 {
			t.Errorf("the other origin received %+v, want the one GET", got)
		}
		noCredentials(t)
	})

	t.Run("https to http refused", func(t *testing.T) {
		reg := startHostile(t, true, func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/manifests/") {
				http.Redirect(w, r, other.URL+r.URL.Path, http.StatusFound)
			}
		})
		before := len(other.requests())
		res := probe(t, p, credTarget(t, reg.host()+"/demo/app:v1", tlsModule()))
		wantReason(t, res, ReasonProtocol, "from https to http")
		if got := other.requests()[before:]; len(got) != 0 {
			t.Errorf("the http origin received %+v, want nothing", got)
		}
	})

	t.Run("ListTags: same policy", func(t *testing.T) {
		reg := startHostile(t, false, func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") == "" && r.URL.Path == "/v2/" {
				w.Header().Set("WWW-Authenticate", `Basic realm="hostile"`)
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			if strings.HasSuffix(r.URL.Path, "/tags/list") {
				http.Redirect(w, r, other.URL+r.URL.Path, http.StatusFound)
			}
		})
		before := len(other.requests())
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, res := p.ListTags(ctx, credTarget(t, reg.host()+"/demo/app:v1", plainModule(), alice))
		checkResult(t, res, "alice-pw-9")
		if got := other.requests()[before:]; len(got) != 1 {
			t.Errorf("the other origin received %+v, want the tags GET", got)
		}
		noCredentials(t)
	})

	t.Run("same origin keeps Authorization", func(t *testing.T) {
		reg := startHostile(t, false, func(w http.ResponseWriter, r *http.Request) {
			switch {
			case r.Header.Get("Authorization") == "":
				w.Header().Set("WWW-Authenticate", `Basic realm="hostile"`)
				w.WriteHeader(http.StatusUnauthorized)
			case r.URL.Path == "/v2/":
				http.Redirect(w, r, "/v2/moved/", http.StatusTemporaryRedirect)
			case strings.Contains(r.URL.Path, "/manifests/"):
				w.Header().Set("Docker-Content-Digest", hostileDigest)
			}
		})
		wantSuccess(t, probe(t, p, credTarget(t, reg.host()+"/demo/app:v1", plainModule(), alice), "alice-pw-9"), hostileDigest)
	})
}

func TestForbiddenAddr(t *testing.T) {
	for host, want := range map[string]bool{
		"169.254.169.254":        true,
		"169.254.0.1":            true,
		"::ffff:169.254.169.254": true,
		"fd00:ec2::254":          true,
		"fe80::1":                true,
		"fe80::1%eth0":           true,
		"febf::1":                true,
		"127.0.0.1":              false,
		"10.0.0.1":               false,
		"fd00:ec2::253":          false,
		"fec0::1":                false,
		"::1":                    false,
		"registry.example":       false,
		"":                       false,
	} {
		if got := forbiddenHost(host); got != want {
			t.Errorf("forbiddenHost(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestRedirectPolicy(t *testing.T) {
	for _, tc := range []struct {
		chain    []string
		next     string
		body     bool
		keepAuth bool
		errPart  string
	}{
		{[]string{"https://r.example/v2/"}, "https://r.example/v2/x", false, true, ""},
		{[]string{"https://r.example/v2/"}, "https://R.EXAMPLE:443/v2/x", true, true, ""},
		{[]string{"https://r.example/v2/"}, "https://r.example:8443/v2/", false, false, ""},
		{[]string{"https://r.example/v2/"}, "https://cdn.example/blob", false, false, ""},
		{[]string{"https://s.example/v2/"}, "https://ſ.example/v2/", false, false, ""}, // long s: not ASCII-equal
		{[]string{"http://r.example/v2/"}, "https://r.example/v2/", false, false, ""},
		{[]string{"http://r.example:80/v2/"}, "http://r.example/v2/", false, true, ""},
		{[]string{"https://r.example/v2/"}, "http://r.example/v2/", false, false, "from https to http"},
		{[]string{"https://r.example/", "https://cdn.example/"}, "http://cdn.example/", false, false, "from https to http"},
		{[]string{"https://auth.example/token"}, "https://evil.example/token", true, false, "request body"},
		{[]string{"https://auth.example/token"}, "https://auth.example:444/token", true, false, "request body"},
		{[]string{"https://auth.example/token"}, "https://auth.example/token2", true, true, ""},
		{[]string{"http://r.example/v2/"}, "http://169.254.169.254/latest/", false, false, "metadata"},
		{[]string{"http://[fe80::1]:5000/v2/"}, "http://[fe80::1]:5000/v2/x", false, true, ""}, // the registry's own host
		// A credential that left the origin does not come back with it.
		{[]string{"https://r.example/", "https://other.example/"}, "https://r.example/x", false, false, ""},
	} {
		var chain []*url.URL
		for _, s := range tc.chain {
			chain = append(chain, mustURL(t, s))
		}
		keep, err := redirectPolicy(chain, mustURL(t, tc.next), tc.body)
		if tc.errPart != "" {
			if err == nil || !strings.Contains(err.Error(), tc.errPart) || !isPolicyError(err) {
				t.Errorf("%v -> %s: %v, want a policy error %q", tc.chain, tc.next, err, tc.errPart)
			}
			continue
		}
		if err != nil || keep != tc.keepAuth {
			t.Errorf("%v -> %s (body %v): keepAuth %v, %v; want %v", tc.chain, tc.next, tc.body, keep, err, tc.keepAuth)
		}
	}
}

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestParseTokenReply(t *testing.T) {
	for _, tc := range []struct {
		body    string
		token   string
		expires int64
	}{
		{`{"token":"t1","expires_in":300,"issued_at":"2026-01-01T00:00:00Z"}`, "t1", 300},
		{`{"access_token":"t2","expires_in":60.5,"refresh_token":"r"}`, "t2", 60},
		{`{"token":"t1","access_token":"t2"}`, "t1", 0},
		{`{"token":"","access_token":"t2"}`, "t2", 0},
		{`{"token":null,"access_token":"t2","expires_in":null}`, "t2", 0},
		{`{"token":"t1","expires_in":1e300}`, "t1", 1 << 40},
		{`{"token":"t1","expires_in":-5}`, "t1", 0},
		{`{"Token":"t1"}`, "", 0},
		{`{"ACCESS_TOKEN":"t1"}`, "", 0},
		{`{"token":"t1","expires_in":"300"}`, "", 0},
		{`{"token":"t\u00e91"}`, "", 0},
		{`{"token":"a\r\nX-Evil: 1"}`, "", 0},
		{`{"token":7}`, "", 0},
		{`null`, "", 0},
		{`[]`, "", 0},
		{`not json`, "", 0},
	} {
		tok, exp, err := parseTokenReply([]byte(tc.body))
		if tc.token == "" {
			if err == nil {
				t.Errorf("%s: token %q, want an error", tc.body, tok)
			}
			continue
		}
		if err != nil || tok != tc.token || exp != tc.expires {
			t.Errorf("%s: %q %d %v, want %q %d", tc.body, tok, exp, err, tc.token, tc.expires)
		}
	}
}
