(import 'registry.libsonnet') +
(import 'ratelimit.libsonnet') +
(import 'cluster.libsonnet') +
(import 'exporter.libsonnet') +
(import 'scaleout.libsonnet') +
(import 'mirror.libsonnet') +
(import 'add-runbook-links.libsonnet')
