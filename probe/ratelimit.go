package probe

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Rate-limit header names, lower case as they appear in
// Result.MalformedHeaderNames and in the malformed-headers metric.
const (
	HeaderRateLimitLimit     = "ratelimit-limit"
	HeaderRateLimitRemaining = "ratelimit-remaining"
	HeaderRateLimitSource    = "docker-ratelimit-source"
	HeaderRetryAfter         = "retry-after"
)

// Bounds that separate a plausible header value from junk. A value outside
// them is counted as malformed and ignored instead of becoming a silly (or,
// for durations, overflowing) number in a metric.
const (
	maxRateLimitCount  = 1 << 40         // pulls per window
	maxRateLimitWindow = 366 * 24 * 3600 // one year, in seconds
	maxRetryAfter      = 7 * 24 * 3600   // one week, in seconds
	maxSourceLen       = 128             // an IP address or an account UUID
	maxRateLimitHeader = 1024            // bytes of one header value
)

// rateLimitHeaders accumulates what the replies of one probe said about the
// rate limit. The last reply that carried a complete limit wins: that is the
// freshest count (the manifest HEAD is last).
type rateLimitHeaders struct {
	rl        *RateLimit
	malformed []string // lower-case header names, one per malformed value
}

// observe reads the rate-limit headers of one reply.
func (a *rateLimitHeaders) observe(h http.Header) {
	limVals := h.Values(HeaderRateLimitLimit)
	remVals := h.Values(HeaderRateLimitRemaining)
	srcVals := h.Values(HeaderRateLimitSource)
	if len(limVals) == 0 && len(remVals) == 0 && len(srcVals) == 0 {
		return
	}
	limit, limWin, limOK := a.parseCount(HeaderRateLimitLimit, limVals)
	remaining, remWin, remOK := a.parseCount(HeaderRateLimitRemaining, remVals)
	source, srcOK := a.parseSource(srcVals)
	if !limOK || !remOK {
		// Without both numbers there is no headroom to report; a lone
		// value is not exposed (a limit without remaining would read as
		// an exhausted quota).
		return
	}
	win := limWin
	if win == time.Duration(0) {
		win = remWin
	}
	rl := &RateLimit{Limit: limit, Remaining: remaining, Window: win}
	if srcOK {
		rl.Source = source
	}
	a.rl = rl
}

// parseCount parses a ratelimit-limit or ratelimit-remaining header:
// Docker Hub's "100;w=21600", a bare "100", or an IETF draft list
// "100, 100;w=21600" whose first element is the current value. A present
// but unparseable value is counted as malformed.
func (a *rateLimitHeaders) parseCount(name string, vals []string) (float64, time.Duration, bool) {
	if len(vals) == 0 {
		return 0, 0, false
	}
	n, w, ok := parseCountValue(strings.Join(vals, ","))
	if !ok {
		a.malformed = append(a.malformed, name)
	}
	return n, w, ok
}

func parseCountValue(v string) (float64, time.Duration, bool) {
	if len(v) > maxRateLimitHeader {
		return 0, 0, false
	}
	elems := strings.Split(v, ",")
	n, win, ok := parseQuotaElement(elems[0])
	if !ok {
		return 0, 0, false
	}
	// Later list elements are quota policies ("100;w=21600"); each must be
	// well formed, and the first one matching the count lends its window
	// when the first element has none.
	for _, e := range elems[1:] {
		pn, pw, ok := parseQuotaElement(e)
		if !ok {
			return 0, 0, false
		}
		if win == 0 && pn == n {
			win = pw
		}
	}
	return float64(n), win, true
}

// parseQuotaElement parses one list element, "N" with optional parameters
// ";w=SECONDS" (at most once, positive) and others ("comment"), ignored.
// win is 0 when the element gives no window.
func parseQuotaElement(e string) (n uint64, win time.Duration, ok bool) {
	params := strings.Split(e, ";")
	n, ok = parseBoundedUint(strings.TrimSpace(params[0]), maxRateLimitCount)
	if !ok {
		return 0, 0, false
	}
	for _, p := range params[1:] {
		k, val, found := strings.Cut(strings.TrimSpace(p), "=")
		k = strings.TrimSpace(k)
		if !found || k == "" {
			return 0, 0, false
		}
		if !strings.EqualFold(k, "w") {
			continue
		}
		s, ok := parseBoundedUint(strings.Trim(strings.TrimSpace(val), `"`), maxRateLimitWindow)
		if !ok || s == 0 || win != 0 {
			return 0, 0, false
		}
		win = time.Duration(s) * time.Second
	}
	return n, win, true
}

// parseBoundedUint accepts only decimal digits: strconv.ParseFloat would
// take "NaN", "Inf", "1e9" and "-0", none of which a registry means.
func parseBoundedUint(s string, max uint64) (uint64, bool) {
	if s == "" || len(s) > 20 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > max {
		return 0, false
	}
	return n, true
}

// parseSource validates docker-ratelimit-source, which becomes a label
// value: printable ASCII without spaces, bounded in length.
func (a *rateLimitHeaders) parseSource(vals []string) (string, bool) {
	if len(vals) == 0 {
		return "", false
	}
	s := strings.TrimSpace(vals[0])
	ok := len(vals) == 1 && s != "" && len(s) <= maxSourceLen
	for i := 0; ok && i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f || s[i] == '"' || s[i] == '\\' {
			ok = false
		}
	}
	if !ok {
		a.malformed = append(a.malformed, HeaderRateLimitSource)
		return "", false
	}
	return s, true
}

// parseRetryAfter reads Retry-After (RFC 9110 section 10.2.3): delay seconds
// or an HTTP-date, relative to now. A date in the past means "now" (0). ok is
// false for a malformed or implausible (over a week) value.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" || len(v) > 64 {
		return 0, false
	}
	if v[0] >= '0' && v[0] <= '9' {
		s, ok := parseBoundedUint(v, maxRetryAfter)
		if !ok {
			return 0, false
		}
		return time.Duration(s) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	d := t.Sub(now)
	if d < 0 {
		return 0, true
	}
	if d > maxRetryAfter*time.Second {
		return 0, false
	}
	// Whole seconds, as the header has no finer resolution.
	return d.Truncate(time.Second), true
}
