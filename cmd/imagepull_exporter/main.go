// Command imagepull_exporter probes container registries the way the kubelet
// pulls images and exposes the results as Prometheus metrics.
//
//	imagepull_exporter [serve] [flags]               run the exporter (the default command)
//	imagepull_exporter probe IMAGE [flags]           probe one image once (-o json for scripts)
//	imagepull_exporter diagnose pod NAMESPACE/NAME   explain why a pod's images cannot be pulled
//	imagepull_exporter diagnose image IMAGE          the same for one image, with --namespace
//	                                                 and --service-account's pull secrets
//
// Each command takes its own flags, after its name; --config.file is
// global. Every command exits 0 on success, 1 on a failed probe, an
// unpullable image, an invalid configuration or a server error, and 2 on
// bad usage.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"
	toolkitweb "github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/imagepull/imagepull_exporter/collector"
	"github.com/imagepull/imagepull_exporter/collector/config"
	"github.com/imagepull/imagepull_exporter/collector/kube"
	"github.com/imagepull/imagepull_exporter/collector/web"
	"github.com/imagepull/imagepull_exporter/probe"
)

const programName = "imagepull_exporter"

// defaultListenAddress: 9739 is not taken in the Prometheus "default port
// allocations" list as far as we know (it could not be checked from an
// offline build machine); claim it there before a release.
const defaultListenAddress = ":9739"

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // a failed probe, an invalid configuration, a server error
	exitUsage   = 2 // bad flags or arguments
)

func main() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }

// flags holds the parsed command line.
type flags struct {
	// configFile is the one global flag: every command reads the
	// configuration.
	configFile string

	// serve's flags (the default command).
	configCheck    bool
	concurrency    int
	registryBudget float64
	probeConc      int     // --web.probe-concurrency
	probeRate      float64 // --web.probe-client-rate
	demo           bool
	web            *toolkitweb.FlagConfig
	log            *promslog.Config

	// probeEndpoint: serve /probe. Off by default in node-local mode
	// (resolved in run), where it would let anyone who reaches the
	// node's port probe any registry from the node's own address.
	probeEndpoint    bool
	probeEndpointSet bool

	kube *kube.Flags // the Kubernetes join (collector/kube)
	// credProviders are the kubelet credential provider plugins
	// (credproviders.go).
	credProviders *credProviderFlags

	scale *scaleOutFlags // --shard*, --total-shards, --node.* (scaleout.go)

	probe probeFlags // the probe command (probecmd.go)
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var f flags
	app := kingpin.New(programName, "Probes container registries the way the kubelet pulls (ping, token, manifest HEAD; never a manifest GET) and exposes the results to Prometheus.")
	app.Writer(stdout).ErrorWriter(stderr).UsageWriter(stdout)
	app.Version(version.Print(programName))
	app.HelpFlag.Short('h')
	app.Flag("config.file", "Configuration file; empty means the embedded default, which probes one public image on each big registry.").
		PlaceHolder("PATH").StringVar(&f.configFile)
	// Each command declares only its own flags, so that `probe --help`
	// shows what a probe takes and not the server's. serve is the
	// default command: `imagepull_exporter --web.listen-address=:9739`
	// (what deploy/ passes) still runs the server, as kingpin picks the
	// default command when a flag is not a global one.
	serveCmd := app.Command("serve", "Run the exporter (the default command).").Default()
	addServeFlags(serveCmd, &f)
	probeCmd := addProbeCommand(app, &f.probe) // probecmd.go
	f.credProviders = &credProviderFlags{}
	runDiagnose, diagnoseCmd := registerDiagnose(app, &f.configFile, f.credProviders) // diagnose.go
	// The kubelet's credential provider plugins: serve, probe and
	// diagnose all resolve credentials as the node would.
	f.credProviders.addFlags(serveCmd, probeCmd, diagnoseCmd)

	cmd, err := app.Parse(args)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v; see --help\n", programName, err)
		return exitUsage
	}
	if code, ok := runDiagnose(cmd, stdout, stderr); ok {
		return code
	}
	switch cmd {
	case probeCmd.FullCommand():
		return probeOnce(&f, stdin, stdout, stderr)
	case serveCmd.FullCommand():
		f.log.Writer = stderr
		if code, ok := resolveServeFlags(&f, stderr); !ok {
			return code
		}
		if f.configCheck {
			return checkConfig(f.configFile, f.credProviders, stdout, stderr)
		}
		return serve(&f, stderr)
	}
	return exitUsage
}

// addServeFlags declares the server's flags on the serve command.
func addServeFlags(c *kingpin.CmdClause, f *flags) {
	c.Flag("config.check", "Validate the configuration file and exit: 0 when valid, 1 with file:line and the fix when not.").
		BoolVar(&f.configCheck)
	c.Flag("probe.concurrency", "How many probes may run at once.").
		Default(fmt.Sprint(collector.DefaultConcurrency)).IntVar(&f.concurrency)
	c.Flag("probe.registry-budget", "Requests per minute the exporter may send to one registry (scheduled and /probe probes together); a probe that would exceed it is skipped and counted. 0 means unlimited.").
		Default(fmt.Sprint(collector.DefaultRegistryBudget)).Float64Var(&f.registryBudget)
	c.Flag("web.probe-concurrency", "How many /probe probes may run at once; a request waits at most half its timeout for a slot, then gets 503. Kept below --probe.concurrency: /probe runs beside the scheduled probes.").
		Default(fmt.Sprint(web.DefaultProbeConcurrency)).IntVar(&f.probeConc)
	c.Flag("web.probe-client-rate", "/probe requests per minute one client address may make (IPv6: per /64; X-Forwarded-For is not honoured), in bursts of ten seconds' worth; more get 429. 0 means unlimited.").
		Default(fmt.Sprint(web.DefaultProbeClientRate)).Float64Var(&f.probeRate)
	c.Flag("demo", "Also start an in-process registry on loopback holding demo/hello:v1 and probe it, to see a healthy target without internet access.").
		BoolVar(&f.demo)
	f.web = kingpinflag.AddFlags(c, defaultListenAddress)
	c.Flag("web.enable-probe-endpoint", "Serve /probe (probe any image on request, blackbox_exporter style). Default: on, except in node-local mode (--node.name), whose pods on hostNetwork would otherwise probe on anyone's request from the node's address.").
		IsSetByUser(&f.probeEndpointSet).BoolVar(&f.probeEndpoint)
	// promslog's flag package registers on an Application only; these
	// are its two flags, with its names, help and values.
	f.log = &promslog.Config{Level: promslog.NewLevel(), Format: promslog.NewFormat()}
	c.Flag(promslogflag.LevelFlagName, promslogflag.LevelFlagHelp).
		Default("info").HintOptions(promslog.LevelFlagOptions...).SetValue(f.log.Level)
	c.Flag(promslogflag.FormatFlagName, promslogflag.FormatFlagHelp).
		Default("logfmt").HintOptions(promslog.FormatFlagOptions...).SetValue(f.log.Format)
	onCommand(c, func(app *kingpin.Application) { f.kube = kube.AddFlags(app) })
	f.scale = addScaleOutFlags(c)
}

// resolveServeFlags checks serve's flags against each other; ok is false
// with the exit code when they do not hold.
func resolveServeFlags(f *flags, stderr io.Writer) (code int, ok bool) {
	if f.registryBudget != 0 && f.registryBudget < 1 {
		fmt.Fprintf(stderr, "%s: --probe.registry-budget must be 0 (unlimited) or at least 1, got %g\n", programName, f.registryBudget)
		return exitUsage, false
	}
	if f.probeConc < 1 || f.probeRate < 0 {
		fmt.Fprintf(stderr, "%s: --web.probe-concurrency must be at least 1 and --web.probe-client-rate at least 0, got %d and %g\n", programName, f.probeConc, f.probeRate)
		return exitUsage, false
	}
	if f.concurrency < 1 {
		fmt.Fprintf(stderr, "%s: --probe.concurrency must be at least 1, got %d\n", programName, f.concurrency)
		return exitUsage, false
	}
	if err := f.scale.resolve(f.kube, os.Hostname); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", programName, err)
		return exitUsage, false
	}
	if !f.probeEndpointSet {
		f.probeEndpoint = f.scale.node.Name == ""
	}
	return exitOK, true
}

// onCommand declares on c the flags that add declares on an application,
// with their help, defaults and values: collector/kube's AddFlags takes a
// *kingpin.Application, and its flags belong to serve alone. (Actions and
// IsSetByUser do not carry over; those flags use neither.)
func onCommand(c *kingpin.CmdClause, add func(*kingpin.Application)) {
	builtin := map[string]bool{}
	for _, m := range kingpin.New("", "").Model().Flags {
		builtin[m.Name] = true // --help and kingpin's hidden flags
	}
	scratch := kingpin.New("", "")
	add(scratch)
	for _, m := range scratch.Model().Flags {
		if builtin[m.Name] {
			continue
		}
		fc := c.Flag(m.Name, m.Help).PlaceHolder(m.PlaceHolder).Default(m.Default...)
		if m.Envar != "" {
			fc.Envar(m.Envar)
		}
		if m.Short != 0 {
			fc.Short(m.Short)
		}
		if m.Hidden {
			fc.Hidden()
		}
		if m.Required {
			fc.Required()
		}
		fc.SetValue(m.Value)
	}
}

// loadConfig loads the configuration file (the embedded default when
// path is empty) with the credential providers of the command line.
func loadConfig(path string, cp *credProviderFlags) (*config.Config, error) {
	opts, err := cp.configOptions(nil)
	if err != nil {
		return nil, err
	}
	if path == "" {
		return config.LoadDefaultWith(opts)
	}
	return config.LoadWith(path, opts)
}

func checkConfig(path string, cp *credProviderFlags, stdout, stderr io.Writer) int {
	cfg, err := loadConfig(path, cp)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitFailure
	}
	// Warnings go to stderr and leave the exit code at 0: the file is
	// valid, but may not do what its author meant.
	for _, w := range cfg.Warnings() {
		fmt.Fprintf(stderr, "%s: warning: %s\n", configName(path), w)
	}
	fmt.Fprintf(stdout, "%s: OK: %d modules, %d targets\n", configName(path), len(cfg.Modules), len(cfg.Targets))
	return exitOK
}

func configName(path string) string {
	if path == "" {
		return config.DefaultConfigName
	}
	return path
}

// serve runs the exporter until SIGINT or SIGTERM.
func serve(f *flags, stderr io.Writer) int {
	// Every log line, at every level, passes the one redactor with the
	// running configuration's secrets (collector.RedactingHandler).
	redacting := collector.NewRedactingHandler(promslog.New(f.log).Handler())
	logger := slog.New(redacting)
	logger.Info("starting "+programName, "version", version.Info())
	logger.Info("build context", "build_context", version.BuildContext())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	reg := prometheus.NewRegistry()
	reg.MustRegister(
		versioncollector.NewCollector(programName),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	sc := config.NewSafeConfig(reg)
	// The kubelet's credential provider plugins, read once as the kubelet
	// reads them; the credentials they hand out are redacted from every
	// log line too.
	cpOpts, err := f.credProviders.configOptions(logger)
	if err != nil {
		logger.Error("loading the credential provider configuration", "err", err)
		return exitFailure
	}
	sc.SetOptions(cpOpts)
	if p, _ := f.credProviders.providers(logger); p != nil {
		redacting.SetDynamicSecrets(p.Redactor)
		logger.Info("credential providers loaded", "config", p.Source(), "providers", fmt.Sprint(p.Names()))
	}

	if f.demo {
		demo, err := startDemo(logger)
		if err != nil {
			logger.Error("starting the --demo registry", "err", err)
			return exitFailure
		}
		defer demo.Close()
		sc.SetOverlay(demo.Overlay)
	}
	if err := sc.ReloadConfig(f.configFile); err != nil {
		// No running config to fall back to: refuse to start, loudly.
		logger.Error("loading the configuration", "file", configName(f.configFile), "err", err)
		return exitFailure
	}
	redacting.SetSecrets(sc.Get())
	logger.Info("loaded the configuration", "file", configName(f.configFile), "targets", len(sc.Get().Targets))

	prober := probe.NewProber(probe.ProberOptions{UserAgent: userAgent()})
	defer prober.Close()
	sched := collector.NewScheduler(collector.SchedulerOptions{
		Prober: prober, Concurrency: f.concurrency, Budget: collector.NewRequestBudget(f.registryBudget, nil), Logger: logger,
		MaxDiscovered: f.kube.MaxDiscovered, Sharding: f.scale.sharding,
	})
	// In node-local mode the probe and mirror series carry node="NAME".
	probeReg := f.scale.probeRegisterer(reg)
	probeReg.MustRegister(sched)
	reg.MustRegister(collector.NewShardCollector(f.scale.sharding))
	sched.ApplyConfig(sc.Get())

	// The Kubernetes join, discovery and pull secrets; nil without a cluster.
	// Node-local mode leaves it to the central Deployment (scaleout.go).
	var kubeRT *kube.Runtime
	if f.scale.node.Name == "" {
		var err error
		kubeRT, err = kube.Start(ctx, f.kube, kube.Deps{Registerer: reg, Scheduler: sched, Prober: prober,
			Config: sc.Get, Logger: logger, UserAgent: userAgent(), Sharding: f.scale.sharding})
		if err != nil {
			logger.Error("starting the Kubernetes join", "err", err)
			return exitFailure
		}
	}
	defer kubeRT.Wait()

	var wg sync.WaitGroup
	defer wg.Wait()
	node := f.scale.startNodeLocal(ctx, &wg, probeReg, sched, logger)
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = sched.Run(ctx)
	}()

	rl := &reloader{file: f.configFile, sc: sc, logger: logger, apply: func(cfg *config.Config) {
		redacting.SetSecrets(cfg)
		sched.ApplyConfig(cfg)
		node.refresh() // node-local mode: the node's runtime files too
	}}
	wg.Add(1)
	go func() {
		defer wg.Done()
		rl.onSIGHUP(ctx)
	}()

	// Ready once the configuration is loaded (it is, by now) and, with the
	// Kubernetes join on, its caches have synced: before that the join's
	// series would say "no pod waits" for want of knowing.
	var stopping atomic.Bool
	ready := func() bool { return !stopping.Load() && kubeRT.Ready() }
	var join *kube.Cluster
	if kubeRT != nil {
		join = kubeRT.Cluster
	}
	mux := newMux(muxDeps{flags: f, reg: reg, sc: sc, sched: sched, reload: rl.reload, ready: ready, logger: logger,
		redactor: redacting.Redactor, join: join})

	// IdleTimeout closes kept-alive connections nobody uses: longer than
	// any usual scrape interval, so Prometheus keeps reusing its one. No
	// WriteTimeout: /probe legitimately takes up to a module's timeout.
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 5 * time.Minute}
	serveErr := make(chan error, 1)
	go func() { serveErr <- toolkitweb.ListenAndServe(srv, f.web, logger) }()

	code := exitOK
	select {
	case <-ctx.Done():
		logger.Info("shutting down")
	case err := <-serveErr:
		if !errors.Is(err, http.ErrServerClosed) {
			logger.Error("serving HTTP", "err", err)
			code = exitFailure
		}
		stop()
	}
	stopping.Store(true)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdownCtx)
	return code
}

// reloader reloads the configuration file, one reload at a time, whether
// SIGHUP or POST /-/reload asks; a bad file keeps the running
// configuration.
type reloader struct {
	file   string
	sc     *config.SafeConfig
	apply  func(*config.Config)
	logger *slog.Logger
	mu     sync.Mutex
}

func (r *reloader) reload(trigger string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.sc.ReloadConfig(r.file); err != nil {
		r.logger.Error("reloading the configuration failed; keeping the running one", "trigger", trigger, "err", err)
		return err
	}
	r.apply(r.sc.Get())
	r.logger.Info("reloaded the configuration", "trigger", trigger, "targets", len(r.sc.Get().Targets))
	return nil
}

// onSIGHUP reloads on every SIGHUP until ctx is done.
func (r *reloader) onSIGHUP(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-hup:
			_ = r.reload("SIGHUP")
		case <-ctx.Done():
			return
		}
	}
}

// muxDeps is what the HTTP handlers serve from.
type muxDeps struct {
	flags  *flags
	reg    *prometheus.Registry
	sc     *config.SafeConfig
	sched  *collector.Scheduler
	reload func(trigger string) error
	ready  func() bool
	logger *slog.Logger
	// redactor knows the running configuration's secrets (the log's).
	redactor func() *probe.Redactor
	// join is the Kubernetes join; nil without a cluster.
	join *kube.Cluster
}

// newMux builds the exporter's HTTP endpoints.
func newMux(d muxDeps) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/metrics", web.Gzip(promhttp.HandlerFor(d.reg, promhttp.HandlerOpts{
		ErrorLog:          slog.NewLogLogger(d.logger.Handler(), slog.LevelError),
		Registry:          d.reg, // promhttp_metric_handler_* for the scrape itself
		EnableOpenMetrics: true,
		// web.Gzip compresses, at gzip.BestSpeed: promhttp's default
		// level was a third of a scrape's CPU.
		DisableCompression: true,
	})))
	if d.flags.probeEndpoint {
		mux.Handle("/probe", web.NewProbeHandler(web.ProbeHandlerOptions{
			Config: d.sc.Get, Sender: d.sched.Sender(), Concurrency: d.flags.probeConc,
			ClientRate: clientRate(d.flags.probeRate), UserAgent: userAgent(), Logger: d.logger,
		}))
	} else {
		// Registered anyway, so the answer says why instead of the status
		// page's bare 404.
		mux.HandleFunc("/probe", func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "/probe is disabled on this exporter (--web.enable-probe-endpoint; off by default in node-local mode)", http.StatusNotFound)
		})
	}
	mux.Handle("/logs", web.NewLogs(web.LogsOptions{Snapshot: d.sched.Snapshot, Config: d.sc.Get}))
	mux.HandleFunc("/-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "Healthy")
	})
	mux.HandleFunc("/-/ready", func(w http.ResponseWriter, _ *http.Request) {
		if !d.ready() {
			http.Error(w, "Not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "Ready")
	})
	mux.HandleFunc("/-/reload", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "use POST to reload the configuration", http.StatusMethodNotAllowed)
			return
		}
		if err := d.reload("/-/reload"); err != nil {
			http.Error(w, "reload failed, the running configuration stays:\n"+err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "configuration reloaded")
	})
	mux.Handle("/config", web.NewConfigPage(d.sc.Get))
	status := web.StatusPageOptions{Snapshot: d.sched.Snapshot, Version: version.Info(), Config: d.sc.Get,
		Redactor: d.redactor, ProbeEndpoint: d.flags.probeEndpoint}
	if d.join != nil {
		status.Join = d.join
	}
	mux.Handle("/", web.NewStatusPage(status)) // and /status.json, /status.js
	return mux
}

// clientRate maps --web.probe-client-rate (0: unlimited) to
// ProbeHandlerOptions.ClientRate (0: the default, < 0: unlimited).
func clientRate(flag float64) float64 {
	if flag == 0 {
		return -1
	}
	return flag
}
