package probe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Bounds of a tags listing: a repository with more tags, or a registry that
// keeps linking to further pages, yields the first maxTags tags read.
const (
	maxTags     = 10000
	maxTagPages = 20
	// maxTagsBody bounds one page: 10000 tags of the longest a tag may be
	// (128 characters) with JSON quoting fit in it.
	maxTagsBody = 2 << 20
)

// ListTags lists the tags of t's repository with GET /v2/<repo>/tags/list,
// for diagnosing a missing tag. It is a probe in all but the request it
// ends with: the same cached transport of t's module, the same cached
// authentication (a warm Prober sends only the listing), and when that is
// due or missing the same flow as Probe (ping /v2/, answer the challenge,
// a token with scope repository:<repo>:pull), trying t's credentials in
// order until one lists the repository, as the kubelet tries pull secrets.
// It never sends a manifest request; its requests are of KindOther (besides
// ping and token).
//
// A listing is a diagnostic, not a measurement: a cached authentication the
// registry rejects is dropped and authentication redone once within the
// call (Probe reports such a failure instead).
//
// Pagination (Link: <...>; rel="next") is followed to the same origin only,
// so that credentials never go to another host, and for at most
// maxTagPages pages; at most maxTags tags are returned. The whole listing is
// bounded by ctx and twice the module's Timeout.
//
// The Result says how it went as for Probe: Success, Reason, a redacted
// Error, the phases (ping, auth, and the listing in total; manifest stays
// zero), and every request in Requests, for the caller's request
// accounting. A Target with an Endpoint (a mirror) is refused.
func (p *Prober) ListTags(ctx context.Context, t Target) ([]string, Result) {
	run := p.newRun(t)
	ctx, cancel := context.WithTimeout(ctx, 2*run.m.Timeout)
	defer cancel()
	tags, err := run.listTags(ctx, run.res.Start)
	run.finish(err)
	if err != nil {
		tags = nil
	}
	return tags, *run.res
}

func (r *probeRun) listTags(ctx context.Context, now time.Time) ([]string, error) {
	ref := r.t.Ref
	if r.t.Endpoint != nil {
		return nil, failf(ReasonProtocol, "invalid target: listing tags through a mirror endpoint (%s) is not supported; list the registry's own repository", r.t.Endpoint.Host)
	}
	if ref.Registry == "" || ref.Repository == "" {
		return nil, failf(ReasonProtocol, "invalid target: incomplete repository %q (use ParseReference)", ref.Registry+"/"+ref.Repository)
	}
	creds, err := r.connect(ctx, now)
	if err != nil {
		return nil, err
	}
	key := r.authKey(creds)
	if st, warm := r.cachedAuth(key, now); warm {
		tags, err := r.getTags(ctx, st)
		if !rejected(err) {
			return tags, err
		}
		r.forgetAuth(key)
	}

	r.res.AuthChecked = true
	ch, err := r.ping(ctx)
	if err != nil {
		return nil, err
	}
	if ch == nil { // anonymous access: nothing to answer, nothing to present
		r.res.AuthOK = true
		tags, err := r.getTags(ctx, authState{scheme: schemeNone})
		if err == nil {
			r.storeAuth(key, authState{scheme: schemeNone}, now)
		}
		return tags, err
	}
	try := creds
	if len(try) == 0 {
		try = []Credential{{}}
	}
	var last error
	for _, c := range try {
		var cs []Credential
		if !c.Anonymous() {
			cs = []Credential{c}
		}
		st, err := r.answer(ctx, *ch, key.scope, cs, now)
		if err == nil {
			r.res.AuthOK = true
			var tags []string
			if tags, err = r.getTags(ctx, st); err == nil {
				r.storeAuth(key, st, now)
				return tags, nil
			}
		}
		last = err
		if !rejected(err) {
			return nil, err
		}
	}
	return nil, triedAll(len(try), last)
}

// getTags reads every page of the listing with the authentication st.
func (r *probeRun) getTags(ctx context.Context, st authState) ([]string, error) {
	u := r.origin + r.apiRoot() + "/" + r.repository() + "/tags/list"
	if n := r.p.tagsPageSize; n > 0 {
		u += "?" + url.Values{"n": {strconv.Itoa(n)}}.Encode()
	}
	next, err := url.Parse(u)
	if err != nil {
		return nil, failf(ReasonProtocol, "tags: %v", err)
	}
	var tags []string
	seen := map[string]bool{}
	for page := 0; next != nil && page < maxTagPages && len(tags) < maxTags; page++ {
		if seen[next.String()] {
			return nil, failf(ReasonProtocol, "tags GET %s: the registry links back to a page already read", redactURL(next))
		}
		seen[next.String()] = true
		var pageTags []string
		pageTags, next, err = r.getTagsPage(ctx, next, st)
		if err != nil {
			return nil, err
		}
		tags = append(tags, pageTags...)
	}
	if len(tags) > maxTags {
		tags = tags[:maxTags]
	}
	return tags, nil
}

// getTagsPage reads one page and returns the next page's URL, nil on the
// last page.
func (r *probeRun) getTagsPage(ctx context.Context, u *url.URL, st authState) ([]string, *url.URL, error) {
	req, err := http.NewRequest(http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, nil, failf(ReasonProtocol, "tags: %v", err)
	}
	req.Header.Set("Accept", "application/json")
	st.authorize(req)
	resp, err := r.do(ctx, KindOther, req)
	if err != nil {
		return nil, nil, r.transportFailure(ctx, "tags", req, err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := readBody(resp, maxErrorBody)
		switch resp.StatusCode {
		case http.StatusUnauthorized:
			if insufficientScope(resp.Header) {
				return nil, nil, failf(ReasonForbidden, "tags GET %s: 401 insufficient_scope: repository %s does not exist or is private (the registry does not say which)",
					redactURL(req.URL), r.repository())
			}
			return nil, nil, r.statusFailure("tags", req, resp, body, "")
		case http.StatusNotFound:
			return nil, nil, r.statusFailure("tags", req, resp, body, "repository not found")
		}
		return nil, nil, r.statusFailure("tags", req, resp, body, "")
	}
	body, err := readBody(resp, maxTagsBody)
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, r.transportFailure(ctx, "tags", req, err)
		}
		return nil, nil, failf(ReasonProtocol, "tags GET %s: %v", redactURL(req.URL), err)
	}
	var v struct {
		Tags []string `json:"tags"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, nil, failf(ReasonProtocol, "tags GET %s: reply is not the tags JSON (%d bytes)", redactURL(req.URL), len(body))
	}
	next, err := nextPage(req.URL, resp.Header.Values("Link"))
	if err != nil {
		return nil, nil, failf(ReasonProtocol, "tags GET %s: %v", redactURL(req.URL), err)
	}
	return v.Tags, next, nil
}

// nextPage returns the rel="next" target of Link headers, resolved against
// the page's URL; nil when there is none. A next page on another origin
// (scheme, host or port) is an error: the listing's credentials are for
// this registry only.
func nextPage(base *url.URL, links []string) (*url.URL, error) {
	for _, v := range links {
		for _, link := range strings.Split(v, ",") {
			target, params, ok := strings.Cut(strings.TrimSpace(link), ";")
			target = strings.TrimSpace(target)
			if !ok || !strings.HasPrefix(target, "<") || !strings.HasSuffix(target, ">") || !relNext(params) {
				continue
			}
			u, err := base.Parse(strings.TrimSuffix(strings.TrimPrefix(target, "<"), ">"))
			if err != nil {
				return nil, errors.New("unparseable next page in the Link header")
			}
			if !strings.EqualFold(u.Scheme, base.Scheme) || !strings.EqualFold(u.Host, base.Host) {
				return nil, fmt.Errorf("next page on another origin (%s://%s) in the Link header not followed", printable(u.Scheme, 10), printable(u.Host, 100))
			}
			u.User = nil // never credentials from the registry's reply
			return u, nil
		}
	}
	return nil, nil
}

// relNext reports whether Link parameters hold rel="next" (rel may list
// several relation types).
func relNext(params string) bool {
	for _, p := range strings.Split(params, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), "rel") {
			continue
		}
		for _, rel := range strings.Fields(strings.Trim(strings.TrimSpace(v), `"`)) {
			if strings.EqualFold(rel, "next") {
				return true
			}
		}
	}
	return false
}

// insufficientScope reports whether a 401 carries a Bearer challenge with
// error="insufficient_scope".
func insufficientScope(h http.Header) bool {
	cs, err := ParseChallenges(h.Values("WWW-Authenticate"))
	if err != nil {
		return false
	}
	for _, c := range cs {
		if c.Scheme == schemeBearer && c.Error() == "insufficient_scope" {
			return true
		}
	}
	return false
}
