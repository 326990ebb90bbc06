package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/imagepull/imagepull_exporter/collector"
	"github.com/imagepull/imagepull_exporter/collector/kube"
	"github.com/imagepull/imagepull_exporter/collector/mirror"
)

// scaleOutFlags are the flags of the two ways to scale out (the sharded
// StatefulSet and the node-probe DaemonSet of deploy/):
//
//	--shard=N --total-shards=M    this process probes and joins the registries that hash to N
//	--shard.from-hostname         N from the StatefulSet pod's name (imagepull-exporter-N)
//	--node.name=NAME              node-local mode: probe from this node, label series node=NAME
//	--node.containerd-certs-dir, --node.containerd-config, --node.crio-registries-conf
//	                              the node's runtime mirror configuration, mounted read-only
type scaleOutFlags struct {
	shard        int
	totalShards  int
	fromHostname bool
	shardGiven   bool // --shard was on the command line
	node         mirror.NodeOptions

	// sharding is the result of resolve.
	sharding collector.Sharding
}

// flagAdder declares flags: a kingpin Application or a command.
type flagAdder interface {
	Flag(name, help string) *kingpin.FlagClause
}

func addScaleOutFlags(app flagAdder) *scaleOutFlags {
	s := &scaleOutFlags{}
	app.Flag("shard", "This process' shard, 0 to --total-shards-1: it probes the targets (configured and discovered) and joins the pods of the registries that hash to it. See the README's Sharding section.").
		Default("0").IsSetByUser(&s.shardGiven).IntVar(&s.shard)
	app.Flag("total-shards", "How many shards share the work; every shard must be given the same number. 1 means not sharded.").
		Default("1").IntVar(&s.totalShards)
	app.Flag("shard.from-hostname", "Take the shard from the trailing -<ordinal> of the host name, as a StatefulSet pod is named (imagepull-exporter-2 is shard 2).").
		BoolVar(&s.fromHostname)
	app.Flag("node.name", "Node-local mode: the name of the node this exporter runs on (in a DaemonSet, from the downward API's spec.nodeName). Probe series get a node label, and mirrors are read from the node's container runtime configuration. The Kubernetes join stays with the central Deployment.").
		PlaceHolder("NAME").StringVar(&s.node.Name)
	app.Flag("node.containerd-certs-dir", "Node-local mode: containerd's registry hosts directory (certs.d/<registry>/hosts.toml) as mounted from the node; missing means containerd is not used.").
		Default(mirror.DefaultContainerdCertsDir).StringVar(&s.node.ContainerdCertsDir)
	app.Flag("node.containerd-config", "Node-local mode: containerd's config.toml as mounted from the node (its CRI registry.mirrors and config_path).").
		Default(mirror.DefaultContainerdConfig).StringVar(&s.node.ContainerdConfig)
	app.Flag("node.crio-registries-conf", "Node-local mode: CRI-O's registries.conf as mounted from the node (registries.conf.d/ next to it is read too); missing means CRI-O is not used.").
		Default(mirror.DefaultCRIORegistriesConf).StringVar(&s.node.CRIORegistriesConf)
	return s
}

// resolve checks the flags against each other and works out the shard.
// hostname is os.Hostname, injected by tests.
func (s *scaleOutFlags) resolve(k *kube.Flags, hostname func() (string, error)) error {
	shardGiven := s.shardGiven
	sharded := s.totalShards != 1 || shardGiven || s.fromHostname
	if s.node.Name != "" {
		if sharded {
			return errors.New("node-local mode (--node.name) and sharding (--shard, --total-shards, --shard.from-hostname) are exclusive: each node-local exporter probes for its own node; shard the central Deployment instead")
		}
		if k != nil && (k.DiscoverTargets || k.UsePullSecrets || k.Kubeconfig != "" || len(k.Namespaces) > 0) {
			return errors.New("node-local mode (--node.name) does not run the Kubernetes join: drop the --kubeconfig and --kube.* flags (the central Deployment discovers and joins once for the cluster)")
		}
		return s.node.Validate()
	}
	if s.fromHostname {
		if shardGiven {
			return errors.New("--shard and --shard.from-hostname are exclusive; give one")
		}
		h, err := hostname()
		if err != nil {
			return fmt.Errorf("--shard.from-hostname: %w", err)
		}
		n, err := collector.ShardFromHostname(h)
		if err != nil {
			return fmt.Errorf("--shard.from-hostname: %w", err)
		}
		if n >= s.totalShards {
			return fmt.Errorf("--shard.from-hostname: host name %q is shard %d, but --total-shards is %d; set --total-shards to the StatefulSet's replicas", h, n, s.totalShards)
		}
		s.shard = n
	}
	s.sharding = collector.Sharding{Ordinal: s.shard, Total: s.totalShards}
	return s.sharding.Validate()
}

// nodeLocal is node-local mode at run time.
type nodeLocal struct {
	mirrors *mirror.NodeReader
	sched   *collector.Scheduler
}

// nodeMirrorsRefresh is how often the node's runtime files are read again:
// containerd reads hosts.toml at every pull, so a change takes effect
// without a restart, and the probes should follow it.
const nodeMirrorsRefresh = time.Minute

// probeRegisterer is where the probe and mirror series go: reg itself, or,
// in node-local mode, reg with the node label.
func (s *scaleOutFlags) probeRegisterer(reg prometheus.Registerer) prometheus.Registerer {
	if s.node.Name == "" {
		return reg
	}
	return collector.NodeRegisterer(reg, s.node.Name)
}

// startNodeLocal reads the node's runtime configuration into the scheduler
// and keeps it current until ctx is done; nil outside node-local mode.
func (s *scaleOutFlags) startNodeLocal(ctx context.Context, wg *sync.WaitGroup, reg prometheus.Registerer, sched *collector.Scheduler, logger *slog.Logger) *nodeLocal {
	if s.node.Name == "" {
		return nil
	}
	logger.Info("node-local mode: probing from this node; the Kubernetes join runs in the central Deployment", "node", s.node.Name)
	n := &nodeLocal{mirrors: mirror.NewNodeReader(s.node, logger), sched: sched}
	reg.MustRegister(n.mirrors)
	n.refresh()
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(nodeMirrorsRefresh)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				n.refresh()
			}
		}
	}()
	return n
}

// refresh reads the node's files again (at the interval and on reload).
func (n *nodeLocal) refresh() {
	if n != nil {
		n.sched.SetNodeMirrors(n.mirrors.Read())
	}
}
