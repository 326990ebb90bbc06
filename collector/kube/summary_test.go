package kube

import (
	"reflect"
	"testing"

	"github.com/imagepull/imagepull_exporter/collector"
)

// The status page's summary is the join's counts, regrouped: blocked
// containers per registry and cause as imagepull_registry_blocked_containers
// counts them, and the namespaces with the most waiting containers.
func TestJoinSummary(t *testing.T) {
	c := offlineCluster(t, Options{Status: staticStatus{causes: map[string]string{
		"docker.io": "rate_limited", "ghcr.io": collector.CauseRegistryOK}}})
	c.feed(t,
		pod("shop", "a", "n1", ctr{image: "nginx:1", waiting: "ImagePullBackOff"}, ctr{image: "nginx:2", waiting: "ErrImagePull"}),
		pod("shop", "b", "n1", ctr{image: "ghcr.io/acme/api:v1", waiting: "ImagePullBackOff"}),
		pod("dev", "c", "n2", ctr{image: "nginx:3", waiting: "ImagePullBackOff"}),
		pod("dev", "d", "n2", ctr{image: "quay.io/x/y:1", waiting: "ImagePullBackOff"}),
		pod("ops", "e", "n2", ctr{image: "Not Valid", waiting: "InvalidImageName"}),
		pod("ops", "f", "n2", ctr{image: "nginx:4", running: true}),
	)
	// The informers of an offline cluster never sync: nothing to say yet.
	if s := c.JoinSummary(10); s.Synced || s.Blocked != nil || s.Namespaces != nil {
		t.Errorf("unsynced JoinSummary = %+v, want empty", s)
	}
	got := summarise(c.join(), 2)
	want := collector.JoinSummary{
		Synced: true,
		Blocked: []collector.BlockedCount{
			{Registry: "docker.io", Cause: "rate_limited", Containers: 3},
			{Registry: "ghcr.io", Cause: collector.CauseRegistryOK, Containers: 1},
			{Registry: RegistryInvalid, Cause: collector.CauseUnprobed, Containers: 1},
			{Registry: "quay.io", Cause: collector.CauseUnprobed, Containers: 1},
		},
		Namespaces:     []collector.NamespaceCount{{Namespace: "shop", Containers: 3}, {Namespace: "dev", Containers: 2}},
		MoreNamespaces: 1,
		Containers:     6,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("summary:\n got %+v\nwant %+v", got, want)
	}
}
