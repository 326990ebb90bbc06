package collector

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/imagepull/imagepull_exporter/probe"
)

var t0 = time.Unix(1_750_000_000, 0)

func phases(total time.Duration, manifest time.Duration) map[probe.Phase]time.Duration {
	m := map[probe.Phase]time.Duration{}
	for _, ph := range probe.Phases {
		m[ph] = 0
	}
	m[probe.PhaseResolve] = 1 * time.Millisecond
	m[probe.PhaseConnect] = 2 * time.Millisecond
	m[probe.PhaseTLS] = 3 * time.Millisecond
	m[probe.PhasePing] = 10 * time.Millisecond
	m[probe.PhaseAuth] = 20 * time.Millisecond
	m[probe.PhaseManifest] = manifest
	m[probe.PhaseTotal] = total
	return m
}

// feed records results as if target name had probed them.
func feed(s *Scheduler, name string, results ...probe.Result) {
	s.mu.Lock()
	r := s.runners[name]
	s.mu.Unlock()
	for _, res := range results {
		s.sender.count(Send{Purpose: PurposeScheduled, Registry: r.spec.ref.Registry}, &res)
		s.recordRegistry(r.spec.ref.Registry, &res)
		r.record(res)
	}
}

// TestMetricsExposition checks the exact exposition of three cases: a
// healthy target whose digest changed, a target that fails, and a Docker
// Hub target that ran out of pulls (429 with Retry-After). The results are
// fed in directly: the exposition, not the prober, is under test.
func TestMetricsExposition(t *testing.T) {
	s := NewScheduler(SchedulerOptions{Now: func() time.Time { return t0.Add(time.Minute) }})
	quay := tc(t, "quay", "quay.io/prometheus/busybox:latest", time.Minute)
	missing := tc(t, "missing", "quay.io/prometheus/nothing@sha256:"+strings.Repeat("ab", 32), time.Minute)
	hub := tc(t, "hub", "docker.io/ratelimitpreview/test:latest", 5*time.Minute)
	s.ApplyConfig(testConfig(quay, missing, hub))

	head := func(code int) probe.Request {
		return probe.Request{Kind: probe.KindManifestHead, Method: "HEAD", Status: code}
	}
	ping := probe.Request{Kind: probe.KindPing, Method: "GET", Status: 401}
	token := probe.Request{Kind: probe.KindToken, Method: "GET", Status: 200}
	expiry := t0.Add(90 * 24 * time.Hour)

	feed(s, "quay",
		probe.Result{Ref: quay.Ref, Start: t0, Success: true, Phases: phases(40*time.Millisecond, 31250*time.Microsecond),
			AuthChecked: true, AuthOK: true, Digest: "sha256:1111", MediaType: "application/vnd.oci.image.index.v1+json",
			TLSCertExpiry: expiry, Requests: []probe.Request{ping, token, head(200)}},
		probe.Result{Ref: quay.Ref, Start: t0.Add(time.Minute), Success: true, Phases: phases(20*time.Millisecond, 250*time.Millisecond),
			Digest: "sha256:2222", MediaType: "application/vnd.oci.image.index.v1+json",
			TLSCertExpiry: expiry, Requests: []probe.Request{head(200)}},
	)
	feed(s, "missing",
		probe.Result{Ref: missing.Ref, Start: t0, Success: false, Reason: probe.ReasonNotFound, Error: "manifest unknown",
			Phases: phases(50*time.Millisecond, 7*time.Second), AuthChecked: true, AuthOK: true,
			Requests: []probe.Request{ping, token, head(404)}},
		probe.Result{Ref: missing.Ref, Start: t0.Add(time.Minute), Success: false, Reason: probe.ReasonConnect,
			Error: "connection refused", Phases: phases(5*time.Millisecond, 0),
			Requests: []probe.Request{{Kind: probe.KindManifestHead, Method: "HEAD", Status: 0, Err: "refused"}}},
	)
	feed(s, "hub",
		probe.Result{Ref: hub.Ref, Start: t0.Add(30 * time.Second), Success: false, Reason: probe.ReasonRateLimited,
			Phases: phases(60*time.Millisecond, 15*time.Millisecond), AuthChecked: true, AuthOK: true,
			RateLimit:  &probe.RateLimit{Limit: 100, Remaining: 0, Window: 6 * time.Hour, Source: "203.0.113.7"},
			RetryAfter: 42 * time.Second, MalformedHeaders: 1, MalformedHeaderNames: []string{"ratelimit-remaining"},
			Requests: []probe.Request{ping, token, head(429)}},
	)

	const expected = `
# HELP imagepull_auth_success Whether the last authentication check (ping and token exchange) of the target succeeded.
# TYPE imagepull_auth_success gauge
imagepull_auth_success{reference="latest",registry="docker.io",repository="ratelimitpreview/test",target="hub"} 1
imagepull_auth_success{reference="latest",registry="quay.io",repository="prometheus/busybox",target="quay"} 1
imagepull_auth_success{reference="sha256:abababababababababababababababababababababababababababababababab",registry="quay.io",repository="prometheus/nothing",target="missing"} 1
# HELP imagepull_exporter_targets Targets being probed, by where they come from.
# TYPE imagepull_exporter_targets gauge
imagepull_exporter_targets{source="config"} 3
imagepull_exporter_targets{source="discovered"} 0
# HELP imagepull_malformed_headers_total Rate-limit and Retry-After header values that could not be parsed and were ignored.
# TYPE imagepull_malformed_headers_total counter
imagepull_malformed_headers_total{header="ratelimit-remaining",registry="docker.io"} 1
# HELP imagepull_manifest_digest_changes_total How often the digest served for the target's reference changed between probes.
# TYPE imagepull_manifest_digest_changes_total counter
imagepull_manifest_digest_changes_total{reference="latest",registry="docker.io",repository="ratelimitpreview/test",target="hub"} 0
imagepull_manifest_digest_changes_total{reference="latest",registry="quay.io",repository="prometheus/busybox",target="quay"} 1
imagepull_manifest_digest_changes_total{reference="sha256:abababababababababababababababababababababababababababababababab",registry="quay.io",repository="prometheus/nothing",target="missing"} 0
# HELP imagepull_manifest_head_duration_seconds Duration of the manifest HEAD step of every probe that reached it, for latency SLOs.
# TYPE imagepull_manifest_head_duration_seconds histogram
imagepull_manifest_head_duration_seconds_bucket{reference="latest",registry="docker.io",repository="ratelimitpreview/test",target="hub",le="0.025"} 1
imagepull_manifest_head_duration_seconds_bucket{reference="latest",registry="docker.io",repository="ratelimitpreview/test",target="hub",le="0.05"} 1
imagepull_manifest_head_duration_seconds_bucket{reference="latest",registry="docker.io",repository="ratelimitpreview/test",target="hub",le="0.1"} 1
imagepull_manifest_head_duration_seconds_bucket{reference="latest",registry="docker.io",repository="ratelimitpreview/test",target="hub",le="0.25"} 1
imagepull_manifest_head_duration_seconds_bucket{reference="latest",registry="docker.io",repository="ratelimitpreview/test",target="hub",le="0.5"} 1
imagepull_manifest_head_duration_seconds_bucket{reference="latest",registry="docker.io",repository="ratelimitpreview/test",target="hub",le="1"} 1
imagepull_manifest_head_duration_seconds_bucket{reference="latest",registry="docker.io",repository="ratelimitpreview/test",target="hub",le="2.5"} 1
imagepull_manifest_head_duration_seconds_bucket{reference="latest",registry="docker.io",repository="ratelimitpreview/test",target="hub",le="5"} 1
imagepull_manifest_head_duration_seconds_bucket{reference="latest",registry="docker.io",repository="ratelimitpreview/test",target="hub",le="10"} 1
imagepull_manifest_head_duration_seconds_bucket{reference="latest",registry="docker.io",repository="ratelimitpreview/test",target="hub",le="+Inf"} 1
imagepull_manifest_head_duration_seconds_sum{reference="latest",registry="docker.io",repository="ratelimitpreview/test",target="hub"} 0.015
imagepull_manifest_head_duration_seconds_count{reference="latest",registry="docker.io",repository="ratelimitpreview/test",target="hub"} 1
imagepull_manifest_head_duration_seconds_bucket{reference="latest",registry="quay.io",repository="prometheus/busybox",target="quay",le="0.025"} 0
imagepull_manifest_head_duration_seconds_bucket{reference="latest",registry="quay.io",repository="prometheus/busybox",target="quay",le="0.05"} 1
imagepull_manifest_head_duration_seconds_bucket{reference="latest",registry="quay.io",repository="prometheus/busybox",target="quay",le="0.1"} 1
imagepull_manifest_head_duration_seconds_bucket{reference="latest",registry="quay.io",repository="prometheus/busybox",target="quay",le="0.25"} 2
imagepull_manifest_head_duration_seconds_bucket{reference="latest",registry="quay.io",repository="prometheus/busybox",target="quay",le="0.5"} 2
imagepull_manifest_head_duration_seconds_bucket{reference="latest",registry="quay.io",repository="prometheus/busybox",target="quay",le="1"} 2
imagepull_manifest_head_duration_seconds_bucket{reference="latest",registry="quay.io",repository="prometheus/busybox",target="quay",le="2.5"} 2
imagepull_manifest_head_duration_seconds_bucket{reference="latest",registry="quay.io",repository="prometheus/busybox",target="quay",le="5"} 2
imagepull_manifest_head_duration_seconds_bucket{reference="latest",registry="quay.io",repository="prometheus/busybox",target="quay",le="10"} 2
imagepull_manifest_head_duration_seconds_bucket{reference="latest",registry="quay.io",repository="prometheus/busybox",target="quay",le="+Inf"} 2
imagepull_manifest_head_duration_seconds_sum{reference="latest",registry="quay.io",repository="prometheus/busybox",target="quay"} 0.28125
imagepull_manifest_head_duration_seconds_count{reference="latest",registry="quay.io",repository="prometheus/busybox",target="quay"} 2
imagepull_manifest_head_duration_seconds_bucket{reference="sha256:abababababababababababababababababababababababababababababababab",registry="quay.io",repository="prometheus/nothing",target="missing",le="0.025"} 1
imagepull_manifest_head_duration_seconds_bucket{reference="sha256:abababababababababababababababababababababababababababababababab",registry="quay.io",repository="prometheus/nothing",target="missing",le="0.05"} 1
imagepull_manifest_head_duration_seconds_bucket{reference="sha256:abababababababababababababababababababababababababababababababab",registry="quay.io",repository="prometheus/nothing",target="missing",le="0.1"} 1
imagepull_manifest_head_duration_seconds_bucket{reference="sha256:abababababababababababababababababababababababababababababababab",registry="quay.io",repository="prometheus/nothing",target="missing",le="0.25"} 1
imagepull_manifest_head_duration_seconds_bucket{reference="sha256:abababababababababababababababababababababababababababababababab",registry="quay.io",repository="prometheus/nothing",target="missing",le="0.5"} 1
imagepull_manifest_head_duration_seconds_bucket{reference="sha256:abababababababababababababababababababababababababababababababab",registry="quay.io",repository="prometheus/nothing",target="missing",le="1"} 1
imagepull_manifest_head_duration_seconds_bucket{reference="sha256:abababababababababababababababababababababababababababababababab",registry="quay.io",repository="prometheus/nothing",target="missing",le="2.5"} 1
imagepull_manifest_head_duration_seconds_bucket{reference="sha256:abababababababababababababababababababababababababababababababab",registry="quay.io",repository="prometheus/nothing",target="missing",le="5"} 1
imagepull_manifest_head_duration_seconds_bucket{reference="sha256:abababababababababababababababababababababababababababababababab",registry="quay.io",repository="prometheus/nothing",target="missing",le="10"} 2
imagepull_manifest_head_duration_seconds_bucket{reference="sha256:abababababababababababababababababababababababababababababababab",registry="quay.io",repository="prometheus/nothing",target="missing",le="+Inf"} 2
imagepull_manifest_head_duration_seconds_sum{reference="sha256:abababababababababababababababababababababababababababababababab",registry="quay.io",repository="prometheus/nothing",target="missing"} 7
imagepull_manifest_head_duration_seconds_count{reference="sha256:abababababababababababababababababababababababababababababababab",registry="quay.io",repository="prometheus/nothing",target="missing"} 2
# HELP imagepull_manifest_info The digest and media type the registry last served for the target's reference (kept across failed probes).
# TYPE imagepull_manifest_info gauge
imagepull_manifest_info{digest="sha256:2222",media_type="application/vnd.oci.image.index.v1+json",reference="latest",registry="quay.io",repository="prometheus/busybox",target="quay"} 1
# HELP imagepull_probe_last_success_timestamp_seconds When the last successful probe of the target started; absent until the first success.
# TYPE imagepull_probe_last_success_timestamp_seconds gauge
imagepull_probe_last_success_timestamp_seconds{reference="latest",registry="quay.io",repository="prometheus/busybox",target="quay"} 1.75000006e+09
# HELP imagepull_probe_success Whether the last probe of the target succeeded (manifest HEAD answered with a digest).
# TYPE imagepull_probe_success gauge
imagepull_probe_success{reference="latest",registry="docker.io",repository="ratelimitpreview/test",target="hub"} 0
imagepull_probe_success{reference="latest",registry="quay.io",repository="prometheus/busybox",target="quay"} 1
imagepull_probe_success{reference="sha256:abababababababababababababababababababababababababababababababab",registry="quay.io",repository="prometheus/nothing",target="missing"} 0
# HELP imagepull_probe_timestamp_seconds When the last probe of the target started.
# TYPE imagepull_probe_timestamp_seconds gauge
imagepull_probe_timestamp_seconds{reference="latest",registry="docker.io",repository="ratelimitpreview/test",target="hub"} 1.75000003e+09
imagepull_probe_timestamp_seconds{reference="latest",registry="quay.io",repository="prometheus/busybox",target="quay"} 1.75000006e+09
imagepull_probe_timestamp_seconds{reference="sha256:abababababababababababababababababababababababababababababababab",registry="quay.io",repository="prometheus/nothing",target="missing"} 1.75000006e+09
# HELP imagepull_probes_total Probes of the target by result.
# TYPE imagepull_probes_total counter
imagepull_probes_total{reference="latest",registry="docker.io",repository="ratelimitpreview/test",result="failure",target="hub"} 1
imagepull_probes_total{reference="latest",registry="docker.io",repository="ratelimitpreview/test",result="success",target="hub"} 0
imagepull_probes_total{reference="latest",registry="quay.io",repository="prometheus/busybox",result="failure",target="quay"} 0
imagepull_probes_total{reference="latest",registry="quay.io",repository="prometheus/busybox",result="success",target="quay"} 2
imagepull_probes_total{reference="sha256:abababababababababababababababababababababababababababababababab",registry="quay.io",repository="prometheus/nothing",result="failure",target="missing"} 2
imagepull_probes_total{reference="sha256:abababababababababababababababababababababababababababababababab",registry="quay.io",repository="prometheus/nothing",result="success",target="missing"} 0
# HELP imagepull_ratelimit_limit Pulls allowed per window, from the registry's ratelimit-limit header; absent when the registry sends none.
# TYPE imagepull_ratelimit_limit gauge
imagepull_ratelimit_limit{registry="docker.io",source="203.0.113.7"} 100
# HELP imagepull_ratelimit_remaining Pulls left in the current window, from the registry's ratelimit-remaining header.
# TYPE imagepull_ratelimit_remaining gauge
imagepull_ratelimit_remaining{registry="docker.io",source="203.0.113.7"} 0
# HELP imagepull_ratelimit_retry_after_seconds Retry-After of the last probe; present only while the last probe was answered 429 with Retry-After.
# TYPE imagepull_ratelimit_retry_after_seconds gauge
imagepull_ratelimit_retry_after_seconds{reference="latest",registry="docker.io",repository="ratelimitpreview/test",target="hub"} 42
# HELP imagepull_ratelimit_window_seconds Length of the rate-limit window, from the w= parameter of the rate-limit headers.
# TYPE imagepull_ratelimit_window_seconds gauge
imagepull_ratelimit_window_seconds{registry="docker.io",source="203.0.113.7"} 21600
# HELP imagepull_registry_requests_total HTTP requests sent to registries by kind and status code ("error" when no response arrived). manifest_get stays 0: a GET counts as a pull.
# TYPE imagepull_registry_requests_total counter
imagepull_registry_requests_total{code="200",kind="manifest_head",registry="quay.io"} 2
imagepull_registry_requests_total{code="200",kind="token",registry="docker.io"} 1
imagepull_registry_requests_total{code="200",kind="token",registry="quay.io"} 2
imagepull_registry_requests_total{code="401",kind="ping",registry="docker.io"} 1
imagepull_registry_requests_total{code="401",kind="ping",registry="quay.io"} 2
imagepull_registry_requests_total{code="404",kind="manifest_head",registry="quay.io"} 1
imagepull_registry_requests_total{code="429",kind="manifest_head",registry="docker.io"} 1
imagepull_registry_requests_total{code="error",kind="manifest_head",registry="quay.io"} 1
# HELP imagepull_probe_interval_seconds How often the target is probed (its interval, or its module's): staleness is judged against it, since targets of one exporter probe at different intervals.
# TYPE imagepull_probe_interval_seconds gauge
imagepull_probe_interval_seconds{reference="latest",registry="docker.io",repository="ratelimitpreview/test",target="hub"} 300
imagepull_probe_interval_seconds{reference="latest",registry="quay.io",repository="prometheus/busybox",target="quay"} 60
imagepull_probe_interval_seconds{reference="sha256:abababababababababababababababababababababababababababababababab",registry="quay.io",repository="prometheus/nothing",target="missing"} 60
# HELP imagepull_tls_cert_expiry_timestamp_seconds When the registry's TLS leaf certificate expires.
# TYPE imagepull_tls_cert_expiry_timestamp_seconds gauge
imagepull_tls_cert_expiry_timestamp_seconds{registry="quay.io"} 1.757776e+09
`
	names := []string{
		"imagepull_auth_success", "imagepull_exporter_targets", "imagepull_malformed_headers_total",
		"imagepull_manifest_digest_changes_total", "imagepull_manifest_head_duration_seconds",
		"imagepull_manifest_info", "imagepull_probe_last_success_timestamp_seconds", "imagepull_probe_success",
		"imagepull_probe_timestamp_seconds", "imagepull_probe_interval_seconds", "imagepull_probes_total", "imagepull_ratelimit_limit",
		"imagepull_ratelimit_remaining", "imagepull_ratelimit_retry_after_seconds", "imagepull_ratelimit_window_seconds",
		"imagepull_registry_requests_total", "imagepull_tls_cert_expiry_timestamp_seconds",
		"imagepull_probe_budget_exhausted_total",
	}
	if err := testutil.CollectAndCompare(s, strings.NewReader(expected), names...); err != nil {
		t.Error(err)
	}

	// failure_reason: one series per reason per target, 1 on the current
	// one; all 0 for the healthy target.
	const reasons = `
# HELP imagepull_probe_failure_reason Why the last probe failed: 1 for the current reason, 0 for the others; all 0 after a success.
# TYPE imagepull_probe_failure_reason gauge
`
	var b strings.Builder
	b.WriteString(reasons)
	for _, tgt := range []struct {
		labels  string
		current probe.Reason
	}{
		{`reference="latest",registry="docker.io",repository="ratelimitpreview/test"`, probe.ReasonRateLimited},
		{`reference="latest",registry="quay.io",repository="prometheus/busybox"`, probe.ReasonNone},
		{`reference="sha256:` + strings.Repeat("ab", 32) + `",registry="quay.io",repository="prometheus/nothing"`, probe.ReasonConnect},
	} {
		name := map[probe.Reason]string{probe.ReasonRateLimited: "hub", probe.ReasonNone: "quay", probe.ReasonConnect: "missing"}[tgt.current]
		for _, r := range probe.Reasons {
			v := "0"
			if r == tgt.current {
				v = "1"
			}
			// Labels in sorted order, as the exposition writes them.
			b.WriteString(`imagepull_probe_failure_reason{reason="` + string(r) + `",` + tgt.labels + `,target="` + name + `"} ` + v + "\n")
		}
	}
	if err := testutil.CollectAndCompare(s, strings.NewReader(b.String()), "imagepull_probe_failure_reason"); err != nil {
		t.Error(err)
	}

	// Durations per phase, of the last probe.
	const durations = `
# HELP imagepull_probe_duration_seconds Duration of each phase of the last probe; resolve, connect and tls are 0 when a kept-alive connection was reused.
# TYPE imagepull_probe_duration_seconds gauge
imagepull_probe_duration_seconds{phase="auth",reference="latest",registry="quay.io",repository="prometheus/busybox",target="quay"} 0.02
imagepull_probe_duration_seconds{phase="connect",reference="latest",registry="quay.io",repository="prometheus/busybox",target="quay"} 0.002
imagepull_probe_duration_seconds{phase="manifest",reference="latest",registry="quay.io",repository="prometheus/busybox",target="quay"} 0.25
imagepull_probe_duration_seconds{phase="ping",reference="latest",registry="quay.io",repository="prometheus/busybox",target="quay"} 0.01
imagepull_probe_duration_seconds{phase="resolve",reference="latest",registry="quay.io",repository="prometheus/busybox",target="quay"} 0.001
imagepull_probe_duration_seconds{phase="tls",reference="latest",registry="quay.io",repository="prometheus/busybox",target="quay"} 0.003
imagepull_probe_duration_seconds{phase="total",reference="latest",registry="quay.io",repository="prometheus/busybox",target="quay"} 0.02
`
	quayOnly := func() *Scheduler {
		q := NewScheduler(SchedulerOptions{})
		q.ApplyConfig(testConfig(quay))
		q.runners["quay"].st = s.runners["quay"].st
		return q
	}()
	if err := testutil.CollectAndCompare(quayOnly, strings.NewReader(durations), "imagepull_probe_duration_seconds"); err != nil {
		t.Error(err)
	}

	// A later success clears retry_after; a target with no probe yet has
	// no series at all.
	feed(s, "hub", probe.Result{Ref: hub.Ref, Start: t0.Add(2 * time.Minute), Success: true, Digest: "sha256:3333",
		MediaType: "application/vnd.docker.distribution.manifest.v2+json", Phases: phases(time.Millisecond, time.Millisecond),
		Requests: []probe.Request{head(200)}})
	m := gather(t, s)
	if ks := series(m, "imagepull_ratelimit_retry_after_seconds"); len(ks) != 0 {
		t.Errorf("retry_after after a success: %v", ks)
	}
	s.ApplyConfig(testConfig(quay, missing, hub, tc(t, "new", "quay.io/prometheus/new:v1", time.Minute)))
	if ks := series(gather(t, s), "imagepull_", `target="new"`); len(ks) != 0 {
		t.Errorf("an unprobed target has series: %v", ks)
	}
	if err := testutil.CollectAndCompare(s, strings.NewReader(""), "imagepull_probe_budget_exhausted_total"); err != nil {
		t.Error(err)
	}
}

func TestMetricsLint(t *testing.T) {
	s := NewScheduler(SchedulerOptions{})
	q := tc(t, "quay", "quay.io/prometheus/busybox:latest", time.Minute)
	s.ApplyConfig(testConfig(q))
	feed(s, "quay", probe.Result{Ref: q.Ref, Start: t0, Success: true, Digest: "sha256:1", Phases: phases(time.Millisecond, time.Millisecond),
		RateLimit: &probe.RateLimit{Limit: 1, Remaining: 1, Window: time.Hour}, Requests: []probe.Request{{Kind: probe.KindManifestHead, Status: 200}}})
	problems, err := testutil.CollectAndLint(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}
