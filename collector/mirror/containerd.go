package mirror

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
	tomlu "github.com/pelletier/go-toml/v2/unstable"
)

// containerd's registry host configuration, read as containerd reads it
// (core/remotes/docker/config/hosts.go; TOML with the same library,
// pelletier/go-toml/v2, so that what parses, and in which order hosts come,
// is containerd's):
//
//   - certs.d/<registry>/hosts.toml: the [host."URL"] entries in file
//     order, then `server` (the registry itself when left out). A host's
//     capabilities default to pull, resolve and push; tags are resolved
//     only on hosts with pull and resolve, digests fetched from hosts with
//     pull. A bare server gets https://; "/v2" is appended to a path unless
//     override_path. Relative ca paths are relative to the hosts.toml.
//   - The directory of registry host:port is "host_port_" (tried first) or
//     "host:port"; "_default" serves every registry without a directory.
//   - A hosts.toml that does not parse, or names an unknown capability,
//     makes containerd ignore it and use the registry directly: so does
//     the exporter, and counts the error.
//
// The older CRI form in config.toml,
// [plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]
// endpoint = [...], lists hosts with pull and resolve, followed by the
// registry itself unless one endpoint already is it; "*" serves every
// registry without an entry. containerd uses it only when config_path is
// not set (containerd refuses both), and the exporter does the same; when
// config.toml says neither, certs.d is read (containerd 2.1+'s default).

// hostsFileConfig is a hosts.toml host (or the file's top level).
type hostsFileConfig struct {
	Capabilities []string       `toml:"capabilities"`
	CACert       any            `toml:"ca"`
	Client       any            `toml:"client"`
	SkipVerify   *bool          `toml:"skip_verify"`
	Header       map[string]any `toml:"header"`
	OverridePath bool           `toml:"override_path"`
	DialTimeout  string         `toml:"dial_timeout"`
}

// fileNotes collects what a reader found: problems (the file is invalid or
// unreadable, counted) and notes (limitations, logged).
type fileNotes struct {
	problems []string
	notes    []string
}

func (n *fileNotes) problem(format string, args ...any) {
	n.problems = append(n.problems, fmt.Sprintf(format, args...))
}

func (n *fileNotes) note(format string, args ...any) {
	n.notes = append(n.notes, fmt.Sprintf(format, args...))
}

// orderedHosts returns the [host."..."] tables in the order of the file,
// as containerd's getSortedHosts does: only table headers count, and a
// sub-table ([host."X".header]) right after its host is not a new host.
func orderedHosts(b []byte) ([]string, error) {
	var out []string
	p := tomlu.Parser{}
	p.Reset(b)
	last := ""
	for p.NextExpression() {
		e := p.Expression()
		if e.Kind != tomlu.Table {
			continue
		}
		var parts []string
		for it := e.Key(); it.Next(); {
			parts = append(parts, string(it.Node().Data))
		}
		if len(parts) < 2 || parts[0] != "host" || parts[1] == last {
			continue
		}
		last = parts[1]
		out = append(out, last)
	}
	return out, p.Error()
}

// parseHostsFile parses one hosts.toml. resolvePath maps a ca path of the
// file to one the exporter can read.
func parseHostsFile(dir string, b []byte, resolvePath func(string) string, notes *fileNotes, where string) ([]Host, error) {
	order, err := orderedHosts(b)
	if err != nil {
		return nil, err
	}
	var c struct {
		hostsFileConfig
		Server      string                     `toml:"server"`
		HostConfigs map[string]hostsFileConfig `toml:"host"`
	}
	if err := toml.Unmarshal(b, &c); err != nil {
		return nil, err
	}
	var hosts []Host
	seen := map[string]bool{}
	for _, name := range order {
		h, err := parseHostEntry(name, dir, c.HostConfigs[name], resolvePath, notes, where)
		if err != nil {
			return nil, err
		}
		if seen[h.Key] {
			continue // containerd would try it twice; once says as much
		}
		seen[h.Key] = true
		hosts = append(hosts, h)
	}
	server, err := parseHostEntry(c.Server, dir, c.hostsFileConfig, resolvePath, notes, where)
	if err != nil {
		return nil, err
	}
	return append(hosts, server), nil
}

// parseHostEntry is containerd's parseHostConfig. An empty server stands for
// the registry itself (Host "").
func parseHostEntry(server, dir string, cfg hostsFileConfig, resolvePath func(string) string, notes *fileNotes, where string) (Host, error) {
	h := Host{Namespace: true}
	if server != "" {
		if !strings.HasPrefix(server, "http") {
			server = "https://" + server
		}
		u, err := url.Parse(server)
		if err != nil {
			return Host{}, fmt.Errorf("unable to parse server %v: %w", redactRawURL(server), err)
		}
		if u.User != nil {
			return Host{}, fmt.Errorf("host %s carries credentials in its URL", redactRawURL(server))
		}
		h.Host = strings.ToLower(u.Host)
		h.PlainHTTP = u.Scheme == "http"
		h.Path = apiRoot(u.Path, cfg.OverridePath)
		h.Key = u.Scheme + "://" + h.Host + h.Path
	} else {
		h.Key = "server"
	}
	pull, resolve := true, true
	if len(cfg.Capabilities) > 0 {
		pull, resolve = false, false
		for _, c := range cfg.Capabilities {
			switch strings.ToLower(c) {
			case "pull":
				pull = true
			case "resolve":
				resolve = true
			case "push":
			default:
				return Host{}, fmt.Errorf("unknown capability %v", c)
			}
		}
	}
	h.ForTags, h.ForDigests = pull && resolve, pull
	if cfg.SkipVerify != nil {
		h.SkipVerify = *cfg.SkipVerify
	}
	var cas []string
	switch ca := cfg.CACert.(type) {
	case nil:
	case string:
		cas = []string{ca}
	case []any:
		for _, v := range ca {
			s, ok := v.(string)
			if !ok {
				return Host{}, fmt.Errorf("unable to cast %v to string", v)
			}
			cas = append(cas, s)
		}
	default:
		return Host{}, fmt.Errorf("invalid type %v for \"ca\"", ca)
	}
	for i, p := range cas {
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		p = resolvePath(p)
		if i == 0 {
			h.CAFile = p
		} else {
			notes.note("%s: host %s: only the first of %d ca files is used to verify it", where, h.displayHost(), len(cas))
		}
	}
	if cfg.Client != nil {
		notes.note("%s: host %s: client certificates are not supported by the prober; it is probed without one", where, h.displayHost())
	}
	if len(cfg.Header) > 0 {
		notes.note("%s: host %s: custom headers are not sent by the prober", where, h.displayHost())
	}
	if cfg.DialTimeout != "" {
		if _, err := time.ParseDuration(cfg.DialTimeout); err != nil {
			return Host{}, err
		}
	}
	explicitTLS := cfg.CACert != nil || cfg.Client != nil || cfg.SkipVerify != nil
	if h.PlainHTTP && explicitTLS {
		// containerd: an http host with TLS settings is tried over https
		// first, falling back to http (unless the port says http).
		if _, port, _ := net.SplitHostPort(h.Host); port != "80" {
			h.PlainHTTP, h.HTTPFallback = false, true
		}
	}
	return h, nil
}

func (h *Host) displayHost() string {
	if h.Host == "" {
		return "server (the registry itself)"
	}
	return h.Host
}

// registryOfHostDir maps a certs.d directory name to the registry it
// configures: "host_port_" and "host:port" are host:port.
func registryOfHostDir(name string) string {
	if strings.HasSuffix(name, "_") && strings.Count(name, "_") >= 2 {
		trimmed := strings.TrimSuffix(name, "_")
		if i := strings.LastIndexByte(trimmed, '_'); i > 0 {
			port := trimmed[i+1:]
			if port != "" && strings.Trim(port, "0123456789") == "" {
				return strings.ToLower(trimmed[:i] + ":" + port)
			}
		}
	}
	return strings.ToLower(name)
}

// readContainerdCertsDir reads every hosts.toml under dir. A missing dir is
// no configuration.
func readContainerdCertsDir(dir string, resolvePath func(string) string, notes *fileNotes) (byRegistry map[string][]Host, fallback []Host) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			notes.problem("containerd certs.d %s: %v", dir, err)
		}
		return nil, nil
	}
	sort.Slice(entries, func(i, j int) bool {
		// host_port_ before host:port, as containerd looks them up.
		a, b := entries[i].Name(), entries[j].Name()
		if ra, rb := registryOfHostDir(a), registryOfHostDir(b); ra != rb {
			return ra < rb
		}
		return strings.HasSuffix(a, "_") && !strings.HasSuffix(b, "_")
	})
	byRegistry = map[string][]Host{}
	// A registry's directory, even without a (valid) hosts.toml, is what
	// containerd uses for it; _default applies only to registries without
	// one. Without hosts.toml the registry itself is the only host.
	direct := []Host{{ForTags: true, ForDigests: true, Key: "server"}}
	for _, e := range entries {
		if !e.IsDir() && e.Type()&fs.ModeSymlink == 0 {
			continue
		}
		hostDir := filepath.Join(dir, e.Name())
		file := filepath.Join(hostDir, "hosts.toml")
		reg := registryOfHostDir(e.Name())
		if _, dup := byRegistry[reg]; dup {
			continue // host_port_ came first and wins
		}
		hosts := direct
		b, err := os.ReadFile(file)
		switch {
		case err != nil && !errors.Is(err, fs.ErrNotExist):
			notes.problem("%s: %v (containerd fails pulls from this registry while it cannot read it)", file, err)
		case err != nil || len(b) == 0:
			// Certificates only (Docker's layout), or nothing.
		default:
			parsed, err := parseHostsFile(hostDir, b, resolvePath, notes, file)
			if err != nil {
				notes.problem("%s: %v (containerd ignores the file and pulls from the registry directly)", file, err)
			} else {
				hosts = parsed
			}
		}
		if e.Name() == "_default" {
			fallback = hosts
			continue
		}
		if reg == "index.docker.io" || reg == "registry-1.docker.io" {
			// containerd looks up the directory of the image's registry
			// name, "docker.io" for Hub images: these never match.
			notes.note("%s: containerd looks up Docker Hub images under certs.d/docker.io, not %s; this directory is not used for them", hostDir, e.Name())
			continue
		}
		byRegistry[reg] = hosts
	}
	if len(byRegistry) == 0 {
		byRegistry = nil
	}
	return byRegistry, fallback
}

// criRegistryConfig is the registry section of containerd's CRI plugin.
type criRegistryConfig struct {
	ConfigPath string `toml:"config_path"`
	Mirrors    map[string]struct {
		Endpoint []string `toml:"endpoint"`
	} `toml:"mirrors"`
	Configs map[string]struct {
		TLS *struct {
			InsecureSkipVerify bool   `toml:"insecure_skip_verify"`
			CAFile             string `toml:"ca_file"`
			CertFile           string `toml:"cert_file"`
		} `toml:"tls"`
	} `toml:"configs"`
}

// containerdConfigFile is what the exporter reads of config.toml: the CRI
// plugin's registry section under its version 1, 2 and 3 names.
type containerdConfigFile struct {
	Plugins struct {
		V1 struct {
			Registry criRegistryConfig `toml:"registry"`
		} `toml:"cri"`
		V2 struct {
			Registry criRegistryConfig `toml:"registry"`
		} `toml:"io.containerd.grpc.v1.cri"`
		V3 struct {
			Registry criRegistryConfig `toml:"registry"`
		} `toml:"io.containerd.cri.v1.images"`
	} `toml:"plugins"`
}

// readContainerdConfig reads the CRI registry section of config.toml; ok is
// false when the file is missing or invalid.
func readContainerdConfig(file string, notes *fileNotes) (reg criRegistryConfig, ok bool) {
	b, err := os.ReadFile(file)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			notes.problem("containerd config %s: %v", file, err)
		}
		return reg, false
	}
	var c containerdConfigFile
	if err := toml.Unmarshal(b, &c); err != nil {
		notes.problem("containerd config %s: %v", file, err)
		return reg, false
	}
	for _, r := range []criRegistryConfig{c.Plugins.V3.Registry, c.Plugins.V2.Registry, c.Plugins.V1.Registry} {
		if r.ConfigPath != "" || len(r.Mirrors) > 0 {
			return r, true
		}
	}
	return reg, true
}

// legacyMirrors turns config.toml's registry.mirrors into chains, as
// containerd's CRI registryEndpoints does.
func legacyMirrors(reg criRegistryConfig, resolvePath func(string) string, file string, notes *fileNotes) (byRegistry map[string][]Host, fallback []Host) {
	byRegistry = map[string][]Host{}
	keys := make([]string, 0, len(reg.Mirrors))
	for k := range reg.Mirrors {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		var hosts []Host
		upstreamListed := false
		bad := false
		for _, ep := range reg.Mirrors[key].Endpoint {
			if !strings.Contains(ep, "://") {
				scheme := "https"
				if h, _, _ := strings.Cut(ep, "/"); isLocalhost(h) {
					scheme = "http"
				}
				ep = scheme + "://" + ep
			}
			u, err := url.Parse(ep)
			if err != nil || u.Host == "" || u.User != nil {
				notes.problem("%s: registry.mirrors.%q: endpoint %q is not a usable URL", file, key, redactRawURL(ep))
				bad = true
				break
			}
			if u.Host == key {
				upstreamListed = true
			}
			p := u.Path
			if p == "" {
				p = "/v2"
			}
			h := Host{Host: strings.ToLower(u.Host), PlainHTTP: u.Scheme == "http", Path: p,
				ForTags: true, ForDigests: true, Namespace: true, Key: u.Scheme + "://" + strings.ToLower(u.Host) + p}
			if c, ok := reg.Configs[u.Host]; ok && c.TLS != nil {
				h.SkipVerify = c.TLS.InsecureSkipVerify
				if c.TLS.CAFile != "" {
					h.CAFile = resolvePath(c.TLS.CAFile)
				}
				if c.TLS.CertFile != "" {
					notes.note("%s: registry.configs.%q: client certificates are not supported by the prober; it is probed without one", file, u.Host)
				}
			}
			hosts = append(hosts, h)
		}
		if bad {
			continue
		}
		if !upstreamListed {
			hosts = append(hosts, Host{ForTags: true, ForDigests: true, Key: "server"})
		}
		if key == "*" {
			fallback = hosts
			continue
		}
		byRegistry[strings.ToLower(key)] = hosts
	}
	return byRegistry, fallback
}

// isLocalhost is containerd's docker.IsLocalhost for a host[:port].
func isLocalhost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
