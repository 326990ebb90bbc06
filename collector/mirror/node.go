package mirror

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Node-local mode (--node.name, the node-probe DaemonSet): one exporter per
// node probes from the node's own network (the pod uses the host network,
// so the same egress address, routes, proxies and resolver as the container
// runtime) and reads the node's runtime mirror configuration, mounted
// read-only. Every probe series, per target and per registry, and every
// mirror series gets a `node` label (the node count bounds it), so one bad
// node or zone egress shows up as such.
//
// What a node probes: the configured targets, and the mirrors its runtime
// would use for them. The Kubernetes join and discovery stay with the
// central Deployment, once per cluster. Node-local discovery (the images of
// the node's own pods) is deliberately left out: it would need an API token
// and a pod watch per node, and, behind a NAT gateway, N nodes probing the
// same images multiply requests against one source address's Docker Hub
// limit by N. Configure the images that matter per node (the pause image,
// the CNI and CSI images) as targets instead.
//
// Node-local mode and sharding are exclusive: a node probes for itself.

// Defaults of the --node.* paths: the node's files as the node-probe
// DaemonSet mounts them.
const (
	DefaultContainerdCertsDir = "/host/etc/containerd/certs.d"
	DefaultContainerdConfig   = "/host/etc/containerd/config.toml"
	DefaultCRIORegistriesConf = "/host/etc/containers/registries.conf"
)

// NodeOptions configures node-local mode.
type NodeOptions struct {
	// Name is the node's name (the downward API's spec.nodeName): the
	// `node` label. Empty means node-local mode is off.
	Name string
	// ContainerdCertsDir is containerd's hosts directory (certs.d).
	ContainerdCertsDir string
	// ContainerdConfig is containerd's config.toml.
	ContainerdConfig string
	// CRIORegistriesConf is CRI-O's registries.conf; drop-ins are read
	// from registries.conf.d next to it.
	CRIORegistriesConf string
}

// nodeNameRE is a Kubernetes node name: a DNS subdomain (RFC 1123).
var nodeNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

// Validate checks the node name.
func (o NodeOptions) Validate() error {
	if o.Name == "" {
		return nil
	}
	if len(o.Name) > 253 || !nodeNameRE.MatchString(o.Name) {
		return fmt.Errorf("--node.name %q is not a Kubernetes node name (a lower-case DNS subdomain); in a DaemonSet set it from the downward API, fieldRef spec.nodeName", o.Name)
	}
	return nil
}

// The `file` label values of imagepull_node_runtime_config_errors_total.
const (
	fileContainerdCertsDir = "containerd_certs_d"
	fileContainerdConfig   = "containerd_config"
	fileCRIORegistries     = "crio_registries_conf"
)

var descNodeConfigErrors = prometheus.NewDesc("imagepull_node_runtime_config_errors_total",
	"Reads of the node's container runtime mirror configuration that found a file unreadable or invalid (node-local mode); such a file is ignored, as the runtime ignores it or fails with it. Missing files are not errors: that runtime is not used.",
	[]string{"file"}, nil)

// NodeReader reads a node's container runtime mirror configuration. Read
// never fails: a missing file means that runtime is not used, and an
// unreadable or invalid one is logged (once per change) and counted.
type NodeReader struct {
	opts   NodeOptions
	logger *slog.Logger

	mu     sync.Mutex
	errors map[string]uint64
	logged string
}

// NewNodeReader returns a reader of the files opts names.
func NewNodeReader(opts NodeOptions, logger *slog.Logger) *NodeReader {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &NodeReader{opts: opts, logger: logger,
		errors: map[string]uint64{fileContainerdCertsDir: 0, fileContainerdConfig: 0, fileCRIORegistries: 0}}
}

// hostRoot is where the node's root file system is mounted, derived from
// the certs.d flag (/host/etc/containerd/certs.d → /host), so that absolute
// paths in the node's files (ca = "/etc/containerd/certs.d/x/ca.crt") can be
// found under the mount.
func (n *NodeReader) hostRoot() string {
	const suffix = "/etc/containerd/certs.d"
	d := filepath.Clean(n.opts.ContainerdCertsDir)
	if strings.HasSuffix(d, suffix) {
		return strings.TrimSuffix(d, suffix)
	}
	return ""
}

// resolvePath maps a path as the node sees it to one the exporter can read.
func (n *NodeReader) resolvePath(p string) string {
	if root := n.hostRoot(); root != "" && filepath.IsAbs(p) && !strings.HasPrefix(p, root+"/") {
		if _, err := os.Stat(filepath.Join(root, p)); err == nil {
			return filepath.Join(root, p)
		}
	}
	return p
}

// Read reads the node's files now.
func (n *NodeReader) Read() *Set {
	var certs, config, crio fileNotes
	set := n.read(&certs, &config, &crio)

	n.mu.Lock()
	defer n.mu.Unlock()
	var all []string
	for _, f := range []struct {
		file  string
		notes *fileNotes
	}{{fileContainerdCertsDir, &certs}, {fileContainerdConfig, &config}, {fileCRIORegistries, &crio}} {
		if len(f.notes.problems) > 0 {
			n.errors[f.file]++
		}
		for _, p := range f.notes.problems {
			all = append(all, "error: "+p)
		}
		for _, p := range f.notes.notes {
			all = append(all, "note: "+p)
		}
	}
	summary := "no mirrors"
	if set.HasMirrors() {
		summary = set.Runtime
	}
	fingerprint := summary + "\n" + strings.Join(all, "\n")
	if fingerprint != n.logged {
		n.logged = fingerprint
		for _, line := range all {
			if strings.HasPrefix(line, "error: ") {
				n.logger.Warn("node runtime configuration: ignoring a file", "problem", strings.TrimPrefix(line, "error: "))
			} else {
				n.logger.Info("node runtime configuration", "note", strings.TrimPrefix(line, "note: "))
			}
		}
		n.logger.Info("read the node's container runtime mirror configuration", "node", n.opts.Name, "mirrors", summary)
	}
	return set
}

func (n *NodeReader) read(certs, config, crio *fileNotes) *Set {
	var cd *Set
	reg, ok := readContainerdConfig(n.opts.ContainerdConfig, config)
	switch {
	case ok && reg.ConfigPath == "" && len(reg.Mirrors) > 0:
		by, fb := legacyMirrors(reg, n.resolvePath, n.opts.ContainerdConfig, config)
		cd = &Set{Runtime: "containerd (config.toml registry.mirrors)", byRegistry: by, fallback: fb}
	default:
		if reg.ConfigPath != "" && !strings.Contains(reg.ConfigPath, "/etc/containerd/certs.d") {
			config.note("%s: containerd reads hosts from config_path %q; this exporter reads %s (--node.containerd-certs-dir): mount that directory there", n.opts.ContainerdConfig, reg.ConfigPath, n.opts.ContainerdCertsDir)
		}
		by, fb := readContainerdCertsDir(n.opts.ContainerdCertsDir, n.resolvePath, certs)
		cd = &Set{Runtime: "containerd", byRegistry: by, fallback: fb}
	}
	regs := readCRIORegistries(n.opts.CRIORegistriesConf, crio)
	var cr *Set
	if crioHasMirrors(regs) {
		cr = &Set{Runtime: "cri-o", crio: regs}
	}
	switch {
	case cd.HasMirrors() && cr != nil:
		crio.note("%s: both containerd and CRI-O configure mirrors on this node; using containerd's", n.opts.CRIORegistriesConf)
		return cd
	case cr != nil:
		return cr
	}
	return cd
}

// Describe implements prometheus.Collector.
func (n *NodeReader) Describe(ch chan<- *prometheus.Desc) { ch <- descNodeConfigErrors }

// Collect implements prometheus.Collector.
func (n *NodeReader) Collect(ch chan<- prometheus.Metric) {
	n.mu.Lock()
	defer n.mu.Unlock()
	files := make([]string, 0, len(n.errors))
	for f := range n.errors {
		files = append(files, f)
	}
	sort.Strings(files)
	for _, f := range files {
		ch <- prometheus.MustNewConstMetric(descNodeConfigErrors, prometheus.CounterValue, float64(n.errors[f]), f)
	}
}
