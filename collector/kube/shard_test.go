package kube

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/imagepull/imagepull_exporter/collector"
	"github.com/imagepull/imagepull_exporter/collector/config"
	"github.com/imagepull/imagepull_exporter/internal/testenv"
	"github.com/imagepull/imagepull_exporter/probe"
)

// Each container, template image and node image is kept by exactly one of
// the shards, the one that owns its registry; a pod with none left stays as
// a stub.
func TestShardTransforms(t *testing.T) {
	images := []string{"nginx:1.27", "ghcr.io/acme/api:v1", "quay.io/x/y:1", "registry.k8s.io/pause:3.10",
		"localhost:5000/app:v1", "10.0.0.5:5000/team/app@" + digestA, "Ghcr.io/ACME/Api:v1" /* invalid */}
	var ctrs []ctr
	for _, img := range images {
		ctrs = append(ctrs, ctr{image: img, running: true})
	}
	p := pod("ns", "p", "n1", ctrs...)
	n := node("n1", images[:6]...)

	const total = 3
	kept := map[string]int{}
	keptNode := map[string]int{}
	stubs := 0
	for ord := 0; ord < total; ord++ {
		s := collector.Sharding{Ordinal: ord, Total: total}
		o, err := shardPods(s)(p.DeepCopy())
		if err != nil {
			t.Fatal(err)
		}
		pi := o.(*podInfo)
		if pi.Name != "p" || pi.Node != "n1" {
			t.Errorf("shard %d: pod stub lost its identity: %+v", ord, pi.ObjectMeta)
		}
		if len(pi.Containers) == 0 {
			stubs++
		}
		for _, c := range pi.Containers {
			img := c.Img.Value()
			if !s.Owns(img.Registry()) {
				t.Errorf("shard %d kept %s of registry %s it does not own", ord, img.Image, img.Registry())
			}
			kept[img.Image]++
		}
		// Idempotent, as client-go requires of transforms.
		if again, err := shardPods(s)(o); err != nil || len(again.(*podInfo).Containers) != len(pi.Containers) {
			t.Errorf("shard %d: transform is not idempotent", ord)
		}
		on, err := shardNodes(s)(n.DeepCopy())
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range on.(*nodeInfo).Images {
			keptNode[h.Value()]++
		}
	}
	for _, img := range images {
		if kept[img] != 1 {
			t.Errorf("%s kept by %d shards, want 1", img, kept[img])
		}
	}
	if len(keptNode) != 6 {
		t.Errorf("node images kept: %v, want each of the 6 once", keptNode)
	}
	for k, c := range keptNode {
		if c != 1 {
			t.Errorf("node image %s kept by %d shards", k, c)
		}
	}
	t.Logf("%d of %d shards hold only a stub of the pod", stubs, total)
}

// shardExporter is the Kubernetes side of one exporter process as cmd wires
// it, with sharding: the scheduler and the informers both filter with the
// same collector.Sharding.
type shardExporter struct {
	reg   *prometheus.Registry
	sched *collector.Scheduler
}

func startShardExporter(t *testing.T, rc *rest.Config, ns, configYAML string, s collector.Sharding) *shardExporter {
	t.Helper()
	cfg, err := config.Parse("test.yml", []byte(configYAML))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	rc = rest.CopyConfig(rc)
	rc.Timeout = 0
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	prober := probe.NewProber(probe.ProberOptions{UserAgent: "imagepull-shard-test"})
	sched := collector.NewScheduler(collector.SchedulerOptions{Prober: prober, Concurrency: 4, Sharding: s})
	sched.ApplyConfig(cfg)
	cluster, err := New(client, Options{Namespaces: []string{ns}, WatchWorkloads: true, WatchEvents: true, Status: sched,
		Logger: testLogger(t), Sharding: s})
	if err != nil {
		t.Fatal(err)
	}
	disc, err := NewDiscovery(cluster, DiscoveryOptions{
		Config: func() *config.Config { return cfg }, DiscoverTargets: true,
		SetTargets: sched.SetDiscovered, Interval: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	e := &shardExporter{reg: prometheus.NewRegistry(), sched: sched}
	e.reg.MustRegister(sched, cluster, disc, collector.NewShardCollector(s))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = cluster.Run(ctx) })
	wg.Go(func() { _ = sched.Run(ctx) })
	wg.Go(func() { _ = disc.Run(ctx) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		prober.Close()
	})
	return e
}

// perProcess are the series every process has whatever it owns: its own
// health and counts, not facts about a registry.
var perProcess = map[string]bool{
	"imagepull_kube_watch_up":                           true,
	"imagepull_kube_watch_last_event_timestamp_seconds": true,
	"imagepull_exporter_targets":                        true,
	"imagepull_exporter_shard_ordinal":                  true,
	"imagepull_exporter_total_shards":                   true,
	"imagepull_kube_registries_folded":                  true, // each shard folds its own registries
	"imagepull_kube_workload_series_dropped":            true, // each shard caps its own series
}

// seriesOf returns every series (name and labels, not values) a gatherer
// exposes outside perProcess, with how often each appears, and the
// registries they mention.
func seriesOf(t *testing.T, g prometheus.Gatherer) (map[string]int, map[string]bool) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	regs := map[string]bool{}
	for _, mf := range mfs {
		if perProcess[mf.GetName()] {
			continue
		}
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+"="+fmt.Sprintf("%q", l.GetValue()))
				if l.GetName() == "registry" {
					regs[l.GetValue()] = true
				}
			}
			sort.Strings(ls)
			out[mf.GetName()+"{"+strings.Join(ls, ",")+"}"]++
		}
	}
	return out, regs
}

// Three shards against one apiserver expose, together, exactly the series
// of one unsharded exporter: probe series, registry-level series and every
// Kubernetes-side series, each from one shard only.
//
// Each image has a repository of its own, so that every target's first
// probe authenticates (the prober shares auth per registry and repository;
// which of several targets reports the auth check would depend on order).
//
// Registry keys: two real registries, each reached as 127.0.0.1:PORT and as
// localhost:PORT (two keys that hash independently: the registry label is
// the host as written, and the join and budgets treat them as two
// registries, as the kubelet's credential matching does); one closed port
// per shard, chosen so that each shard owns at least one registry whose
// probes fail (connect); hosts nothing probes (cause unprobed); and
// "invalid" for an unparsable image. Pods wait on, run and drift on all of
// them; discovery turns their images into targets too.
func TestShardsUnionEqualsUnsharded(t *testing.T) {
	k := testenv.StartKube(t, testenv.KubeOptions{})
	const ns = "sharding"
	k.EnsureNamespace(t, ns)
	kl := kubelet{t: t, client: k.Client}

	var keys []string
	digests := map[string][2]string{} // key → {old, current} of app:dev
	for i := 0; i < 2; i++ {
		r := testenv.StartRegistry(t, testenv.RegistryOptions{})
		r.Push(t, "app-v1", "v1")
		old := r.Push(t, "app-dev", "dev")
		cur := r.Push(t, "app-dev", "dev")
		_, port, _ := net.SplitHostPort(r.Addr)
		for _, host := range []string{"127.0.0.1", "localhost"} {
			key := net.JoinHostPort(host, port)
			keys = append(keys, key)
			digests[key] = [2]string{old, cur}
		}
	}
	// One closed port per shard (probes fail with connect), hashed to it,
	// so that every shard is sure to own at least one registry.
	closed := testenv.FreeAddrsWhere(t, 3, func(ord int, addr string) bool {
		return collector.Sharding{Ordinal: ord, Total: 3}.Owns(addr)
	})

	var targets []string
	for _, key := range keys {
		targets = append(targets, key+"/app-v1:v1", key+"/app-missing:missing")
	}
	for _, key := range closed {
		targets = append(targets, key+"/app-v1:v1")
	}
	config := configYAML("", targets...) + `
discovery:
  modules: [{registry: "*", module: local}]
  exclude: ["*.example.com"]
`

	// The test plays the kubelet.
	pn := 0
	newPod := func(node string, cs ...ctr) string {
		pn++
		name := fmt.Sprintf("p%d", pn)
		kl.pod(podSpec{ns: ns, name: name, node: node, ctrs: cs})
		return name
	}
	for _, key := range keys {
		d := digests[key]
		v2, missing := key+"/app-v2:v2", key+"/app-missing:missing"
		newPod("n1", ctr{image: v2, waiting: "ErrImagePull", message: pullErr(errNotFound, v2)})
		// An older kubelet: the error is in the Failed event, which
		// only the shard owning the registry may count.
		name := newPod("n2", ctr{image: missing, waiting: "ImagePullBackOff", message: backOffBare(missing)})
		kl.failedPull(ns, name, "ca", "n2", name+".ev", missing, pullErr(errNotFound, missing), 2)
		newPod("n1", ctr{image: key + "/app-dev:dev", running: true, imageID: key + "/app-dev@" + d[0]})
		newPod("n2", ctr{image: key + "/app-dev:dev", running: true, imageID: key + "/app-dev@" + d[1]})
		newPod("n2", ctr{image: key + "/app-v1:v1", running: true, policy: "Always"})
	}
	for _, key := range closed {
		img := key + "/app-v1:v1"
		newPod("n1", ctr{image: img, waiting: "ErrImagePull", message: pullErr(err429, img)})
		newPod("n2", ctr{image: key + "/app", running: true, imageID: key + "/app@" + digestA})
	}
	for i := 0; i < 6; i++ {
		newPod("n1", ctr{image: fmt.Sprintf("unprobed-%d.example.com/app:v1", i), waiting: "ErrImagePull"})
	}
	newPod("n1", ctr{image: "Ghcr.io/ACME/Api:v1", waiting: "InvalidImageName"})
	kl.node("n1")
	kl.node("n2")

	single := startShardExporter(t, k.Config, ns, config, collector.Sharding{})
	var shards []*shardExporter
	for ord := 0; ord < 3; ord++ {
		shards = append(shards, startShardExporter(t, k.Config, ns, config, collector.Sharding{Ordinal: ord, Total: 3}))
	}

	// First the unsharded exporter must reach a complete picture, so that
	// the comparison below is not between two empty or half-built sets.
	want := []string{}
	for _, key := range keys {
		want = append(want,
			fmt.Sprintf(`imagepull_probe_success{reference="v1",registry=%q,repository="app-v1",target=%q}`, key, key+"/app-v1:v1"),
			fmt.Sprintf(`imagepull_probe_success{reference="dev",registry=%q,repository="app-dev",target=%q}`, key, key+"/app-dev:dev"),
			fmt.Sprintf(`imagepull_registry_blocked_containers{cause="not_found",registry=%q}`, key),
			fmt.Sprintf(`imagepull_pod_containers_pull_error{cause="not_found",namespace=%q,registry=%q}`, ns, key),
			fmt.Sprintf(`imagepull_node_pull_errors{cause="not_found",node="n2",registry=%q}`, key),
			fmt.Sprintf(`imagepull_tag_digests{registry=%q,repository="app-dev",tag="dev"}`, key),
			fmt.Sprintf(`imagepull_tag_registry_drift{registry=%q,repository="app-dev",tag="dev"}`, key),
		)
	}
	for _, key := range closed {
		want = append(want,
			fmt.Sprintf(`imagepull_registry_blocked_containers{cause="connect",registry=%q}`, key),
			fmt.Sprintf(`imagepull_node_pull_errors{cause="rate_limited",node="n1",registry=%q}`, key),
			fmt.Sprintf(`imagepull_reschedule_risk_containers{cause="connect",namespace=%q,registry=%q}`, ns, key),
			fmt.Sprintf(`imagepull_probe_success{reference="latest",registry=%q,repository="app",target=%q}`, key, key+"/app:latest"))
	}
	want = append(want, `imagepull_registry_blocked_containers{cause="unprobed",registry="unprobed-0.example.com"}`,
		`imagepull_registry_blocked_containers{cause="unprobed",registry="invalid"}`)
	waitFor(t, "the unsharded exporter's complete picture", func() bool {
		got, _ := seriesOf(t, single.reg)
		for _, w := range want {
			if got[w] == 0 {
				return false
			}
		}
		return true
	})

	// Then the shards must converge on exactly that set.
	var last string
	ok := false
	deadline := time.Now().Add(90 * time.Second)
	for !ok && time.Now().Before(deadline) {
		wantSet, _ := seriesOf(t, single.reg)
		union := map[string]int{}
		var b strings.Builder
		for ord, sh := range shards {
			got, regs := seriesOf(t, sh.reg)
			for s, n := range got {
				union[s] += n
			}
			for r := range regs {
				if !(collector.Sharding{Ordinal: ord, Total: 3}).Owns(r) {
					fmt.Fprintf(&b, "shard %d exposes a series of registry %s it does not own\n", ord, r)
				}
			}
		}
		for s, n := range union {
			if n > 1 {
				fmt.Fprintf(&b, "duplicate: %s appears %d times across shards\n", s, n)
			}
			if wantSet[s] == 0 {
				fmt.Fprintf(&b, "only in the shards: %s\n", s)
			}
		}
		for s := range wantSet {
			if union[s] == 0 {
				fmt.Fprintf(&b, "missing from the shards: %s\n", s)
			}
		}
		last = b.String()
		ok = last == ""
		if !ok {
			time.Sleep(300 * time.Millisecond)
		}
	}
	if !ok {
		t.Fatalf("the shards' union differs from the unsharded exporter:\n%s", last)
	}

	// Each shard owns some registries here (one closed port each), and the
	// per-source target counts add up to the unsharded ones.
	sum := map[string]int{}
	for ord, sh := range shards {
		snap := sh.sched.Snapshot()
		if len(snap.Targets) == 0 {
			t.Errorf("shard %d probes nothing", ord)
		}
		for src, n := range snap.Sources {
			sum[src] += n
		}
	}
	if want := single.sched.Snapshot().Sources; fmt.Sprint(sum) != fmt.Sprint(want) {
		t.Errorf("targets per source summed over the shards: %v, unsharded: %v", sum, want)
	}
	got, _ := seriesOf(t, single.reg)
	t.Logf("%d series compared, over %d registry keys", len(got), len(keys)+len(closed)+7)
}
