package collector

// JoinSummary is the Kubernetes join as the status page shows it: where
// pods are stuck on image pulls, and why. collector/kube computes it from
// one evaluation of the join (the one a scrape makes), so it agrees with
// imagepull_registry_blocked_containers and
// imagepull_pod_containers_waiting.
type JoinSummary struct {
	// Synced is false until the pods' first list is in: before that the
	// counts would say "nothing waits" for want of knowing.
	Synced bool
	// Blocked counts the containers waiting on an image pull per registry
	// and cause (imagepull_registry_blocked_containers), most first.
	Blocked []BlockedCount
	// Namespaces are the namespaces with the most containers waiting on an
	// image pull, most first, at most the number asked for.
	Namespaces []NamespaceCount
	// MoreNamespaces is how many namespaces with waiting containers were
	// left out of Namespaces.
	MoreNamespaces int
	// Containers is the total of Blocked.
	Containers int
	// Folded is how many registries are counted under "other"
	// (--kube.max-registries).
	Folded int
}

// BlockedCount is one registry and cause with its blocked containers.
type BlockedCount struct {
	Registry, Cause string
	Containers      int
}

// NamespaceCount is one namespace with its containers waiting on a pull.
type NamespaceCount struct {
	Namespace  string
	Containers int
}
