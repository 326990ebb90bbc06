package testenv

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
)

// KindCode is one series of imagepull_registry_requests_total (or
// imagepull_mirror_requests_total) under a registry: the kind of request
// and the status code it got.
type KindCode struct{ Kind, Code string }

// RequestKind names the kind a logged request is counted as: what the
// request is, read from the wire (method and path), independently of how
// the prober labelled it, so that a test comparing the two catches a
// mislabelled request as well as a missing or extra one.
func (e AccessLogEntry) RequestKind() string {
	path, _, _ := strings.Cut(e.Path, "?")
	switch {
	case path == "/token":
		return "token" // the TokenIssuer's realm
	case path == "/v2/" || path == "/v2":
		return "ping"
	case strings.Contains(path, "/manifests/") && e.Method == http.MethodHead:
		return "manifest_head"
	case strings.Contains(path, "/manifests/") && e.Method == http.MethodGet:
		return "manifest_get"
	}
	return "other"
}

// LoggedKindCodes counts access log entries (of a Registry and of its
// TokenIssuer) by kind and status code.
func LoggedKindCodes(logs ...[]AccessLogEntry) map[KindCode]int {
	out := map[KindCode]int{}
	for _, l := range logs {
		for _, e := range l {
			out[KindCode{e.RequestKind(), fmt.Sprint(e.Status)}]++
		}
	}
	return out
}

// CountedKindCodes reads a request counter out of Samples: the value of
// every series of metric whose labels include labels, by its kind and code
// labels.
func CountedKindCodes(samples map[string]float64, metric string, labels ...string) map[KindCode]int {
	out := map[KindCode]int{}
	for _, k := range Series(samples, metric, labels...) {
		open, end := strings.IndexByte(k, '{'), strings.LastIndexByte(k, '}')
		var kc KindCode
		for _, l := range strings.Split(k[open+1:end], ",") {
			name, v, _ := strings.Cut(l, "=")
			switch name {
			case "kind":
				kc.Kind = strings.Trim(v, `"`)
			case "code":
				kc.Code = strings.Trim(v, `"`)
			}
		}
		if n := int(samples[k]); n != 0 {
			out[kc] += n
		}
	}
	return out
}

// DiffKindCodes describes where counted and logged differ, one line per
// kind and code, or returns "" when they agree exactly.
func DiffKindCodes(counted, logged map[KindCode]int) string {
	keys := map[KindCode]bool{}
	for k := range counted {
		keys[k] = true
	}
	for k := range logged {
		keys[k] = true
	}
	var lines []string
	for k := range keys {
		if counted[k] != logged[k] {
			lines = append(lines, fmt.Sprintf("kind=%s code=%s: counted %d, the servers logged %d", k.Kind, k.Code, counted[k], logged[k]))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// Fence sends one request to the registry with the User-Agent fenceUA and
// waits until its access log holds it, then returns the log. The registry
// writes an entry in its handler, in order, to one file; a fence sent after
// every request of the client under test was answered is logged after all
// of them, so the log returned is complete: an entry that is still missing
// was never sent. (Waiting for a count would return as soon as the expected
// entries are there and miss an unexpected late one.) fenceUA must not
// start with the User-Agent the test filters the log by.
func (r *Registry) Fence(t testing.TB, fenceUA string) []AccessLogEntry {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, r.URL+"/v2/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("User-Agent", fenceUA)
	resp, err := r.Client().Do(req)
	if err != nil {
		t.Fatalf("testenv: fence request: %v", err)
	}
	resp.Body.Close()
	fenced := func(l []AccessLogEntry) bool {
		for _, e := range l {
			if e.UserAgent == fenceUA {
				return true
			}
		}
		return false
	}
	l := r.WaitAccessLogFor(fenced)
	if !fenced(l) {
		t.Fatalf("testenv: the fence request never reached %s's access log", r.Addr)
	}
	return l
}

// FilterUA returns the entries of l whose User-Agent starts with userAgent.
func FilterUA(l []AccessLogEntry, userAgent string) []AccessLogEntry {
	var out []AccessLogEntry
	for _, e := range l {
		if strings.HasPrefix(e.UserAgent, userAgent) {
			out = append(out, e)
		}
	}
	return out
}

// WantAgreement fails unless counted equals, for every kind and code, the
// requests logged, and unless logged holds every kind of musthave (so that
// the comparison is not vacuous).
func WantAgreement(t testing.TB, what string, counted, logged map[KindCode]int, musthave ...KindCode) {
	t.Helper()
	if d := DiffKindCodes(counted, logged); d != "" {
		t.Errorf("%s: the counter and the servers disagree:\n%s\ncounted %v\nlogged  %v", what, d, counted, logged)
	}
	for _, kc := range musthave {
		if logged[kc] == 0 {
			t.Errorf("%s: no %s request with code %s was sent; the scenario does not exercise what it should (logged %v)", what, kc.Kind, kc.Code, logged)
		}
	}
}
