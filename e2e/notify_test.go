package e2e_test

import (
	"encoding/json"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/imagepull/imagepull_exporter/internal/testenv"
)

// Receivers of mixin/alertmanager.example.yml.
const (
	receiverPage   = "imagepull-page"
	receiverTicket = "imagepull-ticket"
)

// expect is one alert a phase must notify, with its exact label set.
type expect struct {
	status   string // firing or resolved
	receiver string
	labels   map[string]string
}

func firing(receiver string, labels map[string]string) expect {
	return expect{status: "firing", receiver: receiver, labels: labels}
}

func resolved(receiver string, labels map[string]string) expect {
	return expect{status: "resolved", receiver: receiver, labels: labels}
}

// notified is one alert as one webhook message carried it.
type notified struct {
	receiver string
	testenv.WebhookAlert
}

// identity tells alert instances apart: Alertmanager re-lists every firing
// alert of a group whenever the group changes, and an alert that resolves
// and fires again is a new instance with a new start.
func (n notified) identity() string {
	return labelString(n.Labels) + "@" + n.StartsAt.UTC().Format(time.RFC3339Nano)
}

// phase is a step of a scenario: what the webhook had received before it.
type phase struct {
	name   string
	from   int             // index of the first message of the phase
	before map[string]bool // identities of alerts notified firing before
}

func (s *stack) beginPhase(t *testing.T, name string) phase {
	t.Logf("=== %s (%s since start)", name, time.Since(s.started).Round(time.Second))
	msgs := s.hook.Messages()
	ph := phase{name: name, from: len(msgs), before: map[string]bool{}}
	for _, n := range flatten(msgs) {
		if n.Status == "firing" {
			ph.before[n.identity()] = true
		}
	}
	return ph
}

func flatten(msgs []testenv.WebhookMessage) []notified {
	var out []notified
	for _, m := range msgs {
		for _, a := range m.Alerts {
			out = append(out, notified{receiver: m.Receiver, WebhookAlert: a})
		}
	}
	return out
}

func sameLabels(a, b map[string]string) bool {
	return len(a) == len(b) && testenv.HasLabels(a, b)
}

// expectNotifications waits until every alert of want has been notified in
// this phase, then checks that the phase notified exactly want: each firing
// alert once (one new instance per label set; alerts that fired before the
// phase and are merely re-listed with their group do not count), each
// resolved one, nothing else, each through its receiver. mayFire are label
// sets that may also newly fire (for the last phase, which does not wait for
// them). It returns the newest notification of each wanted alert.
func (s *stack) expectNotifications(t *testing.T, ph phase, want []expect, mayFire ...map[string]string) map[string]notified {
	t.Helper()
	key := func(status string, labels map[string]string) string { return status + " " + labelString(labels) }
	s.hook.WaitFor(t, eventually, func(msgs []testenv.WebhookMessage) bool {
		got := map[string]bool{}
		for _, n := range flatten(msgs[ph.from:]) {
			if n.Status == "resolved" || !ph.before[n.identity()] {
				got[key(n.Status, n.Labels)] = true
			}
		}
		for _, w := range want {
			if !got[key(w.status, w.labels)] {
				return false
			}
		}
		return true
	})

	wanted := map[string]expect{}
	for _, w := range want {
		wanted[key(w.status, w.labels)] = w
	}
	allowed := map[string]bool{}
	for _, l := range mayFire {
		allowed[key("firing", l)] = true
	}
	last := map[string]notified{}
	instances := map[string]map[string]bool{}
	for _, n := range flatten(s.hook.Messages()[ph.from:]) {
		if n.Status == "firing" && ph.before[n.identity()] {
			continue // re-listed with its group; notified in an earlier phase
		}
		k := key(n.Status, n.Labels)
		w, ok := wanted[k]
		switch {
		case !ok && allowed[k]:
			continue
		case !ok:
			t.Errorf("%s: unexpected notification to %s: %s %s", ph.name, n.receiver, n.Status, labelString(n.Labels))
			continue
		case n.receiver != w.receiver:
			t.Errorf("%s: %s reached receiver %s, want %s", ph.name, k, n.receiver, w.receiver)
		}
		if instances[k] == nil {
			instances[k] = map[string]bool{}
			t.Logf("%s: %s to %s", ph.name, k, n.receiver)
		}
		instances[k][n.identity()] = true
		last[k] = n
	}
	for k, ids := range instances {
		if len(ids) != 1 {
			t.Errorf("%s: %s was notified as %d alerts, want exactly one: %v", ph.name, k, len(ids), keys(ids))
		}
	}
	out := map[string]notified{}
	for _, w := range want {
		out[labelString(w.labels)] = last[key(w.status, w.labels)]
	}
	return out
}

// annotation returns an annotation of a notified alert.
func annotation(got map[string]notified, labels map[string]string, name string) string {
	return got[labelString(labels)].Annotations[name]
}

// wantAnnotation checks that annotation name of the alert with labels
// contains every part.
func wantAnnotation(t *testing.T, got map[string]notified, labels map[string]string, name string, parts ...string) {
	t.Helper()
	a := annotation(got, labels, name)
	for _, p := range parts {
		if !strings.Contains(a, p) {
			t.Errorf("%s of %s = %q\nwant it to contain %q", name, labelString(labels), a, p)
		}
	}
}

// waitAlertmanager polls Alertmanager's alerts until ok accepts them: a
// wait for Prometheus to send, not a timed assertion.
func (s *stack) waitAlertmanager(t *testing.T, what string, ok func([]testenv.AMAlert) bool) []testenv.AMAlert {
	t.Helper()
	deadline := time.Now().Add(eventually)
	for {
		as := s.am.Alerts(t)
		if ok(as) {
			return as
		}
		if time.Now().After(deadline) {
			b, _ := json.MarshalIndent(as, "", "  ")
			t.Fatalf("Alertmanager never held %s; it holds:\n%s", what, b)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// promAlerts returns Prometheus' alerts as sorted `state name{labels}` lines.
func (s *stack) promAlerts(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, a := range s.prom.Alerts(t) {
		out = append(out, a.State+" "+labelString(a.Labels))
	}
	sort.Strings(out)
	return out
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
