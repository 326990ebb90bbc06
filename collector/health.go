package collector

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imagepull/imagepull_exporter/probe"
)

// Registry health: a registry product's own health API (probe/health.go),
// read once per auth_check_interval for a registry whose product is
// recognised from what it sends the probes (health: auto) or configured,
// through the Sender like every other request. Its verdict feeds three
// series and one rule.
//
// The rule, in this one place (attributeResult and AttributeCause, both
// through authBackendDown): while the registry's own health API says that
// a component its logins depend on is down (probe.Product.AuthBackend:
// Harbor's database, redis or core, Quay's database, auth or service key,
// Artifactory's Access), an `unauthorized` from that registry is the
// registry's failure, `server_error`, with the component named, not the
// credentials'. It is applied where a probe result becomes the target's
// state (so the metrics' reason, the registry judgement probe.Health, the
// join's registry cause, the workloads' and reschedule causes, the status
// page and /logs all read the attributed result) and to the causes the
// nodes report when the join counts blocked containers.

var (
	descHealthUp = prometheus.NewDesc("imagepull_registry_health_up",
		"Whether the registry's own health API (Harbor, Quay, Artifactory, Nexus) says it is healthy, at its latest read that followed the product's documented format; absent for registries whose product is neither recognised nor configured, and while no valid verdict is at hand.",
		[]string{"registry", "product"}, nil)
	descComponentUp = prometheus.NewDesc("imagepull_registry_component_up",
		"Whether each component the registry's health API reports is up, named as the product names it (printable, at most 64 characters, at most 32 components per registry, those down kept first).",
		[]string{"registry", "product", "component"}, nil)
	descAuthBackendUp = prometheus.NewDesc("imagepull_registry_auth_backend_up",
		"0 while the registry's health API reports down a component its logins depend on (Harbor database, redis, core; Quay database, auth, service_key; Artifactory jfac): its unauthorized answers are then counted as server_error, not as the credentials'. 1 while those it reports are up; absent when it reports none of them.",
		[]string{"registry", "product"}, nil)
	descHealthChecks = prometheus.NewDesc("imagepull_registry_health_checks_total",
		"Reads of the registry's health API by result: healthy, unhealthy, error (no reply, or an error status outside the product's format) and malformed (a reply that is not the product's documented format, or over 1 MiB: tolerated, counted, ignored).",
		[]string{"registry", "product", "result"}, nil)
)

// Results of a health check, the `result` label of
// imagepull_registry_health_checks_total.
const (
	healthResultHealthy   = "healthy"
	healthResultUnhealthy = "unhealthy"
	healthResultError     = "error"
	healthResultMalformed = "malformed"
)

// regHealth is what the scheduler knows of one registry's own health.
type regHealth struct {
	// recognised is the product the probes' replies showed (auto).
	recognised probe.Product
	// product is the product of the latest check.
	product probe.Product
	checked time.Time // the latest check started
	running bool      // a check is in flight
	// report is the latest check's report when it gave a verdict (Known);
	// nil when the latest check gave none. It is used until expires.
	report  *probe.HealthReport
	expires time.Time
	// nexusAnonymous: Nexus's status checks refused the module's
	// credentials; its anonymous status endpoint is read instead.
	nexusAnonymous bool
	checks         map[healthCheckKey]uint64
}

type healthCheckKey struct {
	product probe.Product
	result  string
}

// healthState is the registry health of every registry the scheduler
// probes, guarded by its own mutex (taken after Scheduler.mu when both are
// held).
type healthState struct {
	mu   sync.Mutex
	regs map[string]*regHealth
}

func (h *healthState) get(registry string) *regHealth {
	if h.regs == nil {
		h.regs = map[string]*regHealth{}
	}
	rh := h.regs[registry]
	if rh == nil {
		rh = &regHealth{checks: map[healthCheckKey]uint64{}}
		h.regs[registry] = rh
	}
	return rh
}

// prune drops the health of registries nothing probes any more, with their
// series. The caller holds Scheduler.mu.
func (h *healthState) prune(probed func(registry string) bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for reg := range h.regs {
		if !probed(reg) {
			delete(h.regs, reg)
		}
	}
}

// verdictValidity is how many of the asking module's auth_check_interval a
// verdict is used for: the next check is due after one, so a verdict only
// outlives that when checks stop (a spent budget, probes that stopped).
const verdictValidity = 3

// checkRegistryHealth runs after each scheduled probe of r: it notes the
// product the probe's replies showed, reads the registry's health API when
// a check is due, and applies the attribution rule to res. A check is due
// once per auth_check_interval of r's module, and also when res is an
// unauthorized and the latest check is older than the module's interval
// (or auth_check_interval, if shorter): a login refused while the registry
// is sick must be judged against fresh health, not a verdict of a quarter
// of an hour ago. Nothing is sent for a module with health: none, nor under
// auto for a registry no probe has shown a product for.
func (s *Scheduler) checkRegistryHealth(ctx context.Context, r *runner, res *probe.Result) {
	reg := r.spec.ref.Registry
	m := r.spec.module
	now := s.now()
	setting := m.HealthSetting()

	s.health.mu.Lock()
	rh := s.health.get(reg)
	if res.Product != "" {
		rh.recognised = res.Product
	}
	product, configured := setting.Configured()
	if !configured && setting == probe.HealthAuto {
		product = rh.recognised
	}
	recheck := min(m.Interval, m.AuthCheckInterval)
	due := product != "" && setting != probe.HealthNone && !rh.running &&
		(rh.checked.IsZero() || now.Sub(rh.checked) >= m.AuthCheckInterval ||
			(!res.Success && res.Reason == probe.ReasonUnauthorized && now.Sub(rh.checked) >= recheck))
	if due {
		rh.running = true
		rh.checked = now
	}
	anonymous := rh.nexusAnonymous
	s.health.mu.Unlock()

	if due {
		s.readHealth(ctx, r, product, anonymous)
	}
	s.attributeResult(reg, res)
}

// readHealth sends one health request for r's registry through the Sender
// and records what it says, unless a reload removed r meanwhile.
func (s *Scheduler) readHealth(ctx context.Context, r *runner, product probe.Product, anonymous bool) {
	reg := r.spec.ref.Registry
	t := probe.HealthTarget{Ref: r.spec.ref, ModuleName: r.spec.moduleName, Module: r.spec.module,
		Product: product, Anonymous: anonymous}
	var rep probe.HealthReport
	_, ok := s.sender.Do(ctx, Send{Purpose: PurposeHealth, Registry: reg}, func(ctx context.Context) probe.Result {
		rep = s.prober.CheckHealth(ctx, t) // bounded by the module's timeout
		return rep.Result
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	current := ctx.Err() == nil && s.runners[r.spec.name] == r
	s.health.mu.Lock()
	defer s.health.mu.Unlock()
	rh := s.health.get(reg)
	rh.running = false
	if !current {
		if _, probed := s.byRegistry[reg]; !probed {
			delete(s.health.regs, reg)
		}
		return
	}
	if !ok {
		// Nothing was sent: the next probe tries again.
		rh.checked = time.Time{}
		s.logger.Debug("registry health check skipped: the registry's request budget is spent", "registry", reg)
		return
	}
	rh.product = product
	result := healthResultError
	switch {
	case rep.Known && rep.Healthy:
		result = healthResultHealthy
	case rep.Known:
		result = healthResultUnhealthy
	case rep.Malformed:
		result = healthResultMalformed
	}
	rh.checks[healthCheckKey{product, result}]++
	if rep.Refused && product == probe.ProductNexus {
		rh.nexusAnonymous = true
	}
	if !rep.Known {
		rh.report = nil
		s.logger.Debug("registry health check gave no verdict", "registry", reg, "product", string(product),
			"result", result, "err", rep.Result.Error)
		return
	}
	rh.report = &rep
	rh.expires = rep.Result.Start.Add(verdictValidity * r.spec.module.AuthCheckInterval)
	if rep.Dropped > 0 {
		s.logger.Debug("registry health reply: components dropped", "registry", reg, "product", string(product), "dropped", rep.Dropped)
	}
}

// verdict returns the registry's health report while it is valid.
// s.health.mu is held.
func (rh *regHealth) verdict(now time.Time) *probe.HealthReport {
	if rh == nil || rh.report == nil || !now.Before(rh.expires) {
		return nil
	}
	return rh.report
}

// authBackendDown returns the product and the auth backend components the
// registry's valid health verdict reports down; none when it reports none
// or there is no such verdict.
func (s *Scheduler) authBackendDown(registry string) (probe.Product, []probe.Component) {
	now := s.now()
	s.health.mu.Lock()
	defer s.health.mu.Unlock()
	rep := s.health.regs[registry].verdict(now)
	if rep == nil {
		return "", nil
	}
	return rep.Product, rep.AuthBackendDown()
}

// attributeResult applies the attribution rule to a probe result of
// registry: an unauthorized while the registry's own health says its auth
// backend is down becomes server_error, its error naming the components.
func (s *Scheduler) attributeResult(registry string, res *probe.Result) {
	if res.Success || res.Reason != probe.ReasonUnauthorized {
		return
	}
	product, down := s.authBackendDown(registry)
	if len(down) == 0 {
		return
	}
	res.Reason = probe.ReasonServerError
	res.Error = fmt.Sprintf("%s reports its auth backend down (%s): it refuses every login while it is, whatever the credentials, so this is the registry's failure, not the credentials': %s",
		product, describeComponents(down), res.Error)
}

// AttributeCause implements ProbeStatus: the attribution rule for a cause
// reported outside the probes (a node's pull error): unauthorized from a
// registry whose own health reports its auth backend down is server_error.
func (s *Scheduler) AttributeCause(registry, cause string) string {
	if cause != string(probe.ReasonUnauthorized) {
		return cause
	}
	if _, down := s.authBackendDown(probe.NormalizeRegistry(registry)); len(down) > 0 {
		return string(probe.ReasonServerError)
	}
	return cause
}

// describeComponents names components down with what their product said.
func describeComponents(cs []probe.Component) string {
	parts := make([]string, 0, len(cs))
	for _, c := range cs {
		p := c.Name + " down"
		if c.Message != "" {
			p += ": " + c.Message
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, "; ")
}

// collectHealth emits the registry health series.
func (s *Scheduler) collectHealth(ch chan<- prometheus.Metric) {
	now := s.now()
	s.health.mu.Lock()
	defer s.health.mu.Unlock()
	regs := make([]string, 0, len(s.health.regs))
	for reg := range s.health.regs {
		regs = append(regs, reg)
	}
	sort.Strings(regs)
	for _, reg := range regs {
		rh := s.health.regs[reg]
		for k, n := range rh.checks {
			ch <- prometheus.MustNewConstMetric(descHealthChecks, prometheus.CounterValue, float64(n), reg, string(k.product), k.result)
		}
		rep := rh.verdict(now)
		if rep == nil {
			continue
		}
		prod := string(rep.Product)
		ch <- prometheus.MustNewConstMetric(descHealthUp, prometheus.GaugeValue, boolFloat(rep.Healthy), reg, prod)
		authReported, authUp := false, true
		for _, c := range rep.Components {
			ch <- prometheus.MustNewConstMetric(descComponentUp, prometheus.GaugeValue, boolFloat(c.Up), reg, prod, c.Name)
			if rep.Product.AuthBackend(c.Name) {
				authReported = true
				authUp = authUp && c.Up
			}
		}
		if authReported {
			ch <- prometheus.MustNewConstMetric(descAuthBackendUp, prometheus.GaugeValue, boolFloat(authUp), reg, prod)
		}
	}
}

func describeHealth(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descHealthUp, descComponentUp, descAuthBackendUp, descHealthChecks} {
		ch <- d
	}
}
