// Package collector is where probe results become metrics: the scheduler
// that probes every target on its interval, the Sender through which every
// request to a registry or a mirror leaves the process (it takes the
// per-registry request budget, charges and counts), sharding by registry,
// and the collectors that expose the latest results, request counts and
// mirror comparisons. ProbeStatus is what the Kubernetes join reads from
// the scheduler.
//
// Its neighbours each keep one concern: collector/config parses and
// reloads the configuration, collector/mirror reads the container
// runtimes' mirror files, collector/kube watches the cluster and joins,
// collector/web serves /probe, /logs and the status page. probe does the
// probing itself and knows nothing of Prometheus.
package collector
