package kube

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imagepull/imagepull_exporter/collector"
	"github.com/imagepull/imagepull_exporter/collector/config"
	"github.com/imagepull/imagepull_exporter/probe"
)

var descPullSecretAuth = prometheus.NewDesc("imagepull_pull_secret_auth_success",
	"Whether a pull secret that pods or workloads reference still logs in to a registry their images use (1) or not (0): the registry rejected its credential, or the secret is missing, of the wrong type or unparsable. Checked with only that secret's credential, every auth_check_interval of the registry's module; no series while the answer is unknown.",
	[]string{"namespace", "secret", "registry"}, nil)

// maxAuthChecks bounds the (secret, registry) pairs checked, and so the
// series of imagepull_pull_secret_auth_success.
const maxAuthChecks = 1000

// authCheckConcurrency bounds the checks in flight; they are rare (every
// auth_check_interval per pair) and must not crowd out the scheduler.
const authCheckConcurrency = 2

// authCheckHolder names the auth checks to Sender.Hold.
const authCheckHolder = "pull-secret auth checks"

type authCheckKey struct{ namespace, secret, registry string }

// authCheck is the state of one (secret, registry) pair.
type authCheck struct {
	ref     probe.Reference // the image checked: the first, by name, that uses the secret there
	module  string
	creds   []probe.Credential // only this secret's matching entries; nil for a secret that is not usable
	fixed   bool               // no probe: the value follows from the secret itself (missing, invalid)
	version string
	next    time.Time
	known   bool
	value   float64
	running bool
}

// authChecker checks that every referenced pull secret still logs in.
type authChecker struct {
	prober  *probe.Prober
	sender  *collector.Sender
	secrets *secretCache
	logger  *slog.Logger
	now     func() time.Time

	mu     sync.Mutex
	cfg    *config.Config
	checks map[authCheckKey]*authCheck
	capped bool
	wake   chan struct{}
}

func newAuthChecker(p *probe.Prober, sender *collector.Sender, s *secretCache, logger *slog.Logger, now func() time.Time) *authChecker {
	if sender == nil {
		sender = collector.NewSender(nil)
	}
	return &authChecker{prober: p, sender: sender, secrets: s, logger: logger, now: now,
		checks: map[authCheckKey]*authCheck{}, wake: make(chan struct{}, 1)}
}

type staticKeychain []probe.Credential

func (k staticKeychain) Resolve(probe.Reference) ([]probe.Credential, error) { return k, nil }

// update recomputes the pairs from the current image uses, keeping the
// state of pairs that stay, and schedules a check for new or rotated ones.
func (a *authChecker) update(uses []imageUse, cfg *config.Config) {
	type want struct {
		ref     probe.Reference
		creds   []probe.Credential
		fixed   bool
		value   float64
		version string
	}
	desired := map[authCheckKey]*want{}
	for _, u := range uses {
		if cfg.Discovery.Excluded(u.img.Ref) {
			continue // the operator wants nothing sent to it
		}
		for _, s := range u.secrets {
			e := a.secrets.get(nsName{u.namespace, s})
			if e == nil {
				continue
			}
			k := authCheckKey{u.namespace, s, u.img.Ref.Registry}
			switch e.state {
			case SecretNotFound, SecretWrongType, SecretInvalid:
				// Referenced but unusable: no credential reaches the
				// registry from this secret, whatever the registry says.
				if _, ok := desired[k]; !ok {
					desired[k] = &want{ref: u.img.Ref, fixed: true, value: 0, version: e.state}
				}
				continue
			case SecretOK:
			default:
				continue // unreadable: unknown, no series
			}
			// Thousands of containers share a few (secret, registry) pairs:
			// skip the keyring unless this image would be the one checked.
			if w, ok := desired[k]; ok && (w.ref == u.img.Ref || w.ref.String() < u.img.Ref.String()) {
				continue
			}
			kr := &probe.DockerKeyring{}
			kr.Add("secret "+u.namespace+"/"+s, e.cfg)
			creds, _ := kr.Resolve(u.img.Ref)
			if len(creds) == 0 {
				continue // the secret has nothing for this image (its entries are for other hosts or paths)
			}
			desired[k] = &want{ref: u.img.Ref, creds: creds, version: e.version}
		}
	}

	keys := make([]authCheckKey, 0, len(desired))
	for k := range desired {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.namespace != b.namespace {
			return a.namespace < b.namespace
		}
		if a.secret != b.secret {
			return a.secret < b.secret
		}
		return a.registry < b.registry
	})
	capped := len(keys) > maxAuthChecks
	if capped {
		keys = keys[:maxAuthChecks]
	}

	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if capped && !a.capped {
		a.logger.Warn("more referenced (pull secret, registry) pairs than can be checked; checking the first by name", "max", maxAuthChecks)
	}
	a.capped = capped
	a.cfg = cfg
	next := make(map[authCheckKey]*authCheck, len(keys))
	wake := false
	for _, k := range keys {
		w := desired[k]
		ch := a.checks[k]
		if ch == nil || ch.version != w.version || ch.ref != w.ref || ch.fixed != w.fixed {
			// New, rotated, or now about another image: check at once.
			ch = &authCheck{next: now, running: ch != nil && ch.running}
			wake = true
		}
		ch.ref, ch.creds, ch.fixed, ch.version = w.ref, w.creds, w.fixed, w.version
		ch.module = cfg.Discovery.ModuleFor(w.ref.Registry)
		if w.fixed {
			ch.known, ch.value = true, w.value
		}
		next[k] = ch
	}
	a.checks = next
	// The registries the checks send to keep their request counters
	// although the scheduler may probe none of their images.
	var held []string
	for k, ch := range next {
		if !ch.fixed {
			held = append(held, k.registry)
		}
	}
	a.sender.Hold(authCheckHolder, held)
	if wake {
		select {
		case a.wake <- struct{}{}:
		default:
		}
	}
}

// run performs due checks until ctx is done.
func (a *authChecker) run(ctx context.Context) {
	sem := make(chan struct{}, authCheckConcurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.wake:
		}
		for _, job := range a.due() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			wg.Go(func() {
				defer func() { <-sem }()
				a.check(ctx, job)
			})
		}
	}
}

type authJob struct {
	key    authCheckKey
	check  *authCheck // the state it was started for; update replaces it on rotation
	target probe.Target
}

// due marks the due checks as running and returns them.
func (a *authChecker) due() []authJob {
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	var jobs []authJob
	for k, ch := range a.checks {
		if ch.fixed || ch.running || now.Before(ch.next) {
			continue
		}
		m := moduleOf(a.cfg, ch.module)
		ch.running = true
		ch.next = now.Add(m.AuthCheckInterval)
		jobs = append(jobs, authJob{key: k, check: ch, target: probe.Target{Ref: ch.ref, ModuleName: ch.module, Module: m,
			Keychain: staticKeychain(ch.creds)}})
	}
	sort.Slice(jobs, func(i, j int) bool { return jobs[i].target.Ref.String() < jobs[j].target.Ref.String() })
	return jobs
}

func (a *authChecker) check(ctx context.Context, job authJob) {
	k, t := job.key, job.target
	defer func() {
		a.mu.Lock()
		if ch := a.checks[k]; ch != nil {
			ch.running = false
		}
		a.mu.Unlock()
	}()
	res, ok := a.sender.Do(ctx, collector.Send{Purpose: collector.PurposeAuthCheck, Registry: k.registry},
		func(ctx context.Context) probe.Result { return a.prober.Probe(ctx, t) })
	if !ok {
		a.mu.Lock()
		if ch := a.checks[k]; ch != nil {
			ch.next = a.now().Add(time.Minute) // try again when the budget has refilled
		}
		a.mu.Unlock()
		a.logger.Debug("pull secret auth check postponed: registry request budget spent", "secret", k.namespace+"/"+k.secret, "registry", k.registry)
		return
	}
	if ctx.Err() != nil {
		return
	}
	known, value := authVerdict(res)
	if !known {
		a.logger.Debug("pull secret auth check inconclusive", "secret", k.namespace+"/"+k.secret,
			"registry", k.registry, "reason", string(res.Reason), "err", res.Error)
		return
	}
	if value == 0 {
		a.logger.Warn("pull secret no longer logs in", "secret", k.namespace+"/"+k.secret,
			"registry", k.registry, "image", t.Ref.String(), "err", res.Error)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	// A secret rotated (or moved to another image) while this check ran
	// has a new state, checked at once with the new credential: this
	// verdict, about the old one, must not land on it.
	if a.checks[k] == job.check {
		job.check.known, job.check.value = true, value
	}
}

// authVerdict turns a probe with one secret's credentials into "logs in":
// an auth check that passed, or a warm probe that succeeded, is 1; the
// registry rejecting the credential (unauthorized, forbidden) is 0; anything
// else (registry down, rate limited, a missing tag after a good login when
// no auth check ran) says nothing about the secret.
func authVerdict(res probe.Result) (known bool, value float64) {
	switch {
	case res.AuthChecked && res.AuthOK:
		return true, 1
	case res.Reason == probe.ReasonUnauthorized || res.Reason == probe.ReasonForbidden:
		return true, 0
	case !res.AuthChecked && res.Success:
		return true, 1
	}
	return false, 0
}

func (a *authChecker) collect(ch chan<- prometheus.Metric) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, c := range a.checks {
		if c.known {
			ch <- prometheus.MustNewConstMetric(descPullSecretAuth, prometheus.GaugeValue, c.value, k.namespace, k.secret, k.registry)
		}
	}
}
