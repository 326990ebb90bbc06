// Recording rules for what alerts and dashboards share. Names follow
// level:metric:operations (https://prometheus.io/docs/practices/rules/).
local utils = import '../lib/utils.libsonnet';

{
  prometheusRules+:: {
    local c = $._config,

    groups+: [
      {
        name: 'imagepull.rules',
        rules: [
          // Share of probes that succeeded per registry. rate() of both
          // results rather than an average of imagepull_probe_success, so
          // every probe counts once whatever the targets' intervals.
          {
            record: 'registry:imagepull_probe_availability:ratio_rate%s' % w,
            expr: |||
              sum by (%(by)s) (rate(imagepull_probes_total{%(sel)s, result="success"}[%(w)s]))
              /
              sum by (%(by)s) (rate(imagepull_probes_total{%(sel)s}[%(w)s]))
            ||| % { by: utils.by(c, ['registry']), sel: c.imagepullSelector, w: w },
          }
          for w in c.availabilityWindows
        ] + [
          {
            record: 'registry_quantile:imagepull_manifest_head_duration_seconds:histogram_quantile',
            expr: |||
              histogram_quantile(%(q)s, sum by (%(by)s) (rate(imagepull_manifest_head_duration_seconds_bucket{%(sel)s}[%(w)s])))
            ||| % { q: q, by: utils.by(c, ['registry', 'le']), sel: c.imagepullSelector, w: c.manifestLatencyRateWindow },
            labels: { quantile: q },
          }
          for q in c.manifestLatencyQuantiles
        ] + [
          // Remaining pulls as a share of the limit, per registry and source.
          // min/max over replicas: the pessimistic view when several exporters
          // share one source.
          {
            record: 'registry_source:imagepull_ratelimit_remaining_per_limit:ratio',
            expr: |||
              min by (%(by)s) (imagepull_ratelimit_remaining{%(sel)s})
              /
              max by (%(by)s) (imagepull_ratelimit_limit{%(sel)s} > 0)
            ||| % { by: utils.by(c, ['registry', 'source']), sel: c.imagepullSelector },
          },
        ],
      },
    ],
  },
}
