(import 'registry.libsonnet') +
(import 'ratelimit.libsonnet') +
(import 'cluster.libsonnet') +
(import 'exporter.libsonnet') +
(import 'add-runbook-links.libsonnet')
