package probe

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
)

func FuzzTokenReply(f *testing.F) {
	for _, s := range []string{
		`{"token":"t1","expires_in":300,"issued_at":"2026-01-01T00:00:00Z"}`,
		`{"access_token":"t2","expires_in":60.5,"refresh_token":"r"}`,
		`{"token":"","access_token":"t2"}`,
		`{"Token":"metadata-secret"}`,
		`{"Code":"Success","Token":"x","Expiration":"2026-01-01T00:00:00Z"}`,
		`{"token":"a\r\nb"}`, `{"token":"t","expires_in":1e309}`, `{"token":"t","token":"u"}`,
		`{"to\u006ben":"t"}`, `{"token":"0","":1e700}`, `null`, `[]`, `"token"`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		tok, exp, err := parseTokenReply(body)
		if err != nil {
			if len(body) >= 16 && strings.Contains(err.Error(), string(body)) {
				t.Fatalf("error %q quotes the reply", err)
			}
			return
		}
		if tok == "" || exp < 0 || exp > 1<<40 {
			t.Fatalf("%q: token %q expires_in %d", body, tok, exp)
		}
		for i := 0; i < len(tok); i++ {
			if tok[i] < 0x21 || tok[i] > 0x7e {
				t.Fatalf("%q: token %q holds byte %#x", body, tok, tok[i])
			}
		}
		// The token is the value of an exactly named key.
		// (RawMessage values: a number out of float64's range elsewhere in
		// the object does not matter.)
		var m map[string]json.RawMessage
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("%q accepted but not a JSON object: %v", body, err)
		}
		field := func(k string) string {
			var s string
			_ = json.Unmarshal(m[k], &s)
			return s
		}
		if field("token") != tok && field("access_token") != tok {
			t.Fatalf("%q: token %q is under neither token nor access_token", body, tok)
		}
	})
}

// origin is the origin of u computed independently of sameOrigin.
func fuzzOrigin(u *url.URL) string {
	scheme := asciiLowerForTest(u.Scheme)
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[scheme]
	}
	return scheme + "://" + asciiLowerForTest(u.Hostname()) + "|" + port
}

func FuzzRedirectPolicy(f *testing.F) {
	for _, s := range [][3]string{
		{"https://r.example/v2/", "https://r.example/v2/", "https://r.example/x"},
		{"https://r.example/v2/", "https://r.example/v2/", "https://r.example:8443/x"},
		{"https://auth.example/token", "https://auth.example/token", "https://evil.example/token"},
		{"https://r.example/", "https://r.example/", "http://r.example/"},
		{"http://r.example/", "https://cdn.example/", "http://r.example/"},
		{"http://127.0.0.1:5000/v2/", "http://127.0.0.1:5000/v2/", "http://127.0.0.1:5001/v2/"},
		{"http://[::1]:80/", "http://[::1]/", "http://[::1]:80/x"},
		{"HTTPS://R.example/", "https://r.example/", "hTTps://r.EXAMPLE:443/"},
		{"https://r.example/", "https://r.example/", "//evil.example/"},
		{"https://s.example/", "https://s.example/", "https://\u017f.example/"},
		{"http://r.example/", "http://r.example/", "http://169.254.169.254/latest/meta-data/"},
		{"http://r.example/", "http://r.example/", "http://[fd00:ec2::254]/"},
	} {
		f.Add(s[0], s[1], s[2], false)
		f.Add(s[0], s[1], s[2], true)
	}
	f.Fuzz(func(t *testing.T, first, prev, next string, hasBody bool) {
		var chain []*url.URL
		for _, s := range []string{first, prev} {
			u, err := url.Parse(s)
			if err != nil {
				return
			}
			chain = append(chain, u)
		}
		nu, err := url.Parse(next)
		if err != nil {
			return
		}
		keep, err := redirectPolicy(chain, nu, hasBody)
		if err != nil {
			if !isPolicyError(err) {
				t.Fatalf("error %v is not a policy error", err)
			}
			return
		}
		for _, u := range chain {
			if strings.EqualFold(u.Scheme, "https") && !strings.EqualFold(nu.Scheme, "https") {
				t.Fatalf("%v -> %s: a redirect from https to %q allowed", chain, next, nu.Scheme)
			}
		}
		if forbiddenHost(nu.Hostname()) && fuzzOrigin(chain[0]) != fuzzOrigin(nu) && asciiLowerForTest(chain[0].Hostname()) != asciiLowerForTest(nu.Hostname()) {
			t.Fatalf("%v -> %s: a redirect to a metadata address allowed", chain, next)
		}
		same := fuzzOrigin(chain[0]) == fuzzOrigin(chain[1]) && fuzzOrigin(chain[0]) == fuzzOrigin(nu)
		if keep && !same {
			t.Fatalf("%v -> %s: Authorization kept across origins", chain, next)
		}
		if hasBody && !same {
			t.Fatalf("%v -> %s: a body resent across origins", chain, next)
		}
	})
}

func asciiLowerForTest(s string) string {
	return strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, s)
}
