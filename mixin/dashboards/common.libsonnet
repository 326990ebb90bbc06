// Selectors and variables the dashboards share.
local g = import '../lib/grafana.libsonnet';

function(c) {
  // The exporter's series in the selected cluster.
  sel: '%s, %s="$cluster"' % [c.imagepullSelector, c.clusterLabel],
  // The mirror series in the selected cluster: the central exporter's and
  // the node-probe DaemonSet's (mirrors read from each node's runtime).
  msel: '%s, %s="$cluster"' % [c.imagepullMirrorSelector, c.clusterLabel],
  // Recorded series carry only the cluster label of the exporter's.
  recorded: '%s="$cluster"' % c.clusterLabel,

  variables: {
    datasource: g.datasourceVariable,
    // Always present so every query is the same in single- and
    // multi-cluster setups; hidden unless showMultiCluster. With no cluster
    // label it is empty, and cluster="" matches series without the label.
    cluster: g.queryVariable(
      'cluster',
      'Cluster',
      'label_values(imagepull_exporter_build_info{%s}, %s)' % [c.imagepullSelector, c.clusterLabel],
      hide=if c.showMultiCluster then 0 else 2,
    ),
  },

  // The Registry detail dashboard for a registry named in a table column.
  registryDetailLink: {
    title: 'Registry detail',
    url: '/d/%s?var-registry=${__value.raw}&${datasource:queryparam}&${cluster:queryparam}&${__url_time_range}' % c.dashboardUIDs['registry-detail'],
  },
}
