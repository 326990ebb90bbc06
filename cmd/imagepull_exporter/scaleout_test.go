package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/imagepull/imagepull_exporter/collector"
	"github.com/imagepull/imagepull_exporter/collector/kube"
	"github.com/imagepull/imagepull_exporter/internal/testenv"
)

func TestScaleOutFlags(t *testing.T) {
	for _, c := range []struct {
		args   []string
		stderr string
	}{
		{[]string{"--shard=3", "--total-shards=3"}, "--shard must be between 0 and --total-shards-1 (2), got 3"},
		{[]string{"--total-shards=0"}, "--total-shards must be at least 1, got 0"},
		{[]string{"--shard=1", "--shard.from-hostname", "--total-shards=3"}, "--shard and --shard.from-hostname are exclusive; give one"},
		{[]string{"--node.name=node-a", "--total-shards=3"}, "node-local mode (--node.name) and sharding (--shard, --total-shards, --shard.from-hostname) are exclusive"},
		{[]string{"--node.name=node-a", "--shard.from-hostname"}, "are exclusive"},
		{[]string{"--node.name=node-a", "--kube.discover-targets"}, "node-local mode (--node.name) does not run the Kubernetes join"},
		{[]string{"--node.name=$(NODE_NAME)"}, `--node.name "$(NODE_NAME)" is not a Kubernetes node name`},
	} {
		_, stderr, code := runBinary(t, append(c.args, "--config.check")...)
		if code != exitUsage || !strings.Contains(stderr, c.stderr) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", c.args, code, stderr, exitUsage, c.stderr)
		}
	}
	// This machine's host name is not a StatefulSet pod's.
	host, _ := os.Hostname()
	if _, err := collector.ShardFromHostname(host); err == nil {
		t.Fatalf("host name %q parses as a shard; the next check needs one that does not", host)
	}
	_, stderr, code := runBinary(t, "--shard.from-hostname", "--total-shards=3", "--config.check")
	if code != exitUsage || !strings.Contains(stderr, fmt.Sprintf("--shard.from-hostname: host name %q does not end in -<ordinal>", host)) {
		t.Errorf("--shard.from-hostname on %q: exit %d, stderr %q", host, code, stderr)
	}
}

func TestShardFromHostnameFlag(t *testing.T) {
	for _, c := range []struct {
		host    string
		total   int
		want    int
		wantErr string
	}{
		{"imagepull-exporter-2", 3, 2, ""},
		{"imagepull-exporter-0", 3, 0, ""},
		{"imagepull-exporter-2", 2, 0, `host name "imagepull-exporter-2" is shard 2, but --total-shards is 2; set --total-shards to the StatefulSet's replicas`},
		{"imagepull-exporter-5d8f7-x2kqz", 3, 0, "does not end in -<ordinal>"},
	} {
		s := &scaleOutFlags{fromHostname: true, totalShards: c.total}
		err := s.resolve(&kube.Flags{}, func() (string, error) { return c.host, nil })
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%s/%d: %v, want %q", c.host, c.total, err, c.wantErr)
			}
			continue
		}
		if err != nil || s.sharding != (collector.Sharding{Ordinal: c.want, Total: c.total}) {
			t.Errorf("%s/%d: sharding %+v, err %v; want shard %d", c.host, c.total, s.sharding, err, c.want)
		}
	}
	s := &scaleOutFlags{fromHostname: true, totalShards: 3}
	if err := s.resolve(&kube.Flags{}, func() (string, error) { return "", errors.New("uname failed") }); err == nil || !strings.Contains(err.Error(), "uname failed") {
		t.Errorf("hostname error: %v", err)
	}
}

// perProcessFamilies are series every process has whatever it owns: its own
// health, build, config and counts. Everything else is a fact about a
// registry (or a namespace × registry) and must come from one shard only.
var perProcessFamilies = []string{"go_", "process_", "promhttp_", "imagepull_exporter_build_info",
	"imagepull_exporter_config_", "imagepull_exporter_targets", "imagepull_exporter_shard_ordinal",
	"imagepull_exporter_total_shards", "imagepull_kube_watch_", "imagepull_kube_registries_folded",
	"imagepull_kube_workload_series_dropped"}

// seriesSet is every series of a scrape (name and labels, no value) outside
// perProcessFamilies, and the registries they mention.
func seriesSet(samples map[string]float64) (map[string]bool, map[string]bool) {
	out, regs := map[string]bool{}, map[string]bool{}
	for k := range samples {
		skip := false
		for _, p := range perProcessFamilies {
			if strings.HasPrefix(k, p) {
				skip = true
			}
		}
		if skip {
			continue
		}
		out[k] = true
		for _, l := range []string{`registry="`, `upstream="`} {
			if i := strings.Index(k, l); i >= 0 {
				rest := k[i+len(l):]
				regs[rest[:strings.IndexByte(rest, '"')]] = true
			}
		}
	}
	return out, regs
}

type podSpec struct {
	name, node, image, waiting, imageID string
}

// playKubelet creates the pods and writes their status as the kubelet would.
func playKubelet(t *testing.T, c kubernetes.Interface, ns string, pods []podSpec) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, p := range pods {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: p.name},
			Spec: corev1.PodSpec{NodeName: p.node, Containers: []corev1.Container{{Name: "c", Image: p.image}}}}
		created, err := c.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create pod %s: %v", p.name, err)
		}
		st := corev1.ContainerStatus{Name: "c", Image: p.image, ImageID: p.imageID}
		if p.waiting != "" {
			st.State.Waiting = &corev1.ContainerStateWaiting{Reason: p.waiting}
		} else {
			st.State.Running = &corev1.ContainerStateRunning{}
		}
		created.Status.ContainerStatuses = []corev1.ContainerStatus{st}
		if _, err := c.CoreV1().Pods(ns).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("status of pod %s: %v", p.name, err)
		}
	}
}

// Three exporter processes with --total-shards=3 against one apiserver and
// real registries expose, together, exactly the series one unsharded
// exporter exposes: probe series, registry-level series, mirror series and
// every Kubernetes-side series, each from one shard only.
//
// Each image has a repository of its own: the prober caches authentication
// per registry and repository, and of several targets sharing one only the
// first probed reports an auth check (imagepull_auth_success) until the next
// check is due, which would make that series depend on probe order.
//
// The registry keys: two real registries, each reached as 127.0.0.1:PORT
// and localhost:PORT. Those are different `registry` label values (the
// kubelet and the exporter key registries by the name in the image
// reference), so four keys that hash independently of each other over two
// processes. Then one closed port per shard, picked so that every shard owns
// at least one registry (whose probes fail with connect), hosts nothing
// probes (cause unprobed) and "invalid" (an unparsable image). The test
// plays the kubelet: pods wait, run and drift on all of them, and discovery
// turns their images into targets too.
func TestShardedExportersUnionEqualsUnsharded(t *testing.T) {
	k := testenv.StartKube(t, testenv.KubeOptions{})
	const ns = "shards"
	k.EnsureNamespace(t, ns)

	var keys []string
	digests := map[string][2]string{}
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
	// A mirror of the first key, with another image under the tag: stale.
	// Not one of the keys: a host probed both as a registry and as a mirror
	// shares the prober's auth cache, and which of the two probes first
	// (and so reports an auth check) would differ between processes.
	mirror := testenv.StartRegistry(t, testenv.RegistryOptions{})
	mirror.Push(t, "app-v1", "v1")
	// One closed port per shard (probes fail with connect), hashed to it,
	// so that every shard is sure to own at least one registry.
	closed := testenv.FreeAddrsWhere(t, 3, func(ord int, addr string) bool {
		return collector.Sharding{Ordinal: ord, Total: 3}.Owns(addr)
	})

	var b strings.Builder
	fmt.Fprintf(&b, `modules:
  local: {timeout: 2s, interval: 2s, auth_check_interval: 1m, plain_http: true}
discovery:
  modules: [{registry: "*", module: local}]
  exclude: ["*.example.com"]
mirrors:
  %q: ["http://%s"]
targets:
`, keys[0], mirror.Addr)
	for _, key := range keys {
		fmt.Fprintf(&b, "  - {image: %q, module: local}\n  - {image: %q, module: local}\n", key+"/app-v1:v1", key+"/app-missing:missing")
	}
	for _, key := range closed {
		fmt.Fprintf(&b, "  - {image: %q, module: local}\n", key+"/app-v1:v1")
	}
	cfgPath := filepath.Join(t.TempDir(), "config.yml")
	writeFile(t, cfgPath, b.String())

	var pods []podSpec
	n := 0
	add := func(node, image, waiting, imageID string) {
		n++
		pods = append(pods, podSpec{fmt.Sprintf("p%d", n), node, image, waiting, imageID})
	}
	for _, key := range keys {
		d := digests[key]
		add("n1", key+"/app-v2:v2", "ErrImagePull", "")
		add("n1", key+"/app-missing:missing", "ImagePullBackOff", "")
		add("n1", key+"/app-dev:dev", "", key+"/app-dev@"+d[0])
		add("n2", key+"/app-dev:dev", "", key+"/app-dev@"+d[1])
	}
	for _, key := range closed {
		add("n1", key+"/app-v1:v1", "ErrImagePull", "")
		add("n2", key+"/app-v1:v1", "", key+"/app-v1@sha256:"+strings.Repeat("a", 64))
	}
	for i := 0; i < 6; i++ {
		add("n1", fmt.Sprintf("unprobed-%d.example.com/app:v1", i), "ErrImagePull", "")
	}
	add("n1", "Ghcr.io/ACME/Api:v1", "InvalidImageName", "")
	playKubelet(t, k.Client, ns, pods)

	kubeconfig := k.WriteKubeconfig(k.AdminToken)
	common := []string{"--config.file=" + cfgPath, "--kubeconfig=" + kubeconfig, "--kube.namespaces=" + ns,
		"--kube.discover-targets", "--probe.registry-budget=0"}
	single := startExporter(t, common...)
	var shards []*exporter
	for ord := 0; ord < 3; ord++ {
		shards = append(shards, startExporter(t, append(common, "--total-shards=3", fmt.Sprintf("--shard=%d", ord))...))
	}

	// The unsharded exporter first reaches a complete picture, so that the
	// comparison is not between two half-built sets.
	var want []string
	for _, key := range keys {
		want = append(want,
			fmt.Sprintf(`imagepull_probe_success{reference="dev",registry=%q,repository="app-dev",target=%q}`, key, key+"/app-dev:dev"),
			fmt.Sprintf(`imagepull_registry_blocked_containers{cause="registry_ok",registry=%q}`, key),
			fmt.Sprintf(`imagepull_tag_digests{registry=%q,repository="app-dev",tag="dev"}`, key),
			fmt.Sprintf(`imagepull_tag_registry_drift{registry=%q,repository="app-dev",tag="dev"}`, key))
	}
	for _, key := range closed {
		want = append(want,
			fmt.Sprintf(`imagepull_registry_blocked_containers{cause="connect",registry=%q}`, key),
			fmt.Sprintf(`imagepull_reschedule_risk_containers{cause="connect",namespace=%q,registry=%q}`, ns, key))
	}
	want = append(want,
		fmt.Sprintf(`imagepull_mirror_stale{mirror=%q,repository="app-v1",tag="v1",upstream=%q}`, mirror.Addr, keys[0]),
		`imagepull_registry_blocked_containers{cause="unprobed",registry="unprobed-0.example.com"}`,
		`imagepull_registry_blocked_containers{cause="unprobed",registry="invalid"}`)
	single.waitFor("the unsharded exporter's complete picture", func() bool {
		got := single.scrape()
		for _, w := range want {
			if _, ok := got[w]; !ok {
				return false
			}
		}
		return true
	})

	var diff string
	converged := func() bool {
		wantSet, _ := seriesSet(single.scrape())
		union := map[string]int{}
		var d strings.Builder
		for ord, sh := range shards {
			got, regs := seriesSet(sh.scrape())
			for s := range got {
				union[s]++
			}
			for r := range regs {
				if !(collector.Sharding{Ordinal: ord, Total: 3}).Owns(r) {
					fmt.Fprintf(&d, "shard %d exposes a series of registry %s it does not own\n", ord, r)
				}
			}
		}
		var lines []string
		for s, n := range union {
			if n > 1 {
				lines = append(lines, fmt.Sprintf("duplicate (%d shards): %s", n, s))
			}
			if !wantSet[s] {
				lines = append(lines, "only in the shards: "+s)
			}
		}
		for s := range wantSet {
			if union[s] == 0 {
				lines = append(lines, "missing from the shards: "+s)
			}
		}
		sort.Strings(lines)
		d.WriteString(strings.Join(lines, "\n"))
		diff = d.String()
		return diff == ""
	}
	// A wait for the processes to converge (discovery passes, first
	// probes), not a timing assertion: the bound only ends a hung test,
	// which then fails with the last difference.
	for deadline := time.Now().Add(90 * time.Second); !converged(); time.Sleep(500 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the shards' union differs from the unsharded exporter:\n%s", diff)
		}
	}

	for ord, sh := range shards {
		got := sh.scrape()
		if v, ok := lookup(got, "imagepull_exporter_shard_ordinal"); !ok || v != float64(ord) {
			t.Errorf("shard %d: imagepull_exporter_shard_ordinal %v (%v)", ord, v, ok)
		}
		if v, ok := lookup(got, "imagepull_exporter_total_shards"); !ok || v != 3 {
			t.Errorf("shard %d: imagepull_exporter_total_shards %v (%v)", ord, v, ok)
		}
		if v, _ := lookup(got, "imagepull_kube_watch_up", `resource="pods"`); v != 1 {
			t.Errorf("shard %d: the pods watch is not up on every shard", ord)
		}
	}
	wantSet, _ := seriesSet(single.scrape())
	t.Logf("%d series compared over %d registry keys", len(wantSet), len(keys)+len(closed)+7)
}

// hostsDir writes a containerd certs.d/<registry>/hosts.toml.
func hostsDir(t *testing.T, root, registry, content string) {
	t.Helper()
	host, port, _ := net.SplitHostPort(registry)
	dir := filepath.Join(root, "etc/containerd/certs.d", host+"_"+port+"_")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "hosts.toml"), content)
}

// Node-local mode, as the node-probe DaemonSet runs it: probe series get
// the node label, and the mirrors come from the node's containerd certs.d,
// read as containerd reads it. Here the upstream has a pull-through cache
// as its first host and, as the hosts.toml `server`, a mirror filled by
// copying: pulls never reach the upstream itself, so that mirror has no
// fallback. The config's own mirror for the registry is not used: the
// node's runtime configuration wins. A broken hosts.toml is counted and
// logged, not fatal, and means "pull directly".
func TestNodeLocalMode(t *testing.T) {
	upstream := testenv.StartRegistry(t, testenv.RegistryOptions{})
	upstream.Push(t, "team/app", "v1")
	cache := testenv.StartRegistry(t, testenv.RegistryOptions{ProxyRemoteURL: upstream.URL})
	copied := testenv.StartRegistry(t, testenv.RegistryOptions{})
	copyImage(t, upstream, copied, "team/app", "v1")

	root := t.TempDir()
	hostsToml := fmt.Sprintf(`server = "http://%s"

[host."http://%s"]
  capabilities = ["pull", "resolve"]
`, copied.Addr, cache.Addr)
	hostsDir(t, root, upstream.Addr, hostsToml)
	cfgPath := filepath.Join(t.TempDir(), "config.yml")
	writeFile(t, cfgPath, fmt.Sprintf(`modules:
  local: {timeout: 2s, interval: 2s, plain_http: true}
mirrors:
  %q: ["http://127.0.0.1:9/never-used"]
targets:
  - {name: app, image: "%s/team/app:v1", module: local}
`, upstream.Addr, upstream.Addr))

	e := startExporter(t, "--config.file="+cfgPath, "--node.name=node-a",
		"--node.containerd-certs-dir="+filepath.Join(root, "etc/containerd/certs.d"),
		"--node.containerd-config="+filepath.Join(root, "etc/containerd/config.toml"),
		"--node.crio-registries-conf="+filepath.Join(root, "etc/containers/registries.conf"))

	up := upstream.Addr
	key := func(metric string, labels ...string) string {
		sort.Strings(labels)
		return metric + "{" + strings.Join(labels, ",") + "}"
	}
	node := `node="node-a"`
	want := map[string]float64{
		key("imagepull_probe_success", node, `reference="v1"`, fmt.Sprintf("registry=%q", up), `repository="team/app"`, `target="app"`):                 1,
		key("imagepull_registry_requests_total", `code="200"`, `kind="manifest_head"`, node, fmt.Sprintf("registry=%q", up)):                            -1, // present, any value
		key("imagepull_mirror_up", fmt.Sprintf("mirror=%q", cache.Addr), node, fmt.Sprintf("upstream=%q", up)):                                          1,
		key("imagepull_mirror_up", fmt.Sprintf("mirror=%q", copied.Addr), node, fmt.Sprintf("upstream=%q", up)):                                         1,
		key("imagepull_mirror_fallback", fmt.Sprintf("mirror=%q", cache.Addr), node, fmt.Sprintf("upstream=%q", up)):                                    1,
		key("imagepull_mirror_fallback", fmt.Sprintf("mirror=%q", copied.Addr), node, fmt.Sprintf("upstream=%q", up)):                                   0,
		key("imagepull_mirror_stale", fmt.Sprintf("mirror=%q", cache.Addr), node, `repository="team/app"`, `tag="v1"`, fmt.Sprintf("upstream=%q", up)):  0,
		key("imagepull_mirror_stale", fmt.Sprintf("mirror=%q", copied.Addr), node, `repository="team/app"`, `tag="v1"`, fmt.Sprintf("upstream=%q", up)): 0,
		key("imagepull_node_runtime_config_errors_total", `file="containerd_certs_d"`, node):                                                            0,
	}
	check := func(what string, want map[string]float64) {
		t.Helper()
		var last []string
		e.waitFor(what, func() bool {
			got := e.scrape()
			last = nil
			for k, v := range want {
				g, ok := got[k]
				if !ok || (v >= 0 && g != v) {
					last = append(last, fmt.Sprintf("%s = %v (present %v), want %v", k, g, ok, v))
				}
			}
			return len(last) == 0
		})
	}
	check("the node-local series", want)
	got := e.scrape()
	for k := range got {
		if strings.HasPrefix(k, "imagepull_probe_") && !strings.Contains(k, node) {
			t.Errorf("probe series without the node label: %s", k)
		}
		if strings.Contains(k, "never-used") || strings.Contains(k, `mirror="127.0.0.1:9"`) {
			t.Errorf("the config's mirror is probed although the node configures the registry: %s", k)
		}
		if strings.HasPrefix(k, "imagepull_kube_") {
			t.Errorf("node-local mode runs the Kubernetes join: %s", k)
		}
	}

	// The tag moves upstream: the pull-through cache follows, the copy
	// is stale.
	upstream.Push(t, "team/app", "v1")
	want[key("imagepull_mirror_stale", fmt.Sprintf("mirror=%q", copied.Addr), node, `repository="team/app"`, `tag="v1"`, fmt.Sprintf("upstream=%q", up))] = 1
	check("the copied mirror to go stale", want)

	// A broken hosts.toml: containerd ignores it and pulls directly; the
	// exporter counts it, logs it, and stops probing those mirrors.
	hostsDir(t, root, upstream.Addr, "[host.\"http://"+cache.Addr+"\"\n")
	if err := e.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	e.waitFor("the broken hosts.toml to be counted and its mirrors dropped", func() bool {
		got := e.scrape()
		n, _ := lookup(got, "imagepull_node_runtime_config_errors_total", `file="containerd_certs_d"`)
		_, mirrored := lookup(got, "imagepull_mirror_up", fmt.Sprintf("mirror=%q", cache.Addr))
		return n >= 1 && !mirrored
	})
	if !strings.Contains(e.log(), "hosts.toml") {
		t.Errorf("the broken hosts.toml is not in the log:\n%s", e.log())
	}

	for _, r := range []*testenv.Registry{upstream, cache, copied} {
		for _, a := range r.AccessLogBy(programName) {
			if strings.Contains(a.Path, "/manifests/") && a.Method != http.MethodHead {
				t.Errorf("%s: the exporter sent %s %s", r.Addr, a.Method, a.Path)
			}
		}
	}
}

// copyImage copies repo:tag between registries as a mirror sync job would.
func copyImage(t *testing.T, from, to *testenv.Registry, repo, tag string) {
	t.Helper()
	src, err := name.ParseReference(from.Ref(repo, tag), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	img, err := remote.Image(src, remote.WithTransport(tr))
	if err != nil {
		t.Fatalf("read %s: %v", src, err)
	}
	to.PushImage(t, repo, tag, img)
}

// Node-local pods run on hostNetwork: their /probe would let anyone who
// reaches the node's port probe any registry from the node's address. So
// node-local mode serves no /probe unless --web.enable-probe-endpoint asks,
// and the central exporter keeps it unless --no-web.enable-probe-endpoint.
func TestProbeEndpointFlag(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "config.yml")
	writeFile(t, cfg, "targets: []\n")
	root := t.TempDir()
	node := []string{"--node.name=node-a",
		"--node.containerd-certs-dir=" + filepath.Join(root, "certs.d"),
		"--node.containerd-config=" + filepath.Join(root, "config.toml"),
		"--node.crio-registries-conf=" + filepath.Join(root, "registries.conf")}
	for _, tc := range []struct {
		name  string
		args  []string
		serve bool
	}{
		{"central", nil, true},
		{"central, disabled", []string{"--no-web.enable-probe-endpoint"}, false},
		{"node-local", node, false},
		{"node-local, asked", append(slices.Clone(node), "--web.enable-probe-endpoint"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startExporter(t, append([]string{"--config.file=" + cfg}, tc.args...)...)
			// No target: a served /probe answers 400, a disabled one 404.
			code, body := e.get("/probe")
			if tc.serve && code != http.StatusBadRequest {
				t.Errorf("/probe: %d %q, want 400 from the probe handler", code, body)
			}
			if !tc.serve && (code != http.StatusNotFound || !strings.Contains(body, "--web.enable-probe-endpoint")) {
				t.Errorf("/probe: %d %q, want 404 naming --web.enable-probe-endpoint", code, body)
			}
			if code, _ := e.get("/metrics"); code != http.StatusOK {
				t.Errorf("/metrics: %d", code)
			}
		})
	}
}
