package config

import (
	"bytes"
	"crypto/x509"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/imagepull/imagepull_exporter/collector/mirror"
	"github.com/imagepull/imagepull_exporter/internal/yamlnode"
	"github.com/imagepull/imagepull_exporter/probe"
)

// DefaultModuleName is the module a target uses when it names none. When the
// file defines no module of that name, probe.DefaultModule stands in.
const DefaultModuleName = "default"

// DefaultConfigName is how errors and logs name the embedded default
// configuration.
const DefaultConfigName = "default.yml (embedded)"

//go:embed default.yml
var defaultConfigYAML []byte

// Config is the configuration file: modules say how to probe, targets say what.
// Its YAML schema is a contract: extend it, never rename a key.
type Config struct {
	Modules map[string]probe.Module `yaml:"modules"`
	Targets []TargetConfig          `yaml:"targets"`
	// Discovery configures targets discovered in Kubernetes
	// (discovery.go).
	Discovery DiscoveryConfig `yaml:"discovery"`
	// Mirrors lists registry mirrors per registry, probed and compared
	// with their upstream (mirrors.go): {"docker.io": ["https://mirror"]}.
	Mirrors map[string][]MirrorEndpoint `yaml:"mirrors"`

	// mirrorChains is Mirrors validated, per normalised registry, each
	// chain ending with the registry itself; set by the loader.
	mirrorChains map[string][]mirror.Host
}

// TargetConfig is one `targets:` entry.
type TargetConfig struct {
	// Name is the `target` label value; it defaults to Image and must be
	// unique.
	Name string `yaml:"name"`
	// Image is the image reference to probe, normalised like the kubelet does.
	Image string `yaml:"image"`
	// Module names the module to probe with; empty means "default".
	Module string `yaml:"module"`
	// Interval overrides the module's interval; zero means the module's.
	Interval time.Duration `yaml:"interval"`

	// Ref is Image parsed and normalised; set by the loader.
	Ref probe.Reference `yaml:"-"`
}

// MirrorChain returns the hosts a runtime configured by the `mirrors:` key
// tries for registry (normalised), in order, ending with the registry
// itself; nil when the registry has no mirrors.
func (c *Config) MirrorChain(registry string) []mirror.Host {
	return c.mirrorChains[registry]
}

// EffectiveInterval is how often the target is probed under cfg.
func (t TargetConfig) EffectiveInterval(cfg *Config) time.Duration {
	if t.Interval > 0 {
		return t.Interval
	}
	return cfg.Modules[t.Module].Interval
}

// Load reads and validates a configuration file. Relative file paths in
// modules (password_file, ca_file, docker_config) are resolved against the
// file's directory, so a config works the same from any working directory.
func Load(path string) (*Config, error) {
	return LoadWith(path, Options{})
}

// Options is what the loader needs from outside the file.
type Options struct {
	// CredentialProviders are the kubelet credential provider plugins of
	// --kube.credential-provider-config (collector/credprovider); nil
	// without that flag. A module's auth.credential_provider must name
	// one of them, and a module without credentials of its own uses all
	// of them, as the node's kubelet does.
	CredentialProviders probe.CredentialProviders
}

// LoadWith is Load with opts.
func LoadWith(path string, opts Options) (*Config, error) {
	data, err := readBounded(path)
	if err != nil {
		return nil, err
	}
	return ParseWith(path, data, opts)
}

// MaxFileSize bounds a configuration file. A real one is a few KiB; even
// thousands of generated targets stay far below this. Beyond it, parsing
// (a node tree per pass, kept while errors are located) costs hundreds of
// MiB, and a reload must not be able to take the exporter down.
const MaxFileSize = 16 << 20

// readBounded reads path, refusing one larger than MaxFileSize without
// reading it whole: at most MaxFileSize+1 bytes are read whatever the file
// is (a FIFO, a growing file, /dev/zero).
func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read config file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read config file: %w", err)
	}
	if len(data) > MaxFileSize {
		size := "more than 16 MiB"
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() > MaxFileSize {
			size = fmt.Sprintf("%.1f MiB (%d bytes)", float64(fi.Size())/(1<<20), fi.Size())
		}
		return nil, &Error{File: path, Problems: []Problem{{Msg: fmt.Sprintf(
			"the file is %s, over the limit of %d MiB for a configuration file; nothing was loaded. Check that the path names the configuration and not another file, and keep it under the limit (list many registries with discovery: rather than one target each)",
			size, MaxFileSize>>20)}}}
	}
	return data, nil
}

// LoadDefault parses the embedded default configuration.
func LoadDefault() (*Config, error) {
	return LoadDefaultWith(Options{})
}

// LoadDefaultWith is LoadDefault with opts.
func LoadDefaultWith(opts Options) (*Config, error) {
	return ParseWith(DefaultConfigName, defaultConfigYAML, opts)
}

// Parse parses and validates configuration data. name is how errors
// refer to the file ("config.yml:12: ..."), and its directory is the base of
// relative paths. Every problem found is reported, one per line, sorted by
// line, each saying what to do about it.
func Parse(name string, data []byte) (*Config, error) {
	return ParseWith(name, data, Options{})
}

// ParseWith is Parse with opts.
func ParseWith(name string, data []byte, opts Options) (*Config, error) {
	p := &parser{name: name, dir: filepath.Dir(name), opts: opts}
	cfg, err := p.parse(data)
	if err != nil {
		return nil, err
	}
	if len(p.problems) > 0 {
		return nil, p.err()
	}
	return cfg, nil
}

// Error lists the problems of a configuration file.
type Error struct {
	File     string
	Problems []Problem
}

// Problem is one problem of a configuration file. Line is 0 when the
// problem has no position.
type Problem struct {
	Line int
	Msg  string
}

// Error prints one problem per line as "file:line: message".
func (e *Error) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		if p.Line > 0 {
			fmt.Fprintf(&b, "%s:%d: %s", e.File, p.Line, p.Msg)
		} else {
			fmt.Fprintf(&b, "%s: %s", e.File, p.Msg)
		}
	}
	return b.String()
}

type parser struct {
	name     string
	dir      string
	opts     Options
	root     *yaml.Node // the document's top mapping; nil for an empty file
	problems []Problem

	// secrets knows every scalar under an auth: key (authSecrets); every
	// problem text passes it (err).
	secrets *probe.Redactor
	// index holds visit's entries by line, built once on the first
	// locate: a file with many problems must not walk its tree per problem.
	index *locateIndex
}

func (p *parser) addf(line int, format string, args ...any) {
	p.problems = append(p.problems, Problem{Line: line, Msg: fmt.Sprintf(format, args...)})
}

// maxProblems bounds the problems an error lists: a generated file with one
// mistake repeated a million times gives a readable answer (and a reload
// answer and log line of bounded size); fixing the first ones usually fixes
// the rest.
const maxProblems = 20

// err returns the problems found, sorted by line, at most maxProblems of
// them, each scrubbed of every value found under an auth: key.
func (p *parser) err() error {
	sort.SliceStable(p.problems, func(i, j int) bool { return p.problems[i].Line < p.problems[j].Line })
	// One node reached twice (an alias) gives the same problem twice.
	problems := slices.Compact(p.problems)
	if n := len(problems) - maxProblems; n > 0 {
		problems = append(problems[:maxProblems:maxProblems], Problem{Msg: fmt.Sprintf("and %d more problems; fix the ones above first", n)})
	}
	for i := range problems {
		problems[i].Msg = p.secrets.Redact(problems[i].Msg)
	}
	return &Error{File: p.name, Problems: problems}
}

// authSecrets returns a Redactor (probe's one redactor) that knows every
// scalar found anywhere under a key named auth, in every form a problem text
// can show it: as written, quoted by strconv.Quote, and as yaml.v3 shortens
// a value in its type errors (seven bytes and "..."). A value there may be a
// password whatever its key (a password pasted into password_file, or in
// place of the auth: mapping), so none is trusted. Keys under auth are
// collected too, except the schema's keys and their near-misspellings
// ("pasword" is a typo to point at, not a secret).
//
// Values shorter than four bytes are not scrubbed by text (the Redactor
// ignores them: "a" or "12" would be cut out of every word and line number
// of the message, and a password that short is guessed faster than read).
// They are protected by structure instead: locateValue marks every value
// under auth: secret, and a secret value is never quoted.
func authSecrets(doc *yaml.Node) *probe.Redactor {
	r := probe.NewRedactor()
	authKeys := yamlKeys(reflect.TypeFor[probe.AuthConfig]())
	seen := map[*yaml.Node]bool{}
	add := func(v string) {
		if v == "" {
			return
		}
		q := strconv.Quote(v)
		r.Add(v, q[1:len(q)-1])
		if len(v) > 10 {
			short := v[:7] + "..."
			q := strconv.Quote(short)
			r.Add(short, q[1:len(q)-1])
		}
	}
	var collect func(n *yaml.Node)
	collect = func(n *yaml.Node) {
		if n == nil || seen[n] {
			return
		}
		seen[n] = true
		switch n.Kind {
		case yaml.ScalarNode:
			add(n.Value)
		case yaml.AliasNode:
			collect(n.Alias)
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i]
				if k.Kind != yaml.ScalarNode || (!slices.Contains(authKeys, k.Value) && closest(k.Value, authKeys) == "") {
					collect(k)
				}
				collect(n.Content[i+1])
			}
		default:
			for _, c := range n.Content {
				collect(c)
			}
		}
	}
	var find func(n *yaml.Node)
	find = func(n *yaml.Node) {
		if n == nil {
			return
		}
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == "auth" {
					collect(n.Content[i+1])
				}
			}
		}
		for _, c := range n.Content {
			find(c)
		}
	}
	find(doc)
	return r
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func (p *parser) parse(data []byte) (*Config, error) {
	// A first pass into a node tree gives line numbers for validation and
	// for rewording decoder errors; syntax errors surface here.
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
			line, _ := strconv.Atoi(m[1])
			if at, upTo := syntaxErrorLine(data, line); upTo > at {
				p.addf(at, "invalid YAML: %s, somewhere from this line to line %d (a file this large is not searched further; look there for a wrong indentation or an unclosed quote or bracket)", m[2], upTo)
			} else {
				p.addf(at, "invalid YAML: %s", m[2])
			}
		} else {
			p.addf(0, "invalid YAML: %s", strings.TrimPrefix(err.Error(), "yaml: "))
		}
		return nil, p.err()
	}
	p.secrets = authSecrets(&doc)
	cfg := &Config{}
	if len(doc.Content) > 0 {
		p.root = doc.Content[0]
		if p.root.Kind != yaml.MappingNode {
			if p.root.ShortTag() == "!!null" {
				p.root = nil
			} else {
				p.addf(p.root.Line, "the file must be a mapping with the keys modules: and targets:, got %s", nodeKind(p.root))
				return nil, p.err()
			}
		}
	}
	if p.root != nil {
		// The second pass decodes with KnownFields so that a misspelt key
		// is an error. It must go through the Decoder (not Node.Decode,
		// which drops KnownFields) for probe.Module's UnmarshalYAML to
		// keep the check.
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
			var te *yaml.TypeError
			if errors.As(err, &te) {
				for _, e := range te.Errors {
					p.rewordDecodeError(e)
				}
			} else {
				p.addf(0, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
			}
			return nil, p.err()
		}
	}
	p.validate(cfg)
	return cfg, nil
}

// syntaxErrorLine finds the line a YAML syntax error is really on. yaml.v3
// reports the line where the enclosing block started (its "context mark"),
// so a mis-indented key on line 40 is reported as line 1. The shortest
// prefix of the file that fails to parse ends on the offending line; a
// binary search finds it in O(log n) parses (exact when, as usual, every
// longer prefix fails too).
//
// Each parse costs time and memory in proportion to the prefix (a 12 MB
// file: 1.5 s and 240 MB per parse), so the search stops once it has
// parsed syntaxSearchBudget bytes in all: a file of a few MiB still gets
// its exact line, a bigger one the range [line, upTo] the search narrowed
// it to (upTo == line when exact).
func syntaxErrorLine(data []byte, reported int) (line, upTo int) {
	lines := bytes.SplitAfter(data, []byte("\n"))
	ends := make([]int, len(lines)) // ends[i] = length of the first i+1 lines
	n := 0
	for i, l := range lines {
		n += len(l)
		ends[i] = n
	}
	spent := 0
	fails := func(i int) bool {
		spent += ends[i]
		var v yaml.Node
		return yaml.Unmarshal(data[:ends[i]], &v) != nil
	}
	lo := max(reported-1, 0) // the problem is not before its block
	if lo >= len(lines) {
		return reported, reported
	}
	// The whole file fails (that is why we are here): no need to parse it
	// again.
	hi := len(lines) - 1
	for lo < hi && spent < syntaxSearchBudget {
		mid := (lo + hi) / 2
		if fails(mid) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo + 1, hi + 1
}

// syntaxSearchBudget bounds the bytes syntaxErrorLine parses in all (a var
// for tests).
var syntaxSearchBudget = 32 << 20

func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	switch n.ShortTag() {
	case "!!null":
		return "nothing (null)"
	case "!!int", "!!float":
		return "a number"
	case "!!bool":
		return "a boolean"
	}
	return "a string"
}

var (
	unknownFieldRE = regexp.MustCompile(`^line (\d+): field (.*) not found in type (.*)$`)
	cannotRE       = regexp.MustCompile("(?s)^line (\\d+): cannot unmarshal (!!\\w+)(?: `(.*)`)? into (.*)$")
	dupKeyRE       = regexp.MustCompile(`^line (\d+): mapping key "(.*)" already defined at line (\d+)$`)
	otherLineRE    = regexp.MustCompile(`^line (\d+): (.*)$`)
)

// rewordDecodeError turns one of yaml.v3's decode errors into one that names
// where it is in our schema and says what to do.
func (p *parser) rewordDecodeError(e string) {
	if m := unknownFieldRE.FindStringSubmatch(e); m != nil {
		line, _ := strconv.Atoi(m[1])
		key := m[2]
		where, typ := p.locateKey(line, key)
		valid := yamlKeys(typ)
		msg := fmt.Sprintf("unknown key %q", key)
		if where != "" {
			msg = where + ": " + msg
		} else {
			msg = "unknown top-level key " + strconv.Quote(key)
		}
		if s := closest(key, valid); s != "" {
			msg += fmt.Sprintf("; did you mean %q?", s)
		} else {
			msg += "; fix the spelling or remove it"
		}
		if len(valid) > 0 {
			msg += " (valid keys: " + strings.Join(valid, ", ") + ")"
		}
		p.addf(line, "%s", msg)
		return
	}
	if m := cannotRE.FindStringSubmatch(e); m != nil {
		line, _ := strconv.Atoi(m[1])
		tag, value, goType := m[2], m[3], m[4]
		where, key, secret := p.locateValue(line, value)
		prefix := ""
		if where != "" {
			prefix = where + ": "
		}
		if key != "" {
			prefix += key + ": "
		}
		shown := strconv.Quote(value)
		if secret || value == "" {
			// Never echo a value that may be a credential.
			shown = "the value"
		}
		if secret {
			// Nor its length, its shortened form or its unit.
			value = ""
		}
		switch goType {
		case "time.Duration":
			if tag == "!!int" || tag == "!!float" {
				p.addf(line, "%s%s has no unit; write a duration such as %ss or 1m30s", prefix, shown, value)
			} else {
				p.addf(line, "%s%s is not a duration; write a number with a unit, e.g. 30s, 1m30s, 2h", prefix, shown)
			}
		case "bool":
			p.addf(line, "%s%s is not a boolean; write true or false", prefix, shown)
		default:
			got := "a " + strings.TrimPrefix(tag, "!!")
			switch tag {
			case "!!map":
				got = "a mapping"
			case "!!seq":
				got = "a list"
			case "!!str":
				got = "the string " + shown
				if secret {
					got = "a string (not shown: a value under auth: may be a password)"
				}
			case "!!int", "!!float":
				got = "the number " + shown
				if secret {
					got = "a number (not shown: a value under auth: may be a password)"
				}
			}
			p.addf(line, "%swant %s, got %s", prefix, humanType(goType), got)
		}
		return
	}
	if m := dupKeyRE.FindStringSubmatch(e); m != nil {
		line, _ := strconv.Atoi(m[1])
		p.addf(line, "key %q is already set at line %s; remove one of them", m[2], m[3])
		return
	}
	if m := otherLineRE.FindStringSubmatch(e); m != nil {
		line, _ := strconv.Atoi(m[1])
		p.addf(line, "%s", m[2])
		return
	}
	p.addf(0, "%s", e)
}

// typeWords says in words what a YAML value of a Go type must be. It is
// keyed by reflect.Type, so a renamed type or package cannot silently turn
// its wording into the fallback; the decoder names the type by its
// reflect.Type.String(), which is how humanType looks it up.
var typeWords = map[reflect.Type]string{
	reflect.TypeFor[string]():                      "a string",
	reflect.TypeFor[probe.Secret]():                "a string",
	reflect.TypeFor[probe.HealthSetting]():         "one of " + strings.Join(probe.HealthSettings(), ", "),
	reflect.TypeFor[[]TargetConfig]():              "a list of targets",
	reflect.TypeFor[map[string]probe.Module]():     "a mapping of module names to modules",
	reflect.TypeFor[[]string]():                    "a list of strings",
	reflect.TypeFor[[]DiscoveryModule]():           "a list of {registry, module} entries",
	reflect.TypeFor[map[string][]MirrorEndpoint](): "a mapping of registries to lists of mirror URLs, e.g. docker.io: [https://mirror.example.com]",
	reflect.TypeFor[[]MirrorEndpoint]():            "a list of mirror URLs",
	reflect.TypeFor[mirrorEndpointYAML]():          "a mirror URL or a mapping {url, module}",
	reflect.TypeFor[int]():                         "a number",
	reflect.TypeFor[int64]():                       "a number",
	reflect.TypeFor[float64]():                     "a number",
}

var typeWordsByName = func() map[string]string {
	m := make(map[string]string, len(typeWords))
	for t, w := range typeWords {
		m[t.String()] = w
	}
	return m
}()

// humanType words the Go type a decoder error names; structs (modules,
// targets, the discovery section) are mappings.
func humanType(goType string) string {
	if w, ok := typeWordsByName[goType]; ok {
		return w
	}
	return "a mapping"
}

var (
	configType = reflect.TypeOf(Config{})
	moduleType = reflect.TypeOf(probe.Module{})
)

// yamlKeys lists the YAML keys of a struct type in declaration order.
func yamlKeys(t reflect.Type) []string {
	if t == nil || t.Kind() != reflect.Struct {
		return nil
	}
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		if k := yamlKey(t.Field(i)); k != "" {
			keys = append(keys, k)
		}
	}
	return keys
}

func yamlKey(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if tag == "-" {
		return ""
	}
	if tag == "" {
		return strings.ToLower(f.Name)
	}
	return tag
}

func fieldByKey(t reflect.Type, key string) (reflect.Type, bool) {
	for i := 0; i < t.NumField(); i++ {
		if yamlKey(t.Field(i)) == key {
			return t.Field(i).Type, true
		}
	}
	return nil, false
}

// visit walks the node tree along the Go types of the schema, calling fn for
// every key of every mapping with a human description of where the mapping
// is, its Go type, and the key's and value's nodes.
func (p *parser) visit(fn func(where string, typ reflect.Type, k, v *yaml.Node) bool) {
	if p.root == nil {
		return
	}
	var walk func(n *yaml.Node, t reflect.Type, where string) bool
	walk = func(n *yaml.Node, t reflect.Type, where string) bool {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		switch {
		case n.Kind == yaml.MappingNode && t.Kind() == reflect.Struct:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				if fn(where, t, k, v) {
					return true
				}
				ft, ok := fieldByKey(t, k.Value)
				if !ok {
					continue
				}
				w := where
				if t != configType || k.Value == "discovery" || k.Value == "mirrors" {
					w = joinWhere(where, k.Value)
				}
				if walk(v, ft, w) {
					return true
				}
			}
		case n.Kind == yaml.MappingNode && t.Kind() == reflect.Map:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				w := where
				if t.Elem() == moduleType {
					w = fmt.Sprintf("module %q", k.Value)
				} else if where == "mirrors" {
					w = fmt.Sprintf("mirrors: %q", k.Value)
				}
				if walk(v, t.Elem(), w) {
					return true
				}
			}
		case n.Kind == yaml.SequenceNode && t.Kind() == reflect.Slice:
			for i, item := range n.Content {
				w := fmt.Sprintf("targets[%d]", i)
				if where != "" {
					w = fmt.Sprintf("%s[%d]", where, i) // e.g. "discovery: modules[0]"
				} else if name := yamlnode.MapValue(item, "name"); name != nil && name.Value != "" {
					w = fmt.Sprintf("target %q", name.Value)
				} else if img := yamlnode.MapValue(item, "image"); img != nil && img.Value != "" {
					w = fmt.Sprintf("target %q", img.Value)
				}
				if walk(item, t.Elem(), w) {
					return true
				}
			}
		}
		return false
	}
	walk(p.root, configType, "")
}

func joinWhere(where, key string) string {
	if where == "" {
		return key
	}
	return where + ": " + key
}

// locateEntry is one key of one mapping as visit reports it.
type locateEntry struct {
	where string
	typ   reflect.Type
	k, v  *yaml.Node
}

// locateIndex holds visit's entries by the line of their key and of their
// value, in visit order, so that each lookup costs one map access instead
// of a walk of the whole tree.
type locateIndex struct {
	byKeyLine, byValueLine map[int][]locateEntry
}

func (p *parser) locations() *locateIndex {
	if p.index == nil {
		p.index = &locateIndex{byKeyLine: map[int][]locateEntry{}, byValueLine: map[int][]locateEntry{}}
		p.visit(func(w string, t reflect.Type, k, v *yaml.Node) bool {
			e := locateEntry{w, t, k, v}
			p.index.byKeyLine[k.Line] = append(p.index.byKeyLine[k.Line], e)
			p.index.byValueLine[v.Line] = append(p.index.byValueLine[v.Line], e)
			return false
		})
	}
	return p.index
}

// locateKey finds the mapping that holds key at line, for an unknown-key error.
func (p *parser) locateKey(line int, key string) (where string, typ reflect.Type) {
	for _, e := range p.locations().byKeyLine[line] {
		if e.k.Value == key {
			return e.where, e.typ
		}
	}
	return "", nil
}

// locateValue finds the key whose value is at line, for a type error; value
// is as yaml.v3 shows it (shortened past ten bytes). secret is true when the
// value is auth: itself or sits under it, where no value may be echoed
// whatever its form.
func (p *parser) locateValue(line int, value string) (where, key string, secret bool) {
	for _, e := range p.locations().byValueLine[line] {
		if e.v.Kind != yaml.ScalarNode || yamlShown(e.v.Value) == value {
			secret = e.k.Value == "auth" || strings.HasSuffix(e.where, ": auth") || strings.Contains(e.where, ": auth: ")
			return e.where, e.k.Value, secret
		}
	}
	return "", "", false
}

// yamlShown is a scalar as yaml.v3's type errors show it.
func yamlShown(v string) string {
	if len(v) > 10 {
		return v[:7] + "..."
	}
	return v
}

// lineOf returns the line of the key at path below n, falling back to the
// deepest ancestor that exists.
func lineOf(n *yaml.Node, fallback int, path ...string) int {
	line := fallback
	for _, key := range path {
		k := yamlnode.MapKey(n, key)
		if k == nil {
			return line
		}
		line = k.Line
		n = yamlnode.MapValue(n, key)
	}
	return line
}

// closest returns the candidate within edit distance 2 of s, if any.
func closest(s string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if d := EditDistance(s, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// EditDistance is the Levenshtein distance between a and b, counted in
// bytes: what "did you mean" suggestions rank by (a misspelt config key here,
// the closest existing tags in collector/kube's diagnose).
func EditDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// maxTargetNameLength bounds the `target` label value.
const maxTargetNameLength = 200

func (p *parser) validate(cfg *Config) {
	modulesNode := yamlnode.MapValue(p.root, "modules")
	targetsNode := yamlnode.MapValue(p.root, "targets")

	if cfg.Modules == nil {
		cfg.Modules = map[string]probe.Module{}
	}
	names := make([]string, 0, len(cfg.Modules))
	for name := range cfg.Modules {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		m := cfg.Modules[name]
		mNode := yamlnode.MapValue(modulesNode, name)
		mLine := lineOf(modulesNode, 0, name)
		if mNode != nil && mNode.ShortTag() == "!!null" {
			// "name:" with nothing under it means all defaults; yaml.v3
			// does not call UnmarshalYAML for a null value.
			m = probe.DefaultModule
		}
		if name == "" {
			p.addf(mLine, "a module has an empty name; give it a name")
		}
		p.validateModule(name, &m, mNode, mLine)
		cfg.Modules[name] = m
	}
	if _, ok := cfg.Modules[DefaultModuleName]; !ok {
		cfg.Modules[DefaultModuleName] = probe.DefaultModule
	}
	p.useNodeProviders(cfg)
	defined := make([]string, 0, len(cfg.Modules))
	for name := range cfg.Modules {
		defined = append(defined, name)
	}
	sort.Strings(defined)

	p.validateDiscovery(cfg, defined)
	p.validateMirrors(cfg, defined)

	seen := map[string]int{}
	for i := range cfg.Targets {
		t := &cfg.Targets[i]
		var tNode *yaml.Node
		if targetsNode != nil && i < len(targetsNode.Content) {
			tNode = targetsNode.Content[i]
		}
		tLine := 0
		if tNode != nil {
			tLine = tNode.Line
		}
		where := fmt.Sprintf("targets[%d]", i)
		if t.Name == "" {
			t.Name = t.Image
		}
		if t.Name != "" {
			where = fmt.Sprintf("target %q", t.Name)
		}
		if t.Image == "" {
			p.addf(tLine, "%s: image is missing; add e.g. `image: docker.io/library/busybox:latest`", where)
		} else {
			ref, err := probe.ParseReference(t.Image)
			if err != nil {
				p.addf(lineOf(tNode, tLine, "image"), "%s: %v; fix the image reference", where, err)
			}
			t.Ref = ref
		}
		if len(t.Name) > maxTargetNameLength {
			p.addf(lineOf(tNode, tLine, "name"), "%s: name is longer than %d characters; use a shorter name", where, maxTargetNameLength)
		}
		if t.Name != "" {
			if first, dup := seen[t.Name]; dup {
				p.addf(lineOf(tNode, tLine, "name"), "%s: the name is already used by the target at line %d; target names must be unique (a target without name: is named after its image)", where, first)
			} else {
				seen[t.Name] = lineOf(tNode, tLine, "name")
			}
		}
		if t.Module == "" {
			t.Module = DefaultModuleName
		}
		m, ok := cfg.Modules[t.Module]
		if !ok {
			p.addf(lineOf(tNode, tLine, "module"), "%s: module %q is not defined (defined: %s); add it under modules: or fix the name", where, t.Module, strings.Join(defined, ", "))
			continue
		}
		if t.Interval < 0 {
			p.addf(lineOf(tNode, tLine, "interval"), "%s: interval %s is negative; use a positive duration or leave it out to use the module's", where, t.Interval)
			continue
		}
		if t.Interval > 0 && m.Timeout > t.Interval {
			p.addf(lineOf(tNode, tLine, "interval"), "%s: interval %s is shorter than module %q's timeout %s; raise the interval or lower the module's timeout", where, t.Interval, t.Module, m.Timeout)
		}
	}
	bindCredentials(cfg)
}

func (p *parser) validateModule(name string, m *probe.Module, n *yaml.Node, line int) {
	where := fmt.Sprintf("module %q", name)
	if m.Timeout <= 0 {
		p.addf(lineOf(n, line, "timeout"), "%s: timeout must be positive, got %s; use e.g. 10s", where, m.Timeout)
	}
	if m.Interval <= 0 {
		p.addf(lineOf(n, line, "interval"), "%s: interval must be positive, got %s; use e.g. 60s", where, m.Interval)
	}
	if m.AuthCheckInterval <= 0 {
		p.addf(lineOf(n, line, "auth_check_interval"), "%s: auth_check_interval must be positive, got %s; use e.g. 15m", where, m.AuthCheckInterval)
	}
	if m.Timeout > 0 && m.Interval > 0 && m.Timeout > m.Interval {
		p.addf(lineOf(n, line, "timeout"), "%s: timeout %s is longer than interval %s; lower the timeout or raise the interval", where, m.Timeout, m.Interval)
	}
	if !m.Health.Valid() {
		hint := "use auto (the default: read the health API of a registry recognised as one of these products), a product, or none"
		if c := closest(strings.ToLower(string(m.Health)), probe.HealthSettings()); c != "" {
			hint = fmt.Sprintf("did you mean %q?", c)
		}
		shown := string(m.Health)
		if len(shown) > 40 {
			shown = shown[:37] + "..."
		}
		p.addf(lineOf(n, line, "health"), "%s: health %q is not one of %s; %s", where, shown, strings.Join(probe.HealthSettings(), ", "), hint)
	}
	if m.PlainHTTP && (m.TLS.CAFile != "" || m.TLS.InsecureSkipVerify) {
		p.addf(lineOf(n, line, "tls"), "%s: tls settings have no effect with plain_http: true; remove one of them", where)
	}
	if m.TLS.CAFile != "" {
		m.TLS.CAFile = p.resolve(m.TLS.CAFile)
		fLine := lineOf(n, line, "tls", "ca_file")
		if pem, err := os.ReadFile(m.TLS.CAFile); err != nil {
			p.addf(fLine, "%s: tls.ca_file: %v; fix the path (relative paths are relative to the config file)", where, pathError(err))
		} else if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			p.addf(fLine, "%s: tls.ca_file %s holds no PEM certificate; point it at a CA bundle", where, m.TLS.CAFile)
		}
	}
	a := &m.Auth
	if a.Password != "" && a.PasswordFile != "" {
		p.addf(lineOf(n, line, "auth", "password_file"), "%s: auth.password and auth.password_file are both set; keep only one", where)
	}
	if a.PasswordFile != "" {
		a.PasswordFile = p.resolve(a.PasswordFile)
		fLine := lineOf(n, line, "auth", "password_file")
		if b, err := os.ReadFile(a.PasswordFile); err != nil {
			p.addf(fLine, "%s: auth.password_file: %v; fix the path (relative paths are relative to the config file) or its permissions", where, pathError(err))
		} else if len(bytes.TrimSpace(b)) == 0 {
			p.addf(fLine, "%s: auth.password_file %s is empty; put the password in it", where, a.PasswordFile)
		}
	}
	if a.Username != "" && a.Password == "" && a.PasswordFile == "" {
		p.addf(lineOf(n, line, "auth", "username"), "%s: auth.username is set without a password; add auth.password or auth.password_file", where)
	}
	if a.Username == "" && (a.Password != "" || a.PasswordFile != "") {
		p.addf(lineOf(n, line, "auth"), "%s: a password is set without auth.username; add the username", where)
	}
	p.validateCredentialProvider(where, a, n, line)
	p.validateAuthRegistries(where, a, n, line)
	if a.DockerConfig != "" {
		a.DockerConfig = p.resolve(a.DockerConfig)
		if _, err := os.Stat(a.DockerConfig); err != nil {
			p.addf(lineOf(n, line, "auth", "docker_config"), "%s: auth.docker_config: %v; point it at a docker config.json or the directory holding one", where, pathError(err))
		}
		if a.Username != "" {
			p.addf(lineOf(n, line, "auth", "docker_config"), "%s: auth.docker_config and auth.username are both set; use one source of credentials", where)
		}
	}
}

// pathError drops the operation name from a file error ("open x: no such
// file" reads better as "x: no such file").
func pathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}

func (p *parser) resolve(path string) string {
	if path == "" || filepath.IsAbs(path) || p.name == DefaultConfigName {
		return path
	}
	return filepath.Join(p.dir, path)
}

// Merge adds the modules and targets of other to c, for targets the program
// adds itself (--demo). A name defined in both is an error.
func (c *Config) Merge(other *Config) error {
	if other == nil {
		return nil
	}
	for name, m := range other.Modules {
		if name == DefaultModuleName {
			continue // every parsed config has one; c's wins
		}
		if _, ok := c.Modules[name]; ok {
			return fmt.Errorf("module %q is defined twice; rename the one in the config file", name)
		}
		c.Modules[name] = m
	}
	names := map[string]bool{}
	for _, t := range c.Targets {
		names[t.Name] = true
	}
	for _, t := range other.Targets {
		if names[t.Name] {
			return fmt.Errorf("target %q is defined twice; rename the one in the config file", t.Name)
		}
		c.Targets = append(c.Targets, t)
	}
	return nil
}

// SafeConfig holds the running configuration and swaps it on reload.
type SafeConfig struct {
	mu      sync.RWMutex
	c       *Config
	overlay *Config
	opts    Options

	reloadSuccess prometheus.Gauge
	reloadTime    prometheus.Gauge
}

// NewSafeConfig returns an empty SafeConfig whose reload metrics
// (imagepull_exporter_config_last_reload_successful and
// ..._success_timestamp_seconds) are registered with reg when reg is non-nil.
func NewSafeConfig(reg prometheus.Registerer) *SafeConfig {
	sc := &SafeConfig{
		c: &Config{Modules: map[string]probe.Module{DefaultModuleName: probe.DefaultModule}},
		reloadSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "imagepull_exporter_config_last_reload_successful",
			Help: "Whether the last configuration reload attempt was successful (1) or kept the running configuration (0).",
		}),
		reloadTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "imagepull_exporter_config_last_reload_success_timestamp_seconds",
			Help: "Timestamp of the last successful configuration reload.",
		}),
	}
	if reg != nil {
		reg.MustRegister(sc.reloadSuccess, sc.reloadTime)
	}
	return sc
}

// SetOverlay sets modules and targets that are merged into every loaded
// configuration (the --demo target). Call it before the first ReloadConfig.
func (sc *SafeConfig) SetOverlay(o *Config) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	sc.overlay = o
}

// SetOptions sets what every load needs from outside the file (the
// credential providers of the command line). Call it before the first
// ReloadConfig.
func (sc *SafeConfig) SetOptions(opts Options) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	sc.opts = opts
}

// Get returns the running configuration. It must not be modified.
func (sc *SafeConfig) Get() *Config {
	sc.mu.RLock()
	defer sc.mu.RUnlock()
	return sc.c
}

// ReloadConfig loads path (the embedded default when empty) and, when it is
// valid, makes it the running configuration. On error the running
// configuration stays and the reload gauge goes to 0.
func (sc *SafeConfig) ReloadConfig(path string) (err error) {
	defer func() {
		if err != nil {
			sc.reloadSuccess.Set(0)
		} else {
			sc.reloadSuccess.Set(1)
			sc.reloadTime.SetToCurrentTime()
		}
	}()
	sc.mu.RLock()
	opts := sc.opts
	sc.mu.RUnlock()
	var c *Config
	if path == "" {
		c, err = LoadDefaultWith(opts)
	} else {
		c, err = LoadWith(path, opts)
	}
	if err != nil {
		return err
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if err := c.Merge(sc.overlay); err != nil {
		return fmt.Errorf("%s: %w", configName(path), err)
	}
	sc.c = c
	return nil
}

func configName(path string) string {
	if path == "" {
		return DefaultConfigName
	}
	return path
}
