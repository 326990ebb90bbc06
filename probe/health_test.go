package probe

import (
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// The health replies below are the products' documented formats (the
// sources cited in health.go): what each parser must read, and what it
// must refuse without trusting any of it.

func componentsUp(cs []Component) map[string]bool {
	out := map[string]bool{}
	for _, c := range cs {
		out[c.Name] = c.Up
	}
	return out
}

func TestParseHealthDocumented(t *testing.T) {
	for _, c := range []struct {
		name    string
		product Product
		path    string
		status  int
		body    string
		healthy bool
		comps   map[string]bool
	}{
		{"harbor healthy", ProductHarbor, harborHealthPath, 200,
			`{"status":"healthy","components":[{"name":"core","status":"healthy"},{"name":"database","status":"healthy"},{"name":"redis","status":"healthy"}]}`,
			true, map[string]bool{"core": true, "database": true, "redis": true}},
		{"harbor database down", ProductHarbor, harborHealthPath, 200,
			`{"status":"unhealthy","components":[{"name":"core","status":"healthy"},{"name":"database","status":"unhealthy","error":"failed to run SQL \"SELECT 1\": dial tcp: connect: connection refused"}]}`,
			false, map[string]bool{"core": true, "database": false}},
		{"quay healthy", ProductQuay, quayHealthPath, 200,
			`{"data":{"services":{"auth":true,"database":true,"redis":true}},"status_code":200}`,
			true, map[string]bool{"auth": true, "database": true, "redis": true}},
		{"quay 503", ProductQuay, quayHealthPath, 503,
			`{"data":{"services":{"auth":false,"database":true}},"status_code":503}`,
			false, map[string]bool{"auth": false, "database": true}},
		{"artifactory healthy", ProductArtifactory, artifactoryHealthPath, 200,
			`{"router":{"node_id":"n1","state":"HEALTHY","message":"OK"},"services":[{"service_id":"jfrt@01abc","node_id":"n1","state":"HEALTHY","message":"OK"},{"service_id":"jfac@01abc","node_id":"n1","state":"HEALTHY","message":"OK"}]}`,
			true, map[string]bool{"router": true, "jfrt": true, "jfac": true}},
		{"artifactory access down", ProductArtifactory, artifactoryHealthPath, 503,
			`{"router":{"node_id":"n1","state":"HEALTHY","message":"OK"},"services":[{"service_id":"jfrt@1234","node_id":"n1","state":"UNHEALTHY_PEER","message":"Service is healthy; there is at least one unhealthy service"},{"service_id":"jfac@9876","node_id":"n1","state":"UNHEALTHY","message":"connection refused"}]}`,
			false, map[string]bool{"router": true, "jfrt": true, "jfac": false}},
		{"nexus checks", ProductNexus, nexusCheckPath, 200,
			`{"Blob Stores":{"healthy":true,"message":null,"error":null},"Read-Only Detector":{"healthy":false,"message":"Nexus is read-only"}}`,
			false, map[string]bool{"Blob Stores": true, "Read-Only Detector": false}},
		{"nexus status up", ProductNexus, nexusStatusPath, 200, ``, true, map[string]bool{}},
		{"nexus status down", ProductNexus, nexusStatusPath, 503, ``, false, map[string]bool{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			comps, known, healthy, err := parseHealth(c.product, c.path, c.status, []byte(c.body))
			if err != nil || !known {
				t.Fatalf("parse: known %v, err %v", known, err)
			}
			if healthy != c.healthy {
				t.Errorf("healthy = %v, want %v", healthy, c.healthy)
			}
			if got := componentsUp(comps); !reflect.DeepEqual(got, c.comps) {
				t.Errorf("components = %v, want %v", got, c.comps)
			}
		})
	}
}

// TestParseHealthRefusesWhatIsNotTheFormat: every reply that is not the
// product's documented format is refused, never read as a verdict.
func TestParseHealthRefusesWhatIsNotTheFormat(t *testing.T) {
	deep := strings.Repeat("[", 20000) + strings.Repeat("]", 20000)
	for _, c := range []struct {
		name    string
		product Product
		path    string
		status  int
		body    string
	}{
		{"harbor not json", ProductHarbor, harborHealthPath, 200, `<html>Sign in</html>`},
		{"harbor truncated", ProductHarbor, harborHealthPath, 200, `{"status":"healthy","components":[{"name":"core"`},
		{"harbor no status", ProductHarbor, harborHealthPath, 200, `{"components":[{"name":"core","status":"healthy"}]}`},
		{"harbor odd status", ProductHarbor, harborHealthPath, 200, `{"status":"fine","components":[{"name":"core","status":"healthy"}]}`},
		{"harbor no components", ProductHarbor, harborHealthPath, 200, `{"status":"healthy","components":[]}`},
		{"harbor wrong types", ProductHarbor, harborHealthPath, 200, `{"status":"healthy","components":{"core":"healthy"}}`},
		{"harbor trailing data", ProductHarbor, harborHealthPath, 200, `{"status":"healthy","components":[{"name":"core","status":"healthy"}]} {"status":"unhealthy"}`},
		{"harbor 502", ProductHarbor, harborHealthPath, 502, `{"status":"unhealthy","components":[{"name":"core","status":"unhealthy"}]}`},
		{"harbor deep nesting", ProductHarbor, harborHealthPath, 200, deep},
		{"quay no services", ProductQuay, quayHealthPath, 200, `{"data":{},"status_code":200}`},
		{"quay string status", ProductQuay, quayHealthPath, 503, `{"data":{"services":{"database":"down"}}}`},
		{"quay 500", ProductQuay, quayHealthPath, 500, `{"data":{"services":{"database":false}}}`},
		{"artifactory no router", ProductArtifactory, artifactoryHealthPath, 200, `{"services":[]}`},
		{"artifactory service without state", ProductArtifactory, artifactoryHealthPath, 200, `{"router":{"state":"HEALTHY"},"services":[{"service_id":"jfrt@1"}]}`},
		{"nexus empty", ProductNexus, nexusCheckPath, 200, `{}`},
		{"nexus check without healthy", ProductNexus, nexusCheckPath, 200, `{"Blob Stores":{"message":"ok"}}`},
		{"nexus null check", ProductNexus, nexusCheckPath, 200, `{"Blob Stores":null}`},
		{"nexus status 500", ProductNexus, nexusStatusPath, 500, ``},
	} {
		t.Run(c.name, func(t *testing.T) {
			comps, known, _, err := parseHealth(c.product, c.path, c.status, []byte(c.body))
			if err == nil || known || comps != nil {
				t.Errorf("accepted: known %v, components %v, err %v", known, comps, err)
			}
		})
	}
}

// TestCapComponents: names printable and bounded, one per name with a
// component down never hidden by a duplicate, at most MaxHealthComponents
// kept with those down first, messages bounded and redacted.
func TestCapComponents(t *testing.T) {
	red := NewRedactor()
	red.Add("s3cret-token-value")
	var in []Component
	for i := 0; i < 100; i++ {
		in = append(in, Component{Name: fmt.Sprintf("c%03d", i), Up: i >= 10})
	}
	in = append(in,
		Component{Name: "\x00\x1b[31m" + strings.Repeat("n", 200), Up: false, Message: "token s3cret-token-value " + strings.Repeat("m", 500)},
		Component{Name: "", Up: false},
		Component{Name: "c050", Up: false, Message: "duplicate, down"},
		Component{Name: "c005", Up: true},
	)
	out, dropped := capComponents(in, red)
	if len(out) != MaxHealthComponents {
		t.Fatalf("%d components kept, want %d", len(out), MaxHealthComponents)
	}
	down := 0
	for i, c := range out {
		if i > 0 && out[i-1].Name >= c.Name {
			t.Errorf("not sorted by name: %q before %q", out[i-1].Name, c.Name)
		}
		if len(c.Name) > MaxComponentName+3 || strings.ContainsAny(c.Name, "\x00\x1b") {
			t.Errorf("name %q is not bounded and printable", c.Name)
		}
		if len(c.Message) > maxComponentMessage+3 || strings.Contains(c.Message, "s3cret-token-value") {
			t.Errorf("message of %s not bounded or not redacted: %q", c.Name, c.Message)
		}
		if !c.Up {
			down++
		}
	}
	// c000..c009, the long name and the duplicate c050 are down: 12.
	if down != 12 {
		t.Errorf("%d components down kept, want all 12", down)
	}
	if got := componentsUp(out); got["c050"] || !contains(out, "c050") {
		t.Errorf("c050 = %v: a duplicate up must not hide the component down", got["c050"])
	}
	if dropped != len(in)-MaxHealthComponents {
		t.Errorf("dropped = %d, want %d", dropped, len(in)-MaxHealthComponents)
	}
}

func contains(cs []Component, name string) bool {
	for _, c := range cs {
		if c.Name == name {
			return true
		}
	}
	return false
}

func TestAuthBackend(t *testing.T) {
	rep := HealthReport{Product: ProductHarbor, Components: []Component{
		{Name: "core", Up: true}, {Name: "database", Up: false, Message: "down"},
		{Name: "jobservice", Up: false}, {Name: "redis", Up: true},
	}}
	if got := rep.AuthBackendDown(); len(got) != 1 || got[0].Name != "database" {
		t.Errorf("AuthBackendDown = %v, want database only (jobservice is not the auth backend)", got)
	}
	for p, comps := range map[Product][]string{
		ProductHarbor: {"core", "database", "redis"}, ProductQuay: {"database", "auth", "service_key"},
		ProductArtifactory: {"jfac"}, ProductNexus: nil,
	} {
		for _, c := range []string{"core", "database", "redis", "auth", "service_key", "jfac", "jfrt", "jobservice", "storage", "Transactions"} {
			want := false
			for _, w := range comps {
				want = want || w == c
			}
			if got := p.AuthBackend(c); got != want {
				t.Errorf("%s.AuthBackend(%q) = %v, want %v", p, c, got, want)
			}
		}
	}
}

// TestRecognize: products are recognised from what the registry sends,
// and not from what others send.
func TestRecognize(t *testing.T) {
	host := "registry.example.com"
	for _, c := range []struct {
		challenge string
		want      Product
	}{
		{`Bearer realm="https://registry.example.com/service/token",service="harbor-registry"`, ProductHarbor},
		{`Bearer realm="https://harbor-core.internal:8080/service/token",service="harbor-registry",scope="repository:a/b:pull"`, ProductHarbor},
		{`Bearer realm="https://registry.example.com/v2/auth",service="registry.example.com"`, ProductQuay},
		// Distribution's own token auth, Docker Hub, GHCR, GitLab: none.
		{`Bearer realm="https://auth.example.com/token",service="registry.example.com"`, ""},
		{`Bearer realm="https://auth.docker.io/token",service="registry.docker.io"`, ""},
		{`Bearer realm="https://ghcr.io/token",service="ghcr.io"`, ""},
		{`Bearer realm="https://gitlab.example.com/jwt/auth",service="container_registry"`, ""},
		// A /service/token realm of another service, a /v2/auth realm on
		// another host: not enough.
		{`Bearer realm="https://registry.example.com/service/token",service="other"`, ""},
		{`Bearer realm="https://auth.example.org/v2/auth",service="registry.example.com"`, ""},
		{`Basic realm="harbor"`, ""},
	} {
		cs, err := ParseChallenges([]string{c.challenge})
		if err != nil {
			t.Fatal(err)
		}
		if got := recognizeChallenge(cs[0], host); got != c.want {
			t.Errorf("%s: %q, want %q", c.challenge, got, c.want)
		}
	}
	for _, c := range []struct {
		header http.Header
		want   Product
	}{
		{http.Header{"X-Artifactory-Id": {"5c8a1b2f"}}, ProductArtifactory},
		{http.Header{"X-Jfrog-Version": {"Artifactory/7.77.5 77705900"}}, ProductArtifactory},
		{http.Header{"Server": {"Artifactory/6.23.7"}}, ProductArtifactory},
		{http.Header{"Server": {"Nexus/3.68.0-04 (OSS)"}}, ProductNexus},
		{http.Header{"Server": {"nginx"}, "Docker-Distribution-Api-Version": {"registry/2.0"}}, ""},
		{http.Header{"X-Jfrog-Version": {"Xray/3.0"}}, ""},
	} {
		if got := recognizeHeaders(c.header); got != c.want {
			t.Errorf("%v: %q, want %q", c.header, got, c.want)
		}
	}
}

// FuzzHealthReply: no reply crashes a parser, and whatever a parser
// accepts is made safe to export.
func FuzzHealthReply(f *testing.F) {
	f.Add(`{"status":"unhealthy","components":[{"name":"database","status":"unhealthy","error":"x"}]}`, 200)
	f.Add(`{"data":{"services":{"database":false}},"status_code":503}`, 503)
	f.Add(`{"router":{"state":"HEALTHY"},"services":[{"service_id":"jfac@1","state":"UNHEALTHY"}]}`, 503)
	f.Add(`{"Blob Stores":{"healthy":true}}`, 200)
	f.Add(`[[[[`, 200)
	f.Fuzz(func(t *testing.T, body string, status int) {
		for _, p := range Products {
			for _, path := range []string{p.healthPath(false), p.healthPath(true)} {
				comps, known, _, err := parseHealth(p, path, status, []byte(body))
				if err != nil && (known || comps != nil) {
					t.Fatalf("%s: an error with a verdict", p)
				}
				out, _ := capComponents(comps, NewRedactor())
				if len(out) > MaxHealthComponents {
					t.Fatalf("%s: %d components", p, len(out))
				}
				for _, c := range out {
					if c.Name == "" || len(c.Name) > MaxComponentName+3 {
						t.Fatalf("%s: component name %q", p, c.Name)
					}
				}
			}
		}
	})
}
