package probe

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Challenge is one authentication challenge of a WWW-Authenticate header
// (RFC 7235): a scheme and its parameters. Registries send
//
//	Bearer realm="https://auth.docker.io/token",service="registry.docker.io"
//	Basic realm="Registry Realm"
//
// and, on a manifest request the token does not cover,
// error="insufficient_scope" with the scope the token lacked.
type Challenge struct {
	// Scheme is lower case ("bearer", "basic"), as schemes are case-insensitive.
	Scheme string
	// Params holds the auth-params; names are lower case, values unquoted.
	Params map[string]string
	// Token68 is the token68 form of a challenge ("Negotiate abc=="), rare
	// for registries and kept only so that such headers parse.
	Token68 string
}

// Realm returns the realm parameter (the token endpoint URL for Bearer).
func (c Challenge) Realm() string { return c.Params["realm"] }

// Service returns the Bearer service parameter.
func (c Challenge) Service() string { return c.Params["service"] }

// Error returns the Bearer error parameter (RFC 6750), e.g.
// "insufficient_scope" or "invalid_token".
func (c Challenge) Error() string { return c.Params["error"] }

// String renders the challenge in canonical header form; ParseChallenges
// of the result gives the challenge back.
func (c Challenge) String() string {
	var b strings.Builder
	b.WriteString(c.Scheme)
	if c.Token68 != "" {
		b.WriteByte(' ')
		b.WriteString(c.Token68)
		return b.String()
	}
	names := make([]string, 0, len(c.Params))
	for k := range c.Params {
		names = append(names, k)
	}
	sort.Strings(names)
	for i, k := range names {
		if i == 0 {
			b.WriteByte(' ')
		} else {
			b.WriteByte(',')
		}
		b.WriteString(k)
		b.WriteString(`="`)
		v := c.Params[k]
		for i := 0; i < len(v); i++ {
			if v[i] == '"' || v[i] == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(v[i])
		}
		b.WriteByte('"')
	}
	return b.String()
}

// maxChallengeHeader bounds the work on one header value: registries send a
// few hundred bytes; anything far larger is not a challenge.
const maxChallengeHeader = 16 << 10

// errNoChallenge is returned when a header has no challenge at all.
var errNoChallenge = errors.New("no authentication challenge")

// ParseChallenges parses the values of WWW-Authenticate headers into
// challenges, in order. Several challenges may share one header value,
// separated by commas (RFC 7235 section 4.1). Quoted strings may contain
// commas and backslash escapes. A value that does not follow the grammar is
// an error: the probe reports it as ReasonProtocol.
func ParseChallenges(values []string) ([]Challenge, error) {
	var out []Challenge
	for _, v := range values {
		if len(v) > maxChallengeHeader {
			return nil, fmt.Errorf("WWW-Authenticate header of %d bytes is too long", len(v))
		}
		cs, err := parseChallengeValue(v)
		if err != nil {
			return nil, fmt.Errorf("invalid WWW-Authenticate header: %w", err)
		}
		out = append(out, cs...)
	}
	if len(out) == 0 {
		return nil, errNoChallenge
	}
	return out, nil
}

// isTchar reports whether c is an RFC 7230 token character.
func isTchar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// isToken68char reports whether c may appear in a token68 (before the
// trailing '=' padding).
func isToken68char(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("-._~+/", c) >= 0
}

type challengeLexer struct {
	s string
	i int
}

func (l *challengeLexer) skipOWS() {
	for l.i < len(l.s) && (l.s[l.i] == ' ' || l.s[l.i] == '\t') {
		l.i++
	}
}

// skipSeparators skips white space and empty list elements.
func (l *challengeLexer) skipSeparators() {
	for l.i < len(l.s) && (l.s[l.i] == ' ' || l.s[l.i] == '\t' || l.s[l.i] == ',') {
		l.i++
	}
}

func (l *challengeLexer) token() string {
	start := l.i
	for l.i < len(l.s) && isTchar(l.s[l.i]) {
		l.i++
	}
	return l.s[start:l.i]
}

func (l *challengeLexer) eof() bool { return l.i >= len(l.s) }

// quoted reads a quoted-string starting at the opening quote.
func (l *challengeLexer) quoted() (string, error) {
	start := l.i
	l.i++ // opening quote
	var b strings.Builder
	for l.i < len(l.s) {
		c := l.s[l.i]
		switch {
		case c == '"':
			l.i++
			return b.String(), nil
		case c == '\\':
			if l.i+1 >= len(l.s) {
				return "", fmt.Errorf("unterminated escape in quoted string at offset %d", l.i)
			}
			if e := l.s[l.i+1]; e < 0x20 && e != '\t' || e == 0x7f {
				return "", fmt.Errorf("control character in quoted string at offset %d", l.i+1)
			}
			b.WriteByte(l.s[l.i+1])
			l.i += 2
		case c < 0x20 && c != '\t' || c == 0x7f:
			return "", fmt.Errorf("control character in quoted string at offset %d", l.i)
		default:
			b.WriteByte(c)
			l.i++
		}
	}
	return "", fmt.Errorf("unterminated quoted string starting at offset %d", start)
}

// bareValue reads an unquoted parameter value. RFC 7235 wants a token, but
// registries in the wild send unquoted URLs (realm=https://...), so anything
// up to the next separator is accepted.
func (l *challengeLexer) bareValue() (string, error) {
	start := l.i
	for l.i < len(l.s) {
		c := l.s[l.i]
		if c == ',' || c == ' ' || c == '\t' {
			break
		}
		if c == '"' || c == '\\' || c < 0x20 || c == 0x7f {
			return "", fmt.Errorf("unexpected %q in parameter value at offset %d", c, l.i)
		}
		l.i++
	}
	if l.i == start {
		return "", fmt.Errorf("missing parameter value at offset %d", start)
	}
	return l.s[start:l.i], nil
}

// token68 tries to read a token68 at the current position; it succeeds only
// when the token68 is followed by the end of the value or a comma, which
// tells it apart from the name of an auth-param.
func (l *challengeLexer) token68() (string, bool) {
	j := l.i
	for j < len(l.s) && isToken68char(l.s[j]) {
		j++
	}
	if j == l.i {
		return "", false
	}
	for j < len(l.s) && l.s[j] == '=' {
		j++
	}
	k := j
	for k < len(l.s) && (l.s[k] == ' ' || l.s[k] == '\t') {
		k++
	}
	if k < len(l.s) && l.s[k] != ',' {
		return "", false
	}
	t := l.s[l.i:j]
	l.i = j
	return t, true
}

func parseChallengeValue(v string) ([]Challenge, error) {
	l := &challengeLexer{s: v}
	var out []Challenge
	for {
		l.skipSeparators()
		if l.eof() {
			return out, nil
		}
		scheme := l.token()
		if scheme == "" {
			return nil, fmt.Errorf("expected an auth scheme at offset %d, found %q", l.i, l.s[l.i])
		}
		c := Challenge{Scheme: strings.ToLower(scheme), Params: map[string]string{}}
		if !l.eof() && l.s[l.i] != ' ' && l.s[l.i] != '\t' && l.s[l.i] != ',' {
			return nil, fmt.Errorf("unexpected %q after auth scheme %q at offset %d", l.s[l.i], scheme, l.i)
		}
		l.skipOWS()
		if t, ok := l.token68(); ok {
			// "scheme token68" unless what looked like a token68 is
			// really the start of the next challenge ("Basic, Bearer x=y")
			// — that needs a comma first, which token68 excludes.
			c.Token68 = t
			out = append(out, c)
			continue
		}
		// auth-params, comma separated; a token not followed by '='
		// starts the next challenge.
		first := true
		for {
			save := l.i
			l.skipOWS()
			if !first {
				if l.eof() {
					break
				}
				if l.s[l.i] != ',' {
					return nil, fmt.Errorf("expected ',' at offset %d, found %q", l.i, l.s[l.i])
				}
				l.skipSeparators()
			}
			if l.eof() {
				break
			}
			nameStart := l.i
			name := l.token()
			if name == "" {
				if first && l.s[l.i] == ',' {
					// a scheme without parameters, followed by another challenge
					break
				}
				return nil, fmt.Errorf("expected a parameter name at offset %d, found %q", l.i, l.s[l.i])
			}
			l.skipOWS()
			if l.eof() || l.s[l.i] != '=' {
				if first {
					return nil, fmt.Errorf("parameter %q without a value at offset %d", name, nameStart)
				}
				// the next challenge's scheme
				l.i = save
				break
			}
			l.i++ // '='
			l.skipOWS()
			var val string
			var err error
			if !l.eof() && l.s[l.i] == '"' {
				val, err = l.quoted()
			} else {
				val, err = l.bareValue()
			}
			if err != nil {
				return nil, err
			}
			key := strings.ToLower(name)
			if _, dup := c.Params[key]; !dup { // RFC 7235: each name once; first wins
				c.Params[key] = val
			}
			first = false
		}
		out = append(out, c)
	}
}

// pickChallenge chooses the challenge the prober answers: Bearer if offered
// (what Docker Hub, GHCR, Quay and distribution's token auth use), else
// Basic. Other schemes are not supported by container runtimes either.
func pickChallenge(cs []Challenge) (Challenge, error) {
	var basic *Challenge
	for i := range cs {
		switch cs[i].Scheme {
		case "bearer":
			if cs[i].Realm() == "" {
				return Challenge{}, errors.New("bearer challenge without a realm")
			}
			return cs[i], nil
		case "basic":
			if basic == nil {
				basic = &cs[i]
			}
		}
	}
	if basic != nil {
		return *basic, nil
	}
	schemes := make([]string, len(cs))
	for i, c := range cs {
		schemes[i] = c.Scheme
	}
	return Challenge{}, fmt.Errorf("unsupported authentication scheme(s) %s (want Bearer or Basic)", strings.Join(schemes, ", "))
}
