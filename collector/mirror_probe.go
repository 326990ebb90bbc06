package collector

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imagepull/imagepull_exporter/collector/mirror"
	"github.com/imagepull/imagepull_exporter/probe"
)

// Mirror probing in the scheduler. Each target whose registry has mirrors
// (config `mirrors:`, or the node's runtime configuration in node-local
// mode) probes, right after its own probe and within the same concurrency
// slot, every mirror the runtime would send its reference to: the same
// ping, token exchange and manifest HEAD as for a registry, never a GET.
// Probing the mirrors right after upstream keeps the digest comparison
// honest: both answers are seconds apart, so a tag that moves upstream
// reads as stale only while the mirror really lags.
//
// A mirror probe spends the mirror host's request budget (the one its own
// targets would spend, if it has any) and never the upstream's. Its
// requests are counted in imagepull_mirror_requests_total{mirror,upstream},
// not in imagepull_registry_requests_total, and its budget refusals in
// imagepull_mirror_budget_exhausted_total: every mirror series carries the
// upstream, so with sharding it comes from the shard that owns the
// upstream, and the shards' union still has no duplicates. (A mirror host
// shared by upstreams on different shards gets each shard's budget.)

// mirrorRunner is one mirror of one target: what to probe and its latest
// result. Its fields are guarded by the owning runner's mu.
type mirrorRunner struct {
	plan    mirror.Step
	target  probe.Target
	last    *probe.Result
	skipped uint64
}

// noCredentials is the keychain of a mirror probed without a module of its
// own: a runtime never hands a registry's credentials to its mirrors.
type noCredentials struct{}

func (noCredentials) Resolve(probe.Reference) ([]probe.Credential, error) { return nil, nil }

// SetNodeMirrors sets the node's runtime mirror configuration (node-local
// mode; see NodeMirrors). For the images it configures, it replaces the
// configuration's `mirrors:`; nil or an empty set leaves those in charge.
func (s *Scheduler) SetNodeMirrors(m *mirror.Set) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nodeMirrors = m
	s.reconcile()
}

// mirrorHostsFor returns the chain of hosts for ref: the node runtime's
// when it configures ref, else the configuration's. s.mu is held.
func (s *Scheduler) mirrorHostsFor(ref probe.Reference) []mirror.Host {
	if hosts, ok := s.nodeMirrors.HostsFor(ref); ok {
		return hosts
	}
	return s.cfg.MirrorChain(ref.Registry)
}

// planMirrorsLocked recomputes the mirrors of every runner, keeping the
// state of mirrors that stay. s.mu is held.
func (s *Scheduler) planMirrorsLocked() {
	for _, r := range s.runners {
		plans := mirror.Plan(s.mirrorHostsFor(r.spec.ref), r.spec.ref)
		r.mu.Lock()
		old := map[string]*mirrorRunner{}
		for _, m := range r.mirrors {
			old[m.plan.Host.Key] = m
		}
		var next []*mirrorRunner
		for _, p := range plans {
			m := old[p.Host.Key]
			if m == nil {
				m = &mirrorRunner{}
			}
			m.plan = p
			m.target = s.mirrorTarget(r.spec, p.Host)
			next = append(next, m)
		}
		r.mirrors = next
		r.mu.Unlock()
	}
}

// mirrorTarget builds the probe of host for a target.
func (s *Scheduler) mirrorTarget(spec targetSpec, h mirror.Host) probe.Target {
	m, name := spec.module, spec.moduleName
	var kc probe.Keychain = noCredentials{}
	if h.Module != "" {
		if mm, ok := s.cfg.Modules[h.Module]; ok {
			m, name, kc = mm, h.Module, nil
		}
	} else {
		m.Auth = probe.AuthConfig{}
		if h.SkipVerify || h.CAFile != "" {
			m.TLS = probe.TLSConfig{CAFile: h.CAFile, InsecureSkipVerify: h.SkipVerify}
		}
	}
	m.PlainHTTP = h.PlainHTTP
	if m.PlainHTTP {
		m.TLS = probe.TLSConfig{}
	}
	e := &probe.Endpoint{Host: h.Host, Path: h.Path, Repository: h.Repository, HTTPFallback: h.HTTPFallback}
	if h.Namespace {
		e.Namespace = spec.ref.Registry
	}
	return probe.Target{Ref: spec.ref, Module: m, Keychain: kc, Endpoint: e,
		// Transports and tokens are cached per module name and origin:
		// a mirror's TLS settings must not flip-flop a transport that
		// another chain uses for the same host.
		ModuleName: fmt.Sprintf("%s mirror %s tls=%t,%s", name, h.Key, h.SkipVerify, h.CAFile)}
}

// probeMirrors probes the mirrors of r after its own probe.
func (s *Scheduler) probeMirrors(ctx context.Context, r *runner) {
	r.mu.Lock()
	ms := append([]*mirrorRunner(nil), r.mirrors...)
	targets := make([]probe.Target, len(ms))
	for i, m := range ms {
		targets[i] = m.target
	}
	r.mu.Unlock()
	upstream := r.spec.ref.Registry
	for i, m := range ms {
		if ctx.Err() != nil {
			return
		}
		t := targets[i]
		host := t.Endpoint.Host
		res, ok := s.sender.Do(ctx, Send{Purpose: PurposeMirror, Registry: upstream, Mirror: host}, func(ctx context.Context) probe.Result {
			return s.prober.Probe(ctx, t) // bounded by the module's timeout
		})
		if !ok {
			r.mu.Lock()
			m.skipped++
			r.mu.Unlock()
			s.logger.Debug("mirror probe skipped: the mirror's request budget is spent", "target", r.spec.name, "mirror", host)
			continue
		}
		if ctx.Err() != nil {
			return
		}
		r.mu.Lock()
		m.last = &res
		r.mu.Unlock()
		if !res.Success {
			s.logger.Debug("mirror probe failed", "target", r.spec.name, "mirror", host,
				"reason", string(res.Reason), "err", res.Error)
		}
	}
}

var (
	mirrorLabels  = []string{"mirror", "upstream"}
	descMirrorUp  = prometheus.NewDesc("imagepull_mirror_up", "1 when the mirror serves the images probed through it (its latest probes succeeded, none failed for a reason about the mirror itself: dns, connect, tls, timeout, server_error, rate_limited, unauthorized, protocol); 0 otherwise. Absent until the first probe.", mirrorLabels, nil)
	descMirrorWhy = prometheus.NewDesc("imagepull_mirror_failure_reason", "Why imagepull_mirror_up is 0: 1 for the current reason (the most fundamental one among the mirror's latest probes), 0 for the others; all 0 while it is up.", append(append([]string(nil), mirrorLabels...), "reason"), nil)
	descMirrorFB  = prometheus.NewDesc("imagepull_mirror_fallback", "1 when the container runtime would try another host (a later mirror or the registry itself) for an image when this mirror fails, so its failure slows pulls down; 0 when it is the last host tried, so its failure fails pulls.", mirrorLabels, nil)
	descMirrorSt  = prometheus.NewDesc("imagepull_mirror_stale", "1 when the mirror serves another digest for the tag than the upstream registry serves now, 0 when both agree; only for tags whose latest probes succeeded on both.", []string{"mirror", "upstream", "repository", "tag"}, nil)
	descMirrorReq = prometheus.NewDesc("imagepull_mirror_requests_total", "HTTP requests sent to mirrors, by kind and status code (\"error\" when no response arrived); manifest_get stays 0.", []string{"mirror", "upstream", "kind", "code"}, nil)
	descMirrorBud = prometheus.NewDesc("imagepull_mirror_budget_exhausted_total", "Mirror probes skipped because the mirror host's request budget (--probe.registry-budget) was spent.", mirrorLabels, nil)
)

// describeMirrors sends the mirror descriptors.
func describeMirrors(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descMirrorUp, descMirrorWhy, descMirrorFB, descMirrorSt, descMirrorReq, descMirrorBud} {
		ch <- d
	}
}

type mirrorKey struct{ mirror, upstream string }

type mirrorStaleKey struct {
	mirrorKey
	repository, tag string
}

type mirrorAgg struct {
	results  []*probe.Result
	fallback bool
	skipped  uint64
}

// collectMirrors emits the mirror series from the runners' latest results.
func (s *Scheduler) collectMirrors(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	rs := s.sortedRunners()
	s.mu.Unlock()
	aggs := map[mirrorKey]*mirrorAgg{}
	stale := map[mirrorStaleKey]float64{}
	for _, r := range rs {
		r.mu.Lock()
		up := r.st.Last
		for _, m := range r.mirrors {
			k := mirrorKey{m.plan.Host.Host, r.spec.ref.Registry}
			a := aggs[k]
			if a == nil {
				a = &mirrorAgg{fallback: true}
				aggs[k] = a
			}
			// One host without a fallback for some image is enough:
			// that image's pulls fail with the mirror.
			a.fallback = a.fallback && m.plan.Fallback
			a.skipped += m.skipped
			if m.last == nil {
				continue
			}
			a.results = append(a.results, m.last)
			ref := r.spec.ref
			if ref.Digest == "" && up != nil && up.Success && m.last.Success {
				sk := mirrorStaleKey{k, ref.Repository, ref.Tag}
				v := 0.0
				if m.last.Digest != up.Digest {
					v = 1
				}
				stale[sk] = max(stale[sk], v)
			}
		}
		r.mu.Unlock()
	}
	for k, a := range aggs {
		ch <- prometheus.MustNewConstMetric(descMirrorFB, prometheus.GaugeValue, boolFloat(a.fallback), k.mirror, k.upstream)
		if a.skipped > 0 {
			ch <- prometheus.MustNewConstMetric(descMirrorBud, prometheus.CounterValue, float64(a.skipped), k.mirror, k.upstream)
		}
		if len(a.results) == 0 {
			continue
		}
		cause, known := mirrorCause(a.results)
		if !known {
			// Every probe failed on the exporter's own files (reason
			// config): nothing is known of the mirror, so it is neither
			// up nor down (no false ImagePullMirrorDown).
			continue
		}
		ch <- prometheus.MustNewConstMetric(descMirrorUp, prometheus.GaugeValue, boolFloat(cause == probe.ReasonNone), k.mirror, k.upstream)
		for _, reason := range probe.Reasons {
			ch <- prometheus.MustNewConstMetric(descMirrorWhy, prometheus.GaugeValue, boolFloat(cause == reason), k.mirror, k.upstream, string(reason))
		}
	}
	for k, v := range stale {
		ch <- prometheus.MustNewConstMetric(descMirrorSt, prometheus.GaugeValue, v, k.mirror, k.upstream, k.repository, k.tag)
	}
	_, _, counts := s.sender.snapshot()
	for _, c := range counts {
		k := c.key
		ch <- prometheus.MustNewConstMetric(descMirrorReq, prometheus.CounterValue, float64(c.n), k.mirror, k.upstream, string(k.kind), k.code)
	}
}

// mirrorCause is the mirror's state over its latest results, judged as a
// registry is (probe.Health): down with its reason when every probe fails
// for a registry-level reason; up (ReasonNone) when any succeeded, or only
// no_credentials answers exist; else the per-image reason (not_found
// before forbidden): a mirror that serves none of the probed images does
// not serve its purpose. results is never empty here. known is false when
// every result failed on the exporter's own setup (probe.Reason.Local),
// which says nothing of the mirror.
func mirrorCause(results []*probe.Result) (cause probe.Reason, known bool) {
	ev := make([]probe.Evidence, len(results))
	for i, res := range results {
		ev[i] = probe.Evidence{Success: res.Success, Reason: res.Reason}
	}
	h := probe.Health(ev)
	return h.Reason, h.Probed
}
