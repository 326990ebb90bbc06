package testenv

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// ProductSim is a SIMULATION of a registry product — Harbor, Quay,
// Artifactory or Nexus — none of which can run here. It is a reverse proxy
// on its own loopback port in front of a real distribution registry with
// token auth (RegistryAuthToken, plain HTTP), and it behaves as the
// product's own source or documentation says the product does, in the
// parts the exporter reads; everything else goes to the real registry:
//
//   - Harbor (goharbor/harbor): the /v2/ challenge is
//     `Bearer realm="<sim>/service/token",service="harbor-registry"`
//     (src/server/middleware/v2auth/auth.go), the token service is
//     /service/token, and GET /api/v2.0/health answers 200 with
//     {"status", "components": [{"name", "status", "error"}]}
//     (src/controller/health, src/server/v2.0/handler/health.go).
//   - Quay (quay/quay): realm "<sim>/v2/auth", service the registry's host
//     (endpoints/v2/__init__.py), GET /health/instance answers
//     {"data": {"services": {name: bool}}, "status_code"} with 200 or 503
//     (endpoints/web.py, health/healthcheck.py).
//   - Artifactory: every reply carries X-Artifactory-Id and X-JFrog-Version;
//     GET /router/api/v1/system/health answers {"router": {...}, "services":
//     [{"service_id", "node_id", "state", "message"}]} with 200 or 503
//     (JFrog REST APIs, Health Check).
//   - Nexus (sonatype/nexus-public): every reply carries
//     `Server: Nexus/<version> (<edition>)`; GET /service/rest/v1/status
//     answers 200 or 503 with no body, GET /service/rest/v1/status/check
//     needs an authenticated user with nexus:metrics:read (401 without
//     credentials, 403 for a user without the privilege) and answers a map
//     of check name to {"healthy", "message"}.
//
// The token service of every product is the sim's: it forwards logins to
// the registry's real token issuer, unless SetLoginsFail makes it answer
// every login 401 "invalid credentials", as a product whose database is
// down does. Tests that use it say they test against a simulation of
// documented behaviour.
type ProductSim struct {
	Product string // harbor, quay, artifactory, nexus
	Addr    string // 127.0.0.1:PORT: image references naming this host reach the sim
	URL     string // http://127.0.0.1:PORT

	reg *Registry
	srv *http.Server

	mu         sync.Mutex
	components map[string]simComponent
	names      []string // in the order the product lists them
	loginsFail bool
	mode       string
	slow       time.Duration
	// Nexus: the user allowed to read the status checks
	// (nexus:metrics:read); any other credential gets 403.
	metricsUser, metricsPassword string
	reqs                         []SinkRequest
}

type simComponent struct {
	up      bool
	message string
}

// Health reply modes of a ProductSim (SetHealthMode).
const (
	HealthModeNormal    = ""          // the product's documented reply
	HealthModeSlow      = "slow"      // the reply starts after the SetSlow delay
	HealthModeHuge      = "huge"      // a 2 MiB reply in the product's format
	HealthModeMalformed = "malformed" // 200 with a body that is not JSON
	HealthModeHTML      = "html"      // 200 with a login page, as a proxy in front might answer
	HealthModeMany      = "many"      // the documented format with 1000 components, long names, control characters
	HealthModeError     = "error"     // 502 from a proxy in front: the health API does not answer
)

// simProducts holds what differs between the simulated products.
var simProducts = map[string]struct {
	tokenPath  string
	healthPath string
	components []string
}{
	"harbor": {"/service/token", "/api/v2.0/health",
		[]string{"core", "database", "jobservice", "portal", "redis", "registry", "registryctl"}},
	"quay": {"/v2/auth", "/health/instance",
		[]string{"registry_gunicorn", "web_gunicorn", "service_key", "disk_space", "database", "redis", "storage", "auth"}},
	"artifactory": {"/artifactory/api/docker/docker/v2/token", "/router/api/v1/system/health",
		[]string{"router", "jfrt", "jfac", "jfevt", "jffe", "jfmd"}},
	"nexus": {"/v2/token", "/service/rest/v1/status/check",
		[]string{"Available CPUs", "Blob Stores", "DefaultRoleRealm", "File Descriptors", "Lifecycle Phase",
			"Read-Only Detector", "Scheduler", "Thread Deadlock Detector", "Transactions"}},
}

// StartProductSim starts a simulation of product ("harbor", "quay",
// "artifactory", "nexus") in front of reg, which must use token auth over
// plain HTTP, with every component healthy. It stops with the test.
func StartProductSim(t testing.TB, product string, reg *Registry) *ProductSim {
	t.Helper()
	p, ok := simProducts[product]
	if !ok {
		t.Fatalf("testenv: unknown product %q", product)
	}
	if reg.Auth != RegistryAuthToken || reg.Scheme != "http" {
		t.Fatal("testenv: a product simulation needs a plain-HTTP registry with token auth")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: product sim: %v", err)
	}
	s := &ProductSim{Product: product, Addr: ln.Addr().String(), reg: reg,
		components: map[string]simComponent{}, names: p.components, slow: 30 * time.Second}
	s.URL = "http://" + s.Addr
	for _, n := range p.components {
		s.components[n] = simComponent{up: true}
	}
	u, err := url.Parse(reg.URL)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	rp := &httputil.ReverseProxy{
		Rewrite:        func(pr *httputil.ProxyRequest) { pr.SetURL(u); pr.Out.Host = u.Host },
		Transport:      tr,
		ModifyResponse: s.rewriteChallenge,
	}
	s.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.reqs = append(s.reqs, SinkRequest{Method: r.Method, Path: r.URL.RequestURI(), Authorization: r.Header.Get("Authorization")})
		s.mu.Unlock()
		s.productHeaders(w.Header())
		switch {
		case r.URL.Path == p.tokenPath:
			s.token(w, r)
		case r.URL.Path == p.healthPath || (product == "nexus" && r.URL.Path == "/service/rest/v1/status"):
			s.health(w, r)
		default:
			rp.ServeHTTP(w, r)
		}
	})}
	go func() { _ = s.srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = s.srv.Close()
		tr.CloseIdleConnections()
	})
	return s
}

// SetComponent sets a component up or down, with the product's message
// for it; a name the product does not list is added.
func (s *ProductSim) SetComponent(name string, up bool, message string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.components[name]; !ok {
		s.names = append(s.names, name)
	}
	s.components[name] = simComponent{up: up, message: message}
}

// SetLoginsFail makes the token service answer every login 401 "invalid
// credentials" (what a product answers while its database is down), or
// forward logins to the real issuer again.
func (s *ProductSim) SetLoginsFail(fail bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.loginsFail = fail
}

// SetHealthMode chooses how the health API answers (HealthMode*).
func (s *ProductSim) SetHealthMode(mode string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mode = mode
}

// SetSlow sets how long HealthModeSlow waits before answering.
func (s *ProductSim) SetSlow(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.slow = d
}

// SetMetricsUser sets the Nexus account allowed to read the status checks.
func (s *ProductSim) SetMetricsUser(user, password string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.metricsUser, s.metricsPassword = user, password
}

// Ref returns the image reference "127.0.0.1:PORT/repo:tag" through the sim.
func (s *ProductSim) Ref(repo, tag string) string { return s.Addr + "/" + repo + ":" + tag }

// Requests returns every request the sim received, in order.
func (s *ProductSim) Requests() []SinkRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SinkRequest(nil), s.reqs...)
}

// HealthRequests returns the requests to the product's health API.
func (s *ProductSim) HealthRequests() []SinkRequest {
	p := simProducts[s.Product]
	var out []SinkRequest
	for _, r := range s.Requests() {
		path, _, _ := strings.Cut(r.Path, "?")
		if path == p.healthPath || (s.Product == "nexus" && path == "/service/rest/v1/status") {
			out = append(out, r)
		}
	}
	return out
}

func (s *ProductSim) productHeaders(h http.Header) {
	switch s.Product {
	case "artifactory":
		h.Set("X-Artifactory-Id", "5c8a1b2f0d3e4f5a6b7c8d9e0f1a2b3c4d5e6f70")
		h.Set("X-Artifactory-Node-Id", "sim-node-1")
		h.Set("X-JFrog-Version", "Artifactory/7.77.5 77705900")
	case "nexus":
		h.Set("Server", "Nexus/3.68.0-04 (OSS)")
	}
}

var (
	realmRE   = regexp.MustCompile(`realm="[^"]*"`)
	serviceRE = regexp.MustCompile(`service="[^"]*"`)
)

// rewriteChallenge points the registry's challenges at the sim's token
// service, with the product's service name.
func (s *ProductSim) rewriteChallenge(resp *http.Response) error {
	vs := resp.Header.Values("Www-Authenticate")
	if len(vs) == 0 {
		return nil
	}
	p := simProducts[s.Product]
	service := s.reg.Issuer.Service
	switch s.Product {
	case "harbor":
		service = "harbor-registry"
	case "quay":
		service = s.Addr
	}
	resp.Header.Del("Www-Authenticate")
	for _, v := range vs {
		v = realmRE.ReplaceAllString(v, `realm="`+s.URL+p.tokenPath+`"`)
		v = serviceRE.ReplaceAllString(v, `service="`+service+`"`)
		resp.Header.Add("Www-Authenticate", v)
	}
	return nil
}

// token forwards a login to the real issuer with its service name, or
// refuses it while logins fail.
func (s *ProductSim) token(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	fail := s.loginsFail
	s.mu.Unlock()
	if fail {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"invalid credentials"}]}`)
		return
	}
	iss := s.reg.Issuer
	var out *http.Request
	var err error
	switch r.Method {
	case http.MethodGet:
		q := r.URL.Query()
		if q.Get("service") != "" {
			q.Set("service", iss.Service)
		}
		out, err = http.NewRequest(http.MethodGet, iss.URL+"?"+q.Encode(), nil)
	case http.MethodPost:
		if err = r.ParseForm(); err == nil {
			f := r.PostForm
			if f.Get("service") != "" {
				f.Set("service", iss.Service)
			}
			out, err = http.NewRequest(http.MethodPost, iss.URL, strings.NewReader(f.Encode()))
			if out != nil {
				out.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
		}
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if a := r.Header.Get("Authorization"); a != "" {
		out.Header.Set("Authorization", a)
	}
	out.Header.Set("User-Agent", r.UserAgent())
	resp, err := http.DefaultClient.Do(out.WithContext(r.Context()))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

// health answers the product's health API.
func (s *ProductSim) health(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	mode, slow := s.mode, s.slow
	names := append([]string(nil), s.names...)
	comps := make(map[string]simComponent, len(s.components))
	for k, v := range s.components {
		comps[k] = v
	}
	metricsUser, metricsPassword := s.metricsUser, s.metricsPassword
	s.mu.Unlock()

	switch mode {
	case HealthModeSlow:
		select {
		case <-time.After(slow):
		case <-r.Context().Done():
			return
		}
	case HealthModeMalformed:
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status": "healthy", "components": [{"name": "core", "status"`)
		return
	case HealthModeHTML:
		w.Header().Set("Content-Type", "text/html")
		_, _ = io.WriteString(w, "<html><head><title>Sign in</title></head><body>Sign in to continue</body></html>")
		return
	case HealthModeError:
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusBadGateway)
		_, _ = io.WriteString(w, "<html><body>502 Bad Gateway</body></html>")
		return
	case HealthModeMany:
		for i := 0; i < 1000; i++ {
			n := fmt.Sprintf("component-%04d-%s\x00\x1b[31m", i, strings.Repeat("x", 100))
			names = append(names, n)
			comps[n] = simComponent{up: i%2 == 0, message: "synthetic"}
		}
	}

	healthy := true
	for _, c := range comps {
		healthy = healthy && c.up
	}
	status := http.StatusOK
	var body any
	switch s.Product {
	case "harbor":
		type comp struct {
			Name   string `json:"name"`
			Status string `json:"status"`
			Error  string `json:"error,omitempty"`
		}
		sorted := append([]string(nil), names...)
		sort.Strings(sorted)
		cs := []comp{}
		for _, n := range sorted {
			c := comps[n]
			cs = append(cs, comp{Name: n, Status: harborStatus(c.up), Error: c.message})
		}
		body = map[string]any{"status": harborStatus(healthy), "components": cs}
	case "quay":
		services := map[string]bool{}
		for _, n := range names {
			services[n] = comps[n].up
		}
		if !healthy {
			status = http.StatusServiceUnavailable
		}
		body = map[string]any{"data": map[string]any{"services": services}, "status_code": status}
	case "artifactory":
		state := func(up bool) string {
			if up {
				return "HEALTHY"
			}
			return "UNHEALTHY"
		}
		router := comps["router"]
		var services []map[string]string
		for _, n := range names {
			if n == "router" {
				continue
			}
			c := comps[n]
			msg := "OK"
			st := state(c.up)
			if !c.up {
				msg = c.message
			} else if !healthy {
				st, msg = "UNHEALTHY_PEER", "Service is healthy; there is at least one unhealthy service"
			}
			services = append(services, map[string]string{"service_id": n + "@01simnode", "node_id": "sim-node-1", "state": st, "message": msg})
		}
		if !healthy {
			status = http.StatusServiceUnavailable
		}
		body = map[string]any{"router": map[string]string{"node_id": "sim-node-1", "state": state(router.up), "message": "OK"}, "services": services}
	case "nexus":
		if r.URL.Path == "/service/rest/v1/status" {
			if !healthy {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
			return
		}
		user, password, ok := basicAuth(r.Header.Get("Authorization"))
		if !ok {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if metricsUser == "" || user != metricsUser || password != metricsPassword {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		checks := map[string]any{}
		for _, n := range names {
			c := comps[n]
			var msg any
			if c.message != "" {
				msg = c.message
			}
			checks[n] = map[string]any{"healthy": c.up, "message": msg, "error": nil, "details": nil,
				"time": 1700000000000, "duration": 1, "timestamp": "2024-01-01T00:00:00.000Z"}
		}
		body = checks
	}
	b, err := json.Marshal(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if mode == HealthModeHuge {
		// The documented format, padded past any reasonable size with
		// whitespace JSON allows.
		w.WriteHeader(status)
		_, _ = w.Write(b[:len(b)-1])
		_, _ = io.WriteString(w, strings.Repeat(" ", 2<<20))
		_, _ = w.Write(b[len(b)-1:])
		return
	}
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func harborStatus(up bool) string {
	if up {
		return "healthy"
	}
	return "unhealthy"
}

// basicAuth decodes a Basic Authorization header.
func basicAuth(h string) (user, password string, ok bool) {
	enc, found := strings.CutPrefix(h, "Basic ")
	if !found {
		return "", "", false
	}
	b, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		return "", "", false
	}
	user, password, ok = strings.Cut(string(b), ":")
	return user, password, ok
}
