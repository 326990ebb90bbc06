package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"
)

// ProberOptions configures a Prober.
type ProberOptions struct {
	// UserAgent is sent with every request; empty means "imagepull_exporter".
	UserAgent string
	// Now returns the current time; nil means time.Now. It decides token
	// expiry and when the auth check is due, so tests inject it to move
	// past both without sleeping. Phase durations always use the real clock.
	Now func() time.Time
}

// Prober probes targets. One Prober is shared by every probe of a scheduler
// and is safe for concurrent use. It caches keep-alive transports per module
// and registry, and authentication (the challenge answer and the bearer
// token) per registry, scope and credential identity, so that a warm probe
// sends exactly one request: the manifest HEAD.
//
// Authentication is redone (GET /v2/ ping + token exchange) when
//   - nothing is cached (a cold probe),
//   - the module's AuthCheckInterval has passed since the last check, so
//     that auth stays measured (Result.AuthChecked, Result.AuthOK),
//   - the cached token has expired, or
//   - the previous probe's HEAD was answered 401: the cached token is
//     dropped and that probe reports unauthorized. There is no silent retry
//     with a fresh token within the probe: one probe is one attempt, and a
//     registry that revokes tokens should show up as a failed probe rather
//     than be papered over. The next probe starts from a fresh auth.
type Prober struct {
	opts ProberOptions

	mu         sync.Mutex
	transports map[transportKey]*transportEntry
	auths      map[authKey]authState
	plainHTTP  map[string]time.Time // mirror hosts found to speak plain HTTP, and when (mirror.go)
	lastSweep  time.Time

	// tagsPageSize, when positive, is sent as the n parameter of a tags
	// listing (tags.go); zero leaves the page size to the registry. Tests
	// set it to make a registry paginate.
	tagsPageSize int
}

// authKey identifies cached authentication: the registry origin, the token
// scope, and a hash of the credentials (never the credentials themselves).
type authKey struct {
	origin string
	scope  string
	creds  string
}

// Auth schemes of a cached authState.
const (
	schemeNone   = "none"   // /v2/ answered 200: anonymous access
	schemeBasic  = "basic"  // Basic challenge: credentials on every request
	schemeBearer = "bearer" // Bearer challenge: a token from the realm
)

type authState struct {
	checkedAt time.Time // last ping + token exchange
	staleAt   time.Time // when the next auth check is due
	scheme    string
	cred      Credential // basic: the credential that worked
	token     string     // bearer
	expires   time.Time  // bearer: token expiry minus a safety margin
}

// Cache housekeeping: entries unused this long are dropped, checked at most
// once per sweepEvery.
const (
	sweepEvery = 10 * time.Minute
	unusedTTL  = time.Hour
)

// NewProber returns a Prober with empty caches.
func NewProber(opts ProberOptions) *Prober {
	if opts.UserAgent == "" {
		opts.UserAgent = "imagepull_exporter"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Prober{
		opts:       opts,
		transports: make(map[transportKey]*transportEntry),
		auths:      make(map[authKey]authState),
		plainHTTP:  make(map[string]time.Time),
	}
}

// Close closes the idle connections of every cached transport and empties
// the caches; the Prober stays usable (the next probes are cold).
func (p *Prober) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, e := range p.transports {
		e.rt.CloseIdleConnections()
		delete(p.transports, k)
	}
	clear(p.auths)
	clear(p.plainHTTP)
}

// sweep drops cache entries nobody used for a long time (targets removed by
// a reload, tokens of repositories no longer probed).
func (p *Prober) sweep(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if now.Sub(p.lastSweep) < sweepEvery {
		return
	}
	p.lastSweep = now
	for k, e := range p.transports {
		if now.Sub(e.lastUsed) > unusedTTL {
			e.rt.CloseIdleConnections()
			delete(p.transports, k)
		}
	}
	for k, s := range p.auths {
		if now.Sub(s.staleAt) > unusedTTL {
			delete(p.auths, k)
		}
	}
	for host, t := range p.plainHTTP {
		if time.Since(t) >= plainHTTPMemory {
			delete(p.plainHTTP, host)
		}
	}
}

// manifestAccept is the Accept header of the manifest HEAD: exactly what
// containerd's resolver sends (remotes/docker/resolver.go), so that the
// registry picks the same manifest (an index or list when there is one) and
// Docker-Content-Digest is the digest containerd, and so the kubelet,
// resolves the tag to.
var manifestAccept = strings.Join([]string{
	string(types.DockerManifestSchema2),
	string(types.DockerManifestList),
	string(types.OCIManifestSchema1),
	string(types.OCIImageIndex),
	"*/*",
}, ", ")

// probeRun is the state of one Probe or ListTags call.
type probeRun struct {
	p      *Prober
	t      Target
	m      Module
	res    *Result
	client *http.Client
	origin string
	trace  *phaseTrace
	rate   rateLimitHeaders
	// wallStart is when the run started on the real clock (PhaseTotal).
	wallStart time.Time
	// red knows every secret of this run (the credentials tried, the
	// tokens obtained) and redacts error texts and recorded exchanges.
	red *Redactor
	// dropAuth is set when the HEAD was answered 401.
	dropAuth bool
	// unbound is set when the module's credentials were withheld because
	// they are not bound to the registry (binding.go): the probe ran
	// anonymously, and an auth failure says why.
	unbound error
	// anonymous is set when the run had no credential to present (none
	// configured, withheld by the binding, or a keychain with nothing for
	// the registry): an auth refusal then means ReasonNoCredentials.
	anonymous bool
	// tokenRevoked is set when the registry rejected a cached token: a
	// token (or key rotation) problem, not a request for credentials.
	tokenRevoked bool
}

// NoCredentialsHint is appended to the error of a ReasonNoCredentials
// result: what the exporter's owner can do about it.
const NoCredentialsHint = "no credentials for this registry: add a module, or enable pull secrets"

// Probe probes one target once: it never retries, and every network step is
// bounded by ctx and the module's Timeout. The Result says how it went.
func (p *Prober) Probe(ctx context.Context, t Target) Result {
	run := p.newRun(t)
	ctx, cancel := context.WithTimeout(ctx, run.m.Timeout)
	defer cancel()
	run.finish(run.probe(ctx, run.res.Start))
	return *run.res
}

// newRun starts the run of one call on t: the module with its defaults
// filled in, and an empty Result with every phase at zero.
func (p *Prober) newRun(t Target) *probeRun {
	now := p.opts.Now()
	res := &Result{Ref: t.Ref, Start: now, Phases: make(map[Phase]time.Duration, len(Phases))}
	for _, ph := range Phases {
		res.Phases[ph] = 0
	}
	m := t.Module
	if m.Timeout <= 0 {
		m.Timeout = DefaultTimeout
	}
	if m.Interval <= 0 {
		m.Interval = DefaultInterval
	}
	if m.AuthCheckInterval <= 0 {
		m.AuthCheckInterval = DefaultAuthCheckInterval
	}
	return &probeRun{p: p, t: t, m: m, res: res, trace: &phaseTrace{}, red: NewRedactor(), wallStart: time.Now()}
}

// finish fills the Result from the run's trace and headers and from err,
// the run's outcome, whose text is redacted.
func (r *probeRun) finish(err error) {
	res := r.res
	resolve, connect, tlsTime, _ := r.trace.snapshot()
	res.Phases[PhaseResolve] = resolve
	res.Phases[PhaseConnect] = connect
	res.Phases[PhaseTLS] = tlsTime
	res.Phases[PhaseTotal] = time.Since(r.wallStart)
	res.RateLimit = r.rate.rl
	res.MalformedHeaderNames = r.rate.malformed
	res.MalformedHeaders = len(r.rate.malformed)
	if err != nil {
		var pe *probeError
		if !errors.As(err, &pe) {
			pe = &probeError{reason: ReasonProtocol, msg: err.Error()}
		}
		res.Success = false
		res.Reason = pe.reason
		res.Error = r.red.Redact(pe.msg)
		if res.Reason == ReasonUnauthorized || res.Reason == ReasonForbidden {
			if r.unbound != nil {
				res.Error += " (probed anonymously: " + r.unbound.Error() + ")"
			}
			if r.anonymous && !r.tokenRevoked {
				// The registry asked for credentials and the probe had
				// none: the registry is up, and whether the pods can
				// pull the image with theirs is unknown. Never an
				// auth failure, never a cause (Reason.Inconclusive).
				res.Reason = ReasonNoCredentials
				res.Error += " (" + NoCredentialsHint + ")"
			}
		}
		if res.Reason != ReasonRateLimited {
			res.RetryAfter = 0
		}
	} else {
		res.Success = true
		res.Reason = ReasonNone
		res.RetryAfter = 0
	}
	r.p.sweep(res.Start)
}

func (r *probeRun) probe(ctx context.Context, now time.Time) error {
	ref := r.t.Ref
	if ref.Registry == "" || ref.Repository == "" || ref.Identifier() == "" {
		return failf(ReasonProtocol, "invalid target: incomplete image reference %q (use ParseReference)", ref.String())
	}
	creds, err := r.connect(ctx, now)
	if err != nil {
		return err
	}
	key := r.authKey(creds)
	st, warm := r.cachedAuth(key, now)
	if !warm {
		r.res.AuthChecked = true
		st, err = r.authenticate(ctx, key.scope, creds, now)
		if err != nil {
			r.forgetAuth(key)
			return err
		}
		r.res.AuthOK = true
		r.storeAuth(key, st, now)
	}

	err = r.headManifest(ctx, st, warm)
	if r.dropAuth {
		// A 401: the cached answer does not work (a revoked or expired
		// token, a changed password, a token without the grant): forget
		// it so that the next probe authenticates afresh.
		r.forgetAuth(key)
	}
	return err
}

// connect resolves the credentials of the run and makes its HTTP client on
// the cached transport of the module and origin.
func (r *probeRun) connect(ctx context.Context, now time.Time) ([]Credential, error) {
	kc := r.t.Keychain
	if kc == nil {
		var err error
		if kc, err = ModuleKeychain(r.m); err != nil {
			return nil, failf(ReasonConfig, "module credentials: %v", err)
		}
		// The module's own keychain reads only local files (password_file,
		// docker_config) or runs a local plugin: when it fails, nothing
		// was asked of the registry, so the failure is the exporter's
		// setup (config), never the registry's unauthorized.
		r.unbound = unboundIn(r.m, r.t.ModuleName, r.credentialRef().Registry)
		creds, err := ResolveKeychain(ctx, kc, r.credentialRef())
		if err != nil {
			var se *SetupError
			if errors.As(err, &se) {
				return nil, failf(ReasonConfig, "module credentials: %v", err)
			}
			return nil, failf(ReasonConfig, "module credentials: %v; fix the file or the module's auth: settings", err)
		}
		return r.dial(creds, now)
	}
	creds, err := ResolveKeychain(ctx, kc, r.credentialRef())
	if err != nil {
		var se *SetupError
		if errors.As(err, &se) {
			// A credential provider plugin that failed (pull secrets
			// are followed by the node's plugins): the exporter's setup.
			return nil, failf(ReasonConfig, "credentials: %v", err)
		}
		r.res.AuthChecked = true
		return nil, failf(ReasonUnauthorized, "credentials: %v", err)
	}
	return r.dial(creds, now)
}

// dial makes the run's HTTP client on the cached transport of the module
// and origin, for the credentials resolved.
func (r *probeRun) dial(creds []Credential, now time.Time) ([]Credential, error) {
	r.red.AddCredentials(creds...)
	r.anonymous = !slices.ContainsFunc(creds, func(c Credential) bool { return !c.Anonymous() })

	scheme := "https"
	if r.m.PlainHTTP {
		scheme = "http"
	}
	apiHost := r.apiHost() // the registry's API host, or the mirror's (mirror.go)
	r.origin = scheme + "://" + apiHost
	rt, err := r.p.transport(r.t.ModuleName, r.origin, r.m, now)
	if err != nil {
		// Only a local CA bundle can fail here (unreadable, not PEM):
		// the exporter's setup, not the registry's TLS.
		return nil, failf(ReasonConfig, "%v; fix the module's tls.ca_file", err)
	}
	r.client = newClient(r.endpointTransport(&recorder{base: rt, run: r, apiHost: apiHost}))

	return creds, nil
}

// authKey is the cache key of the run's authentication: pull scope on the
// repository as the host the run talks to names it.
func (r *probeRun) authKey(creds []Credential) authKey {
	return authKey{origin: r.origin + r.apiRoot(), scope: "repository:" + r.repository() + ":pull", creds: credentialsID(creds)}
}

// cachedAuth returns the cached authentication for key and true when there
// is one that is not due for a check: not stale, not from the future (a
// clock set back), and for a bearer token not expired. Its token is added
// to the run's redactor.
func (r *probeRun) cachedAuth(key authKey, now time.Time) (authState, bool) {
	r.p.mu.Lock()
	st, cached := r.p.auths[key]
	r.p.mu.Unlock()
	if !cached || !now.Before(st.staleAt) || now.Before(st.checkedAt) ||
		(st.scheme == schemeBearer && !now.Before(st.expires)) {
		return authState{}, false
	}
	r.red.Add(st.token)
	return st, true
}

// storeAuth caches a fresh authentication until the module's next auth
// check is due.
func (r *probeRun) storeAuth(key authKey, st authState, now time.Time) {
	st.checkedAt = now
	st.staleAt = now.Add(r.m.AuthCheckInterval)
	r.p.mu.Lock()
	r.p.auths[key] = st
	r.p.mu.Unlock()
}

// forgetAuth drops the cached authentication for key.
func (r *probeRun) forgetAuth(key authKey) {
	r.p.mu.Lock()
	delete(r.p.auths, key)
	r.p.mu.Unlock()
}

// do sends one request of a probe through the recording client, with the
// phase trace and the request kind in its context.
func (r *probeRun) do(ctx context.Context, kind RequestKind, req *http.Request) (*http.Response, error) {
	ctx = httptrace.WithClientTrace(withKind(ctx, kind), r.trace.clientTrace())
	req = req.WithContext(ctx)
	req.Header.Set("User-Agent", r.p.opts.UserAgent)
	return r.client.Do(req)
}

// transportFailure turns an exchange error into a probeError naming the
// step and the redacted URL.
func (r *probeRun) transportFailure(ctx context.Context, step string, req *http.Request, err error) *probeError {
	// No TLS expiry from a failed handshake: a certificate that did not
	// verify may be anyone's (an intercepting proxy's), and exporting its
	// NotAfter as the registry's would be a lie; the tls reason and the
	// error text say what failed.
	_, _, _, tlsFailed := r.trace.snapshot()
	reason := classifyTransportError(ctx, err, tlsFailed)
	if isPolicyError(err) {
		reason = ReasonProtocol // the registry sent us where credentials policy forbids (transport.go)
	}
	return failf(reason, "%s %s %s: %s", step, req.Method, redactURL(req.URL), describeTransportError(err))
}

// statusFailure describes a reply with an unexpected status; body is the
// (bounded) error body for GETs, nil for a HEAD.
func (r *probeRun) statusFailure(step string, req *http.Request, resp *http.Response, body []byte, hint string) *probeError {
	reason := statusReason(resp.StatusCode)
	code, summary := errorBody(body)
	if cr := codeReason(code); cr != ReasonNone && (reason == ReasonProtocol || reason == ReasonUnauthorized && cr == ReasonForbidden) {
		reason = cr
	}
	msg := fmt.Sprintf("%s %s %s: %s", step, req.Method, redactURL(req.URL), resp.Status)
	if summary != "" {
		msg += ": " + summary
	}
	if hint != "" {
		msg += " (" + hint + ")"
	}
	if reason == ReasonRateLimited && r.res.RetryAfter > 0 {
		msg += fmt.Sprintf(" (retry after %s)", r.res.RetryAfter)
	}
	return &probeError{reason: reason, msg: msg}
}

// observeRetryAfter keeps Retry-After of a 429 reply.
func (r *probeRun) observeRetryAfter(h http.Header) {
	v := h.Get("Retry-After")
	if v == "" {
		return
	}
	d, ok := parseRetryAfter(v, r.p.opts.Now())
	if !ok {
		r.rate.malformed = append(r.rate.malformed, HeaderRetryAfter)
		return
	}
	r.res.RetryAfter = d
}

// readBody reads at most max bytes of a body and closes it; reading to the
// end lets the connection be reused.
func readBody(resp *http.Response, max int64) ([]byte, error) {
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("reply body larger than %d bytes", max)
	}
	return b, nil
}

// authenticate pings /v2/, answers the challenge and returns what the
// following HEADs present. With several credentials each is tried in order
// until one is accepted, as the kubelet tries every matching pull secret.
func (r *probeRun) authenticate(ctx context.Context, scope string, creds []Credential, now time.Time) (authState, error) {
	ch, err := r.ping(ctx)
	if err != nil || ch == nil {
		return authState{scheme: schemeNone}, err
	}
	return r.answer(ctx, *ch, scope, creds, now)
}

// ping sends GET /v2/ and returns the challenge to answer, or nil when the
// registry allows anonymous access.
func (r *probeRun) ping(ctx context.Context) (*Challenge, error) {
	start := time.Now()
	req, err := http.NewRequest(http.MethodGet, r.origin+r.apiRoot()+"/", nil)
	if err != nil {
		return nil, failf(ReasonProtocol, "ping: %v", err)
	}
	resp, err := r.do(ctx, KindPing, req)
	if err != nil {
		r.res.Phases[PhasePing] += time.Since(start)
		return nil, r.transportFailure(ctx, "ping", req, err)
	}
	body, berr := readBody(resp, maxErrorBody)
	r.res.Phases[PhasePing] += time.Since(start)
	if berr != nil && ctx.Err() != nil {
		return nil, r.transportFailure(ctx, "ping", req, berr)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return nil, nil
	case http.StatusUnauthorized:
	case http.StatusNotFound:
		return nil, failf(ReasonProtocol, "ping GET %s: %s (no registry API v2 at this address)", redactURL(req.URL), resp.Status)
	default:
		return nil, r.statusFailure("ping", req, resp, body, "")
	}
	cs, err := ParseChallenges(resp.Header.Values("WWW-Authenticate"))
	if err != nil {
		return nil, failf(ReasonProtocol, "ping GET %s: 401 with %v", redactURL(req.URL), err)
	}
	for _, c := range cs {
		r.recognize(recognizeChallenge(c, r.apiHost()))
	}
	ch, err := pickChallenge(cs)
	if err != nil {
		return nil, failf(ReasonProtocol, "ping GET %s: 401 with %v", redactURL(req.URL), err)
	}
	return &ch, nil
}

// answer answers a challenge of the registry with creds for scope, trying
// each credential in order until one is accepted.
func (r *probeRun) answer(ctx context.Context, ch Challenge, scope string, creds []Credential, now time.Time) (authState, error) {
	authStart := time.Now()
	defer func() { r.res.Phases[PhaseAuth] += time.Since(authStart) }()
	switch ch.Scheme {
	case schemeBasic:
		if len(creds) == 0 {
			// Like containerd, present nothing and let the HEAD decide:
			// some registries challenge /v2/ yet serve public
			// repositories anonymously.
			return authState{scheme: schemeBasic}, nil
		}
		var last error
		for _, c := range creds {
			err := r.checkBasic(ctx, c)
			if err == nil {
				return authState{scheme: schemeBasic, cred: c}, nil
			}
			last = err
			if !rejected(err) {
				return authState{}, err
			}
		}
		return authState{}, triedAll(len(creds), last)
	default: // bearer
		try := creds
		if len(try) == 0 {
			try = []Credential{{}}
		}
		var last error
		for _, c := range try {
			tok, expires, err := r.fetchToken(ctx, ch, scope, c, now)
			if err == nil {
				return authState{scheme: schemeBearer, cred: c, token: tok, expires: expires}, nil
			}
			last = err
			if !rejected(err) {
				return authState{}, err
			}
		}
		return authState{}, triedAll(len(try), last)
	}
}

// rejected reports whether an auth failure means "these credentials are not
// accepted", after which the next credential is tried.
func rejected(err error) bool {
	var pe *probeError
	return errors.As(err, &pe) && (pe.reason == ReasonUnauthorized || pe.reason == ReasonForbidden)
}

func triedAll(n int, last error) error {
	if n <= 1 {
		return last
	}
	var pe *probeError
	if errors.As(last, &pe) {
		return &probeError{reason: pe.reason, msg: fmt.Sprintf("all %d credentials were rejected; last: %s", n, pe.msg)}
	}
	return last
}

// checkBasic verifies a credential against a Basic challenge the way
// `docker login` does: GET /v2/ with the credential.
func (r *probeRun) checkBasic(ctx context.Context, c Credential) error {
	req, err := http.NewRequest(http.MethodGet, r.origin+r.apiRoot()+"/", nil)
	if err != nil {
		return failf(ReasonProtocol, "basic auth check: %v", err)
	}
	req.SetBasicAuth(c.Username, basicSecret(c))
	resp, err := r.do(ctx, KindPing, req)
	if err != nil {
		return r.transportFailure(ctx, "basic auth check", req, err)
	}
	body, _ := readBody(resp, maxErrorBody)
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	hint := ""
	if resp.StatusCode == http.StatusUnauthorized {
		hint = "credentials from " + c.Source + " rejected"
	}
	return r.statusFailure("basic auth check", req, resp, body, hint)
}

// authorize presents what the auth answer says on a request to the
// registry: the bearer token, or the Basic credential; nothing when
// anonymous.
func (st authState) authorize(req *http.Request) {
	switch st.scheme {
	case schemeBearer:
		req.Header.Set("Authorization", "Bearer "+st.token)
	case schemeBasic:
		if !st.cred.Anonymous() {
			req.SetBasicAuth(st.cred.Username, basicSecret(st.cred))
		}
	}
}

// basicSecret is what goes into Basic auth: the password, or the identity
// token when that is all there is.
func basicSecret(c Credential) string {
	if c.Password == "" && c.IdentityToken != "" {
		return string(c.IdentityToken)
	}
	return string(c.Password)
}

// headManifest sends the one request a warm probe consists of. A HEAD has
// no body, so the reason comes from the status and the challenge alone.
func (r *probeRun) headManifest(ctx context.Context, st authState, warm bool) error {
	start := time.Now()
	defer func() { r.res.Phases[PhaseManifest] += time.Since(start) }()
	ref := r.t.Ref
	req, err := http.NewRequest(http.MethodHead, r.manifestURL(), nil)
	if err != nil {
		return failf(ReasonProtocol, "manifest HEAD: %v", err)
	}
	req.Header.Set("Accept", manifestAccept)
	st.authorize(req)
	resp, err := r.do(ctx, KindManifestHead, req)
	if err != nil {
		return r.transportFailure(ctx, "manifest", req, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
	resp.Body.Close()

	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized:
		return r.headUnauthorized(req, resp, st, warm)
	case http.StatusNotFound:
		return r.statusFailure("manifest", req, resp, nil, "tag, digest or repository not found")
	default:
		return r.statusFailure("manifest", req, resp, nil, "")
	}
	dg := resp.Header.Get("Docker-Content-Digest")
	if dg == "" {
		return failf(ReasonProtocol, "manifest HEAD %s: %s without a Docker-Content-Digest header", redactURL(req.URL), resp.Status)
	}
	if err := validateDigest(dg); err != nil {
		return failf(ReasonProtocol, "manifest HEAD %s: Docker-Content-Digest: %v", redactURL(req.URL), err)
	}
	if ref.Digest != "" && dg != ref.Digest {
		return failf(ReasonProtocol, "manifest HEAD %s: registry answered digest %s for a reference pinned to %s", redactURL(req.URL), dg, ref.Digest)
	}
	r.res.Digest = dg
	r.res.MediaType = printable(resp.Header.Get("Content-Type"), 200)
	return nil
}

// headUnauthorized explains a 401 on the manifest HEAD.
//
// Docker Hub answers 401 with error="insufficient_scope" both for a
// repository that does not exist and for a private repository the
// credentials (or anonymous access) have no rights to: its token endpoint
// issues a token either way, without the pull grant, and the registry then
// refuses the HEAD. Nothing in the reply tells the two apart, and with
// anonymous or unprivileged credentials nothing else can either (tags/list
// and the catalog are refused the same way). So the probe reports
// ReasonForbidden with an error text that says "does not exist or is
// private", and does not pretend to know which. Distribution's token auth
// does the same for a token without the grant.
func (r *probeRun) headUnauthorized(req *http.Request, resp *http.Response, st authState, warm bool) error {
	r.dropAuth = true
	var ch Challenge
	if cs, err := ParseChallenges(resp.Header.Values("WWW-Authenticate")); err == nil {
		for _, c := range cs {
			if c.Scheme == schemeBearer {
				ch = c
				break
			}
		}
	}
	if ch.Error() == "insufficient_scope" && r.anonymous {
		// finish turns this into no_credentials with its hint.
		return failf(ReasonForbidden, "manifest HEAD %s: 401 insufficient_scope: repository %s does not exist or is private (the registry does not say which)",
			redactURL(req.URL), r.t.Ref.Repository)
	}
	if ch.Error() == "insufficient_scope" {
		return failf(ReasonForbidden, "manifest HEAD %s: 401 insufficient_scope: repository %s does not exist or is private (the registry does not say which; with credentials that can pull it, check they are the ones used)",
			redactURL(req.URL), r.t.Ref.Repository)
	}
	msg := fmt.Sprintf("manifest HEAD %s: %s", redactURL(req.URL), resp.Status)
	switch {
	case st.scheme == schemeBearer && warm:
		r.tokenRevoked = true
		msg += ": the cached token was rejected; it is dropped and the next probe authenticates afresh"
	case st.scheme == schemeBearer:
		msg += ": the registry rejected the token its token endpoint just issued"
	case st.scheme == schemeBasic && st.cred.Anonymous():
		msg += ": the registry requires credentials and none are configured"
	case st.scheme == schemeBasic:
		msg += ": credentials from " + st.cred.Source + " rejected"
	default:
		msg += ": /v2/ allowed anonymous access but the manifest needs credentials"
	}
	return &probeError{reason: ReasonUnauthorized, msg: msg}
}
