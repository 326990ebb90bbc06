package probe

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imagepull/imagepull_exporter/internal/testenv"
)

// listTags runs one listing and checks what every Result must satisfy.
func listTags(t *testing.T, p *Prober, tg Target, secrets ...string) ([]string, Result) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tags, res := p.ListTags(ctx, tg)
	checkResult(t, res, secrets...)
	if res.Phases[PhaseManifest] != 0 {
		t.Errorf("phases %v: a listing has no manifest phase", res.Phases)
	}
	for _, rq := range res.Requests {
		if strings.Contains(rq.URL, "/manifests/") {
			t.Errorf("request %+v: a listing sent a manifest request", rq)
		}
	}
	return tags, res
}

// wantLogged checks that the registry's access log shows exactly the
// requests res reports as sent to the registry (token requests go to the
// issuer), in order, after the before entries of the prober already there.
func wantLogged(t *testing.T, r *testenv.Registry, before int, res Result) {
	t.Helper()
	wantLoggedAt(t, r, r.URL, before, res)
}

// wantLoggedAt is wantLogged for requests sent to base, a proxy of r.
func wantLoggedAt(t *testing.T, r *testenv.Registry, base string, before int, res Result) {
	t.Helper()
	var want []string
	for _, rq := range res.Requests {
		if strings.HasPrefix(rq.URL, base+"/") {
			want = append(want, fmt.Sprintf("%s %s %d", rq.Method, strings.TrimPrefix(rq.URL, base), rq.Status))
		}
	}
	logged := waitAccessLogBy(r, before+len(want))
	var got []string
	for _, e := range logged[min(before, len(logged)):] {
		got = append(got, fmt.Sprintf("%s %s %d", e.Method, e.Path, e.Status))
	}
	if !slices.Equal(got, want) {
		t.Errorf("the registry logged\n  %s\nthe Result reports\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestListTags(t *testing.T) {
	for _, tc := range []struct {
		name      string
		opts      testenv.RegistryOptions
		module    func(*testenv.Registry) Module
		coldKinds string
	}{
		{"anonymous", testenv.RegistryOptions{}, func(*testenv.Registry) Module { return plainModule() }, "ping other"},
		{"htpasswd basic", testenv.RegistryOptions{Auth: testenv.RegistryAuthBasic}, func(r *testenv.Registry) Module {
			m := plainModule()
			m.Auth = AuthConfig{Username: r.AdminUser, Password: Secret(r.AdminPassword)}
			return m
		}, "ping ping other"},
		{"token issuer", testenv.RegistryOptions{Auth: testenv.RegistryAuthToken}, func(r *testenv.Registry) Module {
			m := plainModule()
			m.Auth = AuthConfig{Username: r.AdminUser, Password: Secret(r.AdminPassword)}
			return m
		}, "ping token other"},
		{"token issuer over TLS with the module's CA", testenv.RegistryOptions{Auth: testenv.RegistryAuthToken, TLS: true}, func(r *testenv.Registry) Module {
			m := DefaultModule
			m.Timeout = 5 * time.Second
			m.TLS.CAFile = r.Cert.CertFile
			m.Auth = AuthConfig{Username: r.AdminUser, Password: Secret(r.AdminPassword)}
			return m
		}, "ping token other"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := startRegistry(t, tc.opts)
			r.PushMany(t, []string{"demo/app:v1", "demo/app:v2", "demo/app:latest"}, 3)
			p := newProber(t, nil)
			tg := target(t, r.Ref("demo/app", "v9"), tc.module(r))

			tags, res := listTags(t, p, tg, r.AdminPassword)
			if !res.Success || !slices.Equal(tags, []string{"latest", "v1", "v2"}) {
				t.Fatalf("ListTags = %q, %s: %s\n%s", tags, res.Reason, res.Error, requestsLine(res))
			}
			if got := kinds(res); got != tc.coldKinds {
				t.Errorf("cold listing requests %q, want %q", got, tc.coldKinds)
			}
			if !res.AuthChecked || !res.AuthOK {
				t.Errorf("AuthChecked %v AuthOK %v on a cold listing", res.AuthChecked, res.AuthOK)
			}
			if r.Cert != nil && !res.TLSCertExpiry.Equal(r.Cert.Cert.NotAfter) {
				t.Errorf("TLSCertExpiry %v, want the registry's %v", res.TLSCertExpiry, r.Cert.Cert.NotAfter)
			}
			wantLogged(t, r, 0, res)

			// Warm: the cached transport and authentication, so the
			// listing is one request, on the kept-alive connection.
			before := len(r.AccessLogBy(testUA))
			tags, res = listTags(t, p, tg, r.AdminPassword)
			if !res.Success || len(tags) != 3 || kinds(res) != "other" || res.AuthChecked {
				t.Errorf("warm listing: %q %s %q, requests %q, AuthChecked %v; want the tags with one request", tags, res.Reason, res.Error, kinds(res), res.AuthChecked)
			}
			if res.Phases[PhaseConnect] != 0 || res.Phases[PhaseTLS] != 0 {
				t.Errorf("warm listing phases %v: the connection was not reused", res.Phases)
			}
			wantLogged(t, r, before, res)

			// Probe and ListTags share the cache: the probe after a
			// listing is warm too.
			before = len(r.AccessLogBy(testUA))
			pr := probe(t, p, target(t, r.Ref("demo/app", "v1"), tc.module(r)), r.AdminPassword)
			if !pr.Success || kinds(pr) != "manifest_head" {
				t.Errorf("probe after a listing: %s %q, requests %q; want one HEAD", pr.Reason, pr.Error, kinds(pr))
			}
			wantLogged(t, r, before, pr)
		})
	}
}

// Pagination. Distribution 2.8 ignores n on tags/list and always answers
// the whole list, so a thin proxy in front of the real registry pages its
// replies the way the distribution spec (and distribution 3) does: at most
// n tags after last, and a Link to the next page. Every page request still
// reaches the registry, whose access log shows them.
func TestListTagsPagination(t *testing.T) {
	r := startRegistry(t, testenv.RegistryOptions{})
	var refs, want []string
	for i := range 7 {
		refs = append(refs, fmt.Sprintf("demo/app:t%d", i))
		want = append(want, fmt.Sprintf("t%d", i))
	}
	r.PushMany(t, refs, 4)
	pager := pagingProxy(t, r)
	p := newProber(t, nil)
	p.tagsPageSize = 3
	tags, res := listTags(t, p, target(t, strings.TrimPrefix(pager.URL, "http://")+"/demo/app:x", plainModule()))
	if !res.Success || !slices.Equal(tags, want) {
		t.Fatalf("ListTags = %q, %s: %s\n%s", tags, res.Reason, res.Error, requestsLine(res))
	}
	if got := kinds(res); got != "ping other other other" {
		t.Errorf("requests %q, want the ping and three pages of at most 3", got)
	}
	if u := res.Requests[1].URL; !strings.HasSuffix(u, "/v2/demo/app/tags/list?n=3") {
		t.Errorf("first page %q does not ask for n=3", u)
	}
	wantLoggedAt(t, r, pager.URL, 0, res)
}

// pagingProxy forwards everything to r and pages tags/list replies by the
// request's n and last parameters.
func pagingProxy(t *testing.T, r *testenv.Registry) *httptest.Server {
	u, err := url.Parse(r.URL)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ModifyResponse = func(resp *http.Response) error {
		q := resp.Request.URL.Query()
		n, _ := strconv.Atoi(q.Get("n"))
		if !strings.HasSuffix(resp.Request.URL.Path, "/tags/list") || resp.StatusCode != http.StatusOK || n <= 0 {
			return nil
		}
		var v struct {
			Name string   `json:"name"`
			Tags []string `json:"tags"`
		}
		err := json.NewDecoder(resp.Body).Decode(&v)
		resp.Body.Close()
		if err != nil {
			return err
		}
		sort.Strings(v.Tags)
		if last := q.Get("last"); last != "" {
			i, _ := slices.BinarySearch(v.Tags, last)
			for i < len(v.Tags) && v.Tags[i] <= last {
				i++
			}
			v.Tags = v.Tags[i:]
		}
		if len(v.Tags) > n {
			v.Tags = v.Tags[:n]
			next := url.Values{"n": {strconv.Itoa(n)}, "last": {v.Tags[n-1]}}
			resp.Header.Set("Link", "<"+resp.Request.URL.Path+"?"+next.Encode()+`>; rel="next"`)
		}
		b, _ := json.Marshal(v)
		resp.Body = io.NopCloser(bytes.NewReader(b))
		resp.ContentLength = int64(len(b))
		resp.Header.Set("Content-Length", strconv.Itoa(len(b)))
		return nil
	}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	return srv
}

func TestListTagsFailures(t *testing.T) {
	r := startRegistry(t, testenv.RegistryOptions{Auth: testenv.RegistryAuthToken, Users: map[string]testenv.TokenUser{
		"":      {Pull: []string{"public/*"}},
		"carol": {Password: "carol-pw-1", Pull: []string{"public/*"}},
		"dave":  {Password: "dave-pw-2", Pull: []string{"**"}},
	}})
	r.PushMany(t, []string{"public/app:v1", "team/app:v1", "team/app:v2"}, 3)
	p := newProber(t, nil)
	secrets := []string{"carol-pw-1", "dave-pw-2", "wrong-pw-3", r.AdminPassword}
	tgt := func(repo string, kc ...Credential) Target {
		tg := target(t, r.Ref(repo, "v1"), plainModule())
		tg.Keychain = staticKeychain(kc)
		return tg
	}

	t.Run("missing repository is not_found", func(t *testing.T) {
		before := len(r.AccessLogBy(testUA))
		tags, res := listTags(t, p, tgt("team/ghost", Credential{Username: "dave", Password: "dave-pw-2", Source: "s"}), secrets...)
		wantReason(t, res, ReasonNotFound, "tags GET", "404", "NAME_UNKNOWN")
		if tags != nil {
			t.Errorf("tags %q on a failure", tags)
		}
		wantLogged(t, r, before, res)
	})
	t.Run("anonymous on a private repository", func(t *testing.T) {
		_, res := listTags(t, p, tgt("team/app"), secrets...)
		wantReason(t, res, ReasonNoCredentials, "insufficient_scope", "does not exist or is private", NoCredentialsHint)
	})
	t.Run("each credential tried until one lists", func(t *testing.T) {
		before := len(r.AccessLogBy(testUA))
		tags, res := listTags(t, p, tgt("team/app",
			Credential{Username: "carol", Password: "wrong-pw-3", Source: "secret a"},
			Credential{Username: "carol", Password: "carol-pw-1", Source: "secret b"},
			Credential{Username: "dave", Password: "dave-pw-2", Source: "secret c"}), secrets...)
		if !res.Success || !slices.Equal(tags, []string{"v1", "v2"}) {
			t.Fatalf("ListTags = %q, %s: %s\n%s", tags, res.Reason, res.Error, requestsLine(res))
		}
		// carol's wrong password: POST and GET refused; carol's right
		// one: a token without the grant, the listing refused; dave's
		// lists.
		if got := kinds(res); got != "ping token token token other token other" {
			t.Errorf("requests %q", got)
		}
		wantLogged(t, r, before, res)
	})
	t.Run("every credential rejected", func(t *testing.T) {
		_, res := listTags(t, p, tgt("team/app",
			Credential{Username: "carol", Password: "wrong-pw-3", Source: "secret a"},
			Credential{Username: "carol", Password: "carol-pw-1", Source: "secret b"}), secrets...)
		wantReason(t, res, ReasonForbidden, "all 2 credentials were rejected")
	})
	t.Run("mirror endpoint refused", func(t *testing.T) {
		tg := tgt("public/app")
		tg.Endpoint = &Endpoint{Host: r.Addr}
		_, res := listTags(t, p, tg)
		wantReason(t, res, ReasonProtocol, "mirror endpoint")
		if len(res.Requests) != 0 {
			t.Errorf("requests %q, want none", kinds(res))
		}
	})
}

func TestNextPage(t *testing.T) {
	base, _ := url.Parse("https://r.example:5000/v2/a/tags/list?n=3")
	for _, tc := range []struct {
		links []string
		want  string // "" no next page, "error" an error
	}{
		{nil, ""},
		{[]string{`</v2/a/tags/list?last=t2&n=3>; rel="next"`}, "https://r.example:5000/v2/a/tags/list?last=t2&n=3"},
		{[]string{`<https://r.example:5000/v2/a/tags/list?last=t2>; rel=next`}, "https://r.example:5000/v2/a/tags/list?last=t2"},
		{[]string{`</v2/a/tags/list?x=1>; rel="prev", </v2/a/tags/list?last=t5>; rel="next"`}, "https://r.example:5000/v2/a/tags/list?last=t5"},
		{[]string{`</docs>; rel="help"`}, ""},
		{[]string{`<https://user:pw@r.example:5000/v2/a/tags/list?last=t2>; rel="next"`}, "https://r.example:5000/v2/a/tags/list?last=t2"},
		{[]string{`<https://evil.example/v2/a/tags/list?last=t2>; rel="next"`}, "error"},
		{[]string{`<http://r.example:5000/v2/a/tags/list?last=t2>; rel="next"`}, "error"},
		{[]string{`<https://r.example:5001/v2/a/tags/list?last=t2>; rel="next"`}, "error"},
	} {
		u, err := nextPage(base, tc.links)
		got := ""
		switch {
		case err != nil:
			got = "error"
		case u != nil:
			got = u.String()
		}
		if got != tc.want {
			t.Errorf("nextPage(%q) = %q (%v), want %q", tc.links, got, err, tc.want)
		}
	}
}

// A registry that keeps linking to further pages is read for at most
// maxTagPages pages, and one that links back to a page already read is a
// protocol error. No real registry can be made to do either: an httptest
// server plays one.
func TestListTagsBounds(t *testing.T) {
	for _, tc := range []struct {
		name      string
		next      func(page int) string
		wantPages int
		wantErr   string
	}{
		{"endless pages", func(page int) string { return fmt.Sprintf("/v2/a/tags/list?last=t%d", page) }, maxTagPages, ""},
		{"a loop", func(int) string { return "/v2/a/tags/list" }, 1, "links back to a page already read"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pages := 0
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				if req.URL.Path == "/v2/" {
					return
				}
				pages++
				w.Header().Set("Link", "<"+tc.next(pages)+`>; rel="next"`)
				fmt.Fprintf(w, `{"name":"a","tags":["t%d"]}`, pages)
			}))
			defer srv.Close()
			p := newProber(t, nil)
			tags, res := listTags(t, p, target(t, strings.TrimPrefix(srv.URL, "http://")+"/a:v1", plainModule()))
			if pages != tc.wantPages {
				t.Errorf("%d pages read, want %d", pages, tc.wantPages)
			}
			if tc.wantErr != "" {
				wantReason(t, res, ReasonProtocol, tc.wantErr)
				return
			}
			if !res.Success || len(tags) != tc.wantPages {
				t.Errorf("ListTags = %d tags, %s %q", len(tags), res.Reason, res.Error)
			}
		})
	}
}
