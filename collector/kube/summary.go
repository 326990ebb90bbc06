package kube

import (
	"cmp"
	"slices"

	"github.com/imagepull/imagepull_exporter/collector"
)

// JoinSummary evaluates the join once and summarises it for the status page
// (collector/web's JoinView): blocked containers per registry and cause,
// and the top namespaces by containers waiting on a pull. The join is
// evaluated per call, as per scrape, from the same aggregates: a page view
// costs what a scrape of the Kubernetes series costs (BenchmarkScrape), and
// there is no second join computation to keep in step with the metrics.
func (c *Cluster) JoinSummary(top int) collector.JoinSummary {
	if !c.indexSynced() {
		return collector.JoinSummary{}
	}
	return summarise(c.incrementalJoin(), top)
}

func summarise(res *joinResult, top int) collector.JoinSummary {
	s := collector.JoinSummary{Synced: true, Folded: res.folded}
	for k, v := range res.blocked {
		s.Blocked = append(s.Blocked, collector.BlockedCount{Registry: k.registry, Cause: k.cause, Containers: v})
		s.Containers += v
	}
	slices.SortFunc(s.Blocked, func(a, b collector.BlockedCount) int {
		return cmp.Or(cmp.Compare(b.Containers, a.Containers), cmp.Compare(a.Registry, b.Registry), cmp.Compare(a.Cause, b.Cause))
	})
	perNS := map[string]int{}
	for k, v := range res.waiting {
		perNS[k.namespace] += v
	}
	for ns, v := range perNS {
		s.Namespaces = append(s.Namespaces, collector.NamespaceCount{Namespace: ns, Containers: v})
	}
	slices.SortFunc(s.Namespaces, func(a, b collector.NamespaceCount) int {
		return cmp.Or(cmp.Compare(b.Containers, a.Containers), cmp.Compare(a.Namespace, b.Namespace))
	})
	if top > 0 && len(s.Namespaces) > top {
		s.MoreNamespaces = len(s.Namespaces) - top
		s.Namespaces = s.Namespaces[:top]
	}
	return s
}
