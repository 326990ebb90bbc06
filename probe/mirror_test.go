package probe

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagepull/imagepull_exporter/internal/testenv"
)

// mirrorTarget probes docker.io/<repo>:<tag> through the registry r acting
// as a mirror of Docker Hub.
func mirrorTarget(t *testing.T, r *testenv.Registry, image string, m Module, e Endpoint) Target {
	t.Helper()
	tg := target(t, image, m)
	e.Host = r.Addr
	tg.Endpoint = &e
	return tg
}

// A real distribution registry stands in for a Docker Hub mirror: the probe
// talks to it, with containerd's ?ns=docker.io, while the result stays about
// docker.io.
func TestMirrorEndpoint(t *testing.T) {
	r := startRegistry(t, testenv.RegistryOptions{})
	digest := r.Push(t, "library/app", "v1")
	prefixed := r.Push(t, "hub/library/app", "v1")
	p := newProber(t, nil)

	t.Run("namespace", func(t *testing.T) {
		res := probe(t, p, mirrorTarget(t, r, "app:v1", plainModule(), Endpoint{Namespace: "docker.io"}))
		wantSuccess(t, res, digest)
		if res.Ref.Registry != DockerHubRegistry || res.Ref.Repository != "library/app" {
			t.Errorf("result is about %s, want the upstream docker.io/library/app", res.Ref)
		}
		want := fmt.Sprintf("ping GET http://%s/v2/ -> 200 \nmanifest_head HEAD http://%s/v2/library/app/manifests/v1?ns=docker.io -> 200 ", r.Addr, r.Addr)
		if got := requestsLine(res); got != want {
			t.Errorf("requests:\n%s\nwant:\n%s", got, want)
		}
		var heads []string
		// The registry logs after it replies: wait for the probe's HEAD.
		logged := r.WaitAccessLogFor(func(l []testenv.AccessLogEntry) bool {
			for _, e := range l {
				if e.UserAgent == testUA && e.Method == "HEAD" {
					return true
				}
			}
			return false
		})
		for _, e := range logged {
			if e.UserAgent == testUA && e.Method == "HEAD" {
				heads = append(heads, e.Path)
			}
		}
		if len(heads) != 1 || heads[0] != "/v2/library/app/manifests/v1?ns=docker.io" {
			t.Errorf("the mirror's access log shows the HEADs %q, want one with ?ns=docker.io", heads)
		}
	})

	t.Run("rewritten repository", func(t *testing.T) {
		// CRI-O's prefix "docker.io" with location "mirror/hub" rewrites
		// docker.io/library/app to mirror/hub/library/app.
		res := probe(t, p, mirrorTarget(t, r, "app:v1", plainModule(), Endpoint{Repository: "hub/library/app"}))
		wantSuccess(t, res, prefixed)
		if !strings.HasSuffix(res.Requests[len(res.Requests)-1].URL, "/v2/hub/library/app/manifests/v1") {
			t.Errorf("HEAD URL %q, want the prefixed repository without ns", res.Requests[len(res.Requests)-1].URL)
		}
	})

	t.Run("missing tag on the mirror", func(t *testing.T) {
		res := probe(t, p, mirrorTarget(t, r, "app:v2", plainModule(), Endpoint{Namespace: "docker.io"}))
		wantReason(t, res, ReasonNotFound)
	})

	t.Run("plain HTTP fallback", func(t *testing.T) {
		// An https module against a plain-HTTP mirror: containerd (http host
		// with TLS settings) and CRI-O (insecure mirror) retry over http.
		m := plainModule()
		m.PlainHTTP = false
		res := probe(t, p, mirrorTarget(t, r, "app:v1", m, Endpoint{Namespace: "docker.io"}))
		wantReason(t, res, ReasonTLS)

		tg := mirrorTarget(t, r, "app:v1", m, Endpoint{Namespace: "docker.io", HTTPFallback: true})
		res = probe(t, p, tg)
		wantSuccess(t, res, digest)
		// The failed https attempt is a request the mirror saw: it is
		// recorded and counted, not hidden.
		if got := kinds(res); got != "ping ping manifest_head" || res.Requests[0].Status != 0 || !strings.HasPrefix(res.Requests[0].URL, "https://") {
			t.Errorf("cold probe through the fallback:\n%s\nwant a failed https ping, then ping and HEAD over http", requestsLine(res))
		}
		res = probe(t, p, tg)
		wantSuccess(t, res, digest)
		if got := kinds(res); got != "manifest_head" {
			t.Errorf("warm probe through the fallback sent %q, want one HEAD", got)
		}
		if !strings.HasPrefix(res.Requests[0].URL, "http://") {
			t.Errorf("warm probe sent %s, want straight to http:// (the mirror is known to speak plain HTTP)", res.Requests[0].URL)
		}
		// The Prober remembers it, and Close forgets it with the rest.
		p.Close()
		res = probe(t, p, tg)
		wantSuccess(t, res, digest)
		if got := kinds(res); got != "ping ping manifest_head" || !strings.HasPrefix(res.Requests[0].URL, "https://") {
			t.Errorf("first probe after Close:\n%s\nwant https tried again first", requestsLine(res))
		}
	})
}

// Credentials are looked up for the mirror's host, never the upstream's:
// docker.io's password must not be sent to a mirror of docker.io.
func TestMirrorCredentials(t *testing.T) {
	r := startRegistry(t, testenv.RegistryOptions{Auth: testenv.RegistryAuthBasic,
		Users: map[string]testenv.TokenUser{"alice": {Password: "alice-pw-1"}}})
	digest := r.Push(t, "library/app", "v1")
	p := newProber(t, nil)

	auth := base64.StdEncoding.EncodeToString([]byte("alice:alice-pw-1"))
	dockerConfig := func(key string) string {
		path := filepath.Join(t.TempDir(), "config.json")
		if err := os.WriteFile(path, []byte(fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, key, auth)), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	secrets := []string{"alice-pw-1", auth}

	m := plainModule()
	m.Auth.DockerConfig = dockerConfig("https://index.docker.io/v1/")
	res := probe(t, p, mirrorTarget(t, r, "app:v1", m, Endpoint{Namespace: "docker.io"}), secrets...)
	wantReason(t, res, ReasonNoCredentials, "none are configured")
	for _, rq := range res.Requests {
		if len(rq.Header["> Authorization"]) > 0 {
			t.Errorf("request %s %s carried docker.io's credentials to the mirror", rq.Method, rq.URL)
		}
	}

	m.Auth.DockerConfig = dockerConfig(r.Addr)
	wantSuccess(t, probe(t, p, mirrorTarget(t, r, "app:v1", m, Endpoint{Namespace: "docker.io"}), secrets...), digest)
}
