package credprovider

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imagepull/imagepull_exporter/probe"
)

// Options configures Load.
type Options struct {
	// ConfigPath is the CredentialProviderConfig file (or directory) the
	// nodes' kubelets use: --kube.credential-provider-config.
	ConfigPath string
	// BinDir holds the plugins: --kube.credential-provider-bin-dir.
	BinDir string
	// Timeout bounds one plugin run; zero means DefaultTimeout (the
	// kubelet's minute).
	Timeout time.Duration
	// Now is the clock of the cache; nil means time.Now. Tests move it to
	// expire cached answers without sleeping.
	Now func() time.Time
	// OnRun, when set, is called after every plugin run with its error
	// (nil on success), e.g. to log failures.
	OnRun func(provider string, err error)
}

// Providers are the configured plugins. They are safe for concurrent use,
// and implement probe.CredentialProviders for the configuration loader.
type Providers struct {
	source string
	list   []*plugin
	byName map[string]*single
	node   *node
	red    *redactorBox
}

// Load reads and validates the configuration and finds every plugin in the
// bin directory, as the kubelet does at start: a problem in either is an
// error that names the file, the line and the fix.
func Load(opts Options) (*Providers, error) {
	if opts.BinDir == "" {
		return nil, errors.New("--kube.credential-provider-config needs --kube.credential-provider-bin-dir, the directory holding the plugins (the node's --image-credential-provider-bin-dir)")
	}
	if fi, err := os.Stat(opts.BinDir); err != nil {
		return nil, fmt.Errorf("--kube.credential-provider-bin-dir: %w; mount the node's plugin directory (read-only) or ship the plugins in the image", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("--kube.credential-provider-bin-dir %s is not a directory", opts.BinDir)
	}
	cfgs, err := readConfig(opts.ConfigPath)
	if err != nil {
		return nil, err
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	ps := &Providers{source: opts.ConfigPath, byName: map[string]*single{}, red: newRedactorBox()}
	var errs ConfigErrors
	for _, c := range cfgs {
		path, err := findBinary(opts.BinDir, c)
		if err != nil {
			errs = append(errs, err.(*ConfigError))
			continue
		}
		pl := &plugin{
			name: c.Name, apiVersion: c.APIVersion, path: path, args: c.Args,
			matchImages: c.MatchImages, defaultTTL: c.DefaultCacheDuration.Duration,
			timeout: opts.Timeout, now: opts.Now, onRun: opts.OnRun,
			cache: map[string]cacheEntry{}, inflight: map[string]*call{}, red: ps.red, lastPurge: opts.Now(),
		}
		for _, e := range c.Env {
			pl.env = append(pl.env, e.Name+"="+e.Value)
		}
		for _, m := range c.MatchImages {
			h, _ := probe.ParseImageMatch(m) // validated
			pl.hosts = append(pl.hosts, h)
		}
		if ta := c.TokenAttributes; ta != nil && ta.RequireServiceAccount != nil && *ta.RequireServiceAccount {
			pl.skip = true
		}
		ps.list = append(ps.list, pl)
		ps.byName[pl.name] = &single{p: pl}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	ps.node = &node{ps: ps}
	ps.red.ps = ps.list
	return ps, nil
}

// Names implements probe.CredentialProviders.
func (ps *Providers) Names() []string {
	out := make([]string, len(ps.list))
	for i, p := range ps.list {
		out[i] = p.name
	}
	return out
}

// Provider implements probe.CredentialProviders.
func (ps *Providers) Provider(name string) probe.CredentialProvider {
	if s, ok := ps.byName[name]; ok {
		return s
	}
	return nil
}

// Node implements probe.CredentialProviders.
func (ps *Providers) Node() probe.CredentialProvider { return ps.node }

// Source implements probe.CredentialProviders.
func (ps *Providers) Source() string { return ps.source }

// Redactor returns a redactor that knows every credential the plugins have
// handed out and still hold, for sinks that are not about one probe (the
// process log). Call it for each use: it is replaced as credentials
// rotate, so that it does not grow without bound.
func (ps *Providers) Redactor() *probe.Redactor { return ps.red.get() }

// Runs returns how often each provider has run its plugin, by name.
func (ps *Providers) Runs() map[string]int {
	out := map[string]int{}
	for _, p := range ps.list {
		p.mu.Lock()
		out[p.name] = p.runs
		p.mu.Unlock()
	}
	return out
}

// lookup resolves the credentials the given plugins provide for ref, as the
// kubelet's externalCredentialProviderKeyring does: every covering plugin's
// answer in one keyring, looked up for the image. A plugin that failed
// fails the lookup (SetupError): the exporter's setup, reason config.
func lookup(ctx context.Context, plugins []*plugin, ref probe.Reference) ([]probe.Credential, error) {
	image := ref.Registry + "/" + ref.Repository
	kr := &probe.DockerKeyring{}
	for _, p := range plugins {
		cfg, err := p.provide(ctx, image)
		if err != nil {
			return nil, err
		}
		if len(cfg) > 0 {
			kr.Add(fmt.Sprintf("credential provider %q", p.name), cfg)
		}
	}
	return kr.Resolve(ref)
}

// single is one provider as a module's auth.credential_provider.
type single struct{ p *plugin }

func (s *single) Name() string { return fmt.Sprintf("credential provider %q", s.p.name) }

func (s *single) Resolve(ref probe.Reference) ([]probe.Credential, error) {
	return s.ResolveContext(context.Background(), ref)
}

func (s *single) ResolveContext(ctx context.Context, ref probe.Reference) ([]probe.Credential, error) {
	return lookup(ctx, []*plugin{s.p}, ref)
}

func (s *single) CoversRegistry(registry string) bool { return s.p.coversRegistry(registry) }

func (s *single) Known() []probe.Credential { return s.p.known() }

// node is every provider, as the node's kubelet uses them.
type node struct{ ps *Providers }

func (n *node) Name() string {
	return fmt.Sprintf("the node's credential providers (%s)", n.ps.source)
}

func (n *node) Resolve(ref probe.Reference) ([]probe.Credential, error) {
	return n.ResolveContext(context.Background(), ref)
}

func (n *node) ResolveContext(ctx context.Context, ref probe.Reference) ([]probe.Credential, error) {
	return lookup(ctx, n.ps.list, ref)
}

func (n *node) CoversRegistry(registry string) bool {
	for _, p := range n.ps.list {
		if p.coversRegistry(registry) {
			return true
		}
	}
	return false
}

func (n *node) Known() []probe.Credential {
	var out []probe.Credential
	for _, p := range n.ps.list {
		out = append(out, p.known()...)
	}
	return out
}

// Report is what diagnose says about one provider for one image.
type Report struct {
	Provider string
	Covers   bool   // a matchImages entry covers the image
	Skipped  string // why a covering provider is not run; "" when it is
	Keys     []string
	Err      error // the run's failure (a SetupError)
}

// Explain runs (or reads from the cache) every provider that covers ref,
// as the node would for a pull, and says for each whether it covers the
// image, what it answered (its keys, never credentials) or why it failed.
func (ps *Providers) Explain(ctx context.Context, ref probe.Reference) []Report {
	image := ref.Registry + "/" + ref.Repository
	out := make([]Report, 0, len(ps.list))
	for _, p := range ps.list {
		r := Report{Provider: p.name, Covers: p.covers(image)}
		switch {
		case !r.Covers:
			r.Skipped = fmt.Sprintf("its matchImages (%s) do not cover %s, so the kubelet does not run it for this image", strings.Join(p.matchImages, ", "), image)
		case p.skip:
			r.Skipped = "it asks for the pod's service account token (tokenAttributes.requireServiceAccount), which only the kubelet can request for a pod; the exporter does not run it"
		default:
			cfg, err := p.provide(ctx, image)
			r.Err = err
			for k := range cfg {
				r.Keys = append(r.Keys, k)
			}
		}
		out = append(out, r)
	}
	return out
}

// redactorBox holds the process-wide redactor of plugin credentials and
// rebuilds it from the plugins' caches once it has learnt too many
// secrets (short-lived tokens rotate: an ever-growing redactor would slow
// every log line).
type redactorBox struct {
	mu    sync.Mutex
	cur   atomic.Pointer[probe.Redactor]
	added int
	ps    []*plugin
}

const maxRedactorCredentials = 256

func newRedactorBox() *redactorBox {
	b := &redactorBox{}
	b.cur.Store(probe.NewRedactor())
	return b
}

func (b *redactorBox) get() *probe.Redactor { return b.cur.Load() }

func (b *redactorBox) redact(s string) string { return b.get().Redact(s) }

func (b *redactorBox) add(cfg probe.DockerConfig) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.added += len(cfg)
	r := b.cur.Load()
	if b.added > maxRedactorCredentials {
		// Start afresh with what the caches still hold (the entries
		// being added now are in none of them yet).
		r = probe.NewRedactor()
		b.added = len(cfg)
		for _, p := range b.ps {
			known := p.known()
			r.AddCredentials(known...)
			b.added += len(known)
		}
		b.cur.Store(r)
	}
	for _, e := range cfg {
		r.AddCredentials(probe.Credential{Username: e.Username, Password: e.Password})
	}
}
