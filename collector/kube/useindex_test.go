package kube

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unique"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

// Discovery's reference counts against the full pass over the caches they
// replaced: after every step of a random sequence of pod and template
// adds, updates, deletes (tombstones too) and relists, the counts must be
// exactly the uses the full pass finds, and discovery's distinct uses
// (with the pull secrets the kubelet would use) the same set.

// usesFromCaches is the full pass over every cached pod and template that
// Discovery.uses made before the reference counts: the oracle.
func (d *Discovery) usesFromCaches() map[useKey]int {
	c := d.c
	out := map[useKey]int{}
	add := func(obj any) {
		objectUses(obj, func(k useKey) {
			if !k.img.Value().Invalid {
				out[k]++
			}
		})
	}
	for _, obj := range c.pods.list() {
		add(obj)
	}
	for _, rw := range c.workloads {
		for _, obj := range rw.list() {
			add(obj)
		}
	}
	return out
}

// useStrings is a set of uses as discovery sees them, comparable.
func useStrings(us []imageUse) []string {
	var out []string
	for _, u := range us {
		out = append(out, fmt.Sprintf("%s|%s|%d|%s", u.img.Image, u.namespace, u.rank, strings.Join(u.secrets, ",")))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func TestUseIndexOracle(t *testing.T) {
	for seed := range uint64(30) {
		data := seededBytes(seed, 3, 3000)
		t.Run(fmt.Sprint(seed), func(t *testing.T) { runUseOracle(t, data) })
	}
}

func runUseOracle(t *testing.T, data []byte) {
	ch := &choices{data: data}
	c := offlineCluster(t, Options{WatchWorkloads: true, UsePullSecrets: true})
	// Pull-secret mode, so that the uses carry the secrets the kubelet
	// would use; the auth checks (which need a prober) are not exercised.
	d := &Discovery{c: c, opts: DiscoveryOptions{UsePullSecrets: true}}
	o := &oracle{t: t, c: c, ch: ch, store: c.pods.informers[0].GetStore()}
	pods, deps := c.uses.handler(), c.uses.handler()
	depStore := c.workloads[0].informers[0].GetStore()
	sas := c.serviceAccounts.informers[0].GetStore()
	for _, ns := range oracleNamespaces {
		must(t, sas.Add(&serviceAccountInfo{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"}, PullSecrets: []string{"sa-cred"}}))
	}
	randomPod := func(ns, name string, prev *podInfo) *podInfo {
		p := o.randomPod(ns, name, prev)
		p.ServiceAccount = []string{"", "default", "other"}[ch.n(3)]
		p.PullSecrets = [][]string{nil, {"a"}, {"a", "b"}}[ch.n(3)]
		return p
	}
	randomTemplate := func(ns, name string) *templateInfo {
		w := &templateInfo{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Kind: "Deployment",
			ServiceAccount: []string{"", "default"}[ch.n(2)], PullSecrets: [][]string{nil, {"t"}}[ch.n(2)]}
		for i := range 1 + ch.n(3) {
			w.Containers = append(w.Containers, templateContainer{Name: unique.Make(oracleContainers[i]), Img: parseImage(o.pick(oracleImages))})
		}
		return w
	}
	step := 0
	for !ch.done() {
		step++
		ns, name := o.pick(oracleNamespaces), fmt.Sprintf("x%d", ch.n(6))
		key := ns + "/" + name
		store, h := o.store, pods
		if ch.n(2) == 0 {
			store, h = depStore, deps
		}
		prev, exists, _ := store.GetByKey(key)
		fresh := func() any {
			if store == depStore {
				return randomTemplate(ns, name)
			}
			var pp *podInfo
			if exists {
				pp = prev.(*podInfo)
			}
			return randomPod(ns, name, pp)
		}
		switch ch.n(4) {
		case 0, 1:
			obj := fresh()
			if exists {
				must(t, store.Update(obj))
				h.OnUpdate(prev, obj)
			} else {
				must(t, store.Add(obj))
				h.OnAdd(obj, false)
			}
		case 2:
			if exists {
				must(t, store.Delete(prev))
				if ch.n(2) == 0 {
					h.OnDelete(cache.DeletedFinalStateUnknown{Key: key, Obj: prev})
				} else {
					h.OnDelete(prev)
				}
			}
		default: // relist of the one store
			old := map[string]any{}
			for _, obj := range store.List() {
				k, _ := cache.MetaNamespaceKeyFunc(obj)
				old[k] = obj
			}
			next := map[string]any{}
			var list []any
			for _, ns := range oracleNamespaces {
				for i := range 6 {
					k := fmt.Sprintf("%s/x%d", ns, i)
					if ch.n(2) == 0 {
						continue
					}
					var obj any
					if store == depStore {
						obj = randomTemplate(ns, fmt.Sprintf("x%d", i))
					} else {
						var pp *podInfo
						if p, ok := old[k].(*podInfo); ok {
							pp = p
						}
						obj = randomPod(ns, fmt.Sprintf("x%d", i), pp)
					}
					next[k] = obj
					list = append(list, obj)
				}
			}
			must(t, store.Replace(list, ""))
			for k, obj := range next {
				if p, ok := old[k]; ok {
					h.OnUpdate(p, obj)
				} else {
					h.OnAdd(obj, false)
				}
			}
			for k, p := range old {
				if _, ok := next[k]; !ok {
					h.OnDelete(cache.DeletedFinalStateUnknown{Key: k, Obj: p})
				}
			}
		}
		want := d.usesFromCaches()
		if got := c.uses.snapshot(); !reflect.DeepEqual(got, want) {
			t.Fatalf("step %d: reference counts %v, the full pass finds %v", step, got, want)
		}
		// Discovery's view, pull secrets resolved: the same uses.
		var full []imageUse
		for k := range want {
			var own []string
			if k.ownSecrets != "" {
				own = strings.Split(k.ownSecrets, ",")
			}
			full = append(full, imageUse{img: k.img.Value(), namespace: k.namespace, rank: k.rank,
				secrets: c.effectivePullSecrets(k.namespace, k.serviceAccount, own)})
		}
		if got, want := useStrings(d.uses()), useStrings(full); !reflect.DeepEqual(got, want) {
			t.Fatalf("step %d: discovery's uses %v, want %v", step, got, want)
		}
	}
	// Everything deleted: nothing is referenced any more.
	for _, x := range []struct {
		s cache.Store
		h cache.ResourceEventHandler
	}{{o.store, pods}, {depStore, deps}} {
		for _, obj := range x.s.List() {
			must(t, x.s.Delete(obj))
			x.h.OnDelete(obj)
		}
	}
	if n := len(c.uses.snapshot()); n != 0 {
		t.Errorf("after every object is deleted, %d uses are still counted", n)
	}
}

// TestUseIndexSignalsChange: discovery is woken when an image comes or
// goes, not when one more container uses an image already counted.
func TestUseIndexSignalsChange(t *testing.T) {
	x := newUseIndex()
	h := x.handler()
	drain := func() bool {
		select {
		case <-x.changed:
			return true
		default:
			return false
		}
	}
	p := func(name, image string) *podInfo {
		return &podInfo{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: name},
			Containers: []containerInfo{{Name: unique.Make("c"), Img: parseImage(image)}}}
	}
	h.OnAdd(p("p1", "nginx:1"), false)
	if !drain() {
		t.Error("a new image did not wake discovery")
	}
	h.OnAdd(p("p2", "nginx:1"), false)
	if drain() {
		t.Error("a second pod of a counted image woke discovery")
	}
	h.OnDelete(p("p2", "nginx:1"))
	if drain() {
		t.Error("one of two pods of an image going away woke discovery")
	}
	h.OnDelete(p("p1", "nginx:1"))
	if !drain() {
		t.Error("the last pod of an image going away did not wake discovery")
	}
}
