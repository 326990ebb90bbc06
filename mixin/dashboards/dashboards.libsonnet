// The dashboards, keyed by the file name they are rendered to under
// dashboards/. Their uids come from _config.dashboardUIDs and never change:
// links between them and users' bookmarks depend on them.
{
  grafanaDashboards+:: {
    'imagepull-registries-overview.json': (import 'registries-overview.libsonnet')($._config),
    'imagepull-cluster-impact.json': (import 'cluster-impact.libsonnet')($._config),
    'imagepull-registry-detail.json': (import 'registry-detail.libsonnet')($._config),
  },
}
