package kube

import (
	"reflect"
	"testing"

	"github.com/imagepull/imagepull_exporter/probe"
)

// AttributeCause of the fixed statuses: no registry reports its own
// health, so every cause stands.
func (s staticStatus) AttributeCause(_, cause string) string { return cause }

// authDownStatus is a staticStatus whose registries in down report their
// auth backend down (the scheduler's rule: an unauthorized there is the
// registry's server_error).
type authDownStatus struct {
	staticStatus
	down map[string]bool
}

func (s authDownStatus) AttributeCause(registry, cause string) string {
	if cause == string(probe.ReasonUnauthorized) && s.down[registry] {
		return string(probe.ReasonServerError)
	}
	return cause
}

// TestJoinAttributesNodeUnauthorized: the incident this rule is for. The
// registry's database is down, every login fails, the nodes report
// "unauthorized"; the exporter's own probes still succeed with cached
// tokens, so the registry is up. The join must count the blocked
// containers as the registry's server_error, not as the pull secrets',
// while what the nodes said stays as they said it; a registry whose health
// is fine keeps its unauthorized.
func TestJoinAttributesNodeUnauthorized(t *testing.T) {
	status := authDownStatus{
		staticStatus: staticStatus{causes: map[string]string{
			"harbor.example": "registry_ok",
			"other.example":  "registry_ok",
		}},
		down: map[string]bool{"harbor.example": true},
	}
	c := offlineCluster(t, Options{Status: status})
	msg := `Failed to pull image "harbor.example/shop/api:v1": failed to authorize: failed to fetch oauth token: unexpected status: 401 Unauthorized`
	msg2 := `Failed to pull image "other.example/shop/api:v1": failed to authorize: failed to fetch oauth token: unexpected status: 401 Unauthorized`
	c.feed(t,
		pod("shop", "a", "n1", ctr{image: "harbor.example/shop/api:v1", waiting: "ErrImagePull", message: msg}),
		pod("shop", "b", "n2", ctr{image: "harbor.example/shop/api:v1", waiting: "ErrImagePull", message: msg}),
		pod("shop", "c", "n1", ctr{image: "other.example/shop/api:v1", waiting: "ErrImagePull", message: msg2}),
	)
	res := c.join()
	wantBlocked := map[regCause]int{
		{"harbor.example", "server_error"}: 2,
		{"other.example", "unauthorized"}:  1,
	}
	if !reflect.DeepEqual(res.blocked, wantBlocked) {
		t.Errorf("blocked = %v\nwant %v", res.blocked, wantBlocked)
	}
	wantPullError := map[nsRegReason]int{
		{"shop", "harbor.example", "unauthorized"}: 2,
		{"shop", "other.example", "unauthorized"}:  1,
	}
	if !reflect.DeepEqual(res.pullError, wantPullError) {
		t.Errorf("pullError = %v\nwant %v (the nodes' own words are kept)", res.pullError, wantPullError)
	}
}
