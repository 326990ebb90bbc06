package probe

import (
	"net/http"
	"reflect"
	"testing"
	"time"
)

var rateLimitCases = []struct {
	name          string
	limit, remain []string
	source        []string
	want          *RateLimit
	malformed     []string
}{
	{
		name:  "docker hub anonymous",
		limit: []string{"100;w=21600"}, remain: []string{"76;w=21600"}, source: []string{"203.0.113.7"},
		want: &RateLimit{Limit: 100, Remaining: 76, Window: 6 * time.Hour, Source: "203.0.113.7"},
	},
	{
		name:  "authenticated account, source is an account id",
		limit: []string{"200;w=21600"}, remain: []string{"0;w=21600"}, source: []string{"c2e1f3a4-5b6c-4d7e-8f90-a1b2c3d4e5f6"},
		want: &RateLimit{Limit: 200, Remaining: 0, Window: 6 * time.Hour, Source: "c2e1f3a4-5b6c-4d7e-8f90-a1b2c3d4e5f6"},
	},
	{
		name:  "IETF draft list form, window from the matching policy",
		limit: []string{"100, 100;w=21600"}, remain: []string{"5"},
		want: &RateLimit{Limit: 100, Remaining: 5, Window: 6 * time.Hour},
	},
	{
		name:  "IETF draft list form, window from the policy of the same count",
		limit: []string{"100, 50;w=60, 100;w=21600"}, remain: []string{"5"},
		want: &RateLimit{Limit: 100, Remaining: 5, Window: 6 * time.Hour},
	},
	{name: "list policy with two windows", limit: []string{"100, 100;w=60;w=120"}, remain: []string{"5"}, malformed: []string{HeaderRateLimitLimit}},
	{name: "list policy with a nameless parameter", limit: []string{"100, 100;=60"}, remain: []string{"5"}, malformed: []string{HeaderRateLimitLimit}},
	{
		name:  "window only on remaining, unknown parameters ignored",
		limit: []string{"100;comment=\"x\""}, remain: []string{"7;w=60"},
		want: &RateLimit{Limit: 100, Remaining: 7, Window: time.Minute},
	},
	{name: "no headers: paid or unlimited account"},
	{name: "count without a number", limit: []string{";w=21600"}, remain: []string{"76;w=21600"}, malformed: []string{HeaderRateLimitLimit}},
	{name: "empty values", limit: []string{""}, remain: []string{""}, malformed: []string{HeaderRateLimitLimit, HeaderRateLimitRemaining}},
	{name: "junk", limit: []string{"lots"}, remain: []string{"76;w=abc"}, malformed: []string{HeaderRateLimitLimit, HeaderRateLimitRemaining}},
	{name: "negative", limit: []string{"-1;w=21600"}, remain: []string{"76;w=21600"}, malformed: []string{HeaderRateLimitLimit}},
	{name: "NaN and Inf", limit: []string{"NaN;w=21600"}, remain: []string{"Inf"}, malformed: []string{HeaderRateLimitLimit, HeaderRateLimitRemaining}},
	{name: "huge count", limit: []string{"99999999999999999999999;w=21600"}, remain: []string{"1;w=21600"}, malformed: []string{HeaderRateLimitLimit}},
	{name: "huge window", limit: []string{"100;w=999999999999"}, remain: []string{"1"}, malformed: []string{HeaderRateLimitLimit}},
	{name: "zero window", limit: []string{"100;w=0"}, remain: []string{"1"}, malformed: []string{HeaderRateLimitLimit}},
	{name: "float", limit: []string{"1e2;w=21600"}, remain: []string{"1.5"}, malformed: []string{HeaderRateLimitLimit, HeaderRateLimitRemaining}},
	{name: "parameter without value", limit: []string{"100;w"}, remain: []string{"1"}, malformed: []string{HeaderRateLimitLimit}},
	{
		name:  "malformed source is dropped, numbers kept",
		limit: []string{"100;w=21600"}, remain: []string{"76;w=21600"}, source: []string{"has space"},
		want:      &RateLimit{Limit: 100, Remaining: 76, Window: 6 * time.Hour},
		malformed: []string{HeaderRateLimitSource},
	},
	{name: "only a source", source: []string{"203.0.113.7"}},
	{name: "only a limit", limit: []string{"100;w=21600"}},
}

func TestRateLimitHeaders(t *testing.T) {
	for _, tc := range rateLimitCases {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for _, v := range tc.limit {
				h.Add("RateLimit-Limit", v)
			}
			for _, v := range tc.remain {
				h.Add("RateLimit-Remaining", v)
			}
			for _, v := range tc.source {
				h.Add("Docker-RateLimit-Source", v)
			}
			var a rateLimitHeaders
			a.observe(h)
			if !reflect.DeepEqual(a.rl, tc.want) {
				t.Errorf("RateLimit = %+v, want %+v", a.rl, tc.want)
			}
			if !reflect.DeepEqual(a.malformed, tc.malformed) {
				t.Errorf("malformed = %q, want %q", a.malformed, tc.malformed)
			}
		})
	}
}

func TestRateLimitLastCompleteReplyWins(t *testing.T) {
	var a rateLimitHeaders
	a.observe(http.Header{"Ratelimit-Limit": {"100;w=21600"}, "Ratelimit-Remaining": {"10;w=21600"}})
	a.observe(http.Header{})                                                          // a reply without headers keeps the last count
	a.observe(http.Header{"Ratelimit-Limit": {"junk"}, "Ratelimit-Remaining": {"9"}}) // a broken one too
	if a.rl == nil || a.rl.Remaining != 10 {
		t.Fatalf("rl = %+v, want remaining 10", a.rl)
	}
	a.observe(http.Header{"Ratelimit-Limit": {"100;w=21600"}, "Ratelimit-Remaining": {"9;w=21600"}})
	if a.rl.Remaining != 9 || len(a.malformed) != 1 {
		t.Fatalf("rl = %+v malformed %q, want remaining 9 and one malformed", a.rl, a.malformed)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"120", 2 * time.Minute, true},
		{" 0 ", 0, true},
		{"Sat, 01 Mar 2025 12:01:30 GMT", 90 * time.Second, true},
		{"Saturday, 01-Mar-25 12:00:10 GMT", 10 * time.Second, true}, // RFC 850
		{"Sat, 01 Mar 2025 11:00:00 GMT", 0, true},                   // in the past: now
		{"", 0, false},
		{"-5", 0, false},
		{"1.5", 0, false},
		{"soon", 0, false},
		{"99999999999999999999", 0, false},
		{"9999999", 0, false}, // over a week
		{"Sat, 01 Mar 2099 12:00:00 GMT", 0, false},
	} {
		got, ok := parseRetryAfter(tc.in, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseRetryAfter(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func FuzzRateLimitHeaders(f *testing.F) {
	for _, tc := range rateLimitCases {
		f.Add(first(tc.limit), first(tc.remain), first(tc.source), "")
	}
	f.Add("100;w=21600", "76;w=21600", "203.0.113.7", "120")
	f.Add("", "", "", "Sat, 01 Mar 2025 12:01:30 GMT")
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, limit, remain, source, retry string) {
		h := http.Header{}
		if limit != "" {
			h.Set("RateLimit-Limit", limit)
		}
		if remain != "" {
			h.Set("RateLimit-Remaining", remain)
		}
		if source != "" {
			h.Set("Docker-RateLimit-Source", source)
		}
		var a rateLimitHeaders
		a.observe(h)
		if a.rl != nil {
			if a.rl.Limit < 0 || a.rl.Remaining < 0 || a.rl.Window < 0 || a.rl.Limit > maxRateLimitCount || a.rl.Window > maxRateLimitWindow*time.Second {
				t.Fatalf("out of bounds: %+v", a.rl)
			}
			if len(a.rl.Source) > maxSourceLen {
				t.Fatalf("source too long: %q", a.rl.Source)
			}
		}
		if len(a.malformed) > 3 {
			t.Fatalf("malformed %q: more than one per header", a.malformed)
		}
		if d, ok := parseRetryAfter(retry, now); d < 0 || d > maxRetryAfter*time.Second || (!ok && d != 0) {
			t.Fatalf("parseRetryAfter(%q) = %v, %v", retry, d, ok)
		}
	})
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}
