package collector

import (
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imagepull/imagepull_exporter/probe"
)

// Sharding splits the work of one cluster between several exporter
// processes (--shard, --total-shards: a StatefulSet whose pods take the
// shard from their ordinal).
//
// The shard key is the registry: the normalised host of the `registry`
// label, hashed with FNV-1a 64 modulo the number of shards. Every
// configured and discovered target of a registry, every registry-level
// series, and every Kubernetes-side series about that registry belong to
// the one shard that owns the registry. Why the registry and not the target
// or the pod:
//
//   - The per-registry request budget and the token cache stay exact inside
//     one process. Docker Hub's limits are per source address or account;
//     splitting one registry's targets over three shards would let them
//     spend three budgets against one limit.
//   - Every registry-level series (rate limit, TLS expiry, request and
//     malformed-header counters, budget exhaustion) and every Kubernetes
//     series (all of them carry `registry`) is produced by exactly one
//     shard, so the union of all shards' /metrics is what one unsharded
//     exporter would expose: no duplicates, nothing to aggregate across
//     shards, and the join reads only probe results of its own process.
//   - Each shard's informers drop the containers of registries it does not
//     own as objects arrive, so shard memory shrinks with the shard count.
//
// The trade-off: one registry's targets are never split. That is fine in
// practice: a warm probe costs one request and 0.16–0.3 ms of CPU (the probe
// benchmark, README.md "Performance"), so one process probes tens of
// thousands of targets per minute, and what limits
// how many targets one registry can have is that registry's request budget,
// which sharding must not multiply anyway.
//
// Per-process health (`up`, imagepull_kube_watch_*, the config reload and
// build info series, imagepull_exporter_targets) stays on every shard, and
// imagepull_exporter_shard_ordinal / imagepull_exporter_total_shards say
// which shard answered, so an alert can catch a missing one.
//
// The zero value owns everything (one unsharded process).
type Sharding struct {
	// Ordinal is this process' shard, 0 <= Ordinal < Total.
	Ordinal int
	// Total is the number of shards; 0 or 1 means no sharding.
	Total int
}

// Enabled reports whether work is split at all.
func (s Sharding) Enabled() bool { return s.Total > 1 }

// total is the effective number of shards.
func (s Sharding) total() int {
	if s.Total < 1 {
		return 1
	}
	return s.Total
}

// Validate checks the ordinal against the total.
func (s Sharding) Validate() error {
	if s.Total < 1 {
		return fmt.Errorf("--total-shards must be at least 1, got %d", s.Total)
	}
	if s.Ordinal < 0 || s.Ordinal >= s.Total {
		return fmt.Errorf("--shard must be between 0 and --total-shards-1 (%d), got %d", s.Total-1, s.Ordinal)
	}
	return nil
}

// Owns reports whether this shard owns registry (a `registry` label value:
// "docker.io", "ghcr.io", "localhost:5000", or "invalid" for unparsable
// image references). The scheduler filters targets with it and the
// Kubernetes join filters containers with it: one function, so the two
// always agree.
func (s Sharding) Owns(registry string) bool {
	if !s.Enabled() {
		return true
	}
	return ShardOf(registry, s.Total) == s.Ordinal
}

// ShardOf returns the shard that owns registry among total shards: FNV-1a 64
// of the normalised registry host, modulo total. It is stable across
// processes, restarts and versions (changing it would move every registry
// at once during a rolling upgrade).
func ShardOf(registry string, total int) int {
	if total <= 1 {
		return 0
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(probe.NormalizeRegistry(registry)))
	return int(h.Sum64() % uint64(total))
}

// ShardFromHostname derives the shard ordinal from a StatefulSet pod's host
// name, "<statefulset>-<ordinal>" (e.g. imagepull-exporter-2 → 2), for
// --shard.from-hostname.
func ShardFromHostname(hostname string) (int, error) {
	name, _, _ := strings.Cut(hostname, ".") // a FQDN's first label
	i := strings.LastIndexByte(name, '-')
	if i < 0 || i == len(name)-1 {
		return 0, fmt.Errorf("host name %q does not end in -<ordinal> as a StatefulSet pod's does (e.g. imagepull-exporter-2); run as a StatefulSet or set --shard instead", hostname)
	}
	digits := name[i+1:]
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("host name %q does not end in -<ordinal> as a StatefulSet pod's does (e.g. imagepull-exporter-2); run as a StatefulSet or set --shard instead", hostname)
		}
	}
	n, err := strconv.Atoi(digits)
	if err != nil {
		return 0, fmt.Errorf("host name %q: ordinal %q is out of range; set --shard instead", hostname, digits)
	}
	return n, nil
}

var (
	descShardOrdinal = prometheus.NewDesc("imagepull_exporter_shard_ordinal",
		"This process' shard (--shard, or from the StatefulSet pod ordinal); 0 when not sharded. Each shard probes and joins the registries that hash to it.",
		nil, nil)
	descTotalShards = prometheus.NewDesc("imagepull_exporter_total_shards",
		"The number of shards this process was told exist (--total-shards); 1 when not sharded. Every shard of one deployment must agree.",
		nil, nil)
)

// ShardCollector exposes imagepull_exporter_shard_ordinal and
// imagepull_exporter_total_shards, as kube-state-metrics does, so that an
// alert can compare the shards that answer with the shards there should be.
type ShardCollector struct{ s Sharding }

// NewShardCollector returns the collector of s.
func NewShardCollector(s Sharding) *ShardCollector { return &ShardCollector{s: s} }

// Describe implements prometheus.Collector.
func (c *ShardCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descShardOrdinal
	ch <- descTotalShards
}

// Collect implements prometheus.Collector.
func (c *ShardCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descShardOrdinal, prometheus.GaugeValue, float64(c.s.Ordinal))
	ch <- prometheus.MustNewConstMetric(descTotalShards, prometheus.GaugeValue, float64(c.s.total()))
}
