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

    // A registry down for one of `reasons`, as the exporter judges the
    // registry as a whole (imagepull_registry_up, issue 11): every probe of
    // every target and module failed for a registry-level reason, and the
    // series with 1 names the first of them in probe.Reasons order. One
    // failing target on a registry that answers other probes is not this
    // (ImagePullTargetFailing). HA: down only when no replica sees the
    // registry up; replicas that see it down for different reasons make
    // one alert per reason, as they disagree on what is wrong.
    local registryDown(reasons) =
      |||
        max by (%(by)s) (
          %(failing)s == 1
        )
        unless on (%(byRegistry)s)
        (max by (%(byRegistry)s) (imagepull_registry_up{%(sel)s}) == 1)
      ||| % {
        by: utils.by(c, ['registry', 'cause']),
        byRegistry: utils.by(c, ['registry']),
        sel: c.imagepullSelector,
        failing: utils.causeFromReason('imagepull_registry_failure_reason{%s, reason=~"%s"}' % [c.imagepullSelector, utils.regex(reasons)]),
      },

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

    // A registry whose own health API (imagepull_registry_health_up, issue
    // 15) says it is unhealthy, one series per registry and product. HA:
    // unhealthy only when no replica reads it healthy. The label
    // auth_backend="down" is added while the health API reports down a
    // component the registry's logins depend on
    // (imagepull_registry_auth_backend_up 0): the Alertmanager example
    // inhibits ImagePullRegistryAuthFailing and ImagePullPullSecretInvalid
    // on it, since every login then fails whatever the credentials.
    local registryUnhealthy =
      |||
        (max by (%(by)s) (imagepull_registry_health_up{%(sel)s}) == 0)
        * on (%(by)s) group_left (auth_backend)
        (
          label_replace(max by (%(by)s) (imagepull_registry_auth_backend_up{%(sel)s}) == 0, "auth_backend", "down", "", "")
          or on (%(by)s)
          max by (%(by)s) (imagepull_registry_health_up{%(sel)s})
        )
      ||| % { by: utils.by(c, ['registry', 'product']), sel: c.imagepullSelector },

    local unhealthyCommon =
      'The {{ $labels.product }} health API of {{ $labels.registry }} has reported it unhealthy for %s' % c.registryUnhealthyFor +
      utils.listLabel(
        utils.query('max by (component) (imagepull_registry_component_up{%s, %s=%%q, registry=%%q}) == 0' % [c.imagepullSelector, c.clusterLabel], [cl, '$labels.registry']),
        'component',
        ': down ',
        ''
      ) + '. {{ if eq (index $labels "auth_backend") "down" }}Its auth backend is down, so every login fails whatever the credentials: fix the registry, do not rotate pull secrets.{{ else }}Check the components named in the runbook section for {{ $labels.product }}.{{ end }}',

    local unreachableCommon =
      'No probe of {{ $labels.registry }} has got an answer for %s: %s' % [c.registryUnreachableFor, unreachablePhrase],

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
              (
              %s
              )
              and on (%s)
              (%s)
            ||| % [utils.indent(registryDown(c.unreachableReasons), 2), utils.by(c, ['registry']), blockedRegistries],
            'for': c.registryUnreachableFor,
            keep_firing_for: c.registryUnreachableKeepFiringFor,
            labels: { severity: c.severityCritical },
            annotations: {
              summary: 'Registry {{ $labels.registry }} is unreachable ({{ $labels.cause }}) and containers wait on it.',
              description: unreachableCommon +
                           utils.firstValue(
                             utils.query('sum(max by (cause) (imagepull_registry_blocked_containers{%s, %s=%%q, registry=%%q}))' % [c.imagepullSelector, c.clusterLabel], [cl, '$labels.registry']),
                             ', and ',
                             '',
                             ' container(s) wait on its images'
                           ) +
                           '. Pull through a mirror, and drain no node until it is back.',
            },
          },
          {
            alert: 'ImagePullRegistryUnreachable',
            expr: registryDown(c.unreachableReasons),
            'for': c.registryUnreachableFor,
            labels: { severity: c.severityWarning },
            annotations: {
              summary: 'Registry {{ $labels.registry }} is unreachable ({{ $labels.cause }}); no container waits on it yet.',
              description: unreachableCommon +
                           ". New pods that need its images will not start: check the registry's status and the network path to it, and prepare a mirror.",
            },
          },
          {
            // The two-rule pattern of ImagePullRegistryUnreachable: critical
            // while containers wait on the registry, warning otherwise, the
            // Alertmanager example inhibiting the warning by the critical.
            alert: 'ImagePullRegistryUnhealthy',
            expr: |||
              (
              %s
              )
              and on (%s)
              (%s)
            ||| % [utils.indent(registryUnhealthy, 2), utils.by(c, ['registry']), blockedRegistries],
            'for': c.registryUnhealthyFor,
            keep_firing_for: c.registryUnhealthyKeepFiringFor,
            labels: { severity: c.severityCritical },
            annotations: {
              summary: 'Registry {{ $labels.registry }} reports itself unhealthy and containers wait on it.',
              description: unhealthyCommon,
            },
          },
          {
            alert: 'ImagePullRegistryUnhealthy',
            expr: registryUnhealthy,
            'for': c.registryUnhealthyFor,
            labels: { severity: c.severityWarning },
            annotations: {
              summary: 'Registry {{ $labels.registry }} reports itself unhealthy; no container waits on it yet.',
              description: unhealthyCommon,
            },
          },
          {
            // One target failing for a registry-level reason while the
            // registry answers the exporter's other probes: the failure is in
            // that target's path (Reason.PathLevel), a module's TLS, CA,
            // proxy, plain_http or timeout, not in the registry, so it is a
            // warning for whoever owns the exporter's configuration and
            // never the registry outage it used to page as (issue 11).
            // Matched per exporter (the same job, instance and node-local
            // node), so a replica that cannot reach the registry at all
            // blames no target's path for it.
            alert: 'ImagePullTargetFailing',
            expr: |||
              max by (%(by)s) (
                %(failing)s == 1
                and ignoring (%(targetOnly)s, reason, cause)
                imagepull_registry_up{%(sel)s} == 1
              )
            ||| % {
              by: utils.by(c, ['registry', 'target', 'cause']),
              failing: utils.causeFromReason('imagepull_probe_failure_reason{%s, reason=~"%s"}' % [c.imagepullSelector, utils.regex(c.targetFailingReasons)]),
              targetOnly: std.join(', ', utils.targetOnlyLabels),
              sel: c.imagepullSelector,
            },
            'for': c.targetFailingFor,
            labels: { severity: c.severityWarning },
            annotations: {
              summary: 'Probe target {{ $labels.target }} of {{ $labels.registry }} fails ({{ $labels.cause }}) while the registry is up.',
              description: "Target {{ $labels.target }} has failed with {{ $labels.cause }} for %s while other probes of {{ $labels.registry }} get answers, so the fault is in this target's path, not in the registry. Compare its module (TLS and CA, proxy, plain_http, timeout) with one whose probes succeed; /logs?target={{ $labels.target }} shows the error." % c.targetFailingFor,
            },
          },
          {
            // Not while the registry's own health API reports its auth
            // backend down (issue 15): every login then fails whatever the
            // credentials. The exporter already counts such refusals as
            // server_error; this keeps other exporters' (and the moment
            // before the health read's) unauthorized from paging about
            // credentials too.
            alert: 'ImagePullRegistryAuthFailing',
            expr: |||
              %s
              unless on (%s)
              (min by (%s) (imagepull_registry_auth_backend_up{%s}) == 0)
            ||| % [std.rstripChars(failingTargets(c.authFailureReasons), '\n'), utils.by(c, ['registry']), utils.by(c, ['registry']), c.imagepullSelector],
            'for': c.registryAuthFailingFor,
            labels: { severity: c.severityWarning },
            annotations: {
              summary: "Registry {{ $labels.registry }} rejects the exporter's credentials ({{ $labels.cause }}).",
              description: '{{ if eq $labels.cause "unauthorized" }}{{ $labels.registry }} rejects the credentials the exporter was given{{ else }}{{ $labels.registry }} accepts the credentials the exporter was given but refuses them the repository, or the repository does not exist (Docker Hub answers both alike){{ end }}.' +
                           utils.listLabel(
                             utils.query('count by (target) (imagepull_probe_failure_reason{%s, %s=%%q, registry=%%q, reason=%%q} == 1)' % [c.imagepullSelector, c.clusterLabel], [cl, '$labels.registry', '$labels.cause']),
                             'target',
                             ' Targets: ',
                             '.'
                           ) +
                           ' {{ if eq $labels.cause "unauthorized" }}Fix or rotate their module\'s credentials{{ else }}Check the repository name and the account\'s access{{ end }}; pods that pull with the same credentials fail too.',
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
              description: "The %s percentile of manifest HEAD latency to {{ $labels.registry }} is {{ $value | humanizeDuration }}, above %ss: pulls from it are slow, and kubelets may time out. Check the network path (proxy, NAT, region) and the registry's status." % [
                utils.percentile(c.manifestLatencyQuantile),
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
              description: "The certificate {{ $labels.registry }} serves {{ if le $value 0.0 }}has expired: every pull from it fails{{ else }}expires in {{ $value | humanizeDuration }}, after which every pull from it fails{{ end }}. Renew it, or tell the registry's owner.",
            },
          },
        ],
      },
    ],
  },
}
