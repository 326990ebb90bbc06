package testenv

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// RegistryAuth selects how a Registry authenticates clients.
type RegistryAuth string

// Registry authentication modes.
const (
	RegistryAuthNone  RegistryAuth = ""      // anonymous pull and push
	RegistryAuthBasic RegistryAuth = "basic" // htpasswd (bcrypt), `auth: htpasswd:`
	RegistryAuthToken RegistryAuth = "token" // bearer JWTs from an in-process TokenIssuer, `auth: token:`
)

// RegistryOptions configures StartRegistry. The zero value is an anonymous
// plain-HTTP registry.
type RegistryOptions struct {
	Auth RegistryAuth
	// Users are the accounts besides the admin: for basic auth they go
	// into the htpasswd file (and may pull and push everything, as
	// htpasswd has no per-repository rights); for token auth into the
	// issuer's table with their grants. The account "" (token auth only)
	// is anonymous access: give it Pull globs to allow anonymous pulls.
	Users map[string]TokenUser
	// TLS serves HTTPS with a fresh self-signed certificate (Registry.Cert).
	TLS bool
	// ProxyRemoteURL makes the registry a pull-through cache of the
	// registry at this URL (distribution's `proxy: {remoteurl: ...}`): it
	// fetches what it is asked for from there and keeps it. Such a
	// registry refuses pushes. Distribution 2.8 asks the remote for a tag
	// on every request for it while the remote answers, and serves what it
	// cached only when the remote does not.
	ProxyRemoteURL string
}

// Registry is a real distribution registry (`docker-registry serve`,
// distribution 2.8) on a free loopback port, with in-memory storage and the
// access log on. Stop and Start simulate an outage (the in-memory content
// is lost: push again after Start).
type Registry struct {
	Addr   string // 127.0.0.1:PORT, what image references use
	URL    string // http(s)://127.0.0.1:PORT
	Scheme string // "http" or "https"
	Auth   RegistryAuth
	// Cert is the self-signed certificate when TLS is on; Cert.CertFile is
	// the ca_file that makes a client trust the registry.
	Cert *SelfSignedCert
	// Issuer is the token issuer when Auth is RegistryAuthToken; it serves
	// HTTPS with Cert when TLS is on.
	Issuer *TokenIssuer
	// AdminUser and AdminPassword may pull and push every repository;
	// Push uses them.
	AdminUser, AdminPassword string

	t    testing.TB
	proc *Process
	dir  string
}

// StartRegistry starts a registry and waits until it answers.
func StartRegistry(t testing.TB, opts RegistryOptions) *Registry {
	t.Helper()
	bin := Bin(t, "docker-registry")
	dir := t.TempDir()
	r := &Registry{Addr: FreeAddr(t), Scheme: "http", Auth: opts.Auth, AdminUser: "admin",
		AdminPassword: "admin-" + randomHex(8), t: t, dir: dir}
	var auth string
	switch opts.Auth {
	case RegistryAuthNone:
	case RegistryAuthBasic:
		htpasswd := filepath.Join(dir, "htpasswd")
		users := map[string]TokenUser{r.AdminUser: {Password: r.AdminPassword}}
		for k, v := range opts.Users {
			if k == "" {
				t.Fatal("testenv: basic auth has no anonymous account")
			}
			users[k] = v
		}
		var lines []string
		for u, v := range users {
			// bcrypt is the only hash distribution accepts.
			out, err := exec.Command(Bin(t, "htpasswd"), "-Bbn", u, v.Password).Output()
			if err != nil {
				t.Fatalf("testenv: htpasswd: %v", err)
			}
			lines = append(lines, strings.TrimSpace(string(out)))
		}
		if err := os.WriteFile(htpasswd, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			t.Fatalf("testenv: write htpasswd: %v", err)
		}
		auth = fmt.Sprintf("auth:\n  htpasswd:\n    realm: imagepull-test\n    path: %s\n", htpasswd)
	case RegistryAuthToken:
		users := map[string]TokenUser{r.AdminUser: {Password: r.AdminPassword, Pull: []string{"**"}, Push: []string{"**"}}}
		for k, v := range opts.Users {
			users[k] = v
		}
		if opts.TLS {
			r.Cert = NewSelfSignedCert(t, dir, time.Time{}, pushAlias)
		}
		r.Issuer = StartTokenIssuer(t, users, r.Cert)
		auth = fmt.Sprintf("auth:\n  token:\n    realm: %s\n    service: %s\n    issuer: %s\n    rootcertbundle: %s\n",
			r.Issuer.URL, r.Issuer.Service, r.Issuer.Issuer, r.Issuer.CertFile)
	default:
		t.Fatalf("testenv: unknown registry auth %q", opts.Auth)
	}
	tlsCfg := ""
	if opts.TLS {
		if r.Cert == nil {
			r.Cert = NewSelfSignedCert(t, dir, time.Time{}, pushAlias)
		}
		r.Scheme = "https"
		tlsCfg = fmt.Sprintf("  tls:\n    certificate: %s\n    key: %s\n", r.Cert.CertFile, r.Cert.KeyFile)
	}
	r.URL = r.Scheme + "://" + r.Addr
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  inmemory: {}
  delete:
    enabled: true
http:
  addr: %s
  secret: imagepull-test-secret
%s%s`, r.Addr, tlsCfg, auth)
	if opts.ProxyRemoteURL != "" {
		cfg += fmt.Sprintf("proxy:\n  remoteurl: %s\n", opts.ProxyRemoteURL)
	}
	cfgFile := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatalf("testenv: write registry config: %v", err)
	}
	r.proc = StartProcess(t, "docker-registry", bin, []string{"serve", cfgFile}, nil, dir)
	r.waitReady()
	return r
}

func (r *Registry) waitReady() {
	r.t.Helper()
	// /v2/ answers 401 under auth: any status below 500 means serving.
	r.proc.WaitHTTP(r.URL+"/v2/", 0, 20*time.Second, r.Client())
}

// Client returns an HTTP client that trusts the registry's certificate, for
// tests that talk to the registry directly.
func (r *Registry) Client() *http.Client {
	tr := &http.Transport{DisableKeepAlives: true}
	if r.Cert != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: r.Cert.Pool}
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// Stop stops the registry process (connections are refused until Start).
func (r *Registry) Stop() { r.proc.Stop() }

// Start restarts a stopped registry on the same address and waits until it
// answers. Storage is in memory: the restarted registry is empty.
func (r *Registry) Start() {
	r.t.Helper()
	r.proc.Start()
	r.waitReady()
}

// Ref returns the image reference "127.0.0.1:PORT/repo:tag".
func (r *Registry) Ref(repo, tag string) string { return r.Addr + "/" + repo + ":" + tag }

// DeleteManifest deletes the manifest repo@digest as the admin, through
// the registry API (storage deletion is enabled): every tag that named it
// is gone, and a manifest HEAD of such a tag is answered 404
// MANIFEST_UNKNOWN, as for a tag deleted from a real registry.
func (r *Registry) DeleteManifest(t testing.TB, repo, digest string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ref, err := name.NewDigest(r.pushHost()+"/"+repo+"@"+digest, name.StrictValidation)
	if err != nil {
		t.Fatalf("testenv: delete %s@%s: %v", repo, digest, err)
	}
	if err := remote.Delete(ref, r.remoteOptions(ctx)...); err != nil {
		t.Fatalf("testenv: delete %s@%s: %v", repo, digest, err)
	}
}

// pushAlias is a host name the registry's certificate also holds. The
// pusher (go-containerregistry) speaks plain HTTP to any 127.0.0.1 address
// whatever the registry serves, so a TLS registry is pushed to under this
// name, which the push transport dials as the registry's address.
const pushAlias = "registry.imagepull.test"

// Push pushes a small random image (one layer of 512 bytes) to repo:tag as
// the admin and returns its manifest digest, the one a manifest HEAD must
// report.
func (r *Registry) Push(t testing.TB, repo, tag string) string {
	t.Helper()
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatalf("testenv: random image: %v", err)
	}
	return r.PushImage(t, repo, tag, img)
}

// PushImage pushes img to repo:tag as the admin and returns its digest.
func (r *Registry) PushImage(t testing.TB, repo, tag string, img v1.Image) string {
	t.Helper()
	ref := r.pushRef(t, repo, tag)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := remote.Write(ref, img, r.remoteOptions(ctx)...); err != nil {
		t.Fatalf("testenv: push %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatalf("testenv: digest: %v", err)
	}
	return d.String()
}

// PushMany pushes one small random image under every "repo:tag" of refs,
// concurrency pushes at a time, and returns its digest (the same for all).
// It prepares many targets for end-to-end tests and benchmarks.
func (r *Registry) PushMany(t testing.TB, refs []string, concurrency int) string {
	t.Helper()
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatalf("testenv: random image: %v", err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatalf("testenv: digest: %v", err)
	}
	if concurrency < 1 {
		concurrency = 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	work := make(chan string)
	errs := make(chan error, len(refs))
	var wg sync.WaitGroup
	for i := 0; i < concurrency; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range work {
				repo, tag, ok := strings.Cut(s, ":")
				if !ok {
					errs <- fmt.Errorf("%q is not repo:tag", s)
					continue
				}
				ref, err := r.pushRefE(repo, tag)
				if err == nil {
					err = remote.Write(ref, img, r.remoteOptions(ctx)...)
				}
				if err != nil {
					errs <- fmt.Errorf("push %s: %w", s, err)
				}
			}
		}()
	}
	for _, s := range refs {
		work <- s
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("testenv: %v", err)
	}
	return d.String()
}

// PushIndex pushes a random image index (a multi-platform image) of n
// images to repo:tag and returns the index digest: the digest containerd
// resolves a multi-platform tag to.
func (r *Registry) PushIndex(t testing.TB, repo, tag string, n int) string {
	t.Helper()
	idx, err := random.Index(256, 1, int64(n))
	if err != nil {
		t.Fatalf("testenv: random index: %v", err)
	}
	ref := r.pushRef(t, repo, tag)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := remote.WriteIndex(ref, idx, r.remoteOptions(ctx)...); err != nil {
		t.Fatalf("testenv: push index %s: %v", ref, err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatalf("testenv: digest: %v", err)
	}
	return d.String()
}

func (r *Registry) pushRef(t testing.TB, repo, tag string) name.Reference {
	t.Helper()
	ref, err := r.pushRefE(repo, tag)
	if err != nil {
		t.Fatalf("testenv: push reference: %v", err)
	}
	return ref
}

func (r *Registry) pushRefE(repo, tag string) (name.Reference, error) {
	return name.ParseReference(r.pushHost()+"/"+repo+":"+tag, name.StrictValidation)
}

// pushHost is the host the admin's client names: the registry's address,
// or pushAlias with its port for a TLS registry.
func (r *Registry) pushHost() string {
	if r.Cert == nil {
		return r.Addr
	}
	_, port, _ := net.SplitHostPort(r.Addr)
	return net.JoinHostPort(pushAlias, port)
}

func (r *Registry) remoteOptions(ctx context.Context) []remote.Option {
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	tr := &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if strings.HasPrefix(addr, pushAlias+":") {
				addr = r.Addr
			}
			return dialer.DialContext(ctx, network, addr)
		},
	}
	if r.Cert != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: r.Cert.Pool}
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithTransport(tr)}
	if r.Auth != RegistryAuthNone {
		opts = append(opts, remote.WithAuth(&authn.Basic{Username: r.AdminUser, Password: r.AdminPassword}))
	}
	return opts
}

// AccessLogEntry is one request from the registry's access log.
type AccessLogEntry struct {
	Method    string
	Path      string // request URI, query included
	Status    int
	UserAgent string
}

// accessLogRE matches distribution's access log (gorilla/handlers combined
// log format): `HOST - USER [DATE] "METHOD URI PROTO" STATUS SIZE ...`.
var accessLogRE = regexp.MustCompile(`\] "([A-Z]+) (\S+) HTTP/[0-9.]+" ([0-9]{3}) \S+ "[^"]*" "([^"]*)"`)

// AccessLog returns every request the registry has logged so far (over all
// restarts), in order.
func (r *Registry) AccessLog() []AccessLogEntry {
	b, err := os.ReadFile(r.proc.Log)
	if err != nil {
		r.t.Fatalf("testenv: read registry log: %v", err)
	}
	var out []AccessLogEntry
	for _, line := range strings.Split(string(b), "\n") {
		m := accessLogRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		var status int
		fmt.Sscanf(m[3], "%d", &status)
		out = append(out, AccessLogEntry{Method: m[1], Path: m[2], Status: status, UserAgent: m[4]})
	}
	return out
}

// AccessLogBy returns the access log entries whose User-Agent starts with
// userAgent (the prober's own requests, apart from pushes and readiness
// checks).
func (r *Registry) AccessLogBy(userAgent string) []AccessLogEntry {
	var out []AccessLogEntry
	for _, e := range r.AccessLog() {
		if strings.HasPrefix(e.UserAgent, userAgent) {
			out = append(out, e)
		}
	}
	return out
}

// ManifestRequests counts manifest requests in the access log by method,
// from every client: the prober must only ever send HEAD, and the pusher
// sends HEAD and PUT, never GET.
func (r *Registry) ManifestRequests() (gets, heads int) {
	for _, e := range r.AccessLog() {
		if !strings.Contains(e.Path, "/manifests/") {
			continue
		}
		switch e.Method {
		case http.MethodGet:
			gets++
		case http.MethodHead:
			heads++
		}
	}
	return gets, heads
}

// WaitAccessLog waits until the access log holds at least n entries: the
// registry writes its log line after the reply, so a client can be faster.
func (r *Registry) WaitAccessLog(n int) []AccessLogEntry {
	r.t.Helper()
	return r.WaitAccessLogFor(func(l []AccessLogEntry) bool { return len(l) >= n })
}

// WaitAccessLogFor waits until ok accepts the access log and returns it.
// Waiting for the entry a test looks for, not for a count, is what holds
// when other requests (readiness checks, pushes) are logged too. After 10 s
// it returns the log as it is, for the caller's assertion to fail on.
func (r *Registry) WaitAccessLogFor(ok func([]AccessLogEntry) bool) []AccessLogEntry {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l := r.AccessLog()
		if ok(l) || time.Now().After(deadline) {
			return l
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return fmt.Sprintf("%x", b)
}
