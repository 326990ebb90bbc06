package testenv

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TokenUser is one account of a TokenIssuer: its password and the
// repositories (path.Match globs, "*" matches one path segment, "**" every
// repository) it may pull and push.
type TokenUser struct {
	Password string
	Pull     []string
	Push     []string
}

// TokenIssuer is a bearer token server in the style of Docker Hub's
// auth.docker.io, served in-process on loopback, whose JWTs a real
// distribution registry verifies (registry config `auth: token:`, see
// Registry). It answers
//
//   - GET  /token?service=S&scope=repository:NAME:ACTIONS (Basic auth or
//     anonymous), Docker's token protocol;
//   - POST /token with the OAuth2 form (grant_type=password or
//     refresh_token), unless RejectPOST is set (then 404, as GCR does).
//
// A wrong password is 401 {"details":"incorrect username or password"}.
// A scope the account has no grant for yields a token without that access,
// as Docker Hub does; the registry then answers 401 insufficient_scope.
// Anonymous requests use the account "" when the table has one, else 401.
type TokenIssuer struct {
	URL      string // the realm: http(s)://localhost:PORT/token
	Service  string // the audience the registry expects
	Issuer   string // the iss claim the registry expects
	CertFile string // PEM certificate of the signing key, the registry's rootcertbundle

	srv  *httptest.Server
	key  *rsa.PrivateKey
	cert []byte // DER

	mu         sync.Mutex
	users      map[string]TokenUser
	expiresIn  int
	rejectPOST bool
	gets, post int
	log        []AccessLogEntry
}

// StartTokenIssuer starts a token issuer with the given accounts, over
// HTTPS with cert when cert is not nil (clients refuse a plain-HTTP realm for
// an HTTPS registry), else over plain HTTP. It is closed by t.Cleanup.
func StartTokenIssuer(t testing.TB, users map[string]TokenUser, cert *SelfSignedCert) *TokenIssuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("testenv: token issuer key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "imagepull_exporter test token issuer"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("testenv: token issuer certificate: %v", err)
	}
	ti := &TokenIssuer{Service: "imagepull-test-registry", Issuer: "imagepull-test-issuer",
		CertFile: filepath.Join(t.TempDir(), "token-issuer.crt"), key: key, cert: der,
		users: make(map[string]TokenUser), expiresIn: 300}
	for k, v := range users {
		ti.users[k] = v
	}
	writePEM(t, ti.CertFile, "CERTIFICATE", der)
	ti.srv = httptest.NewUnstartedServer(http.HandlerFunc(ti.logged))
	if cert != nil {
		kp, err := tls.LoadX509KeyPair(cert.CertFile, cert.KeyFile)
		if err != nil {
			t.Fatalf("testenv: token issuer TLS: %v", err)
		}
		ti.srv.TLS = &tls.Config{Certificates: []tls.Certificate{kp}}
		ti.srv.StartTLS()
	} else {
		ti.srv.Start()
	}
	// The realm names "localhost", not 127.0.0.1: go-containerregistry
	// (the pusher) refuses IP-literal realms in private ranges, an SSRF
	// guard, but accepts a host name.
	ti.URL = strings.Replace(ti.srv.URL, "127.0.0.1", "localhost", 1) + "/token"
	t.Cleanup(ti.srv.Close)
	return ti
}

// SetUser adds or replaces an account (e.g. to rotate a password).
func (ti *TokenIssuer) SetUser(name string, u TokenUser) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	ti.users[name] = u
}

// SetExpiresIn sets the expires_in of issued tokens, in seconds; 0 omits it
// from the reply. The JWT itself always lives an hour, so that the
// registry keeps accepting a token the client still uses.
func (ti *TokenIssuer) SetExpiresIn(seconds int) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	ti.expiresIn = seconds
}

// SetRejectPOST makes the OAuth2 POST answer 404, like token servers that
// only speak the GET protocol; clients must fall back to GET.
func (ti *TokenIssuer) SetRejectPOST(reject bool) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	ti.rejectPOST = reject
}

// Requests returns how many GET and POST token requests were served.
func (ti *TokenIssuer) Requests() (gets, posts int) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	return ti.gets, ti.post
}

// AccessLog returns every request the issuer answered, in order, as the
// registry's access log has them: the token requests a probe sent, with
// their status codes, for tests that hold the exporter's request counters
// to what really happened.
func (ti *TokenIssuer) AccessLog() []AccessLogEntry {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	return append([]AccessLogEntry(nil), ti.log...)
}

// AccessLogBy returns the access log entries whose User-Agent starts with
// userAgent.
func (ti *TokenIssuer) AccessLogBy(userAgent string) []AccessLogEntry {
	var out []AccessLogEntry
	for _, e := range ti.AccessLog() {
		if strings.HasPrefix(e.UserAgent, userAgent) {
			out = append(out, e)
		}
	}
	return out
}

// logged serves r and logs it when the status is decided, before any byte
// of the reply leaves: a client that has its answer finds its entry.
func (ti *TokenIssuer) logged(w http.ResponseWriter, r *http.Request) {
	lw := &loggingWriter{ResponseWriter: w, log: func(status int) {
		ti.mu.Lock()
		defer ti.mu.Unlock()
		ti.log = append(ti.log, AccessLogEntry{Method: r.Method, Path: r.URL.RequestURI(), Status: status, UserAgent: r.UserAgent()})
	}}
	ti.serve(lw, r)
	if !lw.logged {
		lw.WriteHeader(http.StatusOK) // net/http's implicit 200
	}
}

// loggingWriter calls log once, with the status, when the handler
// writes the header (explicitly or by its first Write).
type loggingWriter struct {
	http.ResponseWriter
	log    func(status int)
	logged bool
}

func (w *loggingWriter) WriteHeader(status int) {
	if !w.logged {
		w.logged = true
		w.log(status)
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *loggingWriter) Write(b []byte) (int, error) {
	if !w.logged {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

func (ti *TokenIssuer) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/token" {
		http.NotFound(w, r)
		return
	}
	ti.mu.Lock()
	var (
		account, password string
		scopes            []string
		service           string
		hasCreds          bool
	)
	switch r.Method {
	case http.MethodGet:
		ti.gets++
		account, password, hasCreds = r.BasicAuth()
		scopes = r.URL.Query()["scope"]
		service = r.URL.Query().Get("service")
	case http.MethodPost:
		ti.post++
		if ti.rejectPOST {
			ti.mu.Unlock()
			http.NotFound(w, r)
			return
		}
		if err := r.ParseForm(); err != nil {
			ti.mu.Unlock()
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request"})
			return
		}
		switch r.PostForm.Get("grant_type") {
		case "password":
			account, password, hasCreds = r.PostForm.Get("username"), r.PostForm.Get("password"), true
		case "refresh_token":
			// The refresh token of this issuer is "<user>:<password>".
			account, password, hasCreds = strings.Cut(r.PostForm.Get("refresh_token"), ":")
		default:
			ti.mu.Unlock()
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unsupported_grant_type"})
			return
		}
		scopes = strings.Fields(r.PostForm.Get("scope"))
		service = r.PostForm.Get("service")
	default:
		ti.mu.Unlock()
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	u, known := ti.users[account]
	expiresIn := ti.expiresIn
	ti.mu.Unlock()

	if !known || (hasCreds && u.Password != password) || (!hasCreds && account != "") {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"details": "incorrect username or password"})
		return
	}
	if service != "" && service != ti.Service {
		writeJSON(w, http.StatusBadRequest, map[string]string{"details": "unknown service"})
		return
	}
	var access []map[string]any
	for _, sc := range scopes {
		// repository:NAME:ACTIONS; NAME may hold ':' only with a port,
		// which repository names cannot, so the last ':' splits.
		typ, rest, ok := strings.Cut(sc, ":")
		i := strings.LastIndexByte(rest, ':')
		if !ok || typ != "repository" || i < 0 {
			continue
		}
		name, actions := rest[:i], strings.Split(rest[i+1:], ",")
		var granted []string
		for _, a := range actions {
			if (a == "pull" && matchAny(u.Pull, name)) || (a == "push" && matchAny(u.Push, name)) {
				granted = append(granted, a)
			}
		}
		if len(granted) > 0 {
			access = append(access, map[string]any{"type": "repository", "name": name, "actions": granted})
		}
	}
	tok, err := ti.sign(account, access)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"details": err.Error()})
		return
	}
	reply := map[string]any{"token": tok, "access_token": tok, "issued_at": time.Now().UTC().Format(time.RFC3339)}
	if expiresIn > 0 {
		reply["expires_in"] = expiresIn
	}
	writeJSON(w, http.StatusOK, reply)
}

func matchAny(globs []string, name string) bool {
	for _, g := range globs {
		if g == "**" {
			return true
		}
		if ok, _ := path.Match(g, name); ok {
			return true
		}
	}
	return false
}

// sign makes an RS256 JWT with the signing certificate in x5c, which
// distribution 2.8 verifies against rootcertbundle.
func (ti *TokenIssuer) sign(subject string, access []map[string]any) (string, error) {
	if access == nil {
		access = []map[string]any{}
	}
	now := time.Now()
	header := map[string]any{"typ": "JWT", "alg": "RS256", "x5c": []string{base64.StdEncoding.EncodeToString(ti.cert)}}
	jti := make([]byte, 12)
	_, _ = rand.Read(jti)
	claims := map[string]any{
		"iss": ti.Issuer, "sub": subject, "aud": ti.Service,
		"iat": now.Unix(), "nbf": now.Add(-time.Minute).Unix(), "exp": now.Add(time.Hour).Unix(),
		"jti": fmt.Sprintf("%x", jti), "access": access,
	}
	hb, err := json.Marshal(header)
	if err != nil {
		return "", err
	}
	cb, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	signing := base64.RawURLEncoding.EncodeToString(hb) + "." + base64.RawURLEncoding.EncodeToString(cb)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, ti.key, crypto.SHA256, sum[:])
	if err != nil {
		return "", err
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
