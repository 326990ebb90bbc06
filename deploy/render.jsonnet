// Renders the deploy/ files that come from the mixin, as a multi-file output:
//   jsonnet -J mixin -S -c -m OUTDIR deploy/render.jsonnet
// (scripts/deploy.sh generate). The PrometheusRule's groups are the mixin's
// alerts and recording rules, exactly as alerts/*.yaml hold them, so the
// cluster evaluates what `promtool test rules` tested; the dashboards are
// dashboards/*.json byte for byte. Never edit the outputs by hand.
local mixin = import 'mixin.libsonnet';
// The mixin's own renderer (mixin/render.jsonnet): the same bytes as
// alerts/ and dashboards/.
local rendered = (import 'lib/render.libsonnet')(mixin);

local groups = mixin.prometheusAlerts.groups + mixin.prometheusRules.groups;

// The same manifestation as mixin/lib/render.libsonnet.
local yaml(o) = std.manifestYamlDoc(o, indent_array_in_object=false, quote_keys=false);
local header = '# Generated from mixin/ by scripts/deploy.sh generate (deploy/render.jsonnet): do not edit.\n';

local chart = 'deploy/helm/imagepull-exporter';
local dashboards = std.objectFields(mixin.grafanaDashboards);

// imagepull-cluster-impact.json -> imagepull-exporter-dashboard-cluster-impact,
// as templates/dashboards.yaml names it.
local configMapName(file) =
  local base = std.substr(file, 0, std.length(file) - std.length('.json'));
  'imagepull-exporter-dashboard-' + (if std.startsWith(base, 'imagepull-') then std.substr(base, std.length('imagepull-'), std.length(base)) else base);

{
  'deploy/base/prometheusrule.yaml': header + yaml({
    apiVersion: 'monitoring.coreos.com/v1',
    kind: 'PrometheusRule',
    metadata: {
      name: 'imagepull-exporter',
      namespace: 'imagepull-exporter',
    },
    spec: { groups: groups },
  }),
  // The Helm chart indents this under `spec:` (templates/prometheusrule.yaml);
  // a chart can only read files inside its own directory.
  [chart + '/files/prometheus-rule-groups.yaml']: header + yaml({ groups: groups }),

  // The dashboards ConfigMaps for the Grafana sidecar: the chart's
  // (templates/dashboards.yaml reads files/dashboards/) and a kustomize
  // component's. Neither may read files outside its own directory, hence
  // the copies.
  'deploy/components/dashboards/kustomization.yaml': header + |||
    # The mixin's Grafana dashboards as ConfigMaps, one per dashboard,
    # labelled grafana_dashboard: "1": the Grafana sidecar's label in
    # kube-prometheus-stack. The sidecar must search this namespace
    # (sidecar.dashboards.searchNamespace); otherwise set the namespace in
    # your overlay. Another label, or a grafana_folder annotation, is a
    # patch of your own in your overlay (see deploy/README.md).
  ||| + yaml({
    apiVersion: 'kustomize.config.k8s.io/v1alpha1',
    kind: 'Component',
    configMapGenerator: [
      {
        name: configMapName(file),
        namespace: 'imagepull-exporter',
        files: [file],
        options: {
          // A fixed name, as the chart's: the sidecar keys on the label.
          disableNameSuffixHash: true,
          labels: { grafana_dashboard: '1' },
        },
      }
      for file in dashboards
    ],
    labels: [{
      pairs: {
        'app.kubernetes.io/name': 'imagepull-exporter',
        'app.kubernetes.io/instance': 'imagepull-exporter',
        'app.kubernetes.io/part-of': 'imagepull-exporter',
      },
      includeSelectors: false,
      includeTemplates: false,
    }],
  }),
} + {
  [dir + '/' + file]: rendered['dashboards/' + file]
  for dir in ['deploy/components/dashboards', chart + '/files/dashboards']
  for file in dashboards
}
