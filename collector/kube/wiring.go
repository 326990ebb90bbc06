package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/imagepull/imagepull_exporter/collector"
	"github.com/imagepull/imagepull_exporter/collector/config"
	"github.com/imagepull/imagepull_exporter/probe"
)

// Flags are the command line of the Kubernetes side.
type Flags struct {
	Kubeconfig        string
	Namespaces        []string
	DiscoverTargets   bool
	MaxDiscovered     int
	UsePullSecrets    bool
	MaxRegistries     int
	WatchEvents       bool
	MaxWorkloadSeries int
}

// DefaultMaxRegistries is the default of --kube.max-registries.
const DefaultMaxRegistries = 100

// DefaultMaxWorkloadSeries is the default of --kube.max-workload-series.
const DefaultMaxWorkloadSeries = 1000

// AddFlags registers the Kubernetes flags on app (serve's flags; diagnose
// reads --kubeconfig too):
//
//	--kubeconfig=PATH                  else in-cluster, else $KUBECONFIG, else no join
//	--kube.namespaces=NS,...           watch only these namespaces (pods, workloads)
//	--kube.discover-targets            probe every image the cluster runs or will run
//	--kube.max-discovered-targets=N    cap on discovered targets
//	--kube.use-pull-secrets            probe with the pods' pull secrets, check them
//	--kube.max-registries=N            cap on registries in the join's series
//	--[no-]kube.watch-events           read pull errors from the pods' Failed events
//	--kube.max-workload-series=N       cap on the workloads' unavailable image series
func AddFlags(app *kingpin.Application) *Flags {
	f := &Flags{}
	app.Flag("kubeconfig", "Kubeconfig file of the cluster to join probe results with. Without it: the in-cluster service account, else $KUBECONFIG, else the exporter runs as a pure prober.").
		PlaceHolder("PATH").StringVar(&f.Kubeconfig)
	app.Flag("kube.namespaces", "Comma-separated namespaces whose pods and workloads are watched; empty means all. Nodes are always watched.").
		PlaceHolder("NS,...").StringsVar(&f.Namespaces)
	app.Flag("kube.discover-targets", "Probe every distinct image that pods and workload templates (Deployments, StatefulSets, DaemonSets, Jobs, CronJobs, scaled to zero too) use; discovery: in the config file chooses the module per registry and what to exclude.").
		BoolVar(&f.DiscoverTargets)
	app.Flag("kube.max-discovered-targets", "Cap on discovered targets (images waited for first, then running, then only in templates).").
		Default(fmt.Sprint(collector.DefaultMaxDiscovered)).IntVar(&f.MaxDiscovered)
	app.Flag("kube.use-pull-secrets", "Probe discovered images with the credentials the kubelet would use (the pod's imagePullSecrets, or its service account's) and report whether each referenced pull secret still logs in. Needs `get` on secrets (deploy/overlays/pull-secrets).").
		BoolVar(&f.UsePullSecrets)
	app.Flag("kube.max-registries", "Cap on distinct registries in the Kubernetes-side series (containers waiting, blocked, mutable references, reschedule risk, tag digests and drift): the registries with the most containers keep their label, the others are counted under registry=\"other\" (imagepull_kube_registries_folded says how many). 0 means no cap.").
		Default(fmt.Sprint(DefaultMaxRegistries)).IntVar(&f.MaxRegistries)
	app.Flag("kube.watch-events", "Watch the pods' Failed events (list/watch on events, in the shipped role), where kubelets before 1.32 leave the pull error of a container in ImagePullBackOff; --no-kube.watch-events takes the node-reported cause from the containers' status alone.").
		Default("true").BoolVar(&f.WatchEvents)
	app.Flag("kube.max-workload-series", "Cap on the series of imagepull_workload_image_unavailable (one per workload container whose image cannot be pulled). Past it, the series of registries that are down are left out first (ImagePullRegistryUnreachable pages for them), and the namespaces keep series in turn, so that one namespace with many broken workloads cannot crowd out the others' alerts; imagepull_kube_workload_series_dropped counts what was left out. 0 means no cap.").
		Default(fmt.Sprint(DefaultMaxWorkloadSeries)).IntVar(&f.MaxWorkloadSeries)
	return f
}

// namespaces splits comma-separated values (the flag may also repeat).
func (f *Flags) namespaces() []string {
	var out []string
	for _, v := range f.Namespaces {
		for _, ns := range strings.Split(v, ",") {
			if ns = strings.TrimSpace(ns); ns != "" {
				out = append(out, ns)
			}
		}
	}
	return out
}

// Deps is what the Kubernetes side needs from the rest of the exporter.
type Deps struct {
	// Registerer receives the join's and the pull-secret collectors.
	Registerer prometheus.Registerer
	// Scheduler is the ProbeStatus the join reads and the sink of
	// discovered targets.
	Scheduler *collector.Scheduler
	// Prober runs the pull-secret auth checks (the scheduler's); they
	// are sent through the Scheduler's Sender.
	Prober *probe.Prober
	// Config returns the running configuration (SafeConfig.Get).
	Config func() *config.Config
	// Sharding keeps only this shard's registries (zero: everything).
	Sharding collector.Sharding
	Logger   *slog.Logger
	// UserAgent identifies the exporter to the apiserver.
	UserAgent string
}

// Runtime is the running Kubernetes side.
type Runtime struct {
	Cluster   *Cluster
	Discovery *Discovery // nil unless discovery or pull secrets are on
	wg        sync.WaitGroup
}

// Ready reports whether the Kubernetes side can say what it is about: every
// informer has completed its first list. A nil Runtime (no cluster) is
// ready. It stays true through a later apiserver outage: the caches keep
// serving, and the watch-health series report the outage.
func (r *Runtime) Ready() bool {
	return r == nil || r.Cluster.HasSynced()
}

// Wait returns once every goroutine Start started has stopped (after the
// context given to Start is done).
func (r *Runtime) Wait() {
	if r != nil {
		r.wg.Wait()
	}
}

// Start connects to the cluster and runs the watchers, the join and, when
// asked, discovery and the pull-secret checks until ctx is done. With no
// cluster configured it logs once that the join is off and returns a nil
// Runtime and no error. Flags that need a cluster are then an error.
func Start(ctx context.Context, f *Flags, d Deps) (*Runtime, error) {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	cfg, ok, err := RESTConfig(f.Kubeconfig)
	if err != nil {
		return nil, err
	}
	if !ok {
		if f.DiscoverTargets || f.UsePullSecrets || len(f.Namespaces) > 0 {
			return nil, errors.New("--kube.* flags need a cluster: give --kubeconfig, run in a pod, or set KUBECONFIG")
		}
		LogJoinOff(d.Logger)
		return nil, nil
	}
	// client-go logs through klog, a process-wide logger: make it the
	// exporter's, so reflector warnings share its format and level.
	klog.SetSlogLogger(d.Logger.With("component", "client-go"))
	// Also process-wide: fill the informers from streaming lists where the
	// apiserver serves them (paginated lists where it does not).
	if err := EnableStreamingLists(); err != nil {
		return nil, err
	}
	return StartWithConfig(ctx, cfg, f, d)
}

// StartWithConfig is Start with an explicit client configuration. Unlike
// Start it leaves klog (client-go's process-wide logger) alone.
func StartWithConfig(ctx context.Context, cfg *rest.Config, f *Flags, d Deps) (*Runtime, error) {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	cfg = rest.CopyConfig(cfg)
	if d.UserAgent != "" {
		cfg.UserAgent = d.UserAgent
	}
	// Informers make few requests; keep client-go's default QPS, but make
	// them protobuf where the apiserver speaks it (less CPU, less memory
	// while decoding a 10,000-pod list).
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	if d.Scheduler == nil || d.Config == nil {
		return nil, errors.New("kube: Deps.Scheduler and Deps.Config are required")
	}
	c, err := New(client, Options{
		Namespaces:        f.namespaces(),
		WatchWorkloads:    f.DiscoverTargets,
		UsePullSecrets:    f.UsePullSecrets,
		WatchEvents:       f.WatchEvents,
		Status:            d.Scheduler,
		Logger:            d.Logger,
		Sharding:          d.Sharding,
		MaxRegistries:     f.MaxRegistries,
		MaxWorkloadSeries: f.MaxWorkloadSeries,
	})
	if err != nil {
		return nil, err
	}
	rt := &Runtime{Cluster: c}
	if f.DiscoverTargets || f.UsePullSecrets {
		rt.Discovery, err = NewDiscovery(c, DiscoveryOptions{
			Config:          d.Config,
			DiscoverTargets: f.DiscoverTargets,
			SetTargets:      d.Scheduler.SetDiscovered,
			MaxTargets:      f.MaxDiscovered,
			UsePullSecrets:  f.UsePullSecrets,
			Prober:          d.Prober,
			Sender:          d.Scheduler.Sender(),
			Logger:          d.Logger,
		})
		if err != nil {
			return nil, err
		}
	}
	if d.Registerer != nil {
		if err := d.Registerer.Register(c); err != nil {
			return nil, fmt.Errorf("register the Kubernetes collector: %w", err)
		}
		if rt.Discovery != nil {
			if err := d.Registerer.Register(rt.Discovery); err != nil {
				return nil, fmt.Errorf("register the pull secret collector: %w", err)
			}
		}
	}
	d.Logger.Info("Kubernetes join on", "apiserver", cfg.Host, "namespaces", strings.Join(f.namespaces(), ","),
		"discover_targets", f.DiscoverTargets, "use_pull_secrets", f.UsePullSecrets)
	rt.wg.Go(func() { _ = c.Run(ctx) })
	if rt.Discovery != nil {
		rt.wg.Go(func() {
			if err := rt.Discovery.Run(ctx); err != nil {
				d.Logger.Error("Kubernetes discovery stopped", "err", err)
			}
		})
	}
	return rt, nil
}
