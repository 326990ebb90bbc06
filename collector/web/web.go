package web

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"

	"github.com/imagepull/imagepull_exporter/collector"
	"github.com/imagepull/imagepull_exporter/collector/config"
	"github.com/imagepull/imagepull_exporter/probe"
)

// scrapeTimeoutOffset is left of Prometheus' scrape timeout for writing the
// answer, as blackbox_exporter does, so a slow registry yields
// probe_success 0 rather than a failed scrape.
const scrapeTimeoutOffset = 500 * time.Millisecond

// ProbeHandlerOptions configures NewProbeHandler.
type ProbeHandlerOptions struct {
	// Config returns the running configuration (for its modules).
	Config func() *config.Config
	// Sender sends every probe: it takes and charges the request budget
	// and counts the requests in /metrics (the scheduler's Sender, so
	// that both share one budget per registry); nil means a Sender of
	// its own without a budget.
	Sender *collector.Sender
	// Concurrency bounds /probe probes in flight (--web.probe-concurrency);
	// a request waits at most half its timeout for a slot, then gets 503.
	// <= 0 means DefaultProbeConcurrency.
	Concurrency int
	// ClientRate is how many /probe requests one client address may make
	// per minute (--web.probe-client-rate); more get 429. 0 means
	// DefaultProbeClientRate, < 0 unlimited.
	ClientRate float64
	// Now is the clock of the per-client limit; nil means time.Now.
	Now func() time.Time
	// UserAgent of the probes; empty means the prober's default.
	UserAgent string
	Logger    *slog.Logger
}

type probeHandler struct {
	opts    ProbeHandlerOptions
	sem     chan struct{}
	clients *clientLimiter
}

// NewProbeHandler serves /probe?target=<image>&module=<name>, blackbox
// style: each request probes once with a fresh prober (cold: ping, token,
// HEAD) and answers that probe's metrics from a fresh registry, with the
// same names as the scheduler's. &debug=true answers text instead: the
// request log (credentials redacted), the result and the metrics.
func NewProbeHandler(opts ProbeHandlerOptions) http.Handler {
	if opts.Concurrency <= 0 {
		opts.Concurrency = DefaultProbeConcurrency
	}
	if opts.ClientRate == 0 {
		opts.ClientRate = DefaultProbeClientRate
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Sender == nil {
		opts.Sender = collector.NewSender(nil)
	}
	return &probeHandler{opts: opts, sem: make(chan struct{}, opts.Concurrency),
		clients: newClientLimiter(opts.ClientRate, opts.Now)}
}

func (h *probeHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The per-client limit comes first: refusals (a bad target, an
	// unbound module) are answered and logged too, and must not let one
	// client flood the log.
	if ok, full := h.clients.allow(clientKey(r)); !ok {
		if full {
			http.Error(w, "too many /probe clients at once; retry later", http.StatusServiceUnavailable)
		} else {
			http.Error(w, "too many /probe requests from your address (--web.probe-client-rate); retry later", http.StatusTooManyRequests)
		}
		return
	}
	q := r.URL.Query()
	target := q.Get("target")
	if target == "" {
		http.Error(w, "missing target parameter; use /probe?target=<image>&module=<name>, e.g. /probe?target=docker.io/library/nginx:latest", http.StatusBadRequest)
		return
	}
	ref, err := probe.ParseReference(target)
	if err != nil {
		http.Error(w, fmt.Sprintf("bad target: %v", err), http.StatusBadRequest)
		return
	}
	cfg := h.opts.Config()
	modName := q.Get("module")
	if modName == "" {
		modName = config.DefaultModuleName
	}
	m, ok := cfg.Modules[modName]
	if !ok && modName == config.DefaultModuleName {
		// As for a target naming no module: the status page links
		// every row to a debug probe of its module.
		m, ok = probe.DefaultModule, true
	}
	if !ok {
		names := make([]string, 0, len(cfg.Modules))
		for n := range cfg.Modules {
			names = append(names, n)
		}
		sort.Strings(names)
		http.Error(w, fmt.Sprintf("unknown module %q (defined: %s)", modName, strings.Join(names, ", ")), http.StatusBadRequest)
		return
	}
	if err := m.CheckBinding(ref.Registry); err != nil {
		// The caller asks for a module's credentials on a registry they do
		// not belong to (probe/binding.go). The prober would probe
		// anonymously, as the kubelet would; /probe refuses instead, so
		// that the answer cannot be read as the credentials' result and
		// nothing at all is sent to a host the caller picked.
		var ue *probe.UnboundError
		if errors.As(err, &ue) {
			ue.Module = modName
		}
		h.opts.Logger.Debug("refused /probe: credentials not bound to the registry", "image", ref.String(), "module", modName)
		http.Error(w, "refused: "+err.Error(), http.StatusForbidden)
		return
	}
	timeout, err := probeTimeout(m.Timeout, r.Header.Get("X-Prometheus-Scrape-Timeout-Seconds"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	debug := q.Get("debug") == "true"

	// Wait for a slot at most half the timeout, leaving the probe the
	// rest: slow probes in flight must not make everyone else wait for
	// as long as they take.
	deadline := time.Now().Add(timeout)
	wait := time.NewTimer(timeout / 2)
	select {
	case h.sem <- struct{}{}:
		wait.Stop()
		defer func() { <-h.sem }()
	case <-wait.C:
		http.Error(w, fmt.Sprintf("too many /probe probes in flight (%d, --web.probe-concurrency); retry later", cap(h.sem)), http.StatusServiceUnavailable)
		return
	case <-r.Context().Done():
		wait.Stop()
		return
	}
	prober := probe.NewProber(probe.ProberOptions{UserAgent: h.opts.UserAgent})
	defer prober.Close()
	ctx, cancel := context.WithDeadline(r.Context(), deadline)
	defer cancel()
	res, err := h.opts.Sender.Try(ctx, collector.Send{Purpose: collector.PurposeOnDemand, Registry: ref.Registry},
		func(ctx context.Context) probe.Result {
			return prober.Probe(ctx, probe.Target{Ref: ref, ModuleName: modName, Module: m})
		})
	switch {
	case errors.Is(err, collector.ErrTooManyRegistries):
		http.Error(w, fmt.Sprintf("/probe names too many registries at once (at most %d besides the scheduled ones); retry later", collector.MaxOnDemandRegistries), http.StatusServiceUnavailable)
		return
	case err != nil:
		http.Error(w, fmt.Sprintf("the /probe share of registry %s's request budget is spent (/probe may send %d%% of --probe.registry-budget; the rest is kept for scheduled probes); retry later", ref.Registry, int(100*collector.OnDemandShare)), http.StatusTooManyRequests)
		return
	}
	if !res.Success {
		h.opts.Logger.Debug("probe failed", "via", "/probe", "image", ref.String(), "module", modName,
			"reason", string(res.Reason), "err", res.Error)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collector.ResultCollector(target, res))
	if !debug {
		promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(w, r)
		return
	}

	red := probe.ModuleRedactor(m, ref)
	var b bytes.Buffer
	fmt.Fprintf(&b, "Probe of %s with module %q, timeout %s\n\n", ref, modName, timeout)
	fmt.Fprintln(&b, "Requests:")
	writeRequestLog(&b, res)
	fmt.Fprintln(&b, "\nResult:")
	writeResult(&b, res)
	fmt.Fprintln(&b, "\nMetrics:")
	if mfs, err := reg.Gather(); err == nil {
		for _, mf := range mfs {
			_, _ = expfmt.MetricFamilyToText(&b, mf)
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte(red.Redact(b.String())))
}

// probeTimeout is the module's timeout, or less when Prometheus says its
// scrape times out sooner.
func probeTimeout(module time.Duration, header string) (time.Duration, error) {
	if header == "" {
		return module, nil
	}
	secs, err := strconv.ParseFloat(header, 64)
	if err != nil || secs <= 0 || secs > 24*3600 {
		return 0, fmt.Errorf("bad X-Prometheus-Scrape-Timeout-Seconds %q: want a positive number of seconds", header)
	}
	d := time.Duration(secs * float64(time.Second))
	if d > 2*scrapeTimeoutOffset {
		d -= scrapeTimeoutOffset
	} else {
		d /= 2
	}
	return min(module, d), nil
}

// LogsOptions configures NewLogs.
type LogsOptions struct {
	// Snapshot returns the scheduler's state (Scheduler.Snapshot).
	Snapshot func() collector.Snapshot
	// Config returns the running configuration: the modules whose
	// secrets are redacted from what is shown.
	Config func() *config.Config
	// Now is the clock for ages; nil means time.Now.
	Now func() time.Time
}

// NewLogs serves /logs?target=NAME: the latest scheduled probe of a target
// and its latest failure, each with its request log (headers redacted by
// the prober, the page once more by the module's redactor), so that a
// failure seen on a dashboard can be read afterwards, as blackbox_exporter
// keeps a probe history. /probe?debug=true stays the cold, on-demand probe.
func NewLogs(opts LogsOptions) http.Handler {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Query().Get("target")
		if name == "" {
			http.Error(w, "missing target parameter; use /logs?target=<target name> (the names are on the status page)", http.StatusBadRequest)
			return
		}
		var t *collector.TargetStatus
		snap := opts.Snapshot()
		for i := range snap.Targets {
			if snap.Targets[i].Name == name {
				t = &snap.Targets[i]
				break
			}
		}
		if t == nil {
			http.Error(w, fmt.Sprintf("no target %q (a reload may have removed it); the status page lists the targets", name), http.StatusNotFound)
			return
		}
		m := probe.DefaultModule
		if cfg := opts.Config(); cfg != nil {
			if mm, ok := cfg.Modules[t.Module]; ok {
				m = mm
			}
		}
		now := opts.Now()
		var b strings.Builder
		fmt.Fprintf(&b, "Target %s: %s, module %q, every %s (%s)\n", t.Name, t.Ref, t.Module, t.Interval, t.Source)
		fmt.Fprintf(&b, "%d successes, %d failures\n", t.Successes, t.Failures)
		section := func(title string, res *probe.Result) {
			fmt.Fprintf(&b, "\n%s, %s ago (%s):\n", title, humanAge(now.Sub(res.Start)), res.Start.UTC().Format(time.RFC3339))
			writeResult(&b, *res)
			b.WriteString("requests:\n")
			writeRequestLog(&b, *res)
		}
		switch {
		case t.Last == nil:
			b.WriteString("\nNot probed yet.\n")
		case t.Last.Success:
			section("Latest probe", t.Last)
			if t.LastFailure != nil {
				section("Latest failure", t.LastFailure)
			} else {
				b.WriteString("\nNo failure since the target was added.\n")
			}
		default:
			section("Latest probe (failed)", t.Last)
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, probe.ModuleRedactor(m, t.Ref).Redact(b.String()))
	})
}
