package mirror

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/pelletier/go-toml/v2"

	"github.com/imagepull/imagepull_exporter/probe"
)

// CRI-O's registries.conf (containers-registries.conf(5), version 2), read
// as containers/image's sysregistriesv2 reads it:
//
//   - [[registry]] prefix (defaults to location) selects images by the
//     longest matching prefix of "registry/repository" ("*.example.com"
//     matches subdomains); location replaces the prefix when pulling.
//   - Its [[registry.mirror]] entries are tried first, in order, then
//     location. A `blocked` registry's own location is refused (mirrors are
//     still tried). mirror-by-digest-only = true, or a mirror's
//     pull-from-mirror = "digest-only", keeps tag pulls off the mirrors;
//     "tag-only" keeps digest pulls off.
//   - insecure = true skips certificate verification and allows plain
//     HTTP (https is tried first).
//   - Drop-ins in registries.conf.d/*.conf next to the file are read after
//     it, in name order; a [[registry]] of a prefix already defined
//     replaces it.
//   - CRI-O sends no ?ns= to mirrors.

type crioEndpoint struct {
	Location       string `toml:"location"`
	Insecure       bool   `toml:"insecure"`
	PullFromMirror string `toml:"pull-from-mirror"`
}

type crioRegistry struct {
	Prefix             string         `toml:"prefix"`
	Location           string         `toml:"location"`
	Insecure           bool           `toml:"insecure"`
	Blocked            bool           `toml:"blocked"`
	MirrorByDigestOnly bool           `toml:"mirror-by-digest-only"`
	Mirrors            []crioEndpoint `toml:"mirror"`
}

type crioFile struct {
	Registries []crioRegistry `toml:"registry"`
}

// parseLocation is sysregistriesv2's: trailing slashes go, schemes are
// refused.
func parseLocation(s string) (string, error) {
	t := strings.TrimRight(s, "/")
	if t == "" {
		return "", errors.New("invalid location: cannot be empty")
	}
	if strings.HasPrefix(t, "http://") || strings.HasPrefix(t, "https://") {
		return "", fmt.Errorf("invalid location '%s': URI schemes are not supported", s)
	}
	return t, nil
}

// parseCRIORegistries parses one registries.conf (or drop-in) and checks it
// as postProcess does.
func parseCRIORegistries(b []byte) ([]crioRegistry, error) {
	var f crioFile
	if err := toml.Unmarshal(b, &f); err != nil {
		return nil, err
	}
	for i := range f.Registries {
		r := &f.Registries[i]
		if r.Location != "" {
			loc, err := parseLocation(r.Location)
			if err != nil {
				return nil, err
			}
			r.Location = loc
		}
		if r.Prefix == "" {
			if r.Location == "" {
				return nil, errors.New("invalid condition: both location and prefix are unset")
			}
			r.Prefix = r.Location
		} else {
			p, err := parseLocation(r.Prefix)
			if err != nil {
				return nil, err
			}
			r.Prefix = p
			if strings.HasPrefix(p, "*.") && r.Location != "" {
				return nil, fmt.Errorf("invalid location for wildcarded prefix %q: location must be unset", p)
			}
		}
		for j := range r.Mirrors {
			m := &r.Mirrors[j]
			loc, err := parseLocation(m.Location)
			if err != nil {
				return nil, err
			}
			m.Location = loc
			switch m.PullFromMirror {
			case "", "all", "digest-only", "tag-only":
			default:
				return nil, fmt.Errorf("unsupported pull-from-mirror value %q for mirror %q (all, digest-only, tag-only)", m.PullFromMirror, m.Location)
			}
			if r.MirrorByDigestOnly && m.PullFromMirror != "" && m.PullFromMirror != "all" {
				return nil, fmt.Errorf("cannot set mirror usage mirror-by-digest-only for the registry (%q) and pull-from-mirror for per-mirror (%q) at the same time", r.Prefix, m.Location)
			}
		}
	}
	return f.Registries, nil
}

// readCRIORegistries reads registries.conf and its drop-ins. A missing file
// is no configuration.
func readCRIORegistries(file string, notes *fileNotes) []crioRegistry {
	files := []string{file}
	dropins, _ := filepath.Glob(filepath.Join(filepath.Dir(file), "registries.conf.d", "*.conf"))
	sort.Strings(dropins)
	files = append(files, dropins...)
	var regs []crioRegistry
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				notes.problem("CRI-O registries %s: %v", f, err)
			}
			continue
		}
		rs, err := parseCRIORegistries(b)
		if err != nil {
			// containers/image fails every pull with an invalid file;
			// nothing of it is used.
			notes.problem("CRI-O registries %s: %v", f, err)
			return nil
		}
		for _, r := range rs {
			replaced := false
			for i := range regs {
				if regs[i].Prefix == r.Prefix {
					regs[i], replaced = r, true
				}
			}
			if !replaced {
				regs = append(regs, r)
			}
		}
	}
	return regs
}

// crioHasMirrors reports whether any registry configures a mirror, a
// rewritten location or a block: otherwise CRI-O pulls every image from its
// registry and the file says nothing about mirrors.
func crioHasMirrors(regs []crioRegistry) bool {
	for _, r := range regs {
		if len(r.Mirrors) > 0 || r.Blocked || (r.Location != "" && r.Location != r.Prefix) {
			return true
		}
	}
	return false
}

// crioPrefixMatches is sysregistriesv2's refMatchesPrefix, with wildcard
// prefixes ("*.example.com") matching subdomains of the registry host.
func crioPrefixMatches(name, prefix string) (matched string, ok bool) {
	if strings.HasPrefix(prefix, "*.") {
		host, _, _ := strings.Cut(name, "/")
		if strings.HasSuffix(host, prefix[1:]) {
			return host, true
		}
		return "", false
	}
	switch {
	case len(name) < len(prefix):
		return "", false
	case len(name) == len(prefix):
		return prefix, name == prefix
	default:
		if !strings.HasPrefix(name, prefix) {
			return "", false
		}
		c := name[len(prefix)]
		return prefix, c == '/' || c == ':' || c == '@'
	}
}

// crioHostsFor returns the pull sources CRI-O tries for ref.
func crioHostsFor(regs []crioRegistry, ref probe.Reference) ([]Host, bool) {
	name := ref.Registry + "/" + ref.Repository
	var best *crioRegistry
	bestMatched := ""
	for i := range regs {
		if m, ok := crioPrefixMatches(name, regs[i].Prefix); ok && len(regs[i].Prefix) > len(bestPrefix(best)) {
			best, bestMatched = &regs[i], m
		}
	}
	if best == nil {
		return nil, false
	}
	rewrite := func(location string) (host, repo string) {
		if location == "" {
			location = bestMatched
		}
		newName := location + name[len(bestMatched):]
		host, repo, _ = strings.Cut(newName, "/")
		return strings.ToLower(host), repo
	}
	var hosts []Host
	for _, m := range best.Mirrors {
		host, repo := rewrite(m.Location)
		h := Host{Host: host, Path: "/v2", HTTPFallback: m.Insecure, SkipVerify: m.Insecure,
			ForTags: true, ForDigests: true}
		switch {
		case best.MirrorByDigestOnly, m.PullFromMirror == "digest-only":
			h.ForTags = false
		case m.PullFromMirror == "tag-only":
			h.ForDigests = false
		}
		if repo != ref.Repository {
			h.Repository = repo
		}
		h.Key = "https://" + host + "/v2/" + repo
		hosts = append(hosts, h)
	}
	if !best.Blocked {
		host, repo := rewrite(best.Location)
		h := Host{Host: host, Path: "/v2", HTTPFallback: best.Insecure, SkipVerify: best.Insecure,
			ForTags: true, ForDigests: true, Key: "location"}
		if IsUpstream(host, ref.Registry) && repo == ref.Repository {
			h.Upstream = true
		} else if repo != ref.Repository {
			h.Repository = repo
		}
		hosts = append(hosts, h)
	}
	return hosts, true
}

func bestPrefix(r *crioRegistry) string {
	if r == nil {
		return ""
	}
	return r.Prefix
}
