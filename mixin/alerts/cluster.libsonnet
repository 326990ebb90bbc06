// Alerts about what registry problems do to the cluster: the Kubernetes join
// (issue 3), the pull errors the nodes report (issue 10) and the kubelets'
// own pull error counters.
local utils = import '../lib/utils.libsonnet';

{
  prometheusAlerts+:: {
    local c = $._config,
    local cl = utils.clusterArg(c),

    // "ns-a (3), ns-b (1)": containers waiting on the alert's registry per
    // namespace. PromQL cannot put several label values into one label, so
    // the namespaces are named by a query in the template. max by (namespace,
    // reason) first: HA replicas report the same counts.
    local waitingNamespaces =
      utils.listByLabel(
        utils.query('sum by (namespace) (max by (namespace, reason) (imagepull_pod_containers_waiting{%s, %s=%%q, registry=%%q}))' % [c.imagepullSelector, c.clusterLabel], [cl, '$labels.registry']),
        'namespace',
        ' Waiting by namespace: ',
        '.'
      ),

    // " Nodes reporting it: node-a (2), node-b (1)." for the alert's registry
    // and a node-reported cause (imagepull_node_pull_errors), the
    // alertMaxNodes with the most waiting containers, sorted by name; nothing
    // when no node reports it. `cause` is a template expression, so callers
    // pass either the alert's cause or a fixed one.
    local reportingNodes(prefix, cause) =
      local nodes = 'imagepull_node_pull_errors{%s, %s=%%q, registry=%%q, cause=%%q}' % [c.imagepullSelector, c.clusterLabel];
      local args = [cl, '$labels.registry', cause];
      '{{ with %s }}{{ $n := . | first | value }}%s{{ if gt $n %d.0 }} (the %d of {{ $n }} with the most waiting containers){{ end }}: {{ range $i, $s := %s | sortByLabel "node" }}{{ if $i }}, {{ end }}{{ $s.Labels.node }} ({{ $s.Value }}){{ end }}.{{ end }}' % [
        utils.query('count(max by (node) (%s))' % nodes, args),
        prefix,
        c.alertMaxNodes,
        c.alertMaxNodes,
        utils.query('topk(%d, sum by (node) (max by (node, registry, cause) (%s)))' % [c.alertMaxNodes, nodes], args),
      ],

    // What to do, per join cause. Image references that do not parse
    // (InvalidImageName) have no registry: the join counts them under
    // registry="invalid" with cause unprobed.
    local podsBlockedAdvice =
      '{{ if eq $labels.registry "invalid" }}The image references do not parse (InvalidImageName): fix the image field of the workloads.' +
      '{{ else if eq $labels.cause "registry_ok" }}The registry answers the exporter, so it is the image or the credentials (a missing tag, a typo, a wrong pull secret): run `imagepull_exporter diagnose pod NAMESPACE/NAME` on one of the pods.' +
      '{{ else if eq $labels.cause "unprobed" }}No probe target covers this registry: run `imagepull_exporter diagnose image REF`, and add a target (or run with --kube.discover-targets).' +
      '{{ else if eq $labels.cause "rate_limited" }}The registry answers 429: pull through a mirror, or with a pull secret of an account with a higher limit.' +
      '{{ else if eq $labels.cause "unknown" }}The nodes report a pull error the exporter cannot classify: read it with `imagepull_exporter diagnose pod NAMESPACE/NAME`.' +
      '{{ else if eq $labels.cause "unauthorized" "forbidden" }}The registry rejects the pull credentials: check the pods\' pull secrets with `imagepull_exporter diagnose pod NAMESPACE/NAME`.' +
      '{{ else if eq $labels.cause "not_found" }}The registry does not have the image: fix the repository or tag in the workload, or push the image.' +
      '{{ else if eq $labels.cause "protocol" }}The registry\'s replies break the distribution spec, often a proxy in between: run `imagepull_exporter diagnose image REF`.' +
      // server_error with the registry's own health API reporting
      // components down (issue 15): name them, so that a dead database
      // that makes every login fail is not read as a credential problem.
      '{{ else if eq $labels.cause "server_error" }}' +
      '{{ with %s | sortByLabel "component" }}The registry reports down: {{ range $i, $s := . }}{{ if $i }}, {{ end }}{{ $s.Labels.component }}{{ end }} (see ImagePullRegistryUnhealthy): fix the registry, not the pull secrets.' % utils.query('max by (component) (imagepull_registry_component_up{%s, %s=%%q, registry=%%q}) == 0' % [c.imagepullSelector, c.clusterLabel], [cl, '$labels.registry']) +
      '{{ else }}The registry itself fails (see ImagePullRegistryUnreachable): pull through a mirror, or pre-pull the images onto the nodes.{{ end }}' +
      '{{ else }}The registry itself fails (see ImagePullRegistryUnreachable): pull through a mirror, or pre-pull the images onto the nodes.{{ end }}',

    // What keeps a workload's image from being pulled, and what to do, per
    // cause of imagepull_workload_image_unavailable: a per-image or
    // per-credential cause (the credentials the kubelet would use), a 429,
    // or, only while the registry is down, a registry-level one.
    local workloadCause =
      '{{ if eq $labels.cause "not_found" }}the registry does not have it' +
      '{{ else if eq $labels.cause "forbidden" }}the registry refuses the pull credentials access to it, or the repository does not exist' +
      '{{ else if eq $labels.cause "unauthorized" }}the registry rejects the pull credentials' +
      '{{ else if eq $labels.cause "rate_limited" }}the registry answers 429 Too Many Requests' +
      '{{ else }}its registry is down ({{ $labels.cause }}){{ end }}',
    local workloadAdvice =
      '{{ if eq $labels.cause "not_found" }}Push the image, or point the template at a tag or digest that exists.' +
      '{{ else if eq $labels.cause "forbidden" "unauthorized" }}Check the repository name and the pull secrets the workload uses: `imagepull_exporter diagnose image {{ $labels.image }} --namespace {{ $labels.namespace }}`.' +
      '{{ else if eq $labels.cause "rate_limited" }}Pull through a mirror, or with a pull secret of an account with a higher limit.' +
      '{{ else }}See ImagePullRegistryUnreachable for {{ $labels.registry }}.{{ end }}',

    local podsBlocked(severity, causeMatcher) = {
      alert: 'ImagePullPodsBlocked',
      expr: |||
        max by (%(by)s) (imagepull_registry_blocked_containers{%(sel)s, cause%(m)s}) > %(t)s
      ||| % { by: utils.by(c, ['registry', 'cause']), sel: c.imagepullSelector, m: causeMatcher, t: c.podsBlockedThreshold },
      'for': c.podsBlockedFor,
      labels: { severity: severity },
      annotations: {
        summary: 'Containers cannot start: images from {{ $labels.registry }} fail to pull ({{ $labels.cause }}).',
        description: '{{ $value }} container(s) have waited on them for %s.' % c.podsBlockedFor +
                     waitingNamespaces + reportingNodes(' Nodes reporting it', '$labels.cause') + ' ' + podsBlockedAdvice,
      },
    },

    groups+: [
      {
        name: 'imagepull-cluster',
        rules: [
          // Severity by cause, not by count: a registry-wide cause blocks every
          // pod that needs the registry and pages; per-image and per-credential
          // causes belong to the workload's owners and warn.
          podsBlocked(c.severityCritical, '=~"%s"' % utils.regex(c.podsBlockedCriticalCauses)),
          podsBlocked(c.severityWarning, '!~"%s"' % utils.regex(c.podsBlockedCriticalCauses)),
          {
            // An image a workload's template names that cannot be pulled now
            // (issue 11), before any pod waits on it: a CronJob whose tag was
            // deleted, a Deployment scaled to zero, a rollout not yet started.
            // One alert per workload container, with the workload's namespace
            // so Alertmanager routes it to the namespace's owners, and its
            // registry so it groups with, and is inhibited by, the registry's
            // own alerts (ImagePullRegistryUnreachable in the Alertmanager
            // example). The exporter never reports no_credentials or config
            // here. max over HA replicas, which report the same series.
            alert: 'ImagePullWorkloadImageUnavailable',
            expr: |||
              max by (%(by)s) (imagepull_workload_image_unavailable{%(sel)s}) > 0
            ||| % { by: utils.by(c, ['namespace', 'kind', 'workload', 'container', 'image', 'cause', 'registry']), sel: c.imagepullSelector },
            'for': c.workloadImageUnavailableFor,
            labels: { severity: c.severityWarning },
            annotations: {
              summary: '{{ $labels.kind }} {{ $labels.namespace }}/{{ $labels.workload }} uses an image that cannot be pulled ({{ $labels.cause }}).',
              description: 'Container {{ $labels.container }} uses {{ $labels.image }}, and ' + workloadCause +
                           ': the next pod that needs it (a rollout, a scale-up, a reschedule, the next run) will not start. ' + workloadAdvice,
            },
          },
          {
            // The nodes pull from their own egress addresses, the exporter
            // from its pod's: Docker Hub counts anonymous pulls per source IP,
            // so the nodes can run out while the exporter's probes (another
            // NAT, or authenticated) still succeed, and the join then says
            // rate_limited only because a node said so. `unless` the probes
            // get 429 too: that is ImagePullRateLimited's case.
            alert: 'ImagePullNodesRateLimited',
            expr: |||
              sum by (%(by)s) (max by (%(byNode)s) (imagepull_node_pull_errors{%(sel)s, cause="rate_limited"})) > 0
              unless on (%(by)s)
              max by (%(by)s) (imagepull_probe_failure_reason{%(sel)s, reason="rate_limited"} == 1)
            ||| % { by: utils.by(c, ['registry']), byNode: utils.by(c, ['node', 'registry']), sel: c.imagepullSelector },
            'for': c.nodesRateLimitedFor,
            labels: { severity: c.nodesRateLimitedSeverity },
            annotations: {
              summary: 'Nodes get 429 Too Many Requests from {{ $labels.registry }}; the exporter does not.',
              description: "{{ $value }} container(s) wait because their nodes' pulls are answered 429 while the exporter's are not" +
                           '{{ if not (%s) }} (no probe target covers the registry){{ end }}' % utils.query('imagepull_probe_success{%s, %s=%%q, registry=%%q}' % [c.imagepullSelector, c.clusterLabel], [cl, '$labels.registry']) +
                           ": a per-IP limit on these nodes' egress." +
                           reportingNodes(' Nodes', '"rate_limited"') +
                           ' Pull through a mirror, or authenticate with an account that has its own limit.',
            },
          },
          {
            // Failures the kubelets see, per registry and without scraping
            // them: a container entering ErrImagePull, or a Failed event's
            // count going up. It catches pulls that fail and then succeed on
            // a retry, which never show as blocked containers. max over HA
            // replicas, which count the same failures (shards own disjoint
            // registries).
            alert: 'ImagePullFailureRateHigh',
            expr: |||
              sum by (%(by)s) (max by (%(byCause)s) (rate(imagepull_pull_failures_total{%(sel)s}[%(w)s]))) * 60 > %(t)s
            ||| % { by: utils.by(c, ['registry']), byCause: utils.by(c, ['registry', 'cause']), sel: c.imagepullSelector, w: c.pullFailureRateWindow, t: c.pullFailuresPerMinuteThreshold },
            'for': c.pullFailureRateHighFor,
            labels: { severity: c.pullFailureRateHighSeverity },
            annotations: {
              summary: 'Pulls from {{ $labels.registry }} fail often.',
              description: 'The nodes fail {{ $value | humanize }} pulls per minute from {{ $labels.registry }}.' +
                           utils.listLabel(
                             utils.query('max by (cause) (rate(imagepull_pull_failures_total{%s, %s=%%q, registry=%%q}[%s])) > 0' % [c.imagepullSelector, c.clusterLabel, c.pullFailureRateWindow], [cl, '$labels.registry']),
                             'cause',
                             ' Causes the nodes report: ',
                             '.'
                           ) +
                           ' ImagePullPodsBlocked and the Cluster impact dashboard show the pods and nodes; `imagepull_exporter diagnose pod NAMESPACE/NAME` explains one.',
            },
          },
          {
            alert: 'ImagePullPullSecretInvalid',
            expr: |||
              max by (%(by)s) (imagepull_pull_secret_auth_success{%(sel)s}) == 0
            ||| % { by: utils.by(c, ['namespace', 'secret', 'registry']), sel: c.imagepullSelector },
            'for': c.pullSecretInvalidFor,
            labels: { severity: c.severityWarning },
            annotations: {
              summary: 'Pull secret {{ $labels.namespace }}/{{ $labels.secret }} no longer logs in to {{ $labels.registry }}.',
              description: 'Pods that use it will fail to pull on a new node, on a restart with imagePullPolicy Always and on the next rollout. Rotate the secret (or the robot account it holds), then check it with `imagepull_exporter diagnose image REF --namespace {{ $labels.namespace }}`.',
            },
          },
          {
            alert: 'ImagePullRescheduleRisk',
            expr: |||
              sum by (%(by)s) (max by (%(byNs)s) (imagepull_reschedule_risk_containers{%(sel)s})) > %(t)s
            ||| % { by: utils.by(c, ['registry', 'cause']), byNs: utils.by(c, ['namespace', 'registry', 'cause']), sel: c.imagepullSelector, t: c.rescheduleRiskThreshold },
            'for': c.rescheduleRiskFor,
            labels: { severity: c.severityWarning },
            annotations: {
              summary: 'Running containers could not start again: {{ $labels.registry }} cannot serve their images ({{ $labels.cause }}).',
              description: '{{ $value }} running container(s) use images that {{ $labels.registry }} cannot serve now and that no other node holds: a reschedule or a drain would leave them waiting.' +
                           utils.listByLabel(
                             utils.query('sum by (namespace) (max by (namespace) (imagepull_reschedule_risk_containers{%s, %s=%%q, registry=%%q, cause=%%q}))' % [c.imagepullSelector, c.clusterLabel], [cl, '$labels.registry', '$labels.cause']),
                             'namespace',
                             ' By namespace: ',
                             '.'
                           ) +
                           ' {{ if eq $labels.cause "not_found" }}Push the tag again, or move the workloads to a tag or digest that exists.{{ else }}Drain none of their nodes until the registry is back.{{ end }}',
            },
          },
          {
            alert: 'ImagePullTagDrift',
            expr: |||
              max by (%(by)s) (imagepull_tag_registry_drift{%(sel)s}) == 1
            ||| % { by: utils.by(c, ['registry', 'repository', 'tag']), sel: c.imagepullSelector },
            'for': c.tagDriftFor,
            labels: { severity: c.severityInfo },
            annotations: {
              summary: 'What runs as {{ $labels.registry }}/{{ $labels.repository }}:{{ $labels.tag }} differs from what the registry serves.',
              description: 'Containers run it with another digest than the registry serves for the tag now' +
                           utils.firstValue(
                             utils.query('max(imagepull_tag_digests{%s, %s=%%q, registry=%%q, repository=%%q, tag=%%q})' % [c.imagepullSelector, c.clusterLabel], [cl, '$labels.registry', '$labels.repository', '$labels.tag']),
                             ' (',
                             '',
                             ' digests run under it)'
                           ) +
                           ', so a restart or a scale-up starts a different image. Pin the image by digest, or roll the workload.',
            },
          },
          {
            alert: 'ImagePullKubeletPullErrorsHigh',
            // The kubelet does not label pull errors with a registry, so this
            // alert carries the node instead; it catches pulls of registries
            // the exporter does not probe.
            expr: |||
              sum by (%(by)s) (rate(kubelet_runtime_operations_errors_total{%(sel)s, operation_type="pull_image"}[5m])) * 60 > %(t)s
            ||| % { by: utils.by(c, [c.kubeletNodeLabel]), sel: c.kubeletSelector, t: c.kubeletPullErrorsPerMinuteThreshold },
            'for': c.kubeletPullErrorsHighFor,
            labels: { severity: c.severityWarning },
            annotations: {
              summary: 'The kubelet on {{ index $labels "%s" }} fails many image pulls.' % c.kubeletNodeLabel,
              description: "The kubelet on {{ index $labels \"%s\" }} fails {{ $value | humanize }} image pulls per minute, without saying from which registry. ImagePullPodsBlocked and the Cluster impact dashboard name registries and causes; check the node's image filesystem and egress." % c.kubeletNodeLabel,
            },
          },
        ],
      },
    ],
  },
}
