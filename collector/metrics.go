package collector

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imagepull/imagepull_exporter/probe"
)

// The per-target labels: the target's name and its normalised reference
// (reference is the tag, or the digest when the target is pinned).
var targetLabels = []string{"target", "registry", "repository", "reference"}

func withLabels(extra ...string) []string {
	return append(append([]string(nil), targetLabels...), extra...)
}

// The metric names and labels are a contract (the mixin and the tests use
// exactly these): extend, never rename.
var (
	descProbeSuccess = prometheus.NewDesc("imagepull_probe_success",
		"Whether the last probe of the target succeeded (manifest HEAD answered with a digest).",
		targetLabels, nil)
	descFailureReason = prometheus.NewDesc("imagepull_probe_failure_reason",
		"Why the last probe failed: 1 for the current reason, 0 for the others; all 0 after a success.",
		withLabels("reason"), nil)
	descProbeDuration = prometheus.NewDesc("imagepull_probe_duration_seconds",
		"Duration of each phase of the last probe; resolve, connect and tls are 0 when a kept-alive connection was reused.",
		withLabels("phase"), nil)
	descManifestHead = prometheus.NewDesc("imagepull_manifest_head_duration_seconds",
		"Duration of the manifest HEAD step of every probe that reached it, for latency SLOs.",
		targetLabels, nil)
	descProbeTimestamp = prometheus.NewDesc("imagepull_probe_timestamp_seconds",
		"When the last probe of the target started.",
		targetLabels, nil)
	descProbeInterval = prometheus.NewDesc("imagepull_probe_interval_seconds",
		"How often the target is probed (its interval, or its module's): staleness is judged against it, since targets of one exporter probe at different intervals.",
		targetLabels, nil)
	descLastSuccess = prometheus.NewDesc("imagepull_probe_last_success_timestamp_seconds",
		"When the last successful probe of the target started; absent until the first success.",
		targetLabels, nil)
	descProbesTotal = prometheus.NewDesc("imagepull_probes_total",
		"Probes of the target by result.",
		withLabels("result"), nil)
	descAuthSuccess = prometheus.NewDesc("imagepull_auth_success",
		"Whether the last authentication check (ping and token exchange) of the target succeeded.",
		targetLabels, nil)
	descRateLimitLimit = prometheus.NewDesc("imagepull_ratelimit_limit",
		"Pulls allowed per window, from the registry's ratelimit-limit header; absent when the registry sends none.",
		[]string{"registry", "source"}, nil)
	descRateLimitRemaining = prometheus.NewDesc("imagepull_ratelimit_remaining",
		"Pulls left in the current window, from the registry's ratelimit-remaining header.",
		[]string{"registry", "source"}, nil)
	descRateLimitWindow = prometheus.NewDesc("imagepull_ratelimit_window_seconds",
		"Length of the rate-limit window, from the w= parameter of the rate-limit headers.",
		[]string{"registry", "source"}, nil)
	descRetryAfter = prometheus.NewDesc("imagepull_ratelimit_retry_after_seconds",
		"Retry-After of the last probe; present only while the last probe was answered 429 with Retry-After.",
		targetLabels, nil)
	descManifestInfo = prometheus.NewDesc("imagepull_manifest_info",
		"The digest and media type the registry last served for the target's reference (kept across failed probes).",
		withLabels("digest", "media_type"), nil)
	descDigestChanges = prometheus.NewDesc("imagepull_manifest_digest_changes_total",
		"How often the digest served for the target's reference changed between probes.",
		targetLabels, nil)
	descTLSCertExpiry = prometheus.NewDesc("imagepull_tls_cert_expiry_timestamp_seconds",
		"When the registry's TLS leaf certificate expires.",
		[]string{"registry"}, nil)
	descRegistryRequests = prometheus.NewDesc("imagepull_registry_requests_total",
		"HTTP requests sent to registries by kind and status code (\"error\" when no response arrived). manifest_get stays 0: a GET counts as a pull.",
		[]string{"registry", "kind", "code"}, nil)
	descMalformedHeaders = prometheus.NewDesc("imagepull_malformed_headers_total",
		"Rate-limit and Retry-After header values that could not be parsed and were ignored.",
		[]string{"registry", "header"}, nil)
	descBudgetExhausted = prometheus.NewDesc("imagepull_probe_budget_exhausted_total",
		"Scheduled probes skipped because the registry's request budget (--probe.registry-budget) was spent (a /probe refused for the same reason is answered 429, not counted).",
		[]string{"registry"}, nil)
	descRegistryUp = prometheus.NewDesc("imagepull_registry_up",
		"Whether the registry is up, judged over the latest probe of every target of it, all modules and credentials: 1 when any probe got an answer from it (a success, not_found, forbidden, no_credentials, or a pull secret's unauthorized), 0 when every probe failed for a registry-level reason.",
		[]string{"registry"}, nil)
	descRegistryFailure = prometheus.NewDesc("imagepull_registry_failure_reason",
		"Why the registry is down: 1 for the first registry-level reason (in the exporter's precedence order) among its probes' failures while imagepull_registry_up is 0, 0 for the other registry-level reasons; all 0 while it is up.",
		[]string{"registry", "reason"}, nil)
	descTargets = prometheus.NewDesc("imagepull_exporter_targets",
		"Targets being probed, by where they come from.",
		[]string{"source"}, nil)
)

// manifestBuckets suit registry latency: a warm HEAD to a nearby registry
// takes tens of milliseconds, a cold one through a CDN a few hundred, and
// anything past the 10s default timeout never reaches the histogram.
var manifestBuckets = [...]float64{.025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// histogram accumulates observations per target. It is a value type (an
// array, no slices) so a snapshot copies it.
type histogram struct {
	counts [len(manifestBuckets)]uint64 // non-cumulative
	count  uint64
	sum    float64
}

func (h *histogram) observe(v float64) {
	for i, b := range manifestBuckets {
		if v <= b {
			h.counts[i]++
			break
		}
	}
	h.count++
	h.sum += v
}

func (h histogram) buckets() map[float64]uint64 {
	m := make(map[float64]uint64, len(manifestBuckets))
	var cum uint64
	for i, b := range manifestBuckets {
		cum += h.counts[i]
		m[b] = cum
	}
	return m
}

// Describe implements prometheus.Collector.
func (s *Scheduler) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		descProbeSuccess, descFailureReason, descProbeDuration, descManifestHead,
		descProbeTimestamp, descProbeInterval, descLastSuccess, descProbesTotal, descAuthSuccess,
		descRateLimitLimit, descRateLimitRemaining, descRateLimitWindow, descRetryAfter,
		descManifestInfo, descDigestChanges, descTLSCertExpiry, descRegistryRequests,
		descMalformedHeaders, descBudgetExhausted, descTargets,
		descRegistryUp, descRegistryFailure,
	} {
		ch <- d
	}
	describeMirrors(ch)
	describeHealth(ch)
}

// Collect implements prometheus.Collector: it emits the latest results as
// they are; it never probes.
func (s *Scheduler) Collect(ch chan<- prometheus.Metric) {
	snap := s.Snapshot()
	collectSnapshot(ch, &snap)
	for _, src := range []string{SourceConfig, SourceDiscovered} {
		ch <- prometheus.MustNewConstMetric(descTargets, prometheus.GaugeValue, float64(snap.Sources[src]), src)
	}
	for _, e := range snap.Exhausted {
		ch <- prometheus.MustNewConstMetric(descBudgetExhausted, prometheus.CounterValue, float64(e.Count), e.Registry)
	}
	s.collectMirrors(ch)
	s.collectHealth(ch)
}

// collectSnapshot emits the per-target and per-registry series of snap;
// the scheduler and /probe share it so both expose the same names.
func collectSnapshot(ch chan<- prometheus.Metric, snap *Snapshot) {
	for i := range snap.Targets {
		collectTarget(ch, &snap.Targets[i])
	}
	for _, r := range snap.Registries {
		ch <- prometheus.MustNewConstMetric(descRegistryUp, prometheus.GaugeValue, boolFloat(r.Up), r.Registry)
		for _, reason := range probe.Reasons {
			if reason.RegistryLevel() {
				ch <- prometheus.MustNewConstMetric(descRegistryFailure, prometheus.GaugeValue,
					boolFloat(!r.Up && r.Reason == reason), r.Registry, string(reason))
			}
		}
	}
	for _, rl := range snap.RateLimits {
		ch <- prometheus.MustNewConstMetric(descRateLimitLimit, prometheus.GaugeValue, rl.Limit, rl.Registry, rl.Source)
		ch <- prometheus.MustNewConstMetric(descRateLimitRemaining, prometheus.GaugeValue, rl.Remaining, rl.Registry, rl.Source)
		if rl.Window > 0 {
			ch <- prometheus.MustNewConstMetric(descRateLimitWindow, prometheus.GaugeValue, rl.Window.Seconds(), rl.Registry, rl.Source)
		}
	}
	for reg, exp := range snap.CertExpiry {
		ch <- prometheus.MustNewConstMetric(descTLSCertExpiry, prometheus.GaugeValue, unixSeconds(exp), reg)
	}
	for k, n := range snap.requests {
		ch <- prometheus.MustNewConstMetric(descRegistryRequests, prometheus.CounterValue, float64(n), k.registry, string(k.kind), k.code)
	}
	for k, n := range snap.malformed {
		ch <- prometheus.MustNewConstMetric(descMalformedHeaders, prometheus.CounterValue, float64(n), k.registry, k.header)
	}
}

func collectTarget(ch chan<- prometheus.Metric, t *TargetStatus) {
	res := t.Last
	if res == nil {
		return // not probed yet: no series rather than made-up zeros
	}
	lv := []string{t.Name, t.Ref.Registry, t.Ref.Repository, t.Ref.Identifier()}
	gauge := func(d *prometheus.Desc, v float64, extra ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append(lv[:4:4], extra...)...)
	}
	counter := func(d *prometheus.Desc, v float64, extra ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, append(lv[:4:4], extra...)...)
	}

	gauge(descProbeSuccess, boolFloat(res.Success))
	for _, r := range probe.Reasons {
		gauge(descFailureReason, boolFloat(!res.Success && res.Reason == r), string(r))
	}
	for _, ph := range probe.Phases {
		gauge(descProbeDuration, res.Phases[ph].Seconds(), string(ph))
	}
	if t.hist.count > 0 {
		ch <- prometheus.MustNewConstHistogram(descManifestHead, t.hist.count, t.hist.sum, t.hist.buckets(), lv...)
	}
	gauge(descProbeTimestamp, unixSeconds(res.Start))
	if t.Interval > 0 { // /probe's one-shot results have no schedule
		gauge(descProbeInterval, t.Interval.Seconds())
	}
	if !t.LastSuccess.IsZero() {
		gauge(descLastSuccess, unixSeconds(t.LastSuccess))
	}
	counter(descProbesTotal, float64(t.Successes), "success")
	counter(descProbesTotal, float64(t.Failures), "failure")
	if t.AuthChecked {
		gauge(descAuthSuccess, boolFloat(t.AuthOK))
	}
	if !res.Success && res.Reason == probe.ReasonRateLimited && res.RetryAfter > 0 {
		gauge(descRetryAfter, res.RetryAfter.Seconds())
	}
	if t.Digest != "" {
		gauge(descManifestInfo, 1, t.Digest, t.MediaType)
	}
	counter(descDigestChanges, float64(t.DigestChanges))
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unixSeconds(t time.Time) float64 {
	return float64(t.UnixNano()) / 1e9
}

// resultSnapshot turns one probe result into a snapshot of one target, for
// /probe: the same series as the scheduler's, counting this probe only.
func resultSnapshot(name string, res probe.Result) Snapshot {
	t := StatusOf(name, "probe", "", 0, res)
	reg := res.Ref.Registry
	snap := Snapshot{
		Targets:    []TargetStatus{t},
		CertExpiry: map[string]time.Time{},
		requests:   map[requestKey]uint64{},
		malformed:  map[malformedKey]uint64{},
	}
	if res.RateLimit != nil {
		snap.RateLimits = []RateLimitStatus{{Registry: reg, RateLimit: *res.RateLimit, Updated: res.Start}}
	}
	if !res.TLSCertExpiry.IsZero() {
		snap.CertExpiry[reg] = res.TLSCertExpiry
	}
	countRequests(snap.requests, snap.malformed, reg, &res)
	snap.Registries = registryHealth(snap.Targets)
	return snap
}

// ResultCollector exposes one probe result of target name with the
// scheduler's metric names: what /probe answers.
func ResultCollector(name string, res probe.Result) prometheus.Collector {
	return snapshotCollector{resultSnapshot(name, res)}
}

// snapshotCollector exposes a fixed snapshot, for /probe's fresh registry.
type snapshotCollector struct{ snap Snapshot }

func (c snapshotCollector) Describe(ch chan<- *prometheus.Desc) {
	prometheus.DescribeByCollect(c, ch)
}

func (c snapshotCollector) Collect(ch chan<- prometheus.Metric) { collectSnapshot(ch, &c.snap) }

// countRequests adds the requests of res, and its malformed header values,
// to the per-registry counters of reg: the scheduler's running totals, or
// /probe's counts of one probe.
func countRequests(requests map[requestKey]uint64, malformed map[malformedKey]uint64, reg string, res *probe.Result) {
	for _, rq := range res.Requests {
		requests[requestKey{reg, rq.Kind, StatusLabel(rq.Status)}]++
	}
	for _, h := range res.MalformedHeaderNames {
		malformed[malformedKey{reg, h}]++
	}
}

// reachedManifest reports whether the probe sent its manifest HEAD: only
// then does the manifest phase say something about manifest latency (the
// prober reports every phase, 0 when not reached).
func reachedManifest(res *probe.Result) bool {
	for _, rq := range res.Requests {
		if rq.Kind == probe.KindManifestHead {
			return true
		}
	}
	return false
}

// NodeRegisterer wraps reg so that every series registered through it gets
// the node label: the probe and mirror series of a node-local exporter.
func NodeRegisterer(reg prometheus.Registerer, node string) prometheus.Registerer {
	return prometheus.WrapRegistererWith(prometheus.Labels{"node": node}, reg)
}
