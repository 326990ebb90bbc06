package mirror

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/imagepull/imagepull_exporter/internal/testenv"
	"github.com/imagepull/imagepull_exporter/probe"
)

// describePlan renders what the scheduler would probe for an image: each
// mirror in the runtime's order, how it is reached, and whether the runtime
// tries another host after it ("next") or not ("last").
func describePlan(t *testing.T, hosts []Host, image string) string {
	t.Helper()
	ref, err := probe.ParseReference(image)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range Plan(hosts, ref) {
		h := p.Host
		var flags []string
		switch {
		case h.PlainHTTP:
			flags = append(flags, "http")
		case h.HTTPFallback:
			flags = append(flags, "https-then-http")
		}
		if h.SkipVerify {
			flags = append(flags, "skip-verify")
		}
		if h.CAFile != "" {
			flags = append(flags, "ca="+filepath.Base(h.CAFile))
		}
		if h.Namespace {
			flags = append(flags, "ns")
		}
		if h.Repository != "" {
			flags = append(flags, "repo="+h.Repository)
		}
		s := h.Host + h.Path
		if len(flags) > 0 {
			s += "{" + strings.Join(flags, ",") + "}"
		}
		if p.Fallback {
			s += " next"
		} else {
			s += " last"
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return "direct"
	}
	return strings.Join(out, "; ")
}

// copyTree copies a fixture directory to a temporary one.
func copyTree(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// nodeOptions points node-local mode at a fixture mounted at root, the way
// the node-probe DaemonSet mounts the node's /etc under /host.
func nodeOptions(root string) NodeOptions {
	return NodeOptions{Name: "node-a",
		ContainerdCertsDir: filepath.Join(root, "etc/containerd/certs.d"),
		ContainerdConfig:   filepath.Join(root, "etc/containerd/config.toml"),
		CRIORegistriesConf: filepath.Join(root, "etc/containers/registries.conf")}
}

func readNode(t *testing.T, root string) (*Set, *NodeReader, string) {
	t.Helper()
	var logs bytes.Buffer
	nm := NewNodeReader(nodeOptions(root), slog.New(slog.NewTextHandler(&logs, nil)))
	return nm.Read(), nm, logs.String()
}

func hostsOf(t *testing.T, set *Set, image string) []Host {
	t.Helper()
	ref, err := probe.ParseReference(image)
	if err != nil {
		t.Fatal(err)
	}
	hosts, _ := set.HostsFor(ref)
	return hosts
}

// The containerd fixture is read as containerd reads certs.d: hosts in file
// order then the server, capabilities deciding which hosts see tags and
// which digests, host_port_ before host:port, _default for every registry
// without a directory, and an invalid file meaning "pull directly".
func TestContainerdHostsToml(t *testing.T) {
	root := copyTree(t, "testdata/nodes/containerd")
	// "host:port" cannot be a file name in a Go module: made here. It is
	// shadowed by registry.example.com_5000_, which containerd tries first.
	colon := filepath.Join(root, "etc/containerd/certs.d/registry.example.com:5000")
	if err := os.MkdirAll(colon, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(colon, "hosts.toml"), []byte(`[host."https://shadowed.example.com"]`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	set, nm, logs := readNode(t, root)
	if set.Runtime != "containerd" {
		t.Fatalf("runtime %q, want containerd", set.Runtime)
	}
	for _, tt := range []struct{ image, want string }{
		// Tags go to hosts with pull and resolve: the public mirror (pull
		// only) is skipped; the http host with skip_verify is tried over
		// https first; the registry (server) comes last, so both fall back.
		{"nginx:1.27", "docker-mirror.internal/v2{ca=docker-mirror.crt,ns} next; 10.0.0.5:5000/v2{https-then-http,skip-verify,ns} next"},
		// Digests go to every host with pull, in file order.
		{"nginx@sha256:" + strings.Repeat("a", 64), "public-mirror.example.com/v2{ns} next; docker-mirror.internal/v2{ca=docker-mirror.crt,ns} next; 10.0.0.5:5000/v2{https-then-http,skip-verify,ns} next"},
		// The mirror is the server: nothing after it. The absolute ca path
		// of the node is found under the mount.
		{"registry.example.com:5000/app:v1", "first.example.com/v2{ca=first.crt,ns} next; mirror-only.example.com/v2{ns} last"},
		{"quay.io/prometheus/busybox:latest", "harbor.example.com/v2/proxy-quay{ns} next"},
		// No directory: _default.
		{"ghcr.io/acme/api:v1", "default-mirror.example.com/v2{ns} next"},
		// A directory without hosts.toml (certificates only), or with an
		// invalid one, is the registry alone: _default does not apply.
		{"certs-only.example.com/app:v1", "direct"},
		{"broken.example.com/app:v1", "direct"},
		{"badcap.example.com/app:v1", "direct"},
	} {
		if got := describePlan(t, hostsOf(t, set, tt.image), tt.image); got != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.image, got, tt.want)
		}
	}
	hosts := hostsOf(t, set, "registry.example.com:5000/app:v1")
	if ca := hosts[0].CAFile; ca != filepath.Join(root, "etc/containerd/certs.d/registry.example.com_5000_/first.crt") {
		t.Errorf("absolute ca path resolved to %s, want it under the mount", ca)
	}
	// Two invalid files, one read: the certs.d counter goes up by one.
	if err := testutil.CollectAndCompare(nm, strings.NewReader(`
# HELP imagepull_node_runtime_config_errors_total `+testenv.HelpOf(descNodeConfigErrors)+`
# TYPE imagepull_node_runtime_config_errors_total counter
imagepull_node_runtime_config_errors_total{file="containerd_certs_d"} 1
imagepull_node_runtime_config_errors_total{file="containerd_config"} 0
imagepull_node_runtime_config_errors_total{file="crio_registries_conf"} 0
`)); err != nil {
		t.Error(err)
	}
	for _, want := range []string{"broken.example.com/hosts.toml", "unknown capability teleport",
		"certs.d/docker.io, not index.docker.io", "custom headers are not sent"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log does not mention %q:\n%s", want, logs)
		}
	}
	// Reading again logs nothing new (the problems did not change) but
	// counts again: the file is still broken.
	var again bytes.Buffer
	nm.logger = slog.New(slog.NewTextHandler(&again, nil))
	nm.Read()
	if again.Len() != 0 {
		t.Errorf("second read logged again:\n%s", again.String())
	}
	if got := nm.errors[fileContainerdCertsDir]; got != 2 {
		t.Errorf("certs.d errors after two reads: %d, want 2", got)
	}
}

// The legacy CRI registry.mirrors of config.toml: used because config_path
// is not set (certs.d is then ignored), the registry appended unless listed,
// "*" for every other registry, localhost endpoints over http.
func TestContainerdLegacyMirrors(t *testing.T) {
	set, nm, _ := readNode(t, "testdata/nodes/containerd-legacy")
	if set.Runtime != "containerd (config.toml registry.mirrors)" {
		t.Fatalf("runtime %q", set.Runtime)
	}
	for _, tt := range []struct{ image, want string }{
		{"nginx:1.27", "mirror.example.com/v2{skip-verify,ns} next; localhost:5001/v2{http,ns} next"},
		{"registry.example.com/app:v1", "direct"},
		{"ghcr.io/acme/api:v1", "any-mirror.example.com/cache{ns} next"},
	} {
		if got := describePlan(t, hostsOf(t, set, tt.image), tt.image); got != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.image, got, tt.want)
		}
	}
	if n := nm.errors[fileContainerdConfig] + nm.errors[fileContainerdCertsDir]; n != 0 {
		t.Errorf("%d errors counted for valid files", n)
	}
}

// CRI-O's registries.conf with a drop-in: mirrors in order then location,
// digest-only mirrors kept off tags, a blocked registry's location refused,
// wildcard prefixes, rewritten locations, no ?ns=.
func TestCRIORegistriesConf(t *testing.T) {
	set, _, _ := readNode(t, "testdata/nodes/crio")
	if set.Runtime != "cri-o" {
		t.Fatalf("runtime %q", set.Runtime)
	}
	for _, tt := range []struct{ image, want string }{
		{"nginx:1.27", "mirror.example.com:5000/v2{https-then-http,skip-verify} next"},
		{"nginx@sha256:" + strings.Repeat("b", 64), "mirror.example.com:5000/v2{https-then-http,skip-verify} next; digest-mirror.example.com/v2 next"},
		// blocked: the location is never tried, the mirror is the last host.
		{"quay.io/team/app:v1", "team-mirror.example.com/v2{repo=quay-team/app} last"},
		{"quay.io/other/app:v1", "direct"},
		{"registry.internal.example.com/app:v1", "cache.example.com/v2 next"},
		// A rewritten location is not the registry: it is probed, and
		// nothing comes after it.
		{"ghcr.io/acme/api:v1", "ghcr-rewrite.example.com/v2{repo=ghcr/acme/api} last"},
	} {
		if got := describePlan(t, hostsOf(t, set, tt.image), tt.image); got != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.image, got, tt.want)
		}
	}
}

// An invalid registries.conf is ignored and counted; missing files are
// neither mirrors nor errors.
func TestNodeConfigInvalidAndMissing(t *testing.T) {
	set, nm, logs := readNode(t, "testdata/nodes/crio-invalid")
	if set.HasMirrors() {
		t.Errorf("an invalid registries.conf gave mirrors: %+v", set)
	}
	if nm.errors[fileCRIORegistries] != 1 || !strings.Contains(logs, "URI schemes are not supported") {
		t.Errorf("errors %v, log:\n%s", nm.errors, logs)
	}
	set, nm, _ = readNode(t, filepath.Join(t.TempDir(), "nothing-here"))
	if set.HasMirrors() || nm.errors[fileContainerdCertsDir]+nm.errors[fileContainerdConfig]+nm.errors[fileCRIORegistries] != 0 {
		t.Errorf("missing files: mirrors %v, errors %v", set.HasMirrors(), nm.errors)
	}
	if got := describePlan(t, hostsOf(t, set, "nginx"), "nginx"); got != "direct" {
		t.Errorf("no files: %s", got)
	}
}

func TestNodeOptionsValidate(t *testing.T) {
	for name, ok := range map[string]bool{
		"": true, "node-a": true, "ip-10-0-0-1.eu-west-1.compute.internal": true,
		"$(NODE_NAME)": false, "Node_A": false, strings.Repeat("a", 254): false,
	} {
		err := NodeOptions{Name: name}.Validate()
		if (err == nil) != ok {
			t.Errorf("Validate(%q) = %v, want ok=%v", name, err, ok)
		}
		if err != nil && !strings.Contains(err.Error(), "spec.nodeName") {
			t.Errorf("Validate(%q): %v does not say how to set it", name, err)
		}
	}
}
