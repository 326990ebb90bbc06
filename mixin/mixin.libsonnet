// The imagepull mixin: alerts, recording rules and dashboards for
// imagepull_exporter. Use it as a library (prometheusAlerts, prometheusRules,
// grafanaDashboards, _config), or render it with scripts/mixin.sh.
(import 'config.libsonnet') +
(import 'alerts/alerts.libsonnet') +
(import 'rules/rules.libsonnet') +
(import 'dashboards/dashboards.libsonnet')
