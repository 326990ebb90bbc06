package kube

import (
	"reflect"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/imagepull/imagepull_exporter/collector"
	"github.com/imagepull/imagepull_exporter/probe"
)

// staticStatus is a ProbeStatus with fixed answers, for the join's unit
// tests (the integration tests use the real scheduler).
type staticStatus struct {
	causes map[string]string
	tags   map[tagKey]tagResult
}

func (s staticStatus) RegistryCause(registry string) string {
	if c, ok := s.causes[registry]; ok {
		return c
	}
	return collector.CauseUnprobed
}

// RegistryHealth is the health the fixed cause stands for.
func (s staticStatus) RegistryHealth(registry string) probe.RegistryHealth {
	c := s.RegistryCause(registry)
	switch {
	case c == collector.CauseUnprobed:
		return probe.RegistryHealth{}
	case c == collector.CauseRegistryOK:
		return probe.RegistryHealth{Probed: true, Up: true, Succeeded: true}
	case probe.Reason(c).RegistryLevel():
		return probe.RegistryHealth{Probed: true, Reason: probe.Reason(c)}
	}
	return probe.RegistryHealth{Probed: true, Up: true, Reason: probe.Reason(c)}
}

// ImageResult answers from the per-tag results, whatever the target.
func (s staticStatus) ImageResult(_ string, ref probe.Reference) (probe.Reason, bool) {
	r, ok := s.tags[tagKey{ref.Registry, ref.Repository, ref.Identifier()}]
	return r.reason, ok
}

func (s staticStatus) TagResult(registry, repository, tag string) (string, probe.Reason, bool) {
	r, ok := s.tags[tagKey{registry, repository, tag}]
	return r.digest, r.reason, ok
}

// offlineCluster is a Cluster whose informers never run: tests put objects
// straight into the stores, through the same transforms the informers use.
func offlineCluster(t testing.TB, opts Options) *Cluster {
	t.Helper()
	client, err := kubernetes.NewForConfig(&rest.Config{Host: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(client, opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *Cluster) feed(t testing.TB, objs ...any) {
	t.Helper()
	for _, o := range objs {
		var rw *resourceWatch
		var tr func(any) (any, error)
		switch o.(type) {
		case *corev1.Pod:
			rw, tr = c.pods, transformPod
		case *corev1.Node:
			rw, tr = c.nodes, transformNode
		case *corev1.ServiceAccount:
			rw, tr = c.serviceAccounts, transformServiceAccount
		case *appsv1.Deployment, *appsv1.StatefulSet, *appsv1.DaemonSet, *batchv1.Job, *batchv1.CronJob:
			rw, tr = c.workloadWatch(t, o), transformWorkload
		default:
			t.Fatalf("feed: %T", o)
		}
		x, err := tr(o)
		if err != nil {
			t.Fatal(err)
		}
		if err := rw.informers[0].GetStore().Add(x); err != nil {
			t.Fatal(err)
		}
	}
}

const (
	digestA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	digestB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

type ctr struct {
	image, policy, waiting, imageID string
	running, init                   bool
	// message is the kubelet's waiting message (the runtime's pull error).
	message string
}

func pod(ns, name, node string, cs ...ctr) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.PodSpec{NodeName: node}}
	for i, c := range cs {
		cname := "c" + string(rune('a'+i))
		spec := corev1.Container{Name: cname, Image: c.image, ImagePullPolicy: corev1.PullPolicy(c.policy)}
		st := corev1.ContainerStatus{Name: cname, Image: c.image, ImageID: c.imageID}
		if c.waiting != "" {
			st.State.Waiting = &corev1.ContainerStateWaiting{Reason: c.waiting, Message: c.message}
		}
		if c.running {
			st.State.Running = &corev1.ContainerStateRunning{}
		}
		if c.init {
			p.Spec.InitContainers = append(p.Spec.InitContainers, spec)
			p.Status.InitContainerStatuses = append(p.Status.InitContainerStatuses, st)
		} else {
			p.Spec.Containers = append(p.Spec.Containers, spec)
			p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, st)
		}
	}
	return p
}

func node(name string, images ...string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	for _, i := range images {
		n.Status.Images = append(n.Status.Images, corev1.ContainerImage{Names: []string{i}})
	}
	return n
}

func TestParseImageKinds(t *testing.T) {
	for image, want := range map[string]imageInfo{
		"nginx":                   {Kind: KindNoTag, Ref: probe.Reference{Registry: "docker.io", Repository: "library/nginx", Tag: "latest"}},
		"nginx:latest":            {Kind: KindLatest, Ref: probe.Reference{Registry: "docker.io", Repository: "library/nginx", Tag: "latest"}},
		"localhost:5000/app":      {Kind: KindNoTag, Ref: probe.Reference{Registry: "localhost:5000", Repository: "app", Tag: "latest"}},
		"ghcr.io/acme/api:v1.2.3": {Kind: KindTag, Ref: probe.Reference{Registry: "ghcr.io", Repository: "acme/api", Tag: "v1.2.3"}},
		"ghcr.io/acme/api@" + digestA: {Kind: KindDigest,
			Ref: probe.Reference{Registry: "ghcr.io", Repository: "acme/api", Digest: digestA}},
		"Not Valid": {Invalid: true},
	} {
		got := parseImage(image).Value()
		want.Image = image
		if !reflect.DeepEqual(got, want) {
			t.Errorf("parseImage(%q) = %+v, want %+v", image, got, want)
		}
	}
	a, b := parseImage("nginx:1.27"), parseImage("docker.io/library/nginx:1.27"[len("docker.io/library/"):])
	if a != b {
		t.Error("parseImage does not intern: two parses of one reference give two handles")
	}
}

func TestDigestOf(t *testing.T) {
	for id, want := range map[string]string{
		"docker.io/library/nginx@" + digestA: digestA,
		"docker-pullable://nginx@" + digestA: digestA,
		digestA:                              "", // image config ID, not a manifest digest
		"":                                   "",
		"docker.io/library/nginx@sha256":     "",
	} {
		h := digestOf(id)
		got := ""
		if h != noDigest {
			got = h.Value()
		}
		if got != want {
			t.Errorf("digestOf(%q) = %q, want %q", id, got, want)
		}
	}
}

func TestTransformPodKeepsOnlyWhatTheJoinNeeds(t *testing.T) {
	p := pod("ns", "p", "node-1",
		ctr{image: "busybox", init: true, waiting: "ImagePullBackOff"},
		ctr{image: "ghcr.io/acme/api:v1", policy: "IfNotPresent", running: true, imageID: "ghcr.io/acme/api@" + digestA})
	p.Spec.ServiceAccountName = "sa"
	p.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "s1"}, {Name: ""}, {Name: "s2"}}
	p.Labels = map[string]string{"big": "label"}
	p.Annotations = map[string]string{"kubectl.kubernetes.io/last-applied-configuration": "{...}"}
	ctrl := true
	p.OwnerReferences = []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "rs", Controller: &ctrl}}
	x, err := transformPod(p)
	if err != nil {
		t.Fatal(err)
	}
	got := x.(*podInfo)
	if got.Labels != nil || got.Annotations != nil || got.OwnerReferences != nil {
		t.Errorf("metadata not stripped: %+v", got.ObjectMeta)
	}
	if got.Node != "node-1" || got.ServiceAccount != "sa" || !reflect.DeepEqual(got.PullSecrets, []string{"s1", "s2"}) ||
		got.OwnerKind != "ReplicaSet" || got.OwnerName != "rs" {
		t.Errorf("pod fields: %+v", got)
	}
	if len(got.Containers) != 2 || !got.Containers[0].Init || got.Containers[0].Waiting != "ImagePullBackOff" ||
		got.Containers[1].Init || !got.Containers[1].Running || got.Containers[1].Digest.Value() != digestA {
		t.Errorf("containers: %+v", got.Containers)
	}
	// Idempotent: the informer may hand a transformed object back.
	if y, err := transformPod(got); err != nil || y != any(got) {
		t.Errorf("transform of a transformed pod: %v, %v", y, err)
	}
	if _, err := transformPod(&corev1.Node{}); err == nil {
		t.Error("transformPod accepted a node")
	}
}

func TestJoin(t *testing.T) {
	status := staticStatus{
		causes: map[string]string{
			"docker.io":       collector.CauseRegistryOK,
			"ghcr.io":         string(probe.ReasonConnect),
			"registry.acme.x": collector.CauseRegistryOK,
			// One pod's pull secret is wrong: its target's unauthorized
			// makes the registry's cause unauthorized.
			"auth.example": string(probe.ReasonUnauthorized),
			// Its only target's tag is missing: a per-image cause.
			"nf.example": string(probe.ReasonNotFound),
		},
		tags: map[tagKey]tagResult{
			{"docker.io", "library/nginx", "1.27"}:       {digest: digestA, ok: true},
			{"docker.io", "library/redis", "7"}:          {digest: digestB, ok: true},
			{"registry.acme.x", "team/app", "gone"}:      {reason: probe.ReasonNotFound, ok: true},
			{"registry.acme.x", "team/app", "pinnedtag"}: {digest: digestA, ok: true},
			{"auth.example", "app", "v1"}:                {digest: digestA, ok: true},
		},
	}
	c := offlineCluster(t, Options{Status: status})
	c.feed(t,
		// Waiting, by namespace, registry and reason, init containers too.
		pod("a", "p1", "n1",
			ctr{image: "ghcr.io/acme/api:v1", init: true, waiting: "ErrImagePull"},
			ctr{image: "ghcr.io/acme/api:v1", waiting: "ImagePullBackOff"}),
		pod("a", "p2", "n1", ctr{image: "ghcr.io/acme/api:v1", waiting: "ImagePullBackOff"}),
		pod("b", "p3", "n1", ctr{image: "nginx:1.28", waiting: "ErrImagePull"}),
		pod("b", "p4", "n1", ctr{image: "UPPER/case", waiting: "InvalidImageName"}),
		pod("b", "p5", "n1", ctr{image: "quay.io/x/y:1", waiting: "ErrImagePull"}),
		// Waiting for a reason that is not about images: not counted.
		pod("b", "p6", "n1", ctr{image: "nginx:1.27", waiting: "CrashLoopBackOff"}),
		// Running: mutable refs, tag digests and drift.
		pod("c", "r1", "n1", ctr{image: "nginx:1.27", policy: "IfNotPresent", running: true, imageID: "docker.io/library/nginx@" + digestA}),
		pod("c", "r2", "n2", ctr{image: "docker.io/library/nginx:1.27", policy: "IfNotPresent", running: true, imageID: "docker.io/library/nginx@" + digestB}),
		pod("c", "r3", "n1", ctr{image: "redis:7", policy: "IfNotPresent", running: true, imageID: "docker.io/library/redis@" + digestB}),
		pod("c", "r4", "n1", ctr{image: "busybox", policy: "Always", running: true}),
		pod("c", "r5", "n1", ctr{image: "busybox:latest", policy: "Always", running: true}),
		pod("c", "r6", "n1", ctr{image: "nginx@" + digestA, policy: "IfNotPresent", running: true}),
		// Reschedule risk: ghcr.io is down; registry.acme.x lost a tag.
		pod("d", "k1", "n1", ctr{image: "ghcr.io/acme/web:v2", policy: "IfNotPresent", running: true}), // held by n2: safe
		pod("d", "k2", "n2", ctr{image: "ghcr.io/acme/web:v2", policy: "IfNotPresent", running: true}), // held only by n2 itself
		pod("d", "k3", "n1", ctr{image: "ghcr.io/acme/web:v2", policy: "Always", running: true}),       // Always pulls
		pod("d", "k4", "n1", ctr{image: "registry.acme.x/team/app:gone", policy: "IfNotPresent", running: true}),
		pod("d", "k5", "n1", ctr{image: "registry.acme.x/team/app:pinnedtag", policy: "IfNotPresent", running: true}),
		// The image probed fine with the right credentials: no risk; an
		// image of that registry nobody probed: the registry's cause.
		pod("e", "a1", "n1", ctr{image: "auth.example/app:v1", policy: "IfNotPresent", running: true}),
		pod("e", "a2", "n1", ctr{image: "auth.example/app:v2", policy: "IfNotPresent", running: true}),
		pod("e", "a3", "n1", ctr{image: "nf.example/app:other", policy: "IfNotPresent", running: true}),
		node("n1"),
		node("n2", "ghcr.io/acme/web:v2", "docker.io/library/nginx@"+digestB),
	)
	res := c.join()

	wantWaiting := map[nsRegReason]int{
		{"a", "ghcr.io", "ErrImagePull"}:     1,
		{"a", "ghcr.io", "ImagePullBackOff"}: 2,
		{"b", "docker.io", "ErrImagePull"}:   1,
		{"b", "invalid", "InvalidImageName"}: 1,
		{"b", "quay.io", "ErrImagePull"}:     1,
	}
	if !reflect.DeepEqual(res.waiting, wantWaiting) {
		t.Errorf("waiting = %v\nwant %v", res.waiting, wantWaiting)
	}
	wantBlocked := map[regCause]int{
		{"ghcr.io", "connect"}:       3,
		{"docker.io", "registry_ok"}: 1,
		{"invalid", "unprobed"}:      1,
		{"quay.io", "unprobed"}:      1,
	}
	if !reflect.DeepEqual(res.blocked, wantBlocked) {
		t.Errorf("blocked = %v\nwant %v", res.blocked, wantBlocked)
	}
	wantMutable := map[mutableKey]int{
		{"c", "docker.io", "IfNotPresent", "tag"}:       3,
		{"c", "docker.io", "Always", "no_tag"}:          1,
		{"c", "docker.io", "Always", "latest"}:          1,
		{"d", "ghcr.io", "IfNotPresent", "tag"}:         2,
		{"d", "ghcr.io", "Always", "tag"}:               1,
		{"d", "registry.acme.x", "IfNotPresent", "tag"}: 2,
		{"e", "auth.example", "IfNotPresent", "tag"}:    2,
		{"e", "nf.example", "IfNotPresent", "tag"}:      1,
	}
	if !reflect.DeepEqual(res.mutable, wantMutable) {
		t.Errorf("mutable = %v\nwant %v", res.mutable, wantMutable)
	}
	if want := map[tagKey]int{{"docker.io", "library/nginx", "1.27"}: 2}; !reflect.DeepEqual(res.tagDigests, want) {
		t.Errorf("tagDigests = %v, want %v", res.tagDigests, want)
	}
	wantDrift := map[tagKey]int{
		{"docker.io", "library/nginx", "1.27"}: 1, // one runs digestB, the registry serves digestA
		{"docker.io", "library/redis", "7"}:    0,
	}
	if !reflect.DeepEqual(res.drift, wantDrift) {
		t.Errorf("drift = %v, want %v", res.drift, wantDrift)
	}
	wantRisk := map[nsRegReason]int{
		{"d", "ghcr.io", "connect"}:           2, // k2 (only its own node holds it), k3 (Always)
		{"d", "registry.acme.x", "not_found"}: 1, // k4
		{"e", "auth.example", "unauthorized"}: 1, // a2
	}
	if !reflect.DeepEqual(res.rescheduleRisk, wantRisk) {
		t.Errorf("rescheduleRisk = %v, want %v", res.rescheduleRisk, wantRisk)
	}
}

// Past --kube.max-registries the folded registries' counts go to "other",
// their per-tag series (not counts) go, and "invalid" is not a registry.
func TestFoldRegistries(t *testing.T) {
	res := &joinResult{
		waiting: map[nsRegReason]int{
			{"ns", "a.example", "ErrImagePull"}: 3, {"ns", "b.example", "ErrImagePull"}: 1,
			{"ns", "c.example", "ErrImagePull"}: 1, {"ns", RegistryInvalid, "InvalidImageName"}: 5},
		blocked: map[regCause]int{{"a.example", "unprobed"}: 3, {"b.example", "unprobed"}: 1,
			{"c.example", "unprobed"}: 1, {RegistryInvalid, "unprobed"}: 5},
		mutable:        map[mutableKey]int{},
		tagDigests:     map[tagKey]int{{"a.example", "x", "1"}: 2, {"c.example", "x", "1"}: 2},
		drift:          map[tagKey]int{{"b.example", "x", "1"}: 1},
		rescheduleRisk: map[nsRegReason]int{},
	}
	res.foldRegistries(1)
	want := map[nsRegReason]int{{"ns", "a.example", "ErrImagePull"}: 3, {"ns", "other", "ErrImagePull"}: 2,
		{"ns", RegistryInvalid, "InvalidImageName"}: 5}
	if !reflect.DeepEqual(res.waiting, want) {
		t.Errorf("waiting = %v, want %v", res.waiting, want)
	}
	if res.blocked[regCause{"other", "unprobed"}] != 2 || len(res.blocked) != 3 {
		t.Errorf("blocked = %v", res.blocked)
	}
	if len(res.tagDigests) != 1 || len(res.drift) != 0 {
		t.Errorf("tag series of folded registries kept: digests %v, drift %v", res.tagDigests, res.drift)
	}
	if res.folded != 2 {
		t.Errorf("folded = %d, want 2", res.folded)
	}
}
