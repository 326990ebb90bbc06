// Alerts about a registry as the exporter's probes see it.
local utils = import '../lib/utils.libsonnet';

{
  prometheusAlerts+:: {
    local c = $._config,
    local cl = utils.clusterArg(c),

    local failingTargets(reasons) = utils.failingTargets(c, reasons),

    // Registries that containers wait on, whatever the join's cause.
    local blockedRegistries =
      'sum by (%s) (max by (%s) (imagepull_registry_blocked_containers{%s})) > 0' % [
        utils.by(c, ['registry']),
        utils.by(c, ['registry', 'cause']),
        c.imagepullSelector,
      ],

    local unreachablePhrase =
      local phrases = {
        dns: 'its host name does not resolve',
        connect: 'TCP connections to it fail',
        tls: 'the TLS handshake or certificate verification fails',
        timeout: 'it does not answer within the probe timeout',
        server_error: 'it answers with 5xx server errors',
      };
      std.join('', [
        '{{ %sif eq $labels.cause "%s" }}%s' % [if i == 0 then '' else 'else ', c.unreachableReasons[i], std.get(phrases, c.unreachableReasons[i], 'its probes fail with ' + c.unreachableReasons[i])]
        for i in std.range(0, std.length(c.unreachableReasons) - 1)
      ]) + '{{ else }}its probes fail with {{ $labels.cause }}{{ end }}',

    local unreachableCommon =
      '{{ $value }} probe target(s) of {{ $labels.registry }} have failed for %s because %s.' % [c.registryUnreachableFor, unreachablePhrase],

    groups+: [
      {
        name: 'imagepull-registry',
        rules: [
          {
            // Two rules rather than a severity computed in one expression: an
            // alert's labels are its identity, so a severity that changed with
            // the join would restart `for:`. The warning keeps firing while
            // the critical one pends, and the Alertmanager example inhibits
            // the warning once the critical one fires. keep_firing_for
            // holds the critical one a little past recovery: both resolve in
            // one evaluation, and without it a group flush falling between
            // the two resolutions Prometheus sends would notify the
            // un-inhibited warning once, just as the outage ends.
            alert: 'ImagePullRegistryUnreachable',
            expr: |||
              %s
              and on (%s)
              (%s)
            ||| % [std.rstripChars(failingTargets(c.unreachableReasons), '\n'), utils.by(c, ['registry']), blockedRegistries],
            'for': c.registryUnreachableFor,
            keep_firing_for: c.registryUnreachableKeepFiringFor,
            labels: { severity: c.severityCritical },
            annotations: {
              summary: 'Registry {{ $labels.registry }} is unreachable ({{ $labels.cause }}) and containers wait on it.',
              description: unreachableCommon +
                           utils.firstValue(
                             utils.query('sum(max by (cause) (imagepull_registry_blocked_containers{%s, %s=%%q, registry=%%q}))' % [c.imagepullSelector, c.clusterLabel], [cl, '$labels.registry']),
                             ' ',
                             '',
                             ' container(s) wait on its images and cannot start.'
                           ) +
                           ' Pods whose images come through a working mirror or are already on their nodes are not affected; see ImagePullPodsBlocked for the namespaces.',
            },
          },
          {
            alert: 'ImagePullRegistryUnreachable',
            expr: failingTargets(c.unreachableReasons),
            'for': c.registryUnreachableFor,
            labels: { severity: c.severityWarning },
            annotations: {
              summary: 'Registry {{ $labels.registry }} is unreachable ({{ $labels.cause }}); no container waits on it yet.',
              description: unreachableCommon +
                           ' No container waits on its images yet, but new pods, restarts on nodes without the image and scale-ups that need them will fail.',
            },
          },
          {
            alert: 'ImagePullRegistryAuthFailing',
            expr: failingTargets(c.authFailureReasons),
            'for': c.registryAuthFailingFor,
            labels: { severity: c.severityWarning },
            annotations: {
              summary: 'Registry {{ $labels.registry }} rejects the exporter ({{ $labels.cause }}).',
              description: '{{ $value }} probe target(s) of {{ $labels.registry }} have failed with {{ $labels.cause }} for %s: ' % c.registryAuthFailingFor +
                           '{{ if eq $labels.cause "unauthorized" }}the credentials are missing, expired or rejected{{ else }}the credentials are valid but lack access to the repository, or the repository does not exist (Docker Hub answers both the same way){{ end }}.' +
                           utils.listLabel(
                             utils.query('count by (target) (imagepull_probe_failure_reason{%s, %s=%%q, registry=%%q, reason=%%q} == 1)' % [c.imagepullSelector, c.clusterLabel], [cl, '$labels.registry', '$labels.cause']),
                             'target',
                             ' Targets: ',
                             '.'
                           ) +
                           ' Pods pulling with the same credentials fail the same way.',
            },
          },
          {
            alert: 'ImagePullManifestLatencyHigh',
            expr: |||
              registry_quantile:imagepull_manifest_head_duration_seconds:histogram_quantile{quantile="%(q)s"} > %(t)s
            ||| % { q: c.manifestLatencyQuantile, t: c.manifestLatencyThresholdSeconds },
            'for': c.manifestLatencyHighFor,
            labels: { severity: c.severityWarning },
            annotations: {
              summary: 'Manifest requests to {{ $labels.registry }} are slow.',
              description: 'The %s percentile of manifest HEAD latency to {{ $labels.registry }} has been {{ $value | humanizeDuration }} for %s, above %ss. Image pulls from it are slow too, and kubelets time out on slow registries.' % [
                utils.percentile(c.manifestLatencyQuantile),
                c.manifestLatencyHighFor,
                c.manifestLatencyThresholdSeconds,
              ],
            },
          },
          {
            alert: 'ImagePullTLSCertExpiring',
            // > 0 leaves out registries the exporter never saw a certificate of.
            expr: |||
              min by (%(by)s) (imagepull_tls_cert_expiry_timestamp_seconds{%(sel)s} > 0) - time() < %(t)s
            ||| % { by: utils.by(c, ['registry']), sel: c.imagepullSelector, t: c.tlsCertExpiryThresholdSeconds },
            'for': c.tlsCertExpiringFor,
            labels: { severity: c.severityWarning },
            annotations: {
              summary: 'The TLS certificate of {{ $labels.registry }} expires soon.',
              description: 'The TLS certificate {{ $labels.registry }} serves {{ if le $value 0.0 }}has expired{{ else }}expires in {{ $value | humanizeDuration }}{{ end }}. Once it has expired, every pull from it fails with a certificate error.',
            },
          },
        ],
      },
    ],
  },
}
