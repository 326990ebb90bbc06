package probe

import (
	"reflect"
	"testing"
)

// TestReasonsClosedSet pins the set and its precedence order: moving a
// reason changes which cause a registry reports when its targets disagree.
func TestReasonsClosedSet(t *testing.T) {
	want := []Reason{"dns", "connect", "tls", "timeout", "server_error", "rate_limited", "unauthorized", "protocol", "not_found", "forbidden", "config"}
	if !reflect.DeepEqual(Reasons, want) {
		t.Errorf("Reasons = %v, want %v", Reasons, want)
	}
	var level []Reason
	perImage := false
	for _, r := range Reasons {
		if !r.RegistryLevel() {
			perImage = true
			continue
		}
		if perImage {
			t.Errorf("registry-level reason %q follows a per-image one: registry-level reasons come first", r)
		}
		level = append(level, r)
	}
	if want := want[:8]; !reflect.DeepEqual(level, want) {
		t.Errorf("registry-level reasons = %v, want %v", level, want)
	}
	for _, r := range []Reason{ReasonNone, "made_up", ReasonConfig} {
		if r.RegistryLevel() {
			t.Errorf("%q.RegistryLevel() = true", r)
		}
	}
	// The exporter's own problems come last and are the only Local ones.
	for i, r := range Reasons {
		if r.Local() != (r == ReasonConfig) || (r.Local() && i != len(Reasons)-1) {
			t.Errorf("%q.Local() = %t at rank %d", r, r.Local(), i)
		}
	}
}

func TestCause(t *testing.T) {
	ok := Evidence{Success: true}
	fail := func(r Reason) Evidence { return Evidence{Reason: r} }
	secret := func(r Reason) Evidence { return Evidence{Reason: r, PerCredential: true} }
	for _, c := range []struct {
		name   string
		ev     []Evidence
		want   Reason
		probed bool
	}{
		{name: "nothing probed", ev: nil, want: ReasonNone, probed: false},
		{name: "success", ev: []Evidence{ok}, want: ReasonNone, probed: true},
		{name: "registry-level beats success", ev: []Evidence{ok, fail(ReasonRateLimited)}, want: ReasonRateLimited, probed: true},
		{name: "protocol is registry-level", ev: []Evidence{ok, fail(ReasonProtocol)}, want: ReasonProtocol, probed: true},
		{name: "most fundamental first", ev: []Evidence{fail(ReasonTimeout), fail(ReasonDNS), fail(ReasonServerError)}, want: ReasonDNS, probed: true},
		{name: "server_error before rate_limited before unauthorized before protocol", ev: []Evidence{fail(ReasonProtocol), fail(ReasonUnauthorized), fail(ReasonRateLimited), fail(ReasonServerError)}, want: ReasonServerError, probed: true},
		{name: "unauthorized before protocol", ev: []Evidence{fail(ReasonProtocol), fail(ReasonUnauthorized)}, want: ReasonUnauthorized, probed: true},
		{name: "success beats per-image", ev: []Evidence{ok, fail(ReasonNotFound), fail(ReasonForbidden)}, want: ReasonNone, probed: true},
		{name: "not_found before forbidden", ev: []Evidence{fail(ReasonForbidden), fail(ReasonNotFound)}, want: ReasonNotFound, probed: true},
		{name: "forbidden alone", ev: []Evidence{fail(ReasonForbidden)}, want: ReasonForbidden, probed: true},
		{name: "registry unauthorized beats not_found", ev: []Evidence{fail(ReasonNotFound), fail(ReasonUnauthorized)}, want: ReasonUnauthorized, probed: true},
		// A pod's rejected pull secret is that secret's problem.
		{name: "success beats a pull secret", ev: []Evidence{ok, secret(ReasonUnauthorized)}, want: ReasonNone, probed: true},
		{name: "not_found beats a pull secret", ev: []Evidence{secret(ReasonUnauthorized), fail(ReasonNotFound)}, want: ReasonNotFound, probed: true},
		{name: "only pull secrets fail", ev: []Evidence{secret(ReasonUnauthorized), secret(ReasonUnauthorized)}, want: ReasonUnauthorized, probed: true},
		{name: "per-credential registry-level after per-image", ev: []Evidence{secret(ReasonProtocol), secret(ReasonConnect), fail(ReasonForbidden)}, want: ReasonForbidden, probed: true},
		{name: "per-credential in Reasons order", ev: []Evidence{secret(ReasonProtocol), secret(ReasonConnect)}, want: ReasonConnect, probed: true},
		{name: "unknown reasons after known ones", ev: []Evidence{fail("zz_new"), secret(ReasonUnauthorized), fail("aa_new")}, want: ReasonUnauthorized, probed: true},
		{name: "unknown reasons lexicographically", ev: []Evidence{fail("zz_new"), fail("mm_new"), fail("aa_new")}, want: "aa_new", probed: true},
		{name: "a failure without a reason is not up", ev: []Evidence{ok, {Success: false}}, want: ReasonProtocol, probed: true},
		{name: "unknown reason loses to success", ev: []Evidence{fail("zz_new"), ok}, want: ReasonNone, probed: true},
		// The exporter's own file problems are no evidence about the
		// registry: never its cause, whatever else is known.
		{name: "config alone is not probed", ev: []Evidence{fail(ReasonConfig), fail(ReasonConfig)}, want: ReasonNone, probed: false},
		{name: "config is ignored beside success", ev: []Evidence{fail(ReasonConfig), ok}, want: ReasonNone, probed: true},
		{name: "config is ignored beside per-image", ev: []Evidence{fail(ReasonConfig), fail(ReasonForbidden)}, want: ReasonForbidden, probed: true},
		{name: "config is ignored beside a pull secret", ev: []Evidence{fail(ReasonConfig), secret(ReasonUnauthorized)}, want: ReasonUnauthorized, probed: true},
		{name: "config is ignored beside unknown", ev: []Evidence{fail(ReasonConfig), fail("aa_new")}, want: "aa_new", probed: true},
	} {
		got, probed := Cause(c.ev)
		if got != c.want || probed != c.probed {
			t.Errorf("%s: Cause(%v) = %q, %v; want %q, %v", c.name, c.ev, got, probed, c.want, c.probed)
		}
		// The answer must not depend on the order of the results, nor on
		// map iteration: every rotation and the reverse, many times.
		for i := range c.ev {
			for _, rev := range []bool{false, true} {
				ev := append(append([]Evidence{}, c.ev[i:]...), c.ev[:i]...)
				if rev {
					for a, b := 0, len(ev)-1; a < b; a, b = a+1, b-1 {
						ev[a], ev[b] = ev[b], ev[a]
					}
				}
				for range 20 {
					if got, _ := Cause(ev); got != c.want {
						t.Errorf("%s: Cause(%v) = %q, want %q: depends on order", c.name, ev, got, c.want)
					}
				}
			}
		}
	}
}
