package kube

import (
	"strings"
	"sync"
	"unique"

	"k8s.io/client-go/tools/cache"
)

// Discovery's reference counts: how many containers of pods and workload
// templates use each image in each place (namespace, service account, own
// pull secrets, rank), kept by the informers' handlers, so that a
// discovery pass reads the distinct uses (a few hundred) instead of every
// pod's every container. A use's count moves with the events of the pods
// and templates that hold it; a use appearing or going away wakes
// discovery (changed), which then hands the scheduler the new set at once
// instead of at its next tick.
//
// The counts are a pure function of each object, so an update subtracts
// the old version's uses (the informer hands it over) and adds the new
// one's; nothing per object is kept. usesFromCaches, the full pass over
// the caches, is the oracle TestUseIndexOracle compares them with.

// useKey is one distinct use of an image.
type useKey struct {
	img            unique.Handle[imageInfo]
	namespace      string
	serviceAccount string
	ownSecrets     string // the object's own imagePullSecrets, joined by ","
	rank           int    // 0 waiting, 1 in a pod, 2 only in a template
}

type useIndex struct {
	mu     sync.Mutex
	counts map[useKey]int
	// changed holds a token when a use appeared or went away since
	// discovery last looked.
	changed chan struct{}
}

func newUseIndex() *useIndex {
	return &useIndex{counts: map[useKey]int{}, changed: make(chan struct{}, 1)}
}

// objectUses calls f with each use of a pod or template.
func objectUses(obj any, f func(useKey)) {
	switch o := obj.(type) {
	case *podInfo:
		own := strings.Join(o.PullSecrets, ",")
		for i := range o.Containers {
			ct := &o.Containers[i]
			rank := 1
			if ct.Waiting != "" {
				rank = 0
			}
			f(useKey{ct.Img, o.Namespace, o.ServiceAccount, own, rank})
		}
	case *templateInfo:
		own := strings.Join(o.PullSecrets, ",")
		for _, ct := range o.Containers {
			f(useKey{ct.Img, o.Namespace, o.ServiceAccount, own, 2})
		}
	}
}

func (x *useIndex) add(obj any, d int) {
	moved := false
	objectUses(obj, func(k useKey) {
		if k.img.Value().Invalid {
			return // nothing can probe it
		}
		n := x.counts[k] + d
		if n == 0 {
			delete(x.counts, k)
		} else {
			x.counts[k] = n
		}
		if n == 0 || n == d {
			moved = true
		}
	})
	if moved {
		select {
		case x.changed <- struct{}{}:
		default:
		}
	}
}

// handler keeps the counts from one resource's informers.
func (x *useIndex) handler() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			x.mu.Lock()
			defer x.mu.Unlock()
			x.add(obj, 1)
		},
		UpdateFunc: func(oldObj, newObj any) {
			x.mu.Lock()
			defer x.mu.Unlock()
			x.add(oldObj, -1)
			x.add(newObj, 1)
		},
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			x.mu.Lock()
			defer x.mu.Unlock()
			x.add(obj, -1)
		},
	}
}

// snapshot returns the distinct uses and their counts.
func (x *useIndex) snapshot() map[useKey]int {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := make(map[useKey]int, len(x.counts))
	for k, n := range x.counts {
		out[k] = n
	}
	return out
}
