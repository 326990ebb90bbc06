package credprovider

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	credentialproviderv1 "k8s.io/kubelet/pkg/apis/credentialprovider/v1"
	credentialproviderv1alpha1 "k8s.io/kubelet/pkg/apis/credentialprovider/v1alpha1"
	credentialproviderv1beta1 "k8s.io/kubelet/pkg/apis/credentialprovider/v1beta1"
	sigsjson "sigs.k8s.io/json"

	"github.com/imagepull/imagepull_exporter/probe"
)

// The exec API versions the kubelet speaks, newest first.
var requestVersions = []string{
	credentialproviderv1.SchemeGroupVersion.String(),
	credentialproviderv1beta1.SchemeGroupVersion.String(),
	credentialproviderv1alpha1.SchemeGroupVersion.String(),
}

// Bounds of one plugin run.
const (
	// DefaultTimeout is the kubelet's catch-all limit on one run: a plugin
	// that works for the kubelet works here.
	DefaultTimeout = time.Minute
	// maxResponse bounds what is read from the plugin's stdout; an answer
	// is a few KiB.
	maxResponse = 1 << 20
	// maxStderr is how much of the plugin's stderr an error keeps (its
	// tail, redacted): enough for "AccessDenied: ...".
	maxStderr = 512
	// waitDelay bounds the wait for the plugin's pipes after it exited or
	// was killed (a child it started may hold them open).
	waitDelay = 2 * time.Second
	// maxCacheEntries bounds the cache of one provider (cacheKeyType
	// Image keys one entry per repository).
	maxCacheEntries = 4096
	// cachePurgeInterval is how often expired entries are dropped (the
	// kubelet's 15 minutes).
	cachePurgeInterval = 15 * time.Minute
	// globalCacheKey is the key of a cacheKeyType Global answer.
	globalCacheKey = "global"
)

// plugin is one configured provider: the kubelet's pluginProvider and
// execPlugin.
type plugin struct {
	name        string
	apiVersion  string
	path        string // the executable
	args        []string
	env         []string // NAME=VALUE, after the process environment
	matchImages []string
	hosts       []string // the host[:port] of each matchImages entry
	defaultTTL  time.Duration
	// skip is set for a provider that wants a service account token
	// and refuses to run without one (tokenAttributes with
	// requireServiceAccount): the kubelet does not run it for a pod
	// without a service account, and the exporter has no pod.
	skip    bool
	timeout time.Duration
	now     func() time.Time
	onRun   func(name string, err error) // after every run; may be nil

	mu         sync.Mutex
	cache      map[string]cacheEntry
	lastPurge  time.Time
	inflight   map[string]*call
	runs       int
	red        *redactorBox
	lastStatus string // the last run's outcome, for diagnose
}

type cacheEntry struct {
	cfg       probe.DockerConfig
	expiresAt time.Time
	stored    time.Time
}

// call is one run in flight that concurrent lookups of the same image wait
// for (the kubelet's singleflight).
type call struct {
	done chan struct{}
	cfg  probe.DockerConfig
	err  error
}

// covers reports whether one of the matchImages covers image
// (host/repository), the kubelet's isImageAllowed.
func (p *plugin) covers(image string) bool {
	for _, m := range p.matchImages {
		if ok, _ := probe.MatchImage(m, image); ok {
			return true
		}
	}
	return false
}

// coversRegistry reports whether some matchImages entry's host matches
// registry.
func (p *plugin) coversRegistry(registry string) bool {
	for _, h := range p.hosts {
		if ok, _ := probe.MatchImage(h, registry); ok {
			return true
		}
	}
	return false
}

// provide returns the plugin's docker config for image: from the cache, or
// from a run. It returns nil, nil when the plugin does not cover the image
// (it is then never run).
func (p *plugin) provide(ctx context.Context, image string) (probe.DockerConfig, error) {
	if !p.covers(image) || p.skip {
		return nil, nil
	}
	if cfg, ok := p.cached(image); ok {
		return cfg, nil
	}
	p.mu.Lock()
	c, running := p.inflight[image]
	if !running {
		c = &call{done: make(chan struct{})}
		p.inflight[image] = c
		// The run is not the caller's: it goes on (within its own
		// timeout) when the probe that started it gives up, and fills
		// the cache for the next probe.
		go p.run(image, c)
	}
	p.mu.Unlock()
	select {
	case <-c.done:
		return c.cfg, c.err
	case <-ctx.Done():
		return nil, &probe.SetupError{Err: fmt.Errorf("credential provider %q did not answer before the probe's timeout (its run goes on, bounded by %s, and a later probe uses its answer); a plugin that is this slow delays every pull of the node too",
			p.name, p.timeout)}
	}
}

// cached looks image up in the cache as the kubelet does: the image, then
// its registry, then the global key; expired entries do not count.
func (p *plugin) cached(image string) (probe.DockerConfig, bool) {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if now.Sub(p.lastPurge) > cachePurgeInterval {
		p.purgeLocked(now)
	}
	for _, key := range []string{image, registryOf(image), globalCacheKey} {
		if e, ok := p.cache[key]; ok && !now.After(e.expiresAt) {
			return e.cfg, true
		}
	}
	return nil, false
}

func (p *plugin) purgeLocked(now time.Time) {
	p.lastPurge = now
	for k, e := range p.cache {
		if now.After(e.expiresAt) {
			delete(p.cache, k)
		}
	}
}

// run runs the plugin once for image and completes c.
func (p *plugin) run(image string, c *call) {
	cfg, err := p.exec(image)
	p.mu.Lock()
	p.runs++
	delete(p.inflight, image)
	c.cfg, c.err = cfg, err
	if err != nil {
		p.lastStatus = err.Error()
	} else {
		p.lastStatus = fmt.Sprintf("ran at %s: %d auth entries", p.now().UTC().Format(time.RFC3339), len(cfg))
	}
	p.mu.Unlock()
	if p.onRun != nil {
		p.onRun(p.name, err)
	}
	close(c.done)
}

// exec runs the plugin with the request on stdin and returns its answer as
// a docker config, cached per the answer's cacheKeyType and cacheDuration.
func (p *plugin) exec(image string) (probe.DockerConfig, error) {
	req, err := p.request(image)
	if err != nil {
		return nil, &probe.SetupError{Err: fmt.Errorf("credential provider %q: encode the request: %w", p.name, err)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.path, p.args...)
	cmd.Stdin = bytes.NewReader(req)
	stdout := &limitedBuffer{max: maxResponse}
	stderr := &tailBuffer{max: maxStderr}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// As the kubelet: the process environment, then the configured
	// variables, which win (the last value of a name is the one used).
	cmd.Env = append(os.Environ(), p.env...)
	cmd.WaitDelay = waitDelay
	err = cmd.Run()
	switch {
	case ctx.Err() != nil:
		return nil, p.fail(fmt.Errorf("did not answer within %s and was killed", p.timeout), stderr)
	case err != nil:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, p.fail(fmt.Errorf("exited with %s", ee.ProcessState), stderr)
		}
		if errors.Is(err, exec.ErrWaitDelay) {
			return nil, p.fail(errors.New("exited but left its output open (a child process still holds it)"), stderr)
		}
		return nil, p.fail(fmt.Errorf("cannot be run: %w", err), stderr)
	case stdout.over:
		return nil, p.fail(fmt.Errorf("answered more than %d bytes on stdout", maxResponse), nil)
	}
	resp, err := p.decode(stdout.Bytes())
	if err != nil {
		return nil, p.fail(err, nil)
	}
	cfg := make(probe.DockerConfig, len(resp.Auth))
	for key, a := range resp.Auth {
		cfg[key] = probe.DockerConfigEntry{Username: a.Username, Password: probe.Secret(a.Password)}
	}
	p.red.add(cfg)
	p.store(image, resp, cfg)
	return cfg, nil
}

// fail wraps a run's failure with the provider's name, the stderr tail
// (redacted by shape: a plugin may print a token there) and what to do.
func (p *plugin) fail(err error, stderr *tailBuffer) error {
	msg := fmt.Sprintf("credential provider %q (%s) %v", p.name, p.path, err)
	if stderr != nil {
		if tail := strings.Join(strings.Fields(stderr.String()), " "); tail != "" {
			msg += "; its stderr ends: " + p.red.redact(tail)
		}
	}
	msg += "; the kubelet would log this and pull without the plugin's credentials: fix the plugin, its configuration or the identity it runs as"
	return &probe.SetupError{Err: errors.New(msg)}
}

// request encodes the CredentialProviderRequest in the provider's exec API
// version, with the published type of that version.
func (p *plugin) request(image string) ([]byte, error) {
	tm := metav1.TypeMeta{APIVersion: p.apiVersion, Kind: "CredentialProviderRequest"}
	switch p.apiVersion {
	case credentialproviderv1.SchemeGroupVersion.String():
		return json.Marshal(credentialproviderv1.CredentialProviderRequest{TypeMeta: tm, Image: image})
	case credentialproviderv1beta1.SchemeGroupVersion.String():
		return json.Marshal(credentialproviderv1beta1.CredentialProviderRequest{TypeMeta: tm, Image: image})
	case credentialproviderv1alpha1.SchemeGroupVersion.String():
		return json.Marshal(credentialproviderv1alpha1.CredentialProviderRequest{TypeMeta: tm, Image: image})
	}
	return nil, fmt.Errorf("unknown apiVersion %q", p.apiVersion)
}

// decode checks the answer's apiVersion and kind as the kubelet does, then
// decodes it strictly into the published type of that version. Errors
// never quote the answer: it holds credentials.
func (p *plugin) decode(data []byte) (*credentialproviderv1.CredentialProviderResponse, error) {
	var tm metav1.TypeMeta
	if err := json.Unmarshal(data, &tm); err != nil {
		return nil, fmt.Errorf("answered something that is not a JSON CredentialProviderResponse on stdout (%s)", jsonWhere(err))
	}
	if tm.APIVersion != p.apiVersion {
		return nil, fmt.Errorf("answered apiVersion %q, but the configuration says the plugin speaks %q; make them agree", printable(tm.APIVersion), p.apiVersion)
	}
	if tm.Kind != "CredentialProviderResponse" {
		return nil, fmt.Errorf("answered kind %q, want CredentialProviderResponse", printable(tm.Kind))
	}
	var v any
	switch p.apiVersion {
	case credentialproviderv1.SchemeGroupVersion.String():
		v = &credentialproviderv1.CredentialProviderResponse{}
	case credentialproviderv1beta1.SchemeGroupVersion.String():
		v = &credentialproviderv1beta1.CredentialProviderResponse{}
	default:
		v = &credentialproviderv1alpha1.CredentialProviderResponse{}
	}
	strict, err := sigsjson.UnmarshalStrict(data, v, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	if err != nil || len(strict) > 0 {
		// Not even the field name: the kubelet words it the same way
		// ("error decoding credential provider plugin response").
		return nil, errors.New("answered a CredentialProviderResponse that does not decode (a field of the wrong type, unknown or repeated)")
	}
	// The versions' responses have the same fields: read them as v1's.
	var resp credentialproviderv1.CredentialProviderResponse
	if err := json.Unmarshal(data, &resp); err != nil {
		return nil, errors.New("answered a CredentialProviderResponse that does not decode")
	}
	switch resp.CacheKeyType {
	case credentialproviderv1.ImagePluginCacheKeyType, credentialproviderv1.RegistryPluginCacheKeyType, credentialproviderv1.GlobalPluginCacheKeyType:
	default:
		return nil, fmt.Errorf("answered cacheKeyType %q; it must be Image, Registry or Global (the kubelet drops such an answer)", printable(string(resp.CacheKeyType)))
	}
	return &resp, nil
}

// store caches an answer as the kubelet does: under the image, its
// registry or the global key; for cacheDuration, or defaultCacheDuration
// when the answer has none; never when the duration is zero.
func (p *plugin) store(image string, resp *credentialproviderv1.CredentialProviderResponse, cfg probe.DockerConfig) {
	ttl := p.defaultTTL
	if resp.CacheDuration != nil {
		ttl = resp.CacheDuration.Duration
	}
	if ttl == 0 {
		return
	}
	key := image
	switch resp.CacheKeyType {
	case credentialproviderv1.RegistryPluginCacheKeyType:
		key = registryOf(image)
	case credentialproviderv1.GlobalPluginCacheKeyType:
		key = globalCacheKey
	}
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.cache) >= maxCacheEntries {
		p.purgeLocked(now)
		for len(p.cache) >= maxCacheEntries {
			var oldest string
			for k, e := range p.cache {
				if oldest == "" || e.stored.Before(p.cache[oldest].stored) {
					oldest = k
				}
			}
			delete(p.cache, oldest)
		}
	}
	p.cache[key] = cacheEntry{cfg: cfg, expiresAt: now.Add(ttl), stored: now}
}

// known returns the credentials of every unexpired cache entry.
func (p *plugin) known() []probe.Credential {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []probe.Credential
	for _, e := range p.cache {
		if now.After(e.expiresAt) {
			continue
		}
		for _, a := range e.cfg {
			out = append(out, probe.Credential{Username: a.Username, Password: a.Password})
		}
	}
	return out
}

// registryOf is the kubelet's parseRegistry: the image's first path
// segment, host[:port].
func registryOf(image string) string {
	reg, _, _ := strings.Cut(image, "/")
	return reg
}

// jsonWhere says where a JSON syntax error is, never what the input holds.
func jsonWhere(err error) string {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return fmt.Sprintf("invalid JSON at byte %d", syn.Offset)
	}
	return "not a JSON object with apiVersion and kind"
}

// printable bounds and cleans a short value from a plugin's answer that an
// error may quote (apiVersion, kind, cacheKeyType: never credentials).
func printable(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}

// limitedBuffer keeps at most max bytes and notes that there was more.
// The buffer is a field, not embedded: an embedded bytes.Buffer's ReadFrom
// would let io.Copy (os/exec's) bypass the limit.
type limitedBuffer struct {
	buf  bytes.Buffer
	max  int
	over bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); len(p) > room {
		b.over = true
		if room > 0 {
			b.buf.Write(p[:room])
		}
		return len(p), nil
	}
	return b.buf.Write(p)
}

func (b *limitedBuffer) Bytes() []byte { return b.buf.Bytes() }

// tailBuffer keeps the last max bytes written.
type tailBuffer struct {
	buf []byte
	max int
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.buf = append(b.buf, p...)
	if len(b.buf) > b.max {
		b.buf = append(b.buf[:0], b.buf[len(b.buf)-b.max:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string { return string(b.buf) }
