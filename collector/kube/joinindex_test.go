package kube

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
	"unique"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/imagepull/imagepull_exporter/collector"
	"github.com/imagepull/imagepull_exporter/probe"
)

// The incremental join against its oracle: random sequences of what the
// informers deliver (pods added, updated — status, node, UID —, deleted,
// relists that replace the whole set; Failed events added, replaced,
// evicted from a tiny newest-cause index, deleted), of node image lists
// and of probe results changing a registry's cause or a tag's digest. After
// every step, incrementalJoin() must equal join(), the one-pass computation
// over the caches every join test checks the semantics of.

// choices reads a test's random decisions from bytes, so that the fuzzer
// can drive them; past the end every choice is 0.
type choices struct {
	data []byte
	i    int
}

func (c *choices) n(k int) int {
	if c.i >= len(c.data) {
		return 0
	}
	b := c.data[c.i]
	c.i++
	return int(b) % k
}

func (c *choices) done() bool { return c.i >= len(c.data) }

var (
	oracleNamespaces = []string{"a", "b"}
	oracleNodes      = []string{"", "n0", "n1", "n2"}
	oracleImages     = []string{
		"docker.io/library/nginx:1.27", "nginx", "nginx:latest", "ghcr.io/acme/api:v1",
		"ghcr.io/acme/api@" + digestA, "quay.io/x/y:v2", "Not Valid", "localhost:5000/app:v1",
	}
	oracleRegistries = []string{"docker.io", "ghcr.io", "quay.io", "localhost:5000"}
	oracleWaiting    = []string{"", "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "CrashLoopBackOff"}
	oracleCauses     = []string{"", "rate_limited", "not_found", "connect", "unauthorized", collector.CauseUnknown}
	oracleRegCauses  = []string{"", collector.CauseRegistryOK, "connect", "rate_limited", "not_found", "unauthorized", "tls"}
	oracleReasons    = []probe.Reason{probe.ReasonNone, probe.ReasonNone, probe.ReasonNotFound, "connect", "no_credentials"}
	oracleDigests    = []string{"", digestA, "sha256:" + fmt.Sprintf("%064d", 2)}
	oracleContainers = []string{"ca", "cb", "cc"}
)

type oracle struct {
	t      testing.TB
	c      *Cluster
	status staticStatus
	// down are the registries whose own health reports the auth backend
	// down (issue 15): their node-reported unauthorized is attributed.
	down   map[string]bool
	store  cache.Store
	ch     *choices
	uids   []types.UID
	events map[string]*eventInfo
	clock  time.Time
}

func newOracle(t testing.TB, ch *choices) *oracle {
	status := staticStatus{causes: map[string]string{}, tags: map[tagKey]tagResult{}}
	down := map[string]bool{}
	c := offlineCluster(t, Options{Status: authDownStatus{staticStatus: status, down: down}, WatchEvents: true, MaxRegistries: ch.n(4)})
	c.eventIdx = newEventIndex(1 + ch.n(4)) // small: evictions move causes too
	return &oracle{t: t, c: c, status: status, down: down, store: c.pods.informers[0].GetStore(), ch: ch,
		events: map[string]*eventInfo{}, clock: time.Unix(1700000000, 0)}
}

func (o *oracle) pick(list []string) string { return list[o.ch.n(len(list))] }

func (o *oracle) newUID() types.UID {
	u := types.UID(fmt.Sprintf("uid-%d", len(o.uids)))
	o.uids = append(o.uids, u)
	return u
}

// randomPod is a pod as the transform would leave it; prev, when not nil,
// is the pod it updates (same UID unless the pod was recreated).
func (o *oracle) randomPod(ns, name string, prev *podInfo) *podInfo {
	p := &podInfo{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Node: o.pick(oracleNodes)}
	if prev != nil && o.ch.n(4) != 0 {
		p.UID = prev.UID
	} else {
		p.UID = o.newUID()
	}
	for i := range 1 + o.ch.n(3) {
		ct := containerInfo{Name: unique.Make(oracleContainers[i]), Img: parseImage(o.pick(oracleImages)),
			PullPolicy: o.pick([]string{"", "Always", "IfNotPresent"}), Init: o.ch.n(3) == 0}
		switch o.ch.n(3) {
		case 0:
			ct.Waiting = waitingReason(o.pick(oracleWaiting))
			if pullErrorReason(ct.Waiting) {
				if c := o.pick(oracleCauses); c != "" {
					ct.Cause = unique.Make(c)
				}
			}
		case 1:
			ct.Running = true
		}
		if d := o.pick(oracleDigests); d != "" {
			ct.Digest = unique.Make(d)
		}
		p.Containers = append(p.Containers, ct)
	}
	return p
}

func (o *oracle) get(key string) *podInfo {
	obj, ok, _ := o.store.GetByKey(key)
	if !ok {
		return nil
	}
	return obj.(*podInfo)
}

// step applies one random change, as the informers would deliver it.
func (o *oracle) step() string {
	ns, name := o.pick(oracleNamespaces), fmt.Sprintf("p%d", o.ch.n(6))
	key := ns + "/" + name
	switch op := o.ch.n(10); op {
	case 0, 1, 2: // add or update a pod
		prev := o.get(key)
		p := o.randomPod(ns, name, prev)
		if prev == nil {
			must(o.t, o.store.Add(p))
			o.c.indexPodAdd(p, false)
		} else {
			must(o.t, o.store.Update(p))
			o.c.indexPodUpdate(prev, p)
		}
		return "upsert " + key
	case 3: // delete a pod, sometimes as a tombstone
		prev := o.get(key)
		if prev == nil {
			return "delete nothing"
		}
		must(o.t, o.store.Delete(prev))
		if o.ch.n(2) == 0 {
			o.c.indexPodDelete(cache.DeletedFinalStateUnknown{Key: key, Obj: prev})
		} else {
			o.c.indexPodDelete(prev)
		}
		return "delete " + key
	case 4: // relist: the store is replaced, the handlers see the difference
		old := map[string]*podInfo{}
		for _, obj := range o.store.List() {
			p := obj.(*podInfo)
			old[podKey(p)] = p
		}
		var list []any
		fresh := map[string]*podInfo{}
		for _, ns := range oracleNamespaces {
			for i := range 6 {
				k := fmt.Sprintf("%s/p%d", ns, i)
				switch o.ch.n(3) {
				case 0: // gone
				case 1: // unchanged, if there
					if p := old[k]; p != nil {
						fresh[k] = p
						list = append(list, p)
					}
				default:
					p := o.randomPod(ns, fmt.Sprintf("p%d", i), old[k])
					fresh[k] = p
					list = append(list, p)
				}
			}
		}
		must(o.t, o.store.Replace(list, ""))
		for k, p := range fresh {
			if prev := old[k]; prev != nil {
				o.c.indexPodUpdate(prev, p)
			} else {
				o.c.indexPodAdd(p, false)
			}
		}
		for k, p := range old {
			if fresh[k] == nil {
				o.c.indexPodDelete(cache.DeletedFinalStateUnknown{Key: k, Obj: p})
			}
		}
		return fmt.Sprintf("relist %d pods", len(list))
	case 5: // a Failed event, new or a newer (or older) version of one
		o.clock = o.clock.Add(time.Duration(o.ch.n(5)-1) * time.Second)
		e := &eventInfo{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("e%d", o.ch.n(8))},
			Pod: name, Container: o.pick(oracleContainers), Last: o.clock}
		// Mostly about a live pod, by UID (as kubelets write them), with
		// or without its name; else about any UID ever seen, or by name.
		if pods := o.store.List(); len(pods) > 0 && o.ch.n(3) != 0 {
			p := pods[o.ch.n(len(pods))].(*podInfo)
			e.Namespace, e.PodUID = p.Namespace, p.UID
			if o.ch.n(2) == 0 {
				e.Pod = p.Name
			}
		} else if len(o.uids) > 0 && o.ch.n(2) == 0 {
			e.PodUID = o.uids[o.ch.n(len(o.uids))]
		}
		if c := o.pick(oracleCauses); c != "" {
			e.Cause = unique.Make(c)
		}
		o.events[e.Name] = e
		o.c.indexEventsChanged(o.c.eventIdx.update(e))
		return "event " + e.Name
	case 6: // an event deleted (expired)
		for _, e := range o.events {
			delete(o.events, e.Name)
			o.c.indexEventsChanged(o.c.eventIdx.remove(e))
			return "event deleted " + e.Name
		}
		return "no event to delete"
	case 7: // a probe result changes a registry's cause
		reg := o.pick(oracleRegistries)
		if c := o.pick(oracleRegCauses); c != "" {
			o.status.causes[reg] = c
		} else {
			delete(o.status.causes, reg)
		}
		o.down[reg] = o.ch.n(3) == 0 // its health says the auth backend is down
		return "registry cause " + reg
	case 8: // a probe result changes a tag's
		img := parseImage(o.pick(oracleImages)).Value()
		if img.Invalid {
			return "no tag"
		}
		k := tagKey{img.Ref.Registry, img.Ref.Repository, img.Ref.Identifier()}
		if o.ch.n(4) == 0 {
			delete(o.status.tags, k)
		} else {
			o.status.tags[k] = tagResult{digest: o.pick(oracleDigests), reason: oracleReasons[o.ch.n(len(oracleReasons))], ok: true}
		}
		return "tag result " + k.repository
	default: // a node's image list
		n := oracleNodes[1+o.ch.n(len(oracleNodes)-1)]
		var imgs []string
		for _, i := range oracleImages {
			if o.ch.n(3) == 0 {
				imgs = append(imgs, i)
			}
		}
		must(o.t, o.c.nodes.informers[0].GetStore().Update(mustTransform(o.t, node(n, imgs...))))
		return "node " + n
	}
}

func mustTransform(t testing.TB, obj any) any {
	x, err := transformNode(obj)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// check compares the incremental join with the oracle.
func (o *oracle) check(history []string) {
	o.t.Helper()
	want, got := o.c.join(), o.c.incrementalJoin()
	for _, f := range []struct {
		name      string
		want, got any
	}{
		{"waiting", want.waiting, got.waiting},
		{"blocked", want.blocked, got.blocked},
		{"pullError", want.pullError, got.pullError},
		{"nodeErrors", want.nodeErrors, got.nodeErrors},
		{"mutable", want.mutable, got.mutable},
		{"tagDigests", want.tagDigests, got.tagDigests},
		{"drift", want.drift, got.drift},
		{"rescheduleRisk", want.rescheduleRisk, got.rescheduleRisk},
		{"folded", want.folded, got.folded},
		{"nodesSynced", want.nodesSynced, got.nodesSynced},
	} {
		if !reflect.DeepEqual(f.want, f.got) {
			o.t.Fatalf("after %d steps (last: %q): %s = %v, the oracle says %v", len(history), history[len(history)-1], f.name, f.got, f.want)
		}
	}
	// The index holds exactly the stored pods.
	if n := len(o.store.List()); n != len(o.c.index.pods) {
		o.t.Fatalf("after %q: index holds %d pods, store %d", history[len(history)-1], len(o.c.index.pods), n)
	}
}

func runOracle(t testing.TB, data []byte) {
	ch := &choices{data: data}
	o := newOracle(t, ch)
	var history []string
	for !ch.done() {
		history = append(history, o.step())
		o.check(history)
	}
	// Deleting everything leaves nothing counted.
	for _, obj := range o.store.List() {
		p := obj.(*podInfo)
		must(t, o.store.Delete(p))
		o.c.indexPodDelete(p)
	}
	x := o.c.index
	for name, m := range map[string]int{"waiting": len(x.waiting), "blockedBy": len(x.blockedBy), "pullError": len(x.pullError),
		"nodeErrors": len(x.nodeErrors), "mutable": len(x.mutable), "digests": len(x.digests), "running": len(x.running),
		"pods": len(x.pods), "byUID": len(x.byUID)} {
		if m != 0 {
			t.Errorf("after deleting every pod, %s holds %d entries", name, m)
		}
	}
}

// seededBytes is n pseudo-random bytes, the same for the same seed and
// stream: the fixed event sequences the oracle tests run.
func seededBytes(seed, stream uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, stream))
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	return data
}

// TestIncrementalJoinOracle runs fixed random sequences in the normal
// suite; FuzzIncrementalJoin explores further with `go test -fuzz`.
func TestIncrementalJoinOracle(t *testing.T) {
	for seed := range uint64(40) {
		data := seededBytes(seed, 13, 4000)
		t.Run(fmt.Sprint(seed), func(t *testing.T) { runOracle(t, data) })
	}
}

func FuzzIncrementalJoin(f *testing.F) {
	for seed := range uint64(4) {
		f.Add(seededBytes(seed, 7, 300))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 20000 {
			return
		}
		runOracle(t, data)
	})
}

// A scrape's result is the collector's to fold and re-key: it must not
// share maps with the index.
func TestIncrementalJoinResultIsACopy(t *testing.T) {
	c := offlineCluster(t, Options{})
	p := &podInfo{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "p", UID: "u"},
		Containers: []containerInfo{{Name: unique.Make("c"), Img: parseImage("nginx:1"), Waiting: "ErrImagePull"}}}
	c.indexPodAdd(p, true)
	res := c.incrementalJoin()
	before := maps.Clone(c.index.waiting)
	res.waiting[nsRegReason{"a", "docker.io", "ErrImagePull"}] = 99
	if !reflect.DeepEqual(before, c.index.waiting) {
		t.Error("a join result shares its maps with the index: a scrape could corrupt the counts")
	}
}
