package probe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	realm.User = nil // net/http would send userinfo as Basic auth: a registry does not pick our credentials
	if err := r.realmPolicy(realm, c); err != nil {
		return "", time.Time{}, err
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

// realmPolicy says whether the realm may be asked for a token with c.
//
// A realm at a literal link-local or metadata address is refused outright,
// with any credential: the registry is trying to make the exporter fetch
// cloud credentials (the transport refuses names resolving there too, see
// guardedDial). Unless it is the registry's own host: then nothing new is
// reached.
//
// Credentials go to a plain-http realm only when the registry itself is
// plain http (the module's plain_http, or a mirror allowed to fall back to
// it): an http realm for an https registry would carry the password, or
// the Basic header, in clear text to wherever the realm points. Such a
// probe fails with ReasonProtocol rather than asking the realm
// anonymously: an anonymous token lacks the grant, the registry would
// answer insufficient_scope and the probe would blame the image ("does not
// exist or is private") for what is the registry's misconfiguration (or an
// attack). Anonymous requests carry nothing secret and may use such a
// realm; the token they get only goes to the registry, over https.
func (r *probeRun) realmPolicy(realm *url.URL, c Credential) error {
	host := realm.Hostname()
	if forbiddenHost(host) && !strings.EqualFold(host, originHost(r.origin)) {
		return failf(ReasonProtocol, "bearer challenge realm %s is a link-local or cloud metadata address: refused, it is never contacted", redactURL(realm))
	}
	registryHTTPS := !r.m.PlainHTTP && (r.t.Endpoint == nil || !r.t.Endpoint.HTTPFallback)
	if registryHTTPS && !c.Anonymous() && realm.Scheme != "https" {
		return failf(ReasonProtocol, "bearer challenge realm %s is plain http for an https registry: credentials from %s are not sent over plain http (the registry's token realm must be https)", redactURL(realm), c.Source)
	}
	return nil
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
	tok, exp, err := parseTokenReply(body)
	if err != nil {
		return "", time.Time{}, failf(ReasonProtocol, "token %s %s: %v", req.Method, redactURL(req.URL), err)
	}
	r.red.Add(tok)
	return tok, now.Add(tokenLifetime(exp)), nil
}

// errTokenJSON says where a token reply went wrong, never what it held: the
// body holds a token (and encoding/json's errors may quote it).
var errTokenJSON = errors.New("reply is not the token JSON")

// parseTokenReply decodes a token endpoint's JSON reply (distribution's
// token spec; OAuth2 for access_token) by the exact field names: token,
// else access_token, and expires_in. issued_at and refresh_token are
// allowed and not used. encoding/json matches struct fields without regard
// to case, which would take a metadata service's {"Token": ...} for a
// registry token and present it as a bearer; keys of a map are matched
// exactly. The token must be visible ASCII (it goes into a header).
// expires_in is a number, not necessarily an integer; 0 means "not said",
// and large values are clamped here and by tokenLifetime rather than
// failing the probe.
func parseTokenReply(body []byte) (token string, expiresIn int64, err error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil || fields == nil {
		return "", 0, fmt.Errorf("%w (%d bytes)", errTokenJSON, len(body))
	}
	str := func(key string) (string, error) {
		var s *string
		if raw, ok := fields[key]; ok {
			if err := json.Unmarshal(raw, &s); err != nil {
				return "", fmt.Errorf("%w: %s is not a string", errTokenJSON, key)
			}
		}
		if s == nil {
			return "", nil
		}
		return *s, nil
	}
	if token, err = str("token"); err != nil {
		return "", 0, err
	}
	if token == "" {
		if token, err = str("access_token"); err != nil {
			return "", 0, err
		}
	}
	if token == "" {
		return "", 0, errors.New("reply has neither token nor access_token")
	}
	for i := 0; i < len(token); i++ {
		if token[i] < 0x21 || token[i] > 0x7e {
			return "", 0, errors.New("reply's token holds characters a bearer token cannot hold")
		}
	}
	if raw, ok := fields["expires_in"]; ok {
		var f *float64
		if err := json.Unmarshal(raw, &f); err != nil {
			return "", 0, fmt.Errorf("%w: expires_in is not a number", errTokenJSON)
		}
		if f != nil && *f > 0 {
			expiresIn = int64(min(*f, float64(1<<40)))
		}
	}
	return token, expiresIn, nil
}
