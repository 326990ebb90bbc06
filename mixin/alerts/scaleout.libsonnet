// Alerts about sharded exporters (--shard/--total-shards, the sharded
// StatefulSet): each shard probes and joins only the registries that hash to
// it, so a missing shard silently blinds the mixin for its registries.
local utils = import '../lib/utils.libsonnet';

{
  prometheusAlerts+:: {
    local c = $._config,
    local cl = utils.clusterArg(c),

    groups+: [
      {
        name: 'imagepull-scaleout',
        rules: [
          {
            // Distinct ordinals, not processes: HA replicas of one shard
            // count once. When every shard is gone the right-hand side is
            // empty and ImagePullExporterDown speaks instead.
            alert: 'ImagePullExporterShardMissing',
            expr: |||
              max by (%(by)s) (imagepull_exporter_total_shards{%(sel)s})
              -
              count by (%(by)s) (count_values by (%(by)s) ("ordinal", imagepull_exporter_shard_ordinal{%(sel)s}))
              > 0
            ||| % { by: c.clusterLabel, sel: c.imagepullSelector },
            'for': c.shardMissingFor,
            labels: { severity: c.severityWarning },
            annotations: {
              summary: 'Imagepull exporter shards are missing.',
              description: '{{ $value }} of the ' +
                           utils.firstValue(utils.query('max(imagepull_exporter_total_shards{%s, %s=%%q})' % [c.imagepullSelector, c.clusterLabel], [cl]), '', '', '') +
                           ' shards have not reported for %s' % c.shardMissingFor +
                           utils.listLabel(utils.query('count by (ordinal) (count_values("ordinal", imagepull_exporter_shard_ordinal{%s, %s=%%q}))' % [c.imagepullSelector, c.clusterLabel], [cl]), 'ordinal', ' (reporting: ', ')') +
                           ': the registries that hash to them are neither probed nor alerted on. Bring the shards back, or lower --total-shards to the replicas.',
            },
          },
          {
            alert: 'ImagePullExporterShardsMisconfigured',
            expr: |||
              count by (%(by)s) (count_values by (%(by)s) ("total", imagepull_exporter_total_shards{%(sel)s})) > 1
            ||| % { by: c.clusterLabel, sel: c.imagepullSelector },
            'for': c.shardsMisconfiguredFor,
            labels: { severity: c.severityWarning },
            annotations: {
              summary: 'imagepull exporter shards disagree on --total-shards.',
              description: 'The shards run with {{ $value }} different --total-shards values' +
                           utils.listByLabel(utils.query('count_values("total", imagepull_exporter_total_shards{%s, %s=%%q})' % [c.imagepullSelector, c.clusterLabel], [cl]), 'total', ' (--total-shards given, with how many shards: ', ')') +
                           ', so some registries are probed twice and others not at all. Give every shard the same --total-shards, equal to the replicas.',
            },
          },
        ],
      },
    ],
  },
}
