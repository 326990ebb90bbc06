// Package collector is where probe results, Kubernetes state and Prometheus
// meet: the configuration and its reloads, the probe scheduler, the Kubernetes
// watchers and the join, and the collectors that turn all of it into metrics.
package collector
