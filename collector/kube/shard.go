package kube

import (
	"slices"
	"strings"
	"unique"

	"k8s.io/client-go/tools/cache"

	"github.com/imagepull/imagepull_exporter/collector"
)

// Sharding (collector.Sharding, --shard/--total-shards) reaches the
// Kubernetes side through the informers' transforms: each shard keeps only
// the containers, template images and node images whose registry it owns,
// with the same Owns the scheduler filters targets with. Everything
// downstream (the join, discovery, pull-secret auth checks) reads only those
// caches, so every series keyed by `registry` comes from the one shard that
// owns the registry and probes it, and the join never needs another shard's
// probe results. A pod none of whose containers is owned stays in the cache
// as a stub of a few dozen bytes (name, namespace, node), which keeps the
// informer's bookkeeping simple. Images whose reference does not parse count
// under the registry "invalid", which one shard owns like any other.

// shardPods wraps the pods transform with the shard filter.
func shardPods(s collector.Sharding) cache.TransformFunc {
	return sharded(s, transformPod, func(p *podInfo) {
		p.Containers = slices.DeleteFunc(p.Containers, func(c containerInfo) bool {
			return !s.Owns(c.Img.Value().Registry())
		})
	})
}

// shardWorkloads wraps the workloads transform with the shard filter: the
// templates feed discovery, which must only find this shard's images, and
// the workloads' unavailable images, which only the shard probing an image
// may report.
func shardWorkloads(s collector.Sharding) cache.TransformFunc {
	return sharded(s, transformWorkload, func(w *templateInfo) {
		w.Containers = slices.DeleteFunc(w.Containers, func(c templateContainer) bool {
			return !s.Owns(c.Img.Value().Registry())
		})
	})
}

// shardNodes wraps the nodes transform with the shard filter: the join
// looks node images up only for this shard's images.
func shardNodes(s collector.Sharding) cache.TransformFunc {
	return sharded(s, transformNode, func(n *nodeInfo) {
		n.Images = slices.DeleteFunc(n.Images, func(h unique.Handle[string]) bool {
			return !s.Owns(registryOfImageKey(h.Value()))
		})
	})
}

// sharded runs keepOwned on what transform makes of an object, unless
// sharding is off. keepOwned must be idempotent, as transforms must be.
func sharded[T any](s collector.Sharding, transform cache.TransformFunc, keepOwned func(T)) cache.TransformFunc {
	if !s.Enabled() {
		return transform
	}
	return func(obj any) (any, error) {
		o, err := transform(obj)
		if err != nil {
			return nil, err
		}
		if x, ok := o.(T); ok {
			keepOwned(x)
		}
		return o, nil
	}
}

// registryOfImageKey returns the registry of an imageKey
// ("registry/repository:tag" or "registry/repository@digest").
func registryOfImageKey(k string) string {
	reg, _, _ := strings.Cut(k, "/")
	return reg
}
