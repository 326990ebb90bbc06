package collector

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/imagepull/imagepull_exporter/collector/config"
	"github.com/imagepull/imagepull_exporter/internal/testenv"
	"github.com/imagepull/imagepull_exporter/probe"
)

func TestShardFromHostname(t *testing.T) {
	for _, tt := range []struct {
		host    string
		want    int
		wantErr string
	}{
		{host: "imagepull-exporter-0", want: 0},
		{host: "imagepull-exporter-2", want: 2},
		{host: "imagepull-exporter-12", want: 12},
		{host: "exporter-3.imagepull-exporter.monitoring.svc.cluster.local", want: 3},
		{host: "a-b-c-7", want: 7},
		{host: "imagepull-exporter", wantErr: `host name "imagepull-exporter" does not end in -<ordinal>`},
		{host: "imagepull-exporter-7d9f8c6b5-x2kqz", wantErr: "does not end in -<ordinal> as a StatefulSet pod's does"},
		{host: "node-", wantErr: "does not end in -<ordinal>"},
		{host: "", wantErr: "does not end in -<ordinal>"},
		{host: "exporter-99999999999999999999999", wantErr: "out of range"},
	} {
		got, err := ShardFromHostname(tt.host)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ShardFromHostname(%q) = %d, %v; want an error with %q", tt.host, got, err, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), "--shard") {
				t.Errorf("ShardFromHostname(%q): error %q does not say what to do instead", tt.host, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ShardFromHostname(%q) = %d, %v; want %d", tt.host, got, err, tt.want)
		}
	}
}

func TestShardingValidate(t *testing.T) {
	for _, tt := range []struct {
		s       Sharding
		wantErr string
	}{
		{s: Sharding{Ordinal: 0, Total: 1}},
		{s: Sharding{Ordinal: 2, Total: 3}},
		{s: Sharding{Ordinal: 3, Total: 3}, wantErr: "--shard must be between 0 and --total-shards-1 (2), got 3"},
		{s: Sharding{Ordinal: -1, Total: 3}, wantErr: "--shard must be between 0 and --total-shards-1 (2), got -1"},
		{s: Sharding{Ordinal: 0, Total: 0}, wantErr: "--total-shards must be at least 1, got 0"},
	} {
		err := tt.s.Validate()
		if (err == nil) != (tt.wantErr == "") || (err != nil && err.Error() != tt.wantErr) {
			t.Errorf("%+v.Validate() = %v, want %q", tt.s, err, tt.wantErr)
		}
	}
}

// The hash must never change: during a rolling upgrade old and new shards
// would disagree on who owns what, and some registries would be probed
// twice or not at all. These values pin FNV-1a 64 of the normalised host.
func TestShardOfIsStable(t *testing.T) {
	for _, tt := range []struct {
		registry string
		total    int
		want     int
	}{
		{"docker.io", 3, 1}, {"ghcr.io", 3, 0}, {"quay.io", 3, 2}, {"registry.k8s.io", 3, 1},
		{"mcr.microsoft.com", 3, 2}, {"localhost:5000", 3, 1}, {"invalid", 3, 0},
		{"127.0.0.1:5000", 5, 3}, {"registry.k8s.io", 2, 0}, {"docker.io", 1, 0},
		// Spellings of one registry are one key, as in the registry label.
		{"index.docker.io", 3, 1}, {"registry-1.docker.io", 3, 1}, {"GHCR.io", 3, 0},
	} {
		if got := ShardOf(tt.registry, tt.total); got != tt.want {
			t.Errorf("ShardOf(%q, %d) = %d, want %d", tt.registry, tt.total, got, tt.want)
		}
	}
}

// Every registry is owned by exactly one shard, whatever the total.
func TestShardingPartitions(t *testing.T) {
	var regs []string
	for i := 0; i < 300; i++ {
		regs = append(regs, fmt.Sprintf("registry-%d.example.com", i), fmt.Sprintf("10.0.%d.1:5000", i))
	}
	for total := 1; total <= 5; total++ {
		perShard := make([]int, total)
		for _, r := range regs {
			owners := 0
			for ord := 0; ord < total; ord++ {
				if (Sharding{Ordinal: ord, Total: total}).Owns(r) {
					owners++
					perShard[ord]++
				}
			}
			if owners != 1 {
				t.Fatalf("total %d: %s is owned by %d shards, want 1", total, r, owners)
			}
		}
		for ord, n := range perShard {
			if n == 0 {
				t.Errorf("total %d: shard %d owns none of %d registries", total, ord, len(regs))
			}
		}
	}
	if !(Sharding{}).Owns("docker.io") {
		t.Error("the zero Sharding must own everything")
	}
}

// Configured and discovered targets are split in one place, the scheduler:
// the shards' target sets are disjoint and together are the unsharded set.
func TestSchedulerSharding(t *testing.T) {
	var cfgTargets []config.TargetConfig
	var discovered []DiscoveredTarget
	for i := 0; i < 12; i++ {
		host := fmt.Sprintf("registry-%d.example.com", i)
		cfgTargets = append(cfgTargets, tc(t, "cfg-"+host, host+"/app:v1", 0), tc(t, "cfg2-"+host, host+"/other:v1", 0))
		ref, err := probe.ParseReference(host + "/discovered:v1")
		if err != nil {
			t.Fatal(err)
		}
		discovered = append(discovered, DiscoveredTarget{Name: ref.String(), Ref: ref})
	}
	names := func(s *Scheduler) []string {
		var out []string
		for _, ts := range s.Snapshot().Targets {
			out = append(out, ts.Name)
		}
		return out
	}
	build := func(sh Sharding, maxDiscovered int) *Scheduler {
		s := NewScheduler(SchedulerOptions{Sharding: sh, MaxDiscovered: maxDiscovered})
		s.ApplyConfig(testConfig(cfgTargets...))
		s.SetDiscovered(discovered)
		return s
	}
	all := names(build(Sharding{}, 0))
	if len(all) != 36 {
		t.Fatalf("unsharded: %d targets, want 36", len(all))
	}
	var union []string
	for ord := 0; ord < 3; ord++ {
		sh := Sharding{Ordinal: ord, Total: 3}
		s := build(sh, 0)
		got := names(s)
		if len(got) == 0 {
			t.Errorf("shard %d has no targets", ord)
		}
		for _, ts := range s.Snapshot().Targets {
			if !sh.Owns(ts.Ref.Registry) {
				t.Errorf("shard %d probes %s, whose registry it does not own", ord, ts.Name)
			}
		}
		snap := s.Snapshot()
		if snap.Sources[SourceConfig]+snap.Sources[SourceDiscovered] != len(got) {
			t.Errorf("shard %d: sources %v do not add up to %d targets", ord, snap.Sources, len(got))
		}
		union = append(union, got...)

		// The discovery cap counts this shard's targets only: other shards'
		// images must not use it up.
		capped := build(sh, 1)
		if n := capped.Snapshot().Sources[SourceDiscovered]; n != 1 {
			t.Errorf("shard %d with --kube.max-discovered-targets=1: %d discovered targets, want 1", ord, n)
		}
	}
	sort.Strings(union)
	sort.Strings(all)
	if strings.Join(union, "\n") != strings.Join(all, "\n") {
		t.Errorf("union of the shards' targets:\n%s\nwant the unsharded set:\n%s", strings.Join(union, "\n"), strings.Join(all, "\n"))
	}
}

func TestShardCollector(t *testing.T) {
	for _, tt := range []struct {
		s              Sharding
		ordinal, total string
	}{
		{Sharding{}, "0", "1"},
		{Sharding{Ordinal: 0, Total: 1}, "0", "1"},
		{Sharding{Ordinal: 2, Total: 3}, "2", "3"},
	} {
		want := fmt.Sprintf(`# HELP imagepull_exporter_shard_ordinal %s
# TYPE imagepull_exporter_shard_ordinal gauge
imagepull_exporter_shard_ordinal %s
# HELP imagepull_exporter_total_shards %s
# TYPE imagepull_exporter_total_shards gauge
imagepull_exporter_total_shards %s
`, testenv.HelpOf(descShardOrdinal), tt.ordinal, testenv.HelpOf(descTotalShards), tt.total)
		if err := testutil.CollectAndCompare(NewShardCollector(tt.s), strings.NewReader(want)); err != nil {
			t.Errorf("%+v: %v", tt.s, err)
		}
	}
}
