package probe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"
)

// A registry product's own health API says what is wrong with it: Harbor
// lists its database, redis and core, Quay its database and auth engine.
// When a registry's database is down every login fails with "invalid
// credentials", and a probe's unauthorized blames the credentials for what
// is the registry's outage. This file knows the products: how to recognise
// one from what it already sends a probe, where its health API is, what it
// answers (each format is taken from the product's own source or
// documentation, cited where it is parsed), and which of its components its
// logins depend on. The collector decides when to ask (once per
// auth_check_interval, through its Sender) and what follows.

// HealthSetting is a module's `health:` key: whether the registries it
// probes have their own health API read, and which product's.
type HealthSetting string

// The values of a module's `health:` key besides the products.
const (
	// HealthAuto reads the health API of a registry recognised from what
	// it already sends the probes (Recognize); a registry that is not
	// recognised is never sent a health request. The default.
	HealthAuto HealthSetting = "auto"
	// HealthNone never reads a registry's health API.
	HealthNone HealthSetting = "none"
)

// Product is a registry product whose health API the exporter reads.
type Product string

// The products whose health API is known.
const (
	ProductHarbor      Product = "harbor"
	ProductQuay        Product = "quay"
	ProductArtifactory Product = "artifactory"
	ProductNexus       Product = "nexus"
)

// Products lists every product, in the order recognition tries them.
var Products = []Product{ProductHarbor, ProductQuay, ProductArtifactory, ProductNexus}

// HealthSettings lists every valid value of a module's `health:` key.
func HealthSettings() []string {
	out := []string{string(HealthAuto)}
	for _, p := range Products {
		out = append(out, string(p))
	}
	return append(out, string(HealthNone))
}

// Valid reports whether h is a value the `health:` key accepts. The empty
// value is not valid in a file; Module.HealthSetting reads it as auto for
// modules built in code.
func (h HealthSetting) Valid() bool { return slices.Contains(HealthSettings(), string(h)) }

// Configured returns the product h names, if it names one.
func (h HealthSetting) Configured() (Product, bool) {
	p := Product(h)
	return p, slices.Contains(Products, p)
}

// HealthSetting returns the module's `health:` key, auto when unset (a
// module built in code rather than read from a file).
func (m Module) HealthSetting() HealthSetting {
	if m.Health == "" {
		return HealthAuto
	}
	return m.Health
}

// AuthBackend reports whether component, as p's health API names it, is
// one the product's logins depend on: while it is down, the registry
// answers a login 401 whatever the credentials, so an unauthorized from it
// is the registry's failure (collector's attribution rule, README
// "Registry health"). Each choice says why:
//
//   - Harbor: "core" serves the token service (/service/token, src/core);
//     "database" holds the users, robot accounts and project members every
//     login is checked against (a login with the database down answers 401
//     "unauthorized"); "redis" holds core's sessions and caches, without
//     which core's requests fail. (Core reports itself healthy whenever it
//     answers: src/controller/health/checker.go coreHealthChecker.)
//   - Quay: "database" holds the users, robots and tokens; "auth" is the
//     configured authentication engine (Database, LDAP, Keystone, JWT:
//     health/services.py _check_auth pings it); "service_key" is the
//     instance key that signs the registry JWTs /v2/auth issues.
//   - Artifactory: "jfac" is JFrog Access, "the authentication server ...
//     manages users, groups, permissions, and access tokens" (JFrog
//     Platform's system architecture); Artifactory asks it on every login.
//   - Nexus: none. Its status checks "do not validate whether an external
//     database is functional/reachable" (Sonatype's Status API
//     documentation) and none of them is its security realm, so nothing it
//     reports proves that logins fail for its own reasons.
func (p Product) AuthBackend(component string) bool {
	switch p {
	case ProductHarbor:
		return component == "core" || component == "database" || component == "redis"
	case ProductQuay:
		return component == "database" || component == "auth" || component == "service_key"
	case ProductArtifactory:
		return component == "jfac"
	}
	return false
}

// Health API paths, relative to the registry's origin.
const (
	// Harbor: GET /api/v2.0/health, "This path does not require
	// authentication" (api/v2.0/swagger.yaml, operation getHealth).
	harborHealthPath = "/api/v2.0/health"
	// Quay: GET /health/instance (endpoints/web.py instance_health),
	// anonymous allowed (process_auth_or_cookie; the debug fields it adds
	// for superusers are not needed).
	quayHealthPath = "/health/instance"
	// Artifactory 7: GET /router/api/v1/system/health, "Security: No
	// authentication required" (JFrog REST APIs, Health Check).
	artifactoryHealthPath = "/router/api/v1/system/health"
	// Nexus 3: GET /service/rest/v1/status/check needs an authenticated
	// user with nexus:metrics:read (StatusResource.getSystemStatusChecks:
	// @RequiresAuthentication @RequiresPermissions("nexus:metrics:read"));
	// GET /service/rest/v1/status needs nothing and answers 200 when the
	// instance can serve reads, 503 otherwise (Sonatype's Status API
	// documentation).
	nexusCheckPath  = "/service/rest/v1/status/check"
	nexusStatusPath = "/service/rest/v1/status"
)

// Setting is the `health:` value that names p.
func (p Product) Setting() HealthSetting { return HealthSetting(p) }

// NeedsCredentials reports whether p's health API wants the module's
// credentials: only Nexus's status checks do.
func (p Product) NeedsCredentials() bool { return p == ProductNexus }

// healthPath is the path p's health API is read at; withCreds says the
// module's credentials are presented.
func (p Product) healthPath(withCreds bool) string {
	switch p {
	case ProductHarbor:
		return harborHealthPath
	case ProductQuay:
		return quayHealthPath
	case ProductArtifactory:
		return artifactoryHealthPath
	case ProductNexus:
		if withCreds {
			return nexusCheckPath
		}
		return nexusStatusPath
	}
	return ""
}

// Bounds of a health reply: a product lists a dozen components in a few
// kilobytes; anything far larger, or with far more components, is refused
// or cut, never allowed to grow the exporter's memory or series.
const (
	maxHealthBody = 1 << 20
	// MaxHealthComponents caps the components kept of one reply, and so
	// the imagepull_registry_component_up series of a registry: those
	// reported down are kept first.
	MaxHealthComponents = 32
	// MaxComponentName caps a component's name (the `component` label).
	MaxComponentName = 64
	// maxComponentMessage caps what is kept of a product's message about
	// a component that is down (an error text, not a label).
	maxComponentMessage = 200
)

// Component is one component of a registry as its health API reports it.
type Component struct {
	// Name is the product's own name for it (Harbor "database", Quay
	// "redis", Artifactory's service type "jfac"), printable ASCII, at
	// most MaxComponentName characters.
	Name string
	Up   bool
	// Message is what the product said of a component that is down,
	// printable, bounded and redacted; empty when up.
	Message string
}

// HealthTarget says whose health API to read and with what.
type HealthTarget struct {
	// Ref is an image of the registry (a probe target's): its registry is
	// the host asked, and its reference what the module's keychain is
	// asked credentials for, so they are bound as for a probe.
	Ref        Reference
	ModuleName string
	Module     Module
	Product    Product
	// Anonymous presents no credentials even where the product's API
	// wants them: Nexus is then read at its anonymous status endpoint
	// (after its status checks refused the module's credentials).
	Anonymous bool
}

// HealthReport is what one health request learnt.
type HealthReport struct {
	Product Product
	// Path is the health API path asked.
	Path string
	// Known is true when the reply followed the product's documented
	// format; Healthy is then the product's own verdict on itself.
	Known   bool
	Healthy bool
	// Components are the components the reply names, sorted by name, at
	// most MaxComponentHealth of them (those down kept first); Dropped
	// counts the rest.
	Components []Component
	Dropped    int
	// Malformed is true when a reply came that does not follow the
	// product's documented format (not its JSON, over maxHealthBody).
	Malformed bool
	// CredentialsUsed is true when the module's credentials were
	// presented; Refused when the health API then answered 401 or 403.
	CredentialsUsed bool
	Refused         bool
	// Result is the exchange as for a probe: Requests for the request
	// accounting, Success when Known, else Reason and a redacted Error.
	Result Result
}

// AuthBackendDown returns the components of rep that are down and that its
// product's logins depend on (Product.AuthBackend), sorted by name.
func (rep HealthReport) AuthBackendDown() []Component {
	var out []Component
	for _, c := range rep.Components {
		if !c.Up && rep.Product.AuthBackend(c.Name) {
			out = append(out, c)
		}
	}
	return out
}

// CheckHealth reads the health API of t's registry once: one GET, on the
// module's cached transport with its TLS settings and the one redirect and
// address policy (transport.go), bounded by the module's timeout and
// maxHealthBody. The module's credentials are presented only where the
// product's API needs them (Product.NeedsCredentials) and only when the
// module's keychain binds them to the registry; a pod's pull secrets never
// are. It never retries and never panics on what the registry sends.
func (p *Prober) CheckHealth(ctx context.Context, t HealthTarget) HealthReport {
	run := p.newRun(Target{Ref: t.Ref, ModuleName: t.ModuleName, Module: t.Module})
	ctx, cancel := context.WithTimeout(ctx, run.m.Timeout)
	defer cancel()
	rep := HealthReport{Product: t.Product}
	err := run.health(ctx, t, &rep)
	run.finish(err)
	if err != nil {
		rep.Known = false
	}
	rep.Result = *run.res
	return rep
}

func (r *probeRun) health(ctx context.Context, t HealthTarget, rep *HealthReport) error {
	now := r.res.Start
	if t.Ref.Registry == "" {
		return failf(ReasonProtocol, "health: no registry")
	}
	if !slices.Contains(Products, t.Product) {
		return failf(ReasonProtocol, "health: unknown product %q", printable(string(t.Product), 40))
	}
	var cred *Credential
	if t.Product.NeedsCredentials() && !t.Anonymous {
		creds, err := r.connect(ctx, now)
		if err != nil {
			return err
		}
		for i := range creds {
			if !creds[i].Anonymous() {
				cred = &creds[i]
				break
			}
		}
	} else if _, err := r.dial(nil, now); err != nil {
		return err
	}
	rep.Path = t.Product.healthPath(cred != nil)
	req, err := http.NewRequest(http.MethodGet, r.origin+rep.Path, nil)
	if err != nil {
		return failf(ReasonProtocol, "health: %v", err)
	}
	req.Header.Set("Accept", "application/json")
	if cred != nil {
		req.SetBasicAuth(cred.Username, basicSecret(*cred))
		rep.CredentialsUsed = true
	}
	start := time.Now()
	resp, err := r.do(ctx, KindHealth, req)
	if err != nil {
		r.res.Phases[PhasePing] += time.Since(start)
		return r.transportFailure(ctx, "health", req, err)
	}
	body, tooLarge, err := readHealthBody(resp)
	r.res.Phases[PhasePing] += time.Since(start)
	if err != nil {
		return r.transportFailure(ctx, "health", req, err)
	}
	if tooLarge {
		rep.Malformed = true
		return failf(ReasonProtocol, "health GET %s: %s with a body over %d bytes: not %s's health reply", redactURL(req.URL), resp.Status, maxHealthBody, t.Product)
	}
	if cred != nil && (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden) {
		rep.Refused = true
		return r.statusFailure("health", req, resp, body, "the credentials of "+cred.Source+" may not read the status checks (Nexus wants nexus:metrics:read); the anonymous /service/rest/v1/status is read instead from now on")
	}
	comps, known, healthy, perr := parseHealth(t.Product, rep.Path, resp.StatusCode, body)
	if perr != nil {
		if resp.StatusCode >= 200 && resp.StatusCode < 300 || documentedStatus(t.Product, rep.Path, resp.StatusCode) {
			rep.Malformed = true
			return failf(ReasonProtocol, "health GET %s: %s: %s", redactURL(req.URL), resp.Status, r.red.Redact(perr.Error()))
		}
		return r.statusFailure("health", req, resp, body, "not "+string(t.Product)+"'s health reply")
	}
	rep.Known, rep.Healthy = known, healthy
	rep.Components, rep.Dropped = capComponents(comps, r.red)
	return nil
}

// readHealthBody reads at most maxHealthBody bytes of a reply and closes
// it; tooLarge says there was more.
func readHealthBody(resp *http.Response) (body []byte, tooLarge bool, err error) {
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxHealthBody+1))
	if err != nil {
		return nil, false, err
	}
	if len(b) > maxHealthBody {
		return nil, true, nil
	}
	return b, false, nil
}

// documentedStatus reports whether status is one p's health API documents
// for an answer in its format (besides 2xx): 503 carries Quay's and
// Artifactory's unhealthy reply, and is Nexus's status endpoint's verdict.
func documentedStatus(p Product, path string, status int) bool {
	return status == http.StatusServiceUnavailable && (p == ProductQuay || p == ProductArtifactory || path == nexusStatusPath)
}

// errNotFormat is a reply that is not the product's documented format.
var errNotFormat = errors.New("the reply does not follow the documented format")

// parseHealth reads a health reply of p at path with HTTP status status.
// known says the reply carries the product's verdict, healthy what it is.
func parseHealth(p Product, path string, status int, body []byte) (comps []Component, known, healthy bool, err error) {
	ok := status >= 200 && status < 300
	if !ok && !documentedStatus(p, path, status) {
		return nil, false, false, fmt.Errorf("status %d: %w", status, errNotFormat)
	}
	switch p {
	case ProductHarbor:
		comps, healthy, err = parseHarbor(body)
	case ProductQuay:
		comps, err = parseQuay(body)
		healthy = ok // the product's own verdict: 200 healthy, 503 not
	case ProductArtifactory:
		comps, err = parseArtifactory(body)
		healthy = ok
	case ProductNexus:
		if path == nexusStatusPath {
			// The status code is the whole answer: 200 available
			// for reads, 503 not; no components.
			return nil, true, ok, nil
		}
		comps, healthy, err = parseNexusChecks(body)
	default:
		return nil, false, false, fmt.Errorf("unknown product %q", p)
	}
	if err != nil {
		return nil, false, false, err
	}
	return comps, true, healthy, nil
}

// decodeStrict decodes one JSON value into v and refuses trailing data.
func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(body)))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", errNotFormat, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: data after the JSON value", errNotFormat)
	}
	return nil
}

// parseHarbor reads Harbor's OverallHealthStatus (src/controller/health/
// model.go, served by src/server/v2.0/handler/health.go, always 200):
//
//	{"status": "healthy"|"unhealthy",
//	 "components": [{"name": "database", "status": "unhealthy", "error": "..."}]}
//
// The overall status is "healthy" only when every component is
// (controller.go GetHealth).
func parseHarbor(body []byte) ([]Component, bool, error) {
	var v struct {
		Status     *string `json:"status"`
		Components []struct {
			Name   string `json:"name"`
			Status string `json:"status"`
			Error  string `json:"error"`
		} `json:"components"`
	}
	if err := decodeStrict(body, &v); err != nil {
		return nil, false, err
	}
	if v.Status == nil || (*v.Status != "healthy" && *v.Status != "unhealthy") {
		return nil, false, fmt.Errorf("%w: no \"status\" of healthy or unhealthy", errNotFormat)
	}
	if len(v.Components) == 0 {
		return nil, false, fmt.Errorf("%w: no \"components\"", errNotFormat)
	}
	comps := make([]Component, 0, len(v.Components))
	for _, c := range v.Components {
		comps = append(comps, Component{Name: c.Name, Up: c.Status == "healthy", Message: c.Error})
	}
	return comps, *v.Status == "healthy", nil
}

// parseQuay reads Quay's instance health (endpoints/web.py instance_health,
// health/healthcheck.py calculate_overall_health), 200 when healthy and
// 503 when not:
//
//	{"data": {"services": {"database": true, "redis": true, "auth": false, ...}},
//	 "status_code": 503}
func parseQuay(body []byte) ([]Component, error) {
	var v struct {
		Data *struct {
			Services map[string]json.RawMessage `json:"services"`
		} `json:"data"`
	}
	if err := decodeStrict(body, &v); err != nil {
		return nil, err
	}
	if v.Data == nil || len(v.Data.Services) == 0 {
		return nil, fmt.Errorf("%w: no \"data\".\"services\"", errNotFormat)
	}
	comps := make([]Component, 0, len(v.Data.Services))
	for name, raw := range v.Data.Services {
		var up bool
		if err := json.Unmarshal(raw, &up); err != nil {
			return nil, fmt.Errorf("%w: service %q is not true or false", errNotFormat, printable(name, MaxComponentName))
		}
		comps = append(comps, Component{Name: name, Up: up})
	}
	return comps, nil
}

// parseArtifactory reads the JFrog router's health (JFrog REST APIs,
// Health Check, GET /router/api/v1/system/health), 200 when healthy and
// 503 when not:
//
//	{"router": {"node_id": "...", "state": "HEALTHY", "message": "OK"},
//	 "services": [{"service_id": "jfrt@...", "node_id": "...", "state": "UNHEALTHY", "message": "..."}]}
//
// A component is the router, or a service named by its service type (the
// service_id before '@': jfrt Artifactory, jfac Access, ...), so that the
// series survive a reinstall; UNHEALTHY_PEER is "Service is healthy; there
// is at least one unhealthy service", so up.
func parseArtifactory(body []byte) ([]Component, error) {
	type state struct {
		ServiceID string `json:"service_id"`
		State     string `json:"state"`
		Message   string `json:"message"`
	}
	var v struct {
		Router   *state  `json:"router"`
		Services []state `json:"services"`
	}
	if err := decodeStrict(body, &v); err != nil {
		return nil, err
	}
	if v.Router == nil || v.Router.State == "" {
		return nil, fmt.Errorf("%w: no \"router\".\"state\"", errNotFormat)
	}
	up := func(s string) bool { return s == "HEALTHY" || s == "UNHEALTHY_PEER" }
	comps := []Component{{Name: "router", Up: up(v.Router.State), Message: v.Router.Message}}
	for _, s := range v.Services {
		if s.State == "" {
			return nil, fmt.Errorf("%w: a service without \"state\"", errNotFormat)
		}
		name, _, _ := strings.Cut(s.ServiceID, "@")
		comps = append(comps, Component{Name: name, Up: up(s.State), Message: s.Message})
	}
	return comps, nil
}

// parseNexusChecks reads Nexus's status checks
// (StatusResource.getSystemStatusChecks: a map of check name to Dropwizard
// HealthCheck.Result, Sonatype's Status API documentation):
//
//	{"Blob Stores": {"healthy": true, "message": null, ...},
//	 "Read-Only Detector": {"healthy": false, "message": "..."}}
func parseNexusChecks(body []byte) ([]Component, bool, error) {
	var v map[string]*struct {
		Healthy *bool  `json:"healthy"`
		Message string `json:"message"`
	}
	if err := decodeStrict(body, &v); err != nil {
		return nil, false, err
	}
	if len(v) == 0 {
		return nil, false, fmt.Errorf("%w: no status checks", errNotFormat)
	}
	healthy := true
	comps := make([]Component, 0, len(v))
	for name, r := range v {
		if r == nil || r.Healthy == nil {
			return nil, false, fmt.Errorf("%w: check %q has no \"healthy\"", errNotFormat, printable(name, MaxComponentName))
		}
		healthy = healthy && *r.Healthy
		comps = append(comps, Component{Name: name, Up: *r.Healthy, Message: r.Message})
	}
	return comps, healthy, nil
}

// capComponents makes the components safe to export: names printable and
// at most MaxComponentName long (nameless ones dropped), one per name (down
// when any of that name is), messages printable, bounded and redacted, at
// most MaxHealthComponents of them with those down kept first, sorted by
// name. It returns how many were dropped.
func capComponents(comps []Component, red *Redactor) ([]Component, int) {
	byName := map[string]Component{}
	dropped := 0
	for _, c := range comps {
		c.Name = strings.TrimSpace(printable(c.Name, MaxComponentName))
		if c.Name == "" {
			dropped++
			continue
		}
		if c.Up {
			c.Message = ""
		} else {
			c.Message = red.Redact(printable(c.Message, maxComponentMessage))
		}
		if old, ok := byName[c.Name]; ok {
			dropped++
			if !old.Up {
				continue // a duplicate never hides a component down
			}
		}
		byName[c.Name] = c
	}
	out := make([]Component, 0, len(byName))
	for _, c := range byName {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Up != out[j].Up {
			return !out[i].Up
		}
		return out[i].Name < out[j].Name
	})
	if len(out) > MaxHealthComponents {
		dropped += len(out) - MaxHealthComponents
		out = out[:MaxHealthComponents]
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, dropped
}

// Recognition: a product is recognised only from what the registry sends a
// probe anyway, never from a request of its own.

// recognizeChallenge recognises a product from the Bearer challenge of the
// registry's /v2/ reply, registryHost being the host the probe asked.
//
//   - Harbor's core answers `Bearer realm="<ext endpoint>/service/token",
//     service="harbor-registry"` (src/server/middleware/v2auth/auth.go
//     getChallenge; token.Registry in src/core/service/token).
//   - Quay answers `Bearer realm="<app url>/v2/auth",service="<SERVER_HOSTNAME>"`
//     (endpoints/v2/__init__.py get_auth_headers: url_for of
//     v2.generate_registry_jwt, routed at /v2/auth): the realm on the
//     registry's own host, the service its host name.
func recognizeChallenge(ch Challenge, registryHost string) Product {
	if ch.Scheme != schemeBearer {
		return ""
	}
	realm, err := url.Parse(ch.Realm())
	if err != nil || realm.Host == "" {
		return ""
	}
	switch {
	case ch.Service() == "harbor-registry" && strings.HasSuffix(realm.Path, "/service/token"):
		return ProductHarbor
	case realm.Path == "/v2/auth" && asciiEqualFold(realm.Host, registryHost) &&
		(asciiEqualFold(ch.Service(), registryHost) || asciiEqualFold(ch.Service(), realm.Hostname())):
		return ProductQuay
	}
	return ""
}

// recognizeHeaders recognises a product from the headers of a reply of the
// registry's own host.
//
//   - Artifactory sends X-Artifactory-Id (its node's fingerprint) and
//     X-Artifactory-Node-Id on its replies, Docker API ones included, and
//     Artifactory 7 X-JFrog-Version; older ones `Server: Artifactory/<v>`.
//   - Nexus sends `Server: Nexus/<version> (<edition>)` on every reply
//     (EnvironmentFilter, nexus-public).
func recognizeHeaders(h http.Header) Product {
	server := h.Get("Server")
	switch {
	case h.Get("X-Artifactory-Id") != "" || h.Get("X-Artifactory-Node-Id") != "" ||
		strings.HasPrefix(h.Get("X-JFrog-Version"), "Artifactory") || strings.HasPrefix(server, "Artifactory/"):
		return ProductArtifactory
	case strings.HasPrefix(server, "Nexus/"):
		return ProductNexus
	}
	return ""
}

// recognize notes the product a reply shows, once per run; the first
// product seen wins.
func (r *probeRun) recognize(p Product) {
	if p != "" && r.res.Product == "" && r.t.Endpoint == nil {
		r.res.Product = p
	}
}
