package probe

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Token lifetimes (distribution token spec: "expires_in ... When omitted,
// this defaults to 60 seconds").
const (
	defaultTokenLifetime = 60 * time.Second
	maxTokenLifetime     = 24 * time.Hour
	maxTokenMargin       = 30 * time.Second
	maxTokenBody         = 1 << 20
	oauthClientID        = "imagepull_exporter"
)

// tokenLifetime turns expires_in into how long the token is used: the
// lifetime minus a safety margin (a tenth, at most 30s) so that a token is
// never presented in the last moments of its life, when clock skew or a slow
// request could make the registry see it expired.
func tokenLifetime(expiresIn int64) time.Duration {
	var d time.Duration
	switch {
	case expiresIn <= 0:
		d = defaultTokenLifetime
	case expiresIn > int64(maxTokenLifetime/time.Second): // also keeps the multiplication from overflowing
		d = maxTokenLifetime
	default:
		d = time.Duration(expiresIn) * time.Second
	}
	margin := d / 10
	if margin > maxTokenMargin {
		margin = maxTokenMargin
	}
	return d - margin
}

// fetchToken exchanges a credential for a bearer token at the challenge's
// realm, the way containerd does (remotes/docker/auth/fetch.go):
//
//   - anonymous: GET realm?service=S&scope=SCOPE
//   - with credentials: the OAuth2 POST form first (grant_type=password, or
//     grant_type=refresh_token with an identity token), then, when the
//     endpoint says it does not do that (400, 401, 404, 405: GCR, ACR and
//     Artifactory answer these), the GET with Basic auth.
//
// The bodies of these exchanges are never recorded: they carry the password
// on the way in and the token on the way out.
func (r *probeRun) fetchToken(ctx context.Context, ch Challenge, scope string, c Credential, now time.Time) (string, time.Time, error) {
	realm, err := url.Parse(ch.Realm())
	if err != nil || (realm.Scheme != "https" && realm.Scheme != "http") || realm.Host == "" {
		return "", time.Time{}, failf(ReasonProtocol, "bearer challenge realm %q is not an http(s) URL", printable(ch.Realm(), 200))
	}
	if c.Anonymous() {
		return r.tokenGET(ctx, realm, ch, scope, c, now)
	}
	form := url.Values{}
	if svc := ch.Service(); svc != "" {
		form.Set("service", svc)
	}
	form.Set("scope", scope)
	form.Set("client_id", oauthClientID)
	if c.IdentityToken != "" {
		form.Set("grant_type", "refresh_token")
		form.Set("refresh_token", string(c.IdentityToken))
	} else {
		form.Set("grant_type", "password")
		form.Set("username", c.Username)
		form.Set("password", string(c.Password))
	}
	req, err := http.NewRequest(http.MethodPost, realm.String(), strings.NewReader(form.Encode()))
	if err != nil {
		return "", time.Time{}, failf(ReasonProtocol, "token: %v", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	resp, err := r.do(ctx, KindToken, req)
	if err != nil {
		return "", time.Time{}, r.transportFailure(ctx, "token", req, err)
	}
	switch resp.StatusCode {
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusNotFound, http.StatusMethodNotAllowed:
		_, _ = readBody(resp, maxErrorBody)
		return r.tokenGET(ctx, realm, ch, scope, c, now)
	}
	return r.tokenReply(ctx, req, resp, c, now)
}

func (r *probeRun) tokenGET(ctx context.Context, realm *url.URL, ch Challenge, scope string, c Credential, now time.Time) (string, time.Time, error) {
	u := *realm
	q := u.Query()
	if svc := ch.Service(); svc != "" {
		q.Set("service", svc)
	}
	q.Set("scope", scope)
	u.RawQuery = q.Encode()
	req, err := http.NewRequest(http.MethodGet, u.String(), nil)
	if err != nil {
		return "", time.Time{}, failf(ReasonProtocol, "token: %v", err)
	}
	if !c.Anonymous() {
		req.SetBasicAuth(c.Username, basicSecret(c))
	}
	resp, err := r.do(ctx, KindToken, req)
	if err != nil {
		return "", time.Time{}, r.transportFailure(ctx, "token", req, err)
	}
	return r.tokenReply(ctx, req, resp, c, now)
}

// tokenReply reads a token endpoint's answer.
func (r *probeRun) tokenReply(ctx context.Context, req *http.Request, resp *http.Response, c Credential, now time.Time) (string, time.Time, error) {
	body, err := readBody(resp, maxTokenBody)
	if err != nil {
		if ctx.Err() != nil {
			return "", time.Time{}, r.transportFailure(ctx, "token", req, err)
		}
		return "", time.Time{}, failf(ReasonProtocol, "token %s %s: %s: %v", req.Method, redactURL(req.URL), resp.Status, err)
	}
	if resp.StatusCode != http.StatusOK {
		hint := ""
		if resp.StatusCode == http.StatusUnauthorized {
			if c.Anonymous() {
				hint = "the token endpoint refuses anonymous access; configure credentials"
			} else {
				hint = "credentials from " + c.Source + " rejected"
			}
		}
		return "", time.Time{}, r.statusFailure("token", req, resp, body, hint)
	}
	var v struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
		// A number, not necessarily an integer; out-of-range values are
		// clamped by tokenLifetime rather than failing the probe.
		ExpiresIn float64 `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		// The error text of encoding/json may quote the body, which
		// holds a token: say where, never what.
		return "", time.Time{}, failf(ReasonProtocol, "token %s %s: reply is not the token JSON (%d bytes)", req.Method, redactURL(req.URL), len(body))
	}
	tok := v.Token
	if tok == "" {
		tok = v.AccessToken
	}
	if tok == "" {
		return "", time.Time{}, failf(ReasonProtocol, "token %s %s: reply has neither token nor access_token", req.Method, redactURL(req.URL))
	}
	r.red.Add(tok)
	exp := int64(0)
	if v.ExpiresIn > 0 {
		exp = int64(min(v.ExpiresIn, float64(1<<40)))
	}
	return tok, now.Add(tokenLifetime(exp)), nil
}
