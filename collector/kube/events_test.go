package kube

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/imagepull/imagepull_exporter/collector"
)

func TestTransformEvent(t *testing.T) {
	at := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	img := "registry.example.com/team/app:v1"
	for _, tc := range []struct {
		name string
		ev   corev1.Event
		want eventInfo
	}{
		{"a kubelet's failed pull",
			corev1.Event{InvolvedObject: corev1.ObjectReference{Name: "p", FieldPath: "spec.containers{app}"},
				Message: fmt.Sprintf("Failed to pull image %q: %s", img, pullErr(errOdd, img)), Source: corev1.EventSource{Host: "n1"},
				Count: 3, LastTimestamp: metav1.NewTime(at)},
			eventInfo{Pod: "p", Container: "app", PullFailure: true, Registry: "registry.example.com", Node: "n1", Count: 3, Last: at}},
		{"an init container, aggregated, events.k8s.io style",
			corev1.Event{InvolvedObject: corev1.ObjectReference{Name: "p", FieldPath: "spec.initContainers{init}"},
				Message: combinedPrefix + fmt.Sprintf("Failed to pull image %q: %s", img, pullErr(errOdd, img)), ReportingInstance: "n2",
				Series: &corev1.EventSeries{Count: 7, LastObservedTime: metav1.NewMicroTime(at)}},
			eventInfo{Pod: "p", Container: "init", PullFailure: true, Registry: "registry.example.com", Node: "n2", Count: 7, Last: at}},
		{"the kubelet's other Failed event",
			corev1.Event{InvolvedObject: corev1.ObjectReference{Name: "p", FieldPath: "spec.containers{app}"},
				Message: "Error: ImagePullBackOff", Source: corev1.EventSource{Host: "n1"}, EventTime: metav1.NewMicroTime(at)},
			eventInfo{Pod: "p", Container: "app", Node: "n1", Count: 1, Last: at}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obj, err := transformEvent(&tc.ev)
			if err != nil {
				t.Fatal(err)
			}
			got := *obj.(*eventInfo)
			if tc.want.PullFailure != (got.Cause != noCause) {
				t.Errorf("cause %v for a pull failure %t", got.Cause, tc.want.PullFailure)
			}
			got.Cause = noCause
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("transformEvent =\n %+v\nwant\n %+v", got, tc.want)
			}
			if again, _ := transformEvent(obj); again != obj {
				t.Error("transformEvent is not idempotent")
			}
		})
	}
}

func TestFailureCounter(t *testing.T) {
	now := time.Unix(1000, 0)
	f := newFailureCounter(func() time.Time { return now }, 2)
	k := containerKey{"ns", "p", "app"}
	f.observe(k, fromStatus, "a.example", "not_found", 1)
	f.observe(k, fromEvent, "a.example", "not_found", 1) // the same failure, seen as the event
	now = now.Add(20 * time.Second)                      // the back-off passed: a new failure
	f.observe(k, fromEvent, "a.example", "not_found", 2) // the event's count went up by two
	f.observe(k, fromStatus, "a.example", "", 1)         // the status of the last of them
	f.observe(containerKey{"ns", "q", "app"}, fromStatus, "b.example", "dns", 1)
	f.observe(containerKey{"ns", "r", "app"}, fromStatus, "c.example", "dns", 1) // past the cap
	f.observe(containerKey{"ns", "s", "app"}, fromStatus, "a.example", "dns", 1) // labelled already
	want := map[regCause]float64{
		{"a.example", "not_found"}:       3, // one, then two more
		{"a.example", "dns"}:             1,
		{"b.example", "dns"}:             1,
		{collector.OtherRegistry, "dns"}: 1,
	}
	if fmt.Sprint(f.counts) != fmt.Sprint(want) {
		t.Errorf("counts %v, want %v", f.counts, want)
	}
	// The dedupe state forgets what is older than the window.
	for i := range 2000 {
		now = now.Add(time.Millisecond)
		f.observe(containerKey{"ns", fmt.Sprint("x", i), "app"}, fromStatus, "a.example", "dns", 1)
	}
	now = now.Add(time.Minute)
	f.observe(containerKey{"ns", "last", "app"}, fromStatus, "a.example", "dns", 1)
	if len(f.seen) > 1000 {
		t.Errorf("dedupe state holds %d entries after the window passed", len(f.seen))
	}
}

func TestEventIndexBounded(t *testing.T) {
	x := newEventIndex(3)
	at := time.Unix(1000, 0)
	cause := classify("some error")
	for i := range 5 {
		x.update(&eventInfo{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: fmt.Sprint("e", i)}, Pod: fmt.Sprint("p", i),
			Container: "app", Cause: cause, Last: at.Add(time.Duration(i) * time.Second)})
	}
	if x.len() != 3 {
		t.Fatalf("index holds %d entries, want the cap 3", x.len())
	}
	if _, ok := x.entries[containerKey{"ns", "p0", "app"}]; ok {
		t.Error("the oldest entry was kept past the cap")
	}
	// An older event of a container does not replace its newest.
	x.update(&eventInfo{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "old"}, Pod: "p4", Container: "app", Cause: cause, Last: at})
	if x.entries[containerKey{"ns", "p4", "app"}].name != "e4" {
		t.Error("an older event replaced the newest")
	}
	x.remove(&eventInfo{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "e4"}, Pod: "p4", Container: "app"})
	if x.len() != 2 {
		t.Errorf("a deleted event's entry stays")
	}
}

func TestBlockedCause(t *testing.T) {
	for _, tc := range []struct{ registry, node, want string }{
		{"connect", "not_found", "connect"},             // registry-level wins
		{"rate_limited", "", "rate_limited"},            // registry-level, node silent
		{"registry_ok", "rate_limited", "rate_limited"}, // the nodes' own limit
		{"registry_ok", "", "registry_ok"},
		{"registry_ok", collector.CauseUnknown, "registry_ok"}, // nothing classifiable
		{"not_found", "unauthorized", "unauthorized"},          // per-image probe reason: the node's word
		{"not_found", "", "not_found"},
		{"unprobed", "dns", "dns"},
		{"unprobed", "", "unprobed"},
	} {
		if got := blockedCause(tc.registry, tc.node); got != tc.want {
			t.Errorf("blockedCause(%q, %q) = %q, want %q", tc.registry, tc.node, got, tc.want)
		}
	}
}
