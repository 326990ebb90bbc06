package probe

import (
	"reflect"
	"testing"
)

// TestReasonsClosedSet pins the set and its precedence order: moving a
// reason changes which cause a registry reports when its targets disagree.
func TestReasonsClosedSet(t *testing.T) {
	want := []Reason{"dns", "connect", "tls", "timeout", "server_error", "rate_limited", "unauthorized", "protocol", "not_found", "forbidden", "no_credentials", "config"}
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
	for _, r := range []Reason{ReasonNone, "made_up", ReasonConfig, ReasonNoCredentials} {
		if r.RegistryLevel() {
			t.Errorf("%q.RegistryLevel() = true", r)
		}
	}
	// The classes, pinned: the mixin's lists are tested against them.
	var path, perImg, inconclusive []Reason
	for _, r := range Reasons {
		if r.PathLevel() {
			if !r.RegistryLevel() {
				t.Errorf("%q is path-level but not registry-level", r)
			}
			path = append(path, r)
		}
		if r.PerImage() {
			perImg = append(perImg, r)
		}
		if r.Inconclusive() {
			inconclusive = append(inconclusive, r)
		}
	}
	if w := []Reason{"dns", "connect", "tls", "timeout", "server_error", "protocol"}; !reflect.DeepEqual(path, w) {
		t.Errorf("path-level reasons = %v, want %v", path, w)
	}
	if w := []Reason{"not_found", "forbidden"}; !reflect.DeepEqual(perImg, w) {
		t.Errorf("per-image reasons = %v, want %v", perImg, w)
	}
	if w := []Reason{"no_credentials"}; !reflect.DeepEqual(inconclusive, w) {
		t.Errorf("inconclusive reasons = %v, want %v", inconclusive, w)
	}
	// The exporter's own problems come last and are the only Local ones.
	for i, r := range Reasons {
		if r.Local() != (r == ReasonConfig) || (r.Local() && i != len(Reasons)-1) {
			t.Errorf("%q.Local() = %t at rank %d", r, r.Local(), i)
		}
	}
}

func TestHealth(t *testing.T) {
	ok := Evidence{Success: true}
	fail := func(r Reason) Evidence { return Evidence{Reason: r} }
	secret := func(r Reason) Evidence { return Evidence{Reason: r, PerCredential: true} }
	up := func(r Reason) RegistryHealth { return RegistryHealth{Probed: true, Up: true, Reason: r} }
	upOK := RegistryHealth{Probed: true, Up: true, Succeeded: true}
	down := func(r Reason) RegistryHealth { return RegistryHealth{Probed: true, Reason: r} }
	for _, c := range []struct {
		name string
		ev   []Evidence
		want RegistryHealth
	}{
		{name: "nothing probed", ev: nil, want: RegistryHealth{}},
		{name: "success", ev: []Evidence{ok}, want: upOK},
		// Issue 11: one target with a wrong CA or behind a broken proxy
		// next to one that gets answers is that target's failure.
		{name: "success beats a path failure", ev: []Evidence{ok, fail(ReasonTLS)}, want: upOK},
		{name: "success beats rate_limited", ev: []Evidence{ok, fail(ReasonRateLimited)}, want: upOK},
		{name: "success beats the module's unauthorized", ev: []Evidence{fail(ReasonUnauthorized), ok}, want: upOK},
		{name: "most fundamental first", ev: []Evidence{fail(ReasonTimeout), fail(ReasonDNS), fail(ReasonServerError)}, want: down(ReasonDNS)},
		{name: "server_error before rate_limited before unauthorized before protocol", ev: []Evidence{fail(ReasonProtocol), fail(ReasonUnauthorized), fail(ReasonRateLimited), fail(ReasonServerError)}, want: down(ReasonServerError)},
		{name: "unauthorized before protocol", ev: []Evidence{fail(ReasonProtocol), fail(ReasonUnauthorized)}, want: down(ReasonUnauthorized)},
		{name: "protocol alone is down", ev: []Evidence{fail(ReasonProtocol)}, want: down(ReasonProtocol)},
		{name: "success beats per-image", ev: []Evidence{ok, fail(ReasonNotFound), fail(ReasonForbidden)}, want: upOK},
		{name: "not_found before forbidden", ev: []Evidence{fail(ReasonForbidden), fail(ReasonNotFound)}, want: up(ReasonNotFound)},
		{name: "forbidden alone", ev: []Evidence{fail(ReasonForbidden)}, want: up(ReasonForbidden)},
		// A 404 is an answer: the registry is up, and the connect failure
		// is the other target's path.
		{name: "a per-image answer makes the registry up", ev: []Evidence{fail(ReasonNotFound), fail(ReasonConnect)}, want: up(ReasonNotFound)},
		{name: "per-image beats the module's unauthorized", ev: []Evidence{fail(ReasonNotFound), fail(ReasonUnauthorized)}, want: up(ReasonNotFound)},
		// A pod's rejected pull secret is that secret's problem.
		{name: "success beats a pull secret", ev: []Evidence{ok, secret(ReasonUnauthorized)}, want: upOK},
		{name: "not_found beats a pull secret", ev: []Evidence{secret(ReasonUnauthorized), fail(ReasonNotFound)}, want: up(ReasonNotFound)},
		{name: "only pull secrets fail: up, per credential", ev: []Evidence{secret(ReasonUnauthorized), secret(ReasonUnauthorized)}, want: up(ReasonUnauthorized)},
		{name: "a pull secret's answer makes the registry up", ev: []Evidence{secret(ReasonUnauthorized), fail(ReasonTimeout)}, want: up(ReasonUnauthorized)},
		{name: "a connect failure is nobody's credential", ev: []Evidence{secret(ReasonConnect), fail(ReasonTimeout)}, want: down(ReasonConnect)},
		// No credentials: the registry answered with a challenge. Up, and
		// never a cause: the exporter cannot know about the image.
		{name: "no_credentials alone is up without a cause", ev: []Evidence{fail(ReasonNoCredentials)}, want: up(ReasonNone)},
		{name: "no_credentials beats a path failure", ev: []Evidence{fail(ReasonNoCredentials), fail(ReasonTLS)}, want: up(ReasonNone)},
		{name: "not_found beats no_credentials", ev: []Evidence{fail(ReasonNoCredentials), fail(ReasonNotFound)}, want: up(ReasonNotFound)},
		{name: "a pull secret beats no_credentials", ev: []Evidence{fail(ReasonNoCredentials), secret(ReasonUnauthorized)}, want: up(ReasonUnauthorized)},
		{name: "unknown reasons after known ones", ev: []Evidence{fail("zz_new"), secret(ReasonUnauthorized), fail("aa_new")}, want: up(ReasonUnauthorized)},
		{name: "unknown reasons lexicographically", ev: []Evidence{fail("zz_new"), fail("mm_new"), fail("aa_new")}, want: up("aa_new")},
		{name: "a failure without a reason is not up", ev: []Evidence{{Success: false}}, want: down(ReasonProtocol)},
		{name: "unknown reason loses to success", ev: []Evidence{fail("zz_new"), ok}, want: upOK},
		// The exporter's own file problems are no evidence about the
		// registry: never its cause, whatever else is known.
		{name: "config alone is not probed", ev: []Evidence{fail(ReasonConfig), fail(ReasonConfig)}, want: RegistryHealth{}},
		{name: "config is ignored beside success", ev: []Evidence{fail(ReasonConfig), ok}, want: upOK},
		{name: "config is ignored beside per-image", ev: []Evidence{fail(ReasonConfig), fail(ReasonForbidden)}, want: up(ReasonForbidden)},
		{name: "config is ignored beside down", ev: []Evidence{fail(ReasonConfig), fail(ReasonConnect)}, want: down(ReasonConnect)},
		{name: "config is ignored beside unknown", ev: []Evidence{fail(ReasonConfig), fail("aa_new")}, want: up("aa_new")},
	} {
		if got := Health(c.ev); got != c.want {
			t.Errorf("%s: Health(%v) = %+v; want %+v", c.name, c.ev, got, c.want)
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
					if got := Health(ev); got != c.want {
						t.Errorf("%s: Health(%v) = %+v, want %+v: depends on order", c.name, ev, got, c.want)
					}
				}
			}
		}
	}
}
