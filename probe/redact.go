package probe

import (
	"encoding/base64"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// Redacted is what a Redactor puts in place of a credential.
const Redacted = "<redacted>"

// minSecretLen is the shortest secret a Redactor replaces. Four, not three:
// a secret is replaced wherever it occurs, and three characters occur by
// chance in ordinary text (a short password "abc" or "123" would mangle
// hex digests, ports and words in every error text and request log, making
// them misleading to the person debugging), while hiding a three-character
// password protects nothing it is not already exposed to by being guessable.
// A short password is still covered where it matters most: the base64 of
// user:password a Basic header carries is longer than four characters, and
// Authorization headers and token fields are redacted by their shape.
const minSecretLen = 4

// Redactor removes credentials from text that leaves the prober: error
// texts, request logs, debug pages. It is the one redactor of the exporter;
// its rule is
//
//   - every secret it was told of (Add, AddCredentials), in its exact form,
//     whitespace-trimmed and URL-query-escaped; for credentials also the
//     base64 of user:password (with and without padding) that a Basic
//     Authorization header or a docker config "auth" field carries, so a
//     registry echoing the header back does not leak it;
//   - by shape, whether known or not: the credential after "Bearer " or
//     "Basic " (a token68 that looks like a token, not a word), the values
//     of JSON token and password fields, and the values of query parameters
//     whose names mark them secret (secretQueryParams, the same table
//     recorded URLs are redacted with).
//
// A secret that contains another, or overlaps it, is replaced whole. The
// zero value and a nil *Redactor apply the shape rules only. A Redactor is
// safe for concurrent use.
type Redactor struct {
	mu      sync.RWMutex
	secrets map[string]struct{}
}

// NewRedactor returns a Redactor that knows the given secrets.
func NewRedactor(secrets ...string) *Redactor {
	r := &Redactor{}
	r.Add(secrets...)
	return r
}

// ModuleRedactor returns a Redactor that knows the secrets of module m: its
// password and the credentials its keychain resolves for ref (a password
// file's, a docker config's), read as a probe reads them. A keychain that
// fails contributes nothing: the probe could not have sent its secrets.
func ModuleRedactor(m Module, ref Reference) *Redactor {
	r := NewRedactor(string(m.Auth.Password))
	if m.Auth.Username != "" {
		r.AddCredentials(Credential{Username: m.Auth.Username, Password: m.Auth.Password})
	}
	if kc, err := ModuleKeychain(m); err == nil {
		if creds, err := resolveUnbound(kc, ref); err == nil {
			r.AddCredentials(creds...)
		}
	}
	return r
}

// AddModule makes r know every secret module m holds, whatever the
// registry: its password, its password file's content, every entry of its
// docker config and what its credential provider holds now (never running
// a plugin). It is for sinks that are not about one probe (the process
// log); a file that cannot be read contributes nothing, as no request
// could have carried it.
func (r *Redactor) AddModule(m Module) {
	r.Add(string(m.Auth.Password))
	if m.Auth.Username != "" {
		r.AddCredentials(Credential{Username: m.Auth.Username, Password: m.Auth.Password})
	}
	kc, err := ModuleKeychain(m)
	if err != nil {
		return
	}
	r.AddCredentials(knownSecrets(kc)...)
}

// Add makes r replace each secret, its whitespace-trimmed form (a password
// file may end in more than the one newline the keychain trims) and its
// URL-query-escaped form. Secrets shorter than four bytes are ignored.
func (r *Redactor) Add(secrets ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range secrets {
		r.addLocked(s)
		r.addLocked(strings.TrimSpace(s))
		r.addLocked(url.QueryEscape(s))
	}
}

// AddCredentials makes r replace the password and identity token of each
// credential, and the base64 of user:secret that Basic auth sends for it.
func (r *Redactor) AddCredentials(cs ...Credential) {
	for _, c := range cs {
		r.Add(string(c.Password), string(c.IdentityToken))
		r.mu.Lock()
		for _, p := range []string{string(c.Password), strings.TrimSpace(string(c.Password)), string(c.IdentityToken)} {
			if p == "" {
				continue
			}
			up := c.Username + ":" + p
			r.addLocked(base64.StdEncoding.EncodeToString([]byte(up)))
			r.addLocked(base64.RawStdEncoding.EncodeToString([]byte(up)))
		}
		r.mu.Unlock()
	}
}

func (r *Redactor) addLocked(s string) {
	if len(s) < minSecretLen {
		return
	}
	if r.secrets == nil {
		r.secrets = make(map[string]struct{})
	}
	r.secrets[s] = struct{}{}
}

// Redact returns s with every credential replaced by Redacted.
func (r *Redactor) Redact(s string) string {
	var spans []span
	if r != nil {
		r.mu.RLock()
		for sec := range r.secrets {
			for i := 0; ; {
				j := strings.Index(s[i:], sec)
				if j < 0 {
					break
				}
				spans = append(spans, span{i + j, i + j + len(sec)})
				i += j + 1
			}
		}
		r.mu.RUnlock()
	}
	spans = append(spans, shapeSpans(s)...)
	return replaceSpans(s, spans)
}

// span is a byte range [start, end) of a text to replace.
type span struct{ start, end int }

// replaceSpans replaces each maximal union of overlapping or adjacent spans
// by one Redacted: a secret containing another, or two overlapping ones,
// leave no fragment behind.
func replaceSpans(s string, spans []span) string {
	if len(spans) == 0 {
		return s
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].start < spans[j].start })
	var b strings.Builder
	last := 0
	for i := 0; i < len(spans); {
		start, end := spans[i].start, spans[i].end
		for i++; i < len(spans) && spans[i].start <= end; i++ {
			end = max(end, spans[i].end)
		}
		if start < last { // cannot happen after merging; keep the output sane anyway
			start = last
		}
		b.WriteString(s[last:start])
		b.WriteString(Redacted)
		last = end
	}
	b.WriteString(s[last:])
	return b.String()
}

// The shape rules. An RFC 7235 token68 after an auth scheme; the character
// after it must not continue it (nor be ':', as in `Bearer realm=https:`).
var (
	authValueRE = regexp.MustCompile(`(?i)\b(?:bearer|basic)\s+([A-Za-z0-9\-._~+/]{8,}=*)(?:[^A-Za-z0-9\-._~+/=:]|$)`)
	jsonFieldRE = regexp.MustCompile(`(?i)"(?:token|access_token|refresh_token|id_token|identitytoken|password|secret)"\s*:\s*"((?:[^"\\]|\\.)*)"`)
	// A query parameter (after ? or &) whose name isSecretParam accepts,
	// or a bare token=/password= anywhere (a form body, a log line).
	paramRE = regexp.MustCompile(`(?i)(?:[?&]([^=&\s"#?]+)|\b(access_token|refresh_token|identitytoken|token|password))=([^&\s"#]+)`)
)

// shapeSpans finds credentials by their shape. Each rule's regexp runs
// only on a text that holds what any of its matches must (shapeMayMatch):
// most texts a probe records (a digest, a media type) hold none, and the
// regexps were 15% of the exporter's CPU per warm probe.
func shapeSpans(s string) []span {
	return shapeSpansOf(s, false)
}

// shapeSpansOf is shapeSpans; with all, every regexp runs (the tests check
// that the filter changes nothing).
func shapeSpansOf(s string, all bool) []span {
	var out []span
	auth, json, param := all, all, all
	if !all {
		auth, json, param = shapeMayMatch(s)
	}
	if auth {
		for _, m := range authValueRE.FindAllStringSubmatchIndex(s, -1) {
			if looksLikeToken(s[m[2]:m[3]]) {
				out = append(out, span{m[2], m[3]})
			}
		}
	}
	if json {
		for _, m := range jsonFieldRE.FindAllStringSubmatchIndex(s, -1) {
			if v := s[m[2]:m[3]]; v != "" && v != Redacted {
				out = append(out, span{m[2], m[3]})
			}
		}
	}
	if !param {
		return out
	}
	for _, m := range paramRE.FindAllStringSubmatchIndex(s, -1) {
		if m[2] >= 0 && !isSecretParam(s[m[2]:m[3]]) {
			continue
		}
		if v := s[m[6]:m[7]]; v != Redacted && v != redactedQuery {
			out = append(out, span{m[6], m[7]})
		}
	}
	return out
}

// shapeMayMatch says which shape rules can match s: authValueRE needs
// "bearer" or "basic" (any case, as (?i) folds it: 's' also matches
// U+017F), jsonFieldRE a '"' and paramRE a '='. It only rules out.
func shapeMayMatch(s string) (auth, json, param bool) {
	json = strings.IndexByte(s, '"') >= 0
	param = strings.IndexByte(s, '=') >= 0
	for i := 0; i < len(s); i++ {
		if s[i] == 'b' || s[i] == 'B' {
			if rest := s[i+1:]; hasFoldPrefix(rest, "earer") || hasFoldPrefix(rest, "asic") {
				auth = true
				break
			}
		}
	}
	return auth, json, param
}

// hasFoldPrefix reports whether s starts with prefix under Unicode simple
// case folding, the folding of regexp's (?i).
func hasFoldPrefix(s, prefix string) bool {
	for _, p := range prefix {
		if s == "" {
			return false
		}
		r, n := utf8.DecodeRuneInString(s)
		if !equalFoldRune(r, p) {
			return false
		}
		s = s[n:]
	}
	return true
}

func equalFoldRune(a, b rune) bool {
	if a == b {
		return true
	}
	for f := unicode.SimpleFold(b); f != b; f = unicode.SimpleFold(f) {
		if f == a {
			return true
		}
	}
	return false
}

// redactedQuery is Redacted as url.Values.Encode writes it.
var redactedQuery = url.QueryEscape(Redacted)

// looksLikeToken tells a credential after "Bearer "/"Basic " from a word
// ("Bearer challenge realm", "Basic authentication"): tokens and base64
// carry a digit or a symbol, or capitals past the first character.
func looksLikeToken(v string) bool {
	for i, c := range v {
		switch {
		case c >= '0' && c <= '9', strings.ContainsRune("-._~+/=", c):
			return true
		case i > 0 && c >= 'A' && c <= 'Z':
			return true
		}
	}
	return false
}

// Query parameters whose values are replaced in recorded URLs and in text
// (token endpoints and redirects to blob stores carry secrets in the
// query): a parameter is secret when its lower-cased name contains one of
// these, or starts with a cloud store's signature prefix.
var (
	secretQueryParams     = []string{"token", "password", "secret", "signature", "sig", "credential", "code", "key", "auth"}
	secretQueryParamPrefs = []string{"x-amz-", "x-goog-"}
)

// isSecretParam reports whether a query parameter's value is a secret.
func isSecretParam(name string) bool {
	ln := strings.ToLower(name)
	for _, s := range secretQueryParams {
		if strings.Contains(ln, s) {
			return true
		}
	}
	for _, p := range secretQueryParamPrefs {
		if strings.HasPrefix(ln, p) {
			return true
		}
	}
	return false
}

// redactURL renders u without userinfo and with secret query values
// replaced by Redacted.
func redactURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	c := *u
	c.User = nil
	if c.RawQuery != "" {
		q := c.Query()
		changed := false
		for k, vs := range q {
			if isSecretParam(k) {
				for i := range vs {
					vs[i] = Redacted
				}
				changed = true
			}
		}
		if changed {
			c.RawQuery = q.Encode()
		}
	}
	return c.String()
}

// Headers kept in Result.Requests. Only these are copied, so a header the
// prober does not know (a cookie, a vendor's session header) never reaches
// the debug page. Every value kept passes through the run's Redactor; those
// whose structure carries a credential are first rewritten by
// recordedHeaderRedactions.
var (
	recordedRequestHeaders  = []string{"Accept", "Authorization", "Content-Type", "User-Agent"}
	recordedResponseHeaders = []string{
		"Content-Type", "Content-Length", "Docker-Content-Digest", "Docker-Distribution-Api-Version",
		"Www-Authenticate", "Location", "Link", "Retry-After",
		"Ratelimit-Limit", "Ratelimit-Remaining", "Docker-Ratelimit-Source",
	}
	recordedHeaderRedactions = map[string]func(string) string{
		"Authorization": redactAuthorization,
		// Redirects to blob stores carry signatures in the query.
		"Location": redactLocation,
	}
)

// redactAuthorization keeps the scheme of an Authorization value and drops
// the credential: "Bearer <redacted>".
func redactAuthorization(v string) string {
	scheme, _, found := strings.Cut(v, " ")
	if !found || scheme == "" {
		return Redacted
	}
	return scheme + " " + Redacted
}

// redactLocation is redactURL for a Location value.
func redactLocation(v string) string {
	u, err := url.Parse(v)
	if err != nil {
		return "<unparseable>"
	}
	return redactURL(u)
}
