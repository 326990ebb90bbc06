package probe

import (
	"reflect"
	"strings"
	"testing"
)

var challengeCases = []struct {
	name    string
	in      []string
	want    []Challenge
	errPart string
}{
	{
		name: "docker hub bearer",
		in:   []string{`Bearer realm="https://auth.docker.io/token",service="registry.docker.io"`},
		want: []Challenge{{Scheme: "bearer", Params: map[string]string{"realm": "https://auth.docker.io/token", "service": "registry.docker.io"}}},
	},
	{
		name: "insufficient scope with a comma inside the quoted scope",
		in:   []string{`Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull,push",error="insufficient_scope"`},
		want: []Challenge{{Scheme: "bearer", Params: map[string]string{
			"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
			"scope": "repository:a/b:pull,push", "error": "insufficient_scope"}}},
	},
	{
		name: "basic",
		in:   []string{`Basic realm="Registry Realm"`},
		want: []Challenge{{Scheme: "basic", Params: map[string]string{"realm": "Registry Realm"}}},
	},
	{
		name: "scheme and names are case-insensitive, spaces around = and ,",
		in:   []string{`BEARER Realm = "r" , Service="s"`},
		want: []Challenge{{Scheme: "bearer", Params: map[string]string{"realm": "r", "service": "s"}}},
	},
	{
		name: "escapes in quoted strings",
		in:   []string{`Basic realm="a \"quoted\" realm with \\ backslash"`},
		want: []Challenge{{Scheme: "basic", Params: map[string]string{"realm": `a "quoted" realm with \ backslash`}}},
	},
	{
		name: "unquoted URL value, as some registries send",
		in:   []string{`Bearer realm=https://auth.example/token,service=registry`},
		want: []Challenge{{Scheme: "bearer", Params: map[string]string{"realm": "https://auth.example/token", "service": "registry"}}},
	},
	{
		name: "two challenges in one value",
		in:   []string{`Basic realm="b", Bearer realm="https://t/token",service="s"`},
		want: []Challenge{
			{Scheme: "basic", Params: map[string]string{"realm": "b"}},
			{Scheme: "bearer", Params: map[string]string{"realm": "https://t/token", "service": "s"}},
		},
	},
	{
		name: "two header values, a scheme without params and a token68",
		in:   []string{`Negotiate, Basic realm="x"`, `NTLM abc+/==`},
		want: []Challenge{
			{Scheme: "negotiate", Params: map[string]string{}},
			{Scheme: "basic", Params: map[string]string{"realm": "x"}},
			{Scheme: "ntlm", Params: map[string]string{}, Token68: "abc+/=="},
		},
	},
	{
		name: "duplicate parameter: first wins",
		in:   []string{`Bearer realm="first",realm="second"`},
		want: []Challenge{{Scheme: "bearer", Params: map[string]string{"realm": "first"}}},
	},
	{name: "empty", in: []string{""}, errPart: "no authentication challenge"},
	{name: "no header", in: nil, errPart: "no authentication challenge"},
	{name: "unterminated quote", in: []string{`Bearer realm="https://x`}, errPart: "unterminated quoted string"},
	{name: "dangling escape", in: []string{`Bearer realm="x\`}, errPart: "unterminated escape"},
	{name: "garbage", in: []string{`{"not":"a challenge"}`}, errPart: "expected an auth scheme"},
	{name: "junk after value", in: []string{`Bearer realm="x" junk`}, errPart: "expected ','"},
	{name: "missing value", in: []string{`Bearer realm="x",service=`}, errPart: "missing parameter value"},
	{name: "empty value then more params", in: []string{`Bearer realm=,service="s"`}, errPart: "unexpected"},
	{name: "quote inside bare value", in: []string{`Bearer realm=ab"c"`}, errPart: "unexpected"},
	{name: "control character", in: []string{"Bearer realm=\"a\x01b\""}, errPart: "control character"},
	{name: "too long", in: []string{"Bearer realm=\"" + strings.Repeat("a", 20000) + "\""}, errPart: "too long"},
}

func TestParseChallenges(t *testing.T) {
	for _, tc := range challengeCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseChallenges(tc.in)
			if tc.errPart != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errPart) {
					t.Fatalf("ParseChallenges(%q) = %+v, %v; want error containing %q", tc.in, got, err, tc.errPart)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseChallenges(%q): %v", tc.in, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("ParseChallenges(%q)\n got %+v\nwant %+v", tc.in, got, tc.want)
			}
		})
	}
}

func TestPickChallenge(t *testing.T) {
	for _, tc := range []struct {
		in         string
		wantScheme string
		errPart    string
	}{
		{`Basic realm="b", Bearer realm="https://t"`, "bearer", ""},
		{`Negotiate, Basic realm="b"`, "basic", ""},
		{`Bearer service="s"`, "", "without a realm"},
		{`Negotiate abc==`, "", "unsupported authentication scheme(s) negotiate"},
	} {
		cs, err := ParseChallenges([]string{tc.in})
		if err != nil {
			t.Fatalf("%q: %v", tc.in, err)
		}
		c, err := pickChallenge(cs)
		if tc.errPart != "" {
			if err == nil || !strings.Contains(err.Error(), tc.errPart) {
				t.Errorf("pickChallenge(%q) = %+v, %v; want error %q", tc.in, c, err, tc.errPart)
			}
			continue
		}
		if err != nil || c.Scheme != tc.wantScheme {
			t.Errorf("pickChallenge(%q) = %+v, %v; want scheme %q", tc.in, c, err, tc.wantScheme)
		}
	}
}

func FuzzParseChallenges(f *testing.F) {
	for _, tc := range challengeCases {
		for _, v := range tc.in {
			f.Add(v)
		}
	}
	f.Fuzz(func(t *testing.T, v string) {
		cs, err := ParseChallenges([]string{v})
		if err != nil {
			return
		}
		// Canonical rendering parses back to the same challenges.
		parts := make([]string, len(cs))
		for i, c := range cs {
			if c.Scheme == "" || c.Scheme != strings.ToLower(c.Scheme) {
				t.Fatalf("%q: bad scheme %q", v, c.Scheme)
			}
			parts[i] = c.String()
		}
		again, err := ParseChallenges([]string{strings.Join(parts, ", ")})
		if err != nil {
			t.Fatalf("%q rendered as %q does not parse: %v", v, strings.Join(parts, ", "), err)
		}
		if !reflect.DeepEqual(again, cs) {
			t.Fatalf("%q: round trip\n got %+v\nwant %+v", v, again, cs)
		}
		_, _ = pickChallenge(cs)
	})
}
