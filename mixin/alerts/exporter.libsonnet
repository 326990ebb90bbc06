// Alerts about the exporter itself: without it every other alert is blind.
local utils = import '../lib/utils.libsonnet';

{
  prometheusAlerts+:: {
    local c = $._config,
    local cl = utils.clusterArg(c),

    groups+: [
      {
        name: 'imagepull-exporter',
        rules: [
          {
            alert: 'ImagePullExporterDown',
            // absent() covers a job that lost all its targets (service
            // discovery, a deleted Deployment); it carries no instance label.
            expr: |||
              up{%(sel)s} == 0 or absent(up{%(sel)s})
            ||| % { sel: c.imagepullSelector },
            'for': c.exporterDownFor,
            labels: { severity: c.severityWarning },
            annotations: {
              summary: 'The imagepull exporter is down.',
              description: 'Prometheus has not scraped {{ with $labels.instance }}the imagepull exporter at {{ . }}{{ else }}any imagepull exporter (the job has no targets){{ end }} for %s, so no other ImagePull alert can fire. Check its pods, logs and scrape configuration.' % c.exporterDownFor,
            },
          },
          {
            alert: 'ImagePullProbesStale',
            // Age in intervals of each target's own schedule: one exporter
            // probes canaries every minute and discovered images every few
            // minutes, so a single interval in the config would either
            // false-fire for the slow targets or miss the fast ones.
            expr: |||
              max by (%(by)s) (
                (time() - imagepull_probe_timestamp_seconds{%(sel)s})
                / imagepull_probe_interval_seconds{%(sel)s}
              ) > %(n)d
            ||| % { by: utils.by(c, ['registry']), sel: c.imagepullSelector, n: c.probesStaleIntervals },
            'for': c.probesStaleFor,
            labels: { severity: c.severityWarning },
            annotations: {
              summary: 'Probes of {{ $labels.registry }} have stopped.',
              description: 'The oldest probe of {{ $labels.registry }} is {{ $value | printf "%.1f" }} probe intervals old, so its alerts describe the past.' +
                           utils.firstValue(
                             utils.query('sum(increase(imagepull_probe_budget_exhausted_total{%s, %s=%%q, registry=%%q}[15m])) > 0' % [c.imagepullSelector, c.clusterLabel], [cl, '$labels.registry']),
                             ' ',
                             'printf "%.0f"',
                             " probes were skipped in the last 15m because the registry's request budget was spent."
                           ) +
                           " Check the exporter's log, --probe.concurrency and --probe.registry-budget.",
            },
          },
          {
            alert: 'ImagePullExporterConfigBroken',
            // The exporter's own files (localReasons): no registry alert
            // covers them, since the registry may well be fine, but the
            // target is not probed at all while they are broken.
            expr: |||
              max by (%(by)s) (imagepull_probe_failure_reason{%(sel)s, reason=~"%(reasons)s"}) == 1
            ||| % { by: utils.by(c, ['registry', 'target', 'reason']), sel: c.imagepullSelector, reasons: std.join('|', c.localReasons) },
            'for': c.exporterConfigBrokenFor,
            labels: { severity: c.severityWarning },
            annotations: {
              summary: 'The exporter cannot use its own files to probe {{ $labels.target }}.',
              description: 'Probes of {{ $labels.target }} ({{ $labels.registry }}) fail with reason {{ $labels.reason }}: a file its module names (password_file, tls.ca_file, docker_config) is missing or invalid where the exporter runs, so the target is not probed. /logs?target={{ $labels.target }} names the file.',
            },
          },
        ],
      },
    ],
  },
}
