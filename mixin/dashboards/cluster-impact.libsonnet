// Cluster impact: which workloads registry problems block now, which
// workloads name an image that cannot be pulled (before a pod waits), what the
// nodes themselves report about their pulls, which they would block on the
// next reschedule, and which run images that can change under them (mutable
// references, tag drift).
local g = import '../lib/grafana.libsonnet';

function(c)
  local common = (import 'common.libsonnet')(c);
  local s = common.sel;
  local sn = s + ', namespace=~"$namespace"';
  local waitingReasons = 'ErrImagePull|ImagePullBackOff|InvalidImageName|ErrImageNeverPull|RegistryUnavailable|SignatureValidationFailed|ImageInspectError';

  g.dashboard(
    c,
    c.dashboardUIDs['cluster-impact'],
    'Cluster impact',
    'Containers that registry problems block or put at risk, by registry, cause and namespace (the Kubernetes join of imagepull_exporter).',
    [
      common.variables.datasource,
      common.variables.cluster,
      // Namespaces of any Kubernetes-side series: waiting, running or at risk.
      g.queryVariable('namespace', 'Namespace', 'label_values({__name__=~"imagepull_pod_containers_waiting|imagepull_pod_containers_pull_error|imagepull_pod_containers_mutable_ref|imagepull_reschedule_risk_containers|imagepull_workload_image_unavailable", %s}, namespace)' % s, multi=true, includeAll=true),
    ],
    [
      g.row('Blocked now', [
        g.stat('Blocked containers', 'Containers waiting on an image, in the whole cluster.', [
          g.target('sum(max by (registry, cause) (imagepull_registry_blocked_containers{%s})) or vector(0)' % s),
        ], steps=['green', 1, 'red'], w=6),
        g.stat('Waiting in selected namespaces', 'Containers waiting with an image reason in the selected namespaces.', [
          g.target('sum(max by (namespace, registry, reason) (imagepull_pod_containers_waiting{%s})) or vector(0)' % sn),
        ], steps=['green', 1, 'red'], w=6),
        g.stat('At reschedule risk', 'Running containers that would not start again on a node without their image.', [
          g.target('sum(max by (namespace, registry, cause) (imagepull_reschedule_risk_containers{%s})) or vector(0)' % sn),
        ], steps=['green', 1, 'orange'], w=6),
        g.stat('Pull secrets failing', 'Referenced pull secrets that no longer log in to their registry.', [
          g.target('count(max by (namespace, secret, registry) (imagepull_pull_secret_auth_success{%s}) == 0) or vector(0)' % sn),
        ], steps=['green', 1, 'orange'], w=6),
        g.timeseries('Blocked containers by registry and cause', "cause is the registry's probe failure reason when it fails for a registry-level reason, else the cause the container's node reported (unknown when the exporter cannot classify it), registry_ok when the registry probes healthy and the node said nothing classifiable (the problem is per image or credential), or unprobed.", [
          g.target('max by (registry, cause) (imagepull_registry_blocked_containers{%s})' % s, '{{registry}} ({{cause}})'),
        ], stack=true),
        g.table('Blocked now', 'Containers waiting per registry and cause.', [
          g.instant('max by (registry, cause) (imagepull_registry_blocked_containers{%s})' % s),
        ], columns={ registry: { name: 'Registry' }, cause: { name: 'Cause' }, Value: { name: 'Containers' } }, links={ registry: common.registryDetailLink }, w=12),
      ]),
      // Workload templates whose image cannot be pulled now (issue 11): the
      // next pod of a Deployment scaled to zero, a CronJob's next run, a
      // rollout not started yet will not start, though nothing waits yet.
      // One row per workload container, as ImagePullWorkloadImageUnavailable
      // alerts; max over HA replicas.
      g.row('Workload images', [
        g.stat('Workload images unavailable', 'Workload containers (Deployments, StatefulSets, DaemonSets, Jobs, CronJobs; init containers too) in the selected namespaces whose image cannot be pulled now.', [
          g.target('count(max by (namespace, kind, workload, container, image, cause, registry) (imagepull_workload_image_unavailable{%s})) or vector(0)' % sn),
        ], steps=['green', 1, 'orange'], w=4, h=8),
        g.table('Workload images that cannot be pulled', "One row per workload container whose image cannot be pulled now, with the cause: not_found, forbidden, unauthorized (with the credentials the kubelet would use), rate_limited, or the registry's down reason while it is down. Its next pod will not start.", [
          g.instant('max by (namespace, kind, workload, container, image, cause, registry) (imagepull_workload_image_unavailable{%s})' % sn),
        ], columns={ namespace: { name: 'Namespace' }, kind: { name: 'Kind' }, workload: { name: 'Workload' }, container: { name: 'Container' }, image: { name: 'Image' }, cause: { name: 'Cause' }, registry: { name: 'Registry' } }, hidden=['Value'], links={ registry: common.registryDetailLink }, w=20),
      ]),
      // What the nodes themselves report: the kubelet's pull error,
      // classified into the probe's reasons. The nodes pull from their own
      // egress with the pods' pull secrets, so a per-IP rate limit, one
      // zone's broken egress or a rejected pull secret shows here and in
      // which nodes, where the exporter's probes may see a healthy registry.
      g.row('Node-reported pull errors', [
        g.stat('Nodes reporting pull errors', 'Nodes with containers waiting on a pull error they reported, in the whole cluster.', [
          g.target('count(count by (node) (imagepull_node_pull_errors{%s})) or vector(0)' % s),
        ], steps=['green', 1, 'orange'], w=12),
        g.stat('Pull failures per minute', 'Pulls the nodes failed per minute (containers entering ErrImagePull, Failed events), all registries and causes.', [
          g.target('sum(max by (registry, cause) (rate(imagepull_pull_failures_total{%s}[$__rate_interval]))) * 60 or vector(0)' % s),
        ], steps=['green', 1, 'orange'], w=12),
        g.timeseries('Node-reported causes by registry and cause', "Waiting containers in the selected namespaces by the cause their node reported: the kubelet's pull error classified into the probe's reasons, unknown when it cannot be placed. Where it differs from the join's cause above, the nodes see what the exporter does not.", [
          g.target('sum by (registry, cause) (max by (namespace, registry, cause) (imagepull_pod_containers_pull_error{%s}))' % sn, '{{registry}} ({{cause}})'),
        ], stack=true),
        g.timeseries('Pull failures by registry and cause', 'Pulls the nodes failed per second, by registry and the cause they reported.', [
          g.target('max by (registry, cause) (rate(imagepull_pull_failures_total{%s}[$__rate_interval]))' % s, '{{registry}} ({{cause}})'),
        ], unit='ops'),
        g.table('Pull errors per node', 'Containers waiting on a pull error, per node, registry and the cause the node reported. One node or one zone alone points at its egress (a per-IP rate limit, a resolver, a firewall); every node at the registry.', [
          g.instant('max by (node, registry, cause) (imagepull_node_pull_errors{%s})' % s),
        ], columns={ node: { name: 'Node' }, registry: { name: 'Registry' }, cause: { name: 'Cause' }, Value: { name: 'Containers' } }, links={ registry: common.registryDetailLink }),
      ]),
      g.row('Waiting by namespace', [
        g.timeseries('Waiting containers by namespace and reason', 'Containers (init and regular) waiting with an image reason.', [
          g.target('sum by (namespace, reason) (max by (namespace, registry, reason) (imagepull_pod_containers_waiting{%s}))' % sn, '{{namespace}} {{reason}}'),
        ], stack=true),
        g.table('Waiting by namespace, registry and reason', '', [
          g.instant('max by (namespace, registry, reason) (imagepull_pod_containers_waiting{%s})' % sn),
        ], columns={ namespace: { name: 'Namespace' }, registry: { name: 'Registry' }, reason: { name: 'Reason' }, Value: { name: 'Containers' } }, links={ registry: common.registryDetailLink }, w=12),
        g.timeseries('kube-state-metrics: waiting on images', 'The same waits as kube-state-metrics reports them, to cross-check the join (empty when kube-state-metrics is not scraped).', [
          g.target('sum by (namespace, reason) (kube_pod_container_status_waiting_reason{%s, %s="$cluster", namespace=~"$namespace", reason=~"%s"})' % [c.kubeStateMetricsSelector, c.clusterLabel, waitingReasons], '{{namespace}} {{reason}}'),
        ], stack=true),
        g.timeseries('Kubelet image pull errors', 'Failed image pulls per second per node, from kubelets (empty when kubelets are not scraped). They cover registries the exporter does not probe.', [
          g.target('sum by (%s) (rate(kubelet_runtime_operations_errors_total{%s, %s="$cluster", operation_type="pull_image"}[$__rate_interval]))' % [c.kubeletNodeLabel, c.kubeletSelector, c.clusterLabel], '{{%s}}' % c.kubeletNodeLabel),
        ], unit='ops'),
      ]),
      g.row('Next reschedule', [
        g.table('Reschedule risk', 'Running containers whose image the registry cannot serve now (its probe fails, or the tag is gone) and that no other node holds.', [
          g.instant('max by (namespace, registry, cause) (imagepull_reschedule_risk_containers{%s})' % sn),
        ], columns={ namespace: { name: 'Namespace' }, registry: { name: 'Registry' }, cause: { name: 'Cause' }, Value: { name: 'Containers' } }, links={ registry: common.registryDetailLink }, w=12),
        g.table('Tag drift', 'Tags whose running digest differs from what the registry serves now; Digests running is how many different digests run under the tag (shown from 2).', [
          g.instant('max by (registry, repository, tag) (imagepull_tag_registry_drift{%s}) == 1' % s),
          g.instant('max by (registry, repository, tag) (imagepull_tag_digests{%s})' % s),
        ], columns={ registry: { name: 'Registry' }, repository: { name: 'Repository' }, tag: { name: 'Tag' }, 'Value #B': { name: 'Digests running' } }, hidden=['Value #A'], w=12),
        g.timeseries('Mutable references by kind', 'Running containers not pinned by digest: latest, another tag, or no tag at all.', [
          g.target('sum by (kind) (max by (namespace, registry, pull_policy, kind) (imagepull_pod_containers_mutable_ref{%s}))' % sn, '{{kind}}'),
        ], stack=true),
        g.table('Mutable references', 'Per namespace, registry, pull policy and kind.', [
          g.instant('max by (namespace, registry, pull_policy, kind) (imagepull_pod_containers_mutable_ref{%s})' % sn),
        ], columns={ namespace: { name: 'Namespace' }, registry: { name: 'Registry' }, pull_policy: { name: 'Pull policy' }, kind: { name: 'Kind' }, Value: { name: 'Containers' } }, w=12),
        g.table('Pull secrets that no longer log in', '', [
          g.instant('max by (namespace, secret, registry) (imagepull_pull_secret_auth_success{%s}) == 0' % sn),
        ], columns={ namespace: { name: 'Namespace' }, secret: { name: 'Secret' }, registry: { name: 'Registry' } }, hidden=['Value'], w=12, h=6),
        g.table('Kubernetes watches', "Whether the exporter's watches are up, and the age of their last event.", [
          g.instant('min by (resource) (imagepull_kube_watch_up{%s})' % s),
          g.instant('time() - max by (resource) (imagepull_kube_watch_last_event_timestamp_seconds{%s})' % s),
        ], columns={ resource: { name: 'Resource' }, 'Value #A': { name: 'Up', steps: ['red', 1, 'green'] }, 'Value #B': { name: 'Last event', unit: 's' } }, w=12, h=6),
      ]),
    ],
  )
