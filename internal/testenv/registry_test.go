package testenv

import (
	"strings"
	"testing"
)

// TestRegistryModes starts the registry in each mode, pushes an image and
// reads it back through the access log: the harness the probe, collector
// and end-to-end tests build on.
func TestRegistryModes(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts RegistryOptions
	}{
		{"anonymous", RegistryOptions{}},
		{"basic", RegistryOptions{Auth: RegistryAuthBasic, Users: map[string]TokenUser{"alice": {Password: "s3cret"}}}},
		{"token+tls", RegistryOptions{Auth: RegistryAuthToken, TLS: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := StartRegistry(t, tc.opts)
			d := r.Push(t, "demo/app", "v1")
			if !strings.HasPrefix(d, "sha256:") || len(d) != 71 {
				t.Fatalf("digest %q", d)
			}
			manifestPuts := func(l []AccessLogEntry) int {
				n := 0
				for _, e := range l {
					if e.Method == "PUT" && strings.HasSuffix(e.Path, "/v2/demo/app/manifests/v1") && e.Status == 201 {
						n++
					}
				}
				return n
			}
			// The readiness check is logged first: wait for the push's
			// line, which may trail the reply.
			puts := manifestPuts(r.WaitAccessLogFor(func(l []AccessLogEntry) bool { return manifestPuts(l) > 0 }))
			if puts != 1 {
				t.Fatalf("access log has %d manifest PUTs, want 1:\n%v", puts, r.AccessLog())
			}
			if tc.opts.Auth == RegistryAuthToken {
				if gets, _ := r.Issuer.Requests(); gets == 0 {
					t.Fatal("the push did not fetch a token")
				}
			}
		})
	}
}
