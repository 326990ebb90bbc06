package testenv

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// WebhookMessage is one notification of Alertmanager's webhook receiver
// (version 4 of its payload).
type WebhookMessage struct {
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	TruncatedAlerts   int               `json:"truncatedAlerts"`
	Status            string            `json:"status"` // firing or resolved
	Receiver          string            `json:"receiver"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	Alerts            []WebhookAlert    `json:"alerts"`
}

// WebhookAlert is one alert in a WebhookMessage.
type WebhookAlert struct {
	Status       string            `json:"status"` // firing or resolved
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
}

// Webhook is the receiving end of Alertmanager's webhook_configs: an HTTP
// server on loopback, run by the test, that records every notification.
// It is the test's own endpoint, not a stand-in for a real component.
type Webhook struct {
	// URL is where Alertmanager posts (webhook_configs: [{url: URL}]).
	URL string

	srv  *httptest.Server
	mu   sync.Mutex
	msgs []WebhookMessage
	bad  []string // bodies that did not decode, reported by WaitFor
}

// StartWebhook starts a webhook receiver, closed by t.Cleanup.
func StartWebhook(t testing.TB) *Webhook {
	t.Helper()
	w := &Webhook{}
	w.srv = httptest.NewServer(http.HandlerFunc(w.serve))
	w.URL = w.srv.URL + "/alerts"
	t.Cleanup(w.srv.Close)
	return w
}

func (w *Webhook) serve(rw http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	var m WebhookMessage
	if err == nil {
		err = json.Unmarshal(body, &m)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil || r.Method != http.MethodPost {
		w.bad = append(w.bad, r.Method+" "+r.URL.Path+": "+string(body))
		http.Error(rw, "bad webhook payload", http.StatusBadRequest)
		return
	}
	w.msgs = append(w.msgs, m)
}

// Messages returns a copy of the notifications received so far, in order.
func (w *Webhook) Messages() []WebhookMessage {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]WebhookMessage(nil), w.msgs...)
}

// Alerts returns every alert of every notification so far, in order; an
// alert notified twice (repeat, then resolved) appears twice.
func (w *Webhook) Alerts() []WebhookAlert {
	var out []WebhookAlert
	for _, m := range w.Messages() {
		out = append(out, m.Alerts...)
	}
	return out
}

// WaitFor polls until ok accepts the notifications received so far, and
// returns them. It fails the test after timeout, listing what did arrive: a
// wait for Alertmanager's group_wait and evaluation intervals, not a timed
// assertion.
func (w *Webhook) WaitFor(t testing.TB, timeout time.Duration, ok func([]WebhookMessage) bool) []WebhookMessage {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		msgs := w.Messages()
		if ok(msgs) {
			return msgs
		}
		if time.Now().After(deadline) {
			w.mu.Lock()
			bad := strings.Join(w.bad, "\n")
			w.mu.Unlock()
			t.Fatalf("testenv: webhook: expected notifications did not arrive within %s; received %d:\n%s\nundecodable requests:\n%s",
				timeout, len(msgs), describeMessages(msgs), bad)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// WaitForAlert waits until an alert with status ("firing" or "resolved")
// whose labels include all of labels arrives, and returns it.
func (w *Webhook) WaitForAlert(t testing.TB, timeout time.Duration, status string, labels map[string]string) WebhookAlert {
	t.Helper()
	var found WebhookAlert
	w.WaitFor(t, timeout, func(msgs []WebhookMessage) bool {
		for _, m := range msgs {
			for _, a := range m.Alerts {
				if a.Status == status && HasLabels(a.Labels, labels) {
					found = a
					return true
				}
			}
		}
		return false
	})
	return found
}

// HasLabels reports whether got contains every name=value of want.
func HasLabels(got, want map[string]string) bool {
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			return false
		}
	}
	return true
}

func describeMessages(msgs []WebhookMessage) string {
	var b strings.Builder
	for i, m := range msgs {
		fmt.Fprintf(&b, "  #%d %s receiver=%s\n", i, m.Status, m.Receiver)
		for _, a := range m.Alerts {
			lb, _ := json.Marshal(a.Labels)
			fmt.Fprintf(&b, "    %s %s\n", a.Status, lb)
		}
	}
	return b.String()
}
