package kube

// attribute is the cause a node reported for registry, as the join counts
// it: the scheduler's one attribution rule (collector/health.go) says
// whether an unauthorized is the registry's failure (its own health API
// reports its auth backend down: server_error) rather than the pull
// credentials'. The node-reported series (imagepull_pod_containers_pull_error,
// imagepull_node_pull_errors) keep what the nodes said; only the join's
// cause, imagepull_registry_blocked_containers, is attributed, as the
// scheduler's own probe results are.
func (s *statusCache) attribute(registry, cause string) string {
	if s.status == nil || cause == "" || registry == RegistryInvalid {
		return cause
	}
	return s.status.AttributeCause(registry, cause)
}
