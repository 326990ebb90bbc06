package deploytest_test

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-jsonnet"
	"github.com/google/go-jsonnet/formatter"
	"sigs.k8s.io/yaml"

	"github.com/imagepull/imagepull_exporter/collector/config"
	"github.com/imagepull/imagepull_exporter/internal/chartdoc"
	dt "github.com/imagepull/imagepull_exporter/internal/deploytest"
	"github.com/imagepull/imagepull_exporter/internal/testenv"
)

// overlays are the kustomize variants and the Helm values that select the
// same option; each pair must render the same objects.
var overlays = []struct {
	dir  string
	sets []string
}{
	{"deploy/base", nil},
	{"deploy/overlays/pull-secrets", []string{"pullSecrets.enabled=true"}},
	{"deploy/overlays/sharded", []string{"sharding.enabled=true"}},
	{"deploy/overlays/node-probe", []string{"nodeProbe.enabled=true"}},
	{"deploy/overlays/network-policy", []string{"networkPolicy.enabled=true"}},
	{"deploy/overlays/web-config", []string{"webConfig.enabled=true"}},
	{"deploy/overlays/credentials", []string{"credentials.enabled=true"}},
	{"deploy/overlays/credential-providers", []string{"credentialProviders.enabled=true"}},
	{"deploy/overlays/node-credential-providers", []string{"nodeProbe.enabled=true", "nodeProbe.credentialProviders.enabled=true"}},
	{"deploy/overlays/dashboards", []string{"dashboards.enabled=true"}},
}

// allComponents are every component, in the order an overlay of a user's
// would list them (the ones that patch every workload last), and allSets
// the chart values that turn on the same.
var (
	allComponents = []string{"deploy/components/sharded", "deploy/components/pull-secrets", "deploy/components/node-probe",
		"deploy/components/network-policy", "deploy/components/web-config", "deploy/components/credentials",
		"deploy/components/credential-providers", "deploy/components/node-credential-providers", "deploy/components/dashboards"}
	allSets = []string{"sharding.enabled=true", "pullSecrets.enabled=true", "nodeProbe.enabled=true", "networkPolicy.enabled=true",
		"webConfig.enabled=true", "credentials.enabled=true", "credentialProviders.enabled=true", "nodeProbe.credentialProviders.enabled=true",
		"dashboards.enabled=true"}
)

// helmOnlyLabels are the labels the chart adds and kustomize has no reason
// to: they name the chart, its version and Helm itself.
var helmOnlyLabels = []string{"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/version"}

// normalize drops what legitimately differs between the chart and the
// kustomize rendering: Helm's own labels and the checksum/config annotation
// that makes `helm upgrade` roll the pods on a config change. It also
// replaces the configuration file by its parsed form, so the comparison is
// about meaning, not about YAML layout.
func normalize(t *testing.T, o dt.Object) dt.Object {
	t.Helper()
	var c dt.Object
	b, err := yaml.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	strip := func(meta any) {
		m, ok := meta.(map[string]any)
		if !ok {
			return
		}
		if labels, ok := m["labels"].(map[string]any); ok {
			for _, l := range helmOnlyLabels {
				delete(labels, l)
			}
		}
		if ann, ok := m["annotations"].(map[string]any); ok {
			delete(ann, "checksum/config")
			if len(ann) == 0 {
				delete(m, "annotations")
			}
		}
	}
	strip(c["metadata"])
	strip(dt.Get(c, "spec", "template", "metadata"))
	if data, ok := c["data"].(map[string]any); ok && c.Kind() == "ConfigMap" && data["config.yml"] != nil {
		var parsed any
		if err := yaml.Unmarshal([]byte(data["config.yml"].(string)), &parsed); err != nil {
			t.Fatalf("%s: config.yml: %v", c.Key(), err)
		}
		data["config.yml"] = parsed
	}
	return c
}

func byKey(t *testing.T, objs []dt.Object) map[string]dt.Object {
	t.Helper()
	m := map[string]dt.Object{}
	for _, o := range objs {
		if _, dup := m[o.Key()]; dup {
			t.Errorf("%s rendered twice", o.Key())
		}
		m[o.Key()] = normalize(t, o)
	}
	return m
}

// The chart's default rendering is the kustomize base, and each chart option
// is its overlay: same kinds, names and namespaces, same RBAC rules, same
// container args, ports, probes, securityContext and resources, same
// ServiceMonitor endpoints and PrometheusRule groups — the whole objects,
// apart from Helm's own labels. The base's Namespace is the one object Helm
// leaves out (helm install --create-namespace).
func TestHelmMatchesKustomize(t *testing.T) {
	// Users combine the variants in an overlay of their own, from the
	// components; all three together are the chart with every option on.
	all := struct {
		dir  string
		sets []string
	}{dt.Combine(t, allComponents...), allSets}
	for _, ov := range append(slices.Clone(overlays), all) {
		name := filepath.Base(ov.dir)
		if ov.dir == all.dir {
			name = "all components"
		}
		t.Run(name, func(t *testing.T) {
			k := byKey(t, dt.Kustomize(t, ov.dir))
			h := byKey(t, dt.HelmTemplate(t, ov.sets...))
			nsKey := "Namespace /" + dt.Namespace
			if _, ok := k[nsKey]; !ok {
				t.Errorf("kustomize %s renders no Namespace %s", ov.dir, dt.Namespace)
			}
			delete(k, nsKey)
			var kk, hk []string
			for key := range k {
				kk = append(kk, key)
			}
			for key := range h {
				hk = append(hk, key)
			}
			sort.Strings(kk)
			sort.Strings(hk)
			if !reflect.DeepEqual(kk, hk) {
				t.Fatalf("objects differ:\nkustomize %q\nhelm      %q", kk, hk)
			}
			for _, key := range kk {
				if d := cmp.Diff(k[key], h[key]); d != "" {
					t.Errorf("%s differs (-kustomize +helm):\n%s", key, d)
				}
			}
		})
	}
}

// podSpecs returns every pod template of a rendering, keyed by workload.
func podSpecs(objs []dt.Object) map[string]map[string]any {
	out := map[string]map[string]any{}
	for _, o := range objs {
		switch o.Kind() {
		case "Deployment", "StatefulSet", "DaemonSet":
			out[o.Key()], _ = dt.Get(o, "spec", "template", "spec").(map[string]any)
		}
	}
	return out
}

func strs(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

// Every pod of every variant runs as in the `restricted` Pod Security
// level, with requests and limits, and the health endpoints as probes.
func TestPodHardening(t *testing.T) {
	renderings := map[string][]dt.Object{}
	for _, ov := range overlays {
		renderings["kustomize "+ov.dir] = dt.Kustomize(t, ov.dir)
	}
	renderings["helm all options"] = dt.HelmTemplate(t, "pullSecrets.enabled=true", "sharding.enabled=true", "nodeProbe.enabled=true", "networkPolicy.enabled=true")
	for name, objs := range renderings {
		specs := podSpecs(objs)
		if len(specs) == 0 {
			t.Errorf("%s: no workloads", name)
		}
		for key, spec := range specs {
			where := name + ": " + key
			psc := spec["securityContext"].(map[string]any)
			if psc["runAsNonRoot"] != true || dt.Get(psc, "seccompProfile", "type") != "RuntimeDefault" {
				t.Errorf("%s: pod securityContext %v: want runAsNonRoot and seccomp RuntimeDefault", where, psc)
			}
			for _, c := range spec["containers"].([]any) {
				c := c.(map[string]any)
				sc := c["securityContext"].(map[string]any)
				if sc["allowPrivilegeEscalation"] != false || sc["readOnlyRootFilesystem"] != true ||
					sc["runAsNonRoot"] != true || sc["runAsUser"] != float64(65532) ||
					!reflect.DeepEqual(dt.Get(sc, "capabilities", "drop"), []any{"ALL"}) ||
					dt.Get(sc, "capabilities", "add") != nil ||
					dt.Get(sc, "seccompProfile", "type") != "RuntimeDefault" || sc["privileged"] == true {
					t.Errorf("%s: container securityContext %v", where, sc)
				}
				for _, r := range []string{"requests", "limits"} {
					for _, res := range []string{"cpu", "memory"} {
						if dt.Get(c, "resources", r, res) == nil {
							t.Errorf("%s: no %s.%s", where, r, res)
						}
					}
				}
				// The Go heap yields before the kernel OOM-kills the pod.
				if !slices.ContainsFunc(c["env"].([]any), func(e any) bool {
					return reflect.DeepEqual(e, map[string]any{"name": "GOMEMLIMIT", "valueFrom": map[string]any{"resourceFieldRef": map[string]any{"resource": "limits.memory"}}})
				}) {
					t.Errorf("%s: no GOMEMLIMIT from limits.memory in %v", where, c["env"])
				}
				// Behind --web.config.file every path wants TLS and basic auth,
				// which the kubelet could only send with the password in the
				// pod spec: the port is checked instead.
				if slices.ContainsFunc(strs(c["args"]), func(a string) bool { return strings.HasPrefix(a, "--web.config.file=") }) {
					if dt.Get(c, "livenessProbe", "tcpSocket", "port") != "http" || dt.Get(c, "readinessProbe", "tcpSocket", "port") != "http" {
						t.Errorf("%s: with --web.config.file, probes %v %v, want TCP checks of http", where, c["livenessProbe"], c["readinessProbe"])
					}
				} else if dt.Get(c, "livenessProbe", "httpGet", "path") != "/-/healthy" || dt.Get(c, "readinessProbe", "httpGet", "path") != "/-/ready" {
					t.Errorf("%s: probes %v %v", where, c["livenessProbe"], c["readinessProbe"])
				}
				if dt.Get(c, "ports", "0", "containerPort") != float64(9739) || dt.Get(c, "ports", "0", "name") != "http" {
					t.Errorf("%s: ports %v, want http 9739", where, c["ports"])
				}
				for _, m := range c["volumeMounts"].([]any) {
					if m.(map[string]any)["readOnly"] != true {
						t.Errorf("%s: volume mount %v is writable", where, m)
					}
				}
				if strings.HasPrefix(c["image"].(string), "imagepull-exporter") {
					t.Errorf("%s: image %q was not set by kustomize's images:", where, c["image"])
				}
			}
		}
	}
}

type rule struct{ Groups, Resources, Verbs []string }

func rules(t *testing.T, role dt.Object) []rule {
	t.Helper()
	var out []rule
	for _, r := range role["rules"].([]any) {
		r := r.(map[string]any)
		if r["resourceNames"] != nil || r["nonResourceURLs"] != nil {
			t.Errorf("%s: unexpected rule %v", role.Key(), r)
		}
		out = append(out, rule{strs(r["apiGroups"]), strs(r["resources"]), strs(r["verbs"])})
	}
	return out
}

// The base role is exactly what collector/kube's informers use: list and
// watch of pods and nodes (the join), of core events (the pods' Failed
// events, --kube.watch-events) and of the five workload kinds (discovery).
// No secrets, no get, no writes, no events.k8s.io.
func TestBaseRBAC(t *testing.T) {
	objs := dt.Kustomize(t, "deploy/base")
	got := rules(t, dt.Find(t, objs, "ClusterRole", "imagepull-exporter"))
	want := []rule{
		{[]string{""}, []string{"pods", "nodes", "events"}, []string{"list", "watch"}},
		{[]string{"apps"}, []string{"deployments", "statefulsets", "daemonsets"}, []string{"list", "watch"}},
		{[]string{"batch"}, []string{"jobs", "cronjobs"}, []string{"list", "watch"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("base ClusterRole rules\n got %v\nwant %v", got, want)
	}
	if len(ofKindNames(objs, "ClusterRole")) != 1 || len(ofKindNames(objs, "Role")) != 0 {
		t.Errorf("the base must have one ClusterRole and no Role: %v %v", ofKindNames(objs, "ClusterRole"), ofKindNames(objs, "Role"))
	}
	crb := dt.Find(t, objs, "ClusterRoleBinding", "imagepull-exporter")
	if dt.Get(crb, "roleRef", "name") != "imagepull-exporter" ||
		!reflect.DeepEqual(crb["subjects"], []any{map[string]any{"kind": "ServiceAccount", "name": "imagepull-exporter", "namespace": "imagepull-exporter"}}) {
		t.Errorf("binding %v", crb)
	}
	dep := dt.Find(t, objs, "Deployment", "imagepull-exporter")
	if sa := dt.Get(dep, "spec", "template", "spec", "serviceAccountName"); sa != "imagepull-exporter" {
		t.Errorf("Deployment runs as %v", sa)
	}
}

// ofKindNames lists the names of the objects of kind.
func ofKindNames(objs []dt.Object, kind string) []string {
	var out []string
	for _, o := range dt.OfKind(objs, kind) {
		out = append(out, o.Name())
	}
	return out
}

// The pull-secrets overlay adds one role: get on secrets (by name, never
// list or watch) and list/watch of service accounts for their
// imagePullSecrets; and the flag. The base role is untouched.
func TestPullSecretsRBAC(t *testing.T) {
	base := dt.Kustomize(t, "deploy/base")
	objs := dt.Kustomize(t, "deploy/overlays/pull-secrets")
	got := rules(t, dt.Find(t, objs, "ClusterRole", "imagepull-exporter-pull-secrets"))
	want := []rule{
		{[]string{""}, []string{"secrets"}, []string{"get"}},
		{[]string{""}, []string{"serviceaccounts"}, []string{"list", "watch"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("pull-secrets ClusterRole rules\n got %v\nwant %v", got, want)
	}
	if !reflect.DeepEqual(dt.Find(t, objs, "ClusterRole", "imagepull-exporter")["rules"], dt.Find(t, base, "ClusterRole", "imagepull-exporter")["rules"]) {
		t.Error("the overlay changed the base role")
	}
	args := strs(dt.Get(dt.Find(t, objs, "Deployment", "imagepull-exporter"), "spec", "template", "spec", "containers", "0", "args"))
	if !slices.Contains(args, "--kube.use-pull-secrets") {
		t.Errorf("args %q lack --kube.use-pull-secrets", args)
	}
	crb := dt.Find(t, objs, "ClusterRoleBinding", "imagepull-exporter-pull-secrets")
	if dt.Get(crb, "roleRef", "name") != "imagepull-exporter-pull-secrets" || dt.Get(crb, "subjects", "0", "name") != "imagepull-exporter" {
		t.Errorf("binding %v", crb)
	}
	for _, o := range base {
		if o.Kind() == "ClusterRole" && strings.Contains(mustYAML(t, o), "secrets") {
			t.Errorf("the base grants something on secrets: %v", o)
		}
	}
}

func mustYAML(t *testing.T, v any) string {
	t.Helper()
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The sharded StatefulSet runs the base Deployment's pod, plus the shard
// flags, with --total-shards equal to its replicas, behind a headless
// Service; no Deployment is left to probe everything a second time.
func TestSharded(t *testing.T) {
	base := dt.Kustomize(t, "deploy/base")
	objs := dt.Kustomize(t, "deploy/overlays/sharded")
	if d := dt.OfKind(objs, "Deployment"); len(d) != 0 {
		t.Errorf("the sharded overlay still has a Deployment: %v", d)
	}
	sts := dt.Find(t, objs, "StatefulSet", "imagepull-exporter")
	dep := dt.Find(t, base, "Deployment", "imagepull-exporter")
	replicas := dt.Get(sts, "spec", "replicas").(float64)
	if replicas < 2 {
		t.Errorf("replicas %v", replicas)
	}
	stsTpl := normalize(t, dt.Object(dt.Get(sts, "spec", "template").(map[string]any)))
	depTpl := normalize(t, dt.Object(dt.Get(dep, "spec", "template").(map[string]any)))
	stsArgs := strs(dt.Get(stsTpl, "spec", "containers", "0", "args"))
	depArgs := strs(dt.Get(depTpl, "spec", "containers", "0", "args"))
	wantArgs := append(slices.Clone(depArgs), "--shard.from-hostname", "--total-shards="+strconv.Itoa(int(replicas)))
	if !reflect.DeepEqual(stsArgs, wantArgs) {
		t.Errorf("StatefulSet args %q, want %q", stsArgs, wantArgs)
	}
	// Apart from the args, the pod is the base's, so the two cannot drift.
	dt.Get(stsTpl, "spec", "containers", "0").(map[string]any)["args"] = nil
	dt.Get(depTpl, "spec", "containers", "0").(map[string]any)["args"] = nil
	if d := cmp.Diff(depTpl, stsTpl); d != "" {
		t.Errorf("StatefulSet pod template differs from the base Deployment's (-deployment +statefulset):\n%s", d)
	}
	if !reflect.DeepEqual(dt.Get(sts, "spec", "selector"), dt.Get(dep, "spec", "selector")) {
		t.Errorf("selector %v, want the Deployment's %v", dt.Get(sts, "spec", "selector"), dt.Get(dep, "spec", "selector"))
	}
	svc := dt.Find(t, objs, "Service", "imagepull-exporter")
	if dt.Get(svc, "spec", "clusterIP") != "None" || dt.Get(sts, "spec", "serviceName") != svc.Name() {
		t.Errorf("want a headless governing Service, got clusterIP %v, serviceName %v", dt.Get(svc, "spec", "clusterIP"), dt.Get(sts, "spec", "serviceName"))
	}
	if dt.Get(sts, "spec", "podManagementPolicy") != "Parallel" {
		t.Errorf("podManagementPolicy %v, want Parallel", dt.Get(sts, "spec", "podManagementPolicy"))
	}

	// The chart keeps --total-shards and replicas together.
	h := dt.HelmTemplate(t, "sharding.enabled=true", "sharding.replicas=5")
	hs := dt.Find(t, h, "StatefulSet", "imagepull-exporter")
	if dt.Get(hs, "spec", "replicas") != float64(5) || !slices.Contains(strs(dt.Get(hs, "spec", "template", "spec", "containers", "0", "args")), "--total-shards=5") {
		t.Errorf("helm sharding.replicas=5: replicas %v, args %v", dt.Get(hs, "spec", "replicas"), dt.Get(hs, "spec", "template", "spec", "containers", "0", "args"))
	}
}

// The node probes: one pod per node with its node name from the downward
// API, the runtime's mirror configuration mounted read-only, the node flags
// pointing into those mounts, no API token and no RBAC; the base Deployment
// is still there for the Kubernetes join.
func TestNodeProbe(t *testing.T) {
	objs := dt.Kustomize(t, "deploy/overlays/node-probe")
	dt.Find(t, objs, "Deployment", "imagepull-exporter")
	ds := dt.Find(t, objs, "DaemonSet", "imagepull-exporter-node")
	spec := dt.Get(ds, "spec", "template", "spec").(map[string]any)
	c := dt.Get(spec, "containers", "0").(map[string]any)
	args := strs(c["args"])
	for _, want := range []string{
		"--node.name=$(NODE_NAME)",
		"--node.containerd-certs-dir=/host/etc/containerd/certs.d",
		"--node.containerd-config=/host/etc/containerd/config.toml",
		"--node.crio-registries-conf=/host/etc/containers/registries.conf",
		"--no-web.enable-probe-endpoint",
	} {
		if !slices.Contains(args, want) {
			t.Errorf("args %q lack %s", args, want)
		}
	}
	for _, a := range args {
		if strings.HasPrefix(a, "--kube.") {
			t.Errorf("the node probe runs %s: the join belongs to the Deployment", a)
		}
	}
	if !slices.ContainsFunc(c["env"].([]any), func(e any) bool {
		return reflect.DeepEqual(e, map[string]any{"name": "NODE_NAME", "valueFrom": map[string]any{"fieldRef": map[string]any{"fieldPath": "spec.nodeName"}}})
	}) {
		t.Errorf("env %v, want NODE_NAME from spec.nodeName", c["env"])
	}
	mounts := map[string]string{}
	for _, m := range c["volumeMounts"].([]any) {
		m := m.(map[string]any)
		mounts[m["name"].(string)] = m["mountPath"].(string)
	}
	hostPaths := map[string]string{}
	for _, v := range spec["volumes"].([]any) {
		v := v.(map[string]any)
		if hp, ok := v["hostPath"].(map[string]any); ok {
			hostPaths[mounts[v["name"].(string)]] = hp["path"].(string)
		}
	}
	if want := map[string]string{"/host/etc/containerd": "/etc/containerd", "/host/etc/containers": "/etc/containers"}; !reflect.DeepEqual(hostPaths, want) {
		t.Errorf("hostPath mounts %v, want %v", hostPaths, want)
	}
	if spec["automountServiceAccountToken"] != false || spec["serviceAccountName"] != "imagepull-exporter-node" {
		t.Errorf("the node probe must not get an API token: %v %v", spec["automountServiceAccountToken"], spec["serviceAccountName"])
	}
	for _, b := range dt.OfKind(objs, "ClusterRoleBinding") {
		if strings.Contains(mustYAML(t, b["subjects"]), "imagepull-exporter-node") {
			t.Errorf("%s binds the node probe's service account", b.Key())
		}
	}
	if spec["hostNetwork"] != true || spec["dnsPolicy"] != "Default" {
		t.Errorf("hostNetwork %v dnsPolicy %v: want the node's network and resolver", spec["hostNetwork"], spec["dnsPolicy"])
	}
	ns := dt.Find(t, objs, "Namespace", "imagepull-exporter")
	if dt.Get(ns, "metadata", "labels", "pod-security.kubernetes.io/enforce") != "privileged" {
		t.Errorf("hostPath needs a privileged namespace: %v", dt.Get(ns, "metadata", "labels"))
	}
	sm := dt.Find(t, objs, "ServiceMonitor", "imagepull-exporter-node")
	if dt.Get(sm, "spec", "endpoints", "0", "relabelings", "0", "replacement") != "imagepull-exporter-node" {
		t.Errorf("node ServiceMonitor job: %v", dt.Get(sm, "spec", "endpoints"))
	}
}

// The ServiceMonitor produces the job the mixin's alerts select and keeps
// the exporter's own namespace label; its port exists on the Service.
func TestServiceMonitorMatchesMixin(t *testing.T) {
	vm := jsonnet.MakeVM()
	vm.Importer(&jsonnet.FileImporter{JPaths: []string{filepath.Join(testenv.RepoRoot(t), "mixin")}})
	sel, err := vm.EvaluateAnonymousSnippet("selector.jsonnet", "(import 'mixin.libsonnet')._config.imagepullSelector")
	if err != nil {
		t.Fatal(err)
	}
	objs := dt.Kustomize(t, "deploy/base")
	sm := dt.Find(t, objs, "ServiceMonitor", "imagepull-exporter")
	ep := dt.Get(sm, "spec", "endpoints", "0").(map[string]any)
	job := dt.Get(ep, "relabelings", "0")
	if want := map[string]any{"action": "replace", "targetLabel": "job", "replacement": "imagepull-exporter"}; !reflect.DeepEqual(job, want) {
		t.Errorf("job relabeling %v, want %v", job, want)
	}
	if got := strings.TrimSpace(sel); got != `"job=\"imagepull-exporter\""` {
		t.Errorf("the mixin selects %s, the ServiceMonitor sets job=\"imagepull-exporter\"", got)
	}
	if ep["honorLabels"] != true || ep["path"] != "/metrics" || ep["port"] != "http" {
		t.Errorf("endpoint %v: want honorLabels, /metrics, port http", ep)
	}
	// The mirror alerts watch the central and the node-probe jobs.
	mirrorSel, err := vm.EvaluateAnonymousSnippet("mirror.jsonnet", "(import 'mixin.libsonnet')._config.imagepullMirrorSelector")
	if err != nil {
		t.Fatal(err)
	}
	var mirror string
	if err := yaml.Unmarshal([]byte(mirrorSel), &mirror); err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`^job=~"(.*)"$`).FindStringSubmatch(mirror)
	if m == nil {
		t.Fatalf("imagepullMirrorSelector %q: want job=~\"...\"", mirror)
	}
	jobRE := regexp.MustCompile("^(?:" + m[1] + ")$")
	nodeSM := dt.Find(t, dt.Kustomize(t, "deploy/overlays/node-probe"), "ServiceMonitor", "imagepull-exporter-node")
	for _, job := range []any{dt.Get(ep, "relabelings", "0", "replacement"), dt.Get(nodeSM, "spec", "endpoints", "0", "relabelings", "0", "replacement")} {
		if !jobRE.MatchString(job.(string)) {
			t.Errorf("the mixin's mirror alerts (%s) do not select job %q", mirror, job)
		}
	}
	svc := dt.Find(t, objs, "Service", "imagepull-exporter")
	if dt.Get(svc, "spec", "ports", "0", "name") != "http" {
		t.Errorf("Service ports %v", dt.Get(svc, "spec", "ports"))
	}
	for k, v := range dt.Get(sm, "spec", "selector", "matchLabels").(map[string]any) {
		if dt.Get(svc, "metadata", "labels", k) != v {
			t.Errorf("ServiceMonitor selects %s=%v, the Service has %v", k, v, dt.Get(svc, "metadata", "labels", k))
		}
	}
}

// The PrometheusRule holds the mixin's generated alerts and recording
// rules, group for group.
func TestPrometheusRuleIsTheMixin(t *testing.T) {
	root := testenv.RepoRoot(t)
	var want []any
	for _, f := range []string{"alerts/imagepull-alerts.yaml", "alerts/imagepull-rules.yaml"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		if err := yaml.Unmarshal(b, &doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		want = append(want, doc["groups"].([]any)...)
	}
	pr := dt.Find(t, dt.Kustomize(t, "deploy/base"), "PrometheusRule", "imagepull-exporter")
	if d := cmp.Diff(want, dt.Get(pr, "spec", "groups")); d != "" {
		t.Errorf("PrometheusRule groups differ from alerts/*.yaml (-alerts +rule); run make generate:\n%s", d)
	}
}

// deploy/'s derived files are what scripts/deploy.sh generate renders now
// (the same check as make check-generated, without the jsonnet CLI).
func TestGeneratedFilesCurrent(t *testing.T) {
	root := testenv.RepoRoot(t)
	src, err := os.ReadFile(filepath.Join(root, "deploy", "render.jsonnet"))
	if err != nil {
		t.Fatal(err)
	}
	if formatted, err := formatter.Format("deploy/render.jsonnet", string(src), formatter.DefaultOptions()); err != nil || formatted != string(src) {
		t.Errorf("deploy/render.jsonnet is not jsonnetfmt-formatted (%v)", err)
	}
	vm := jsonnet.MakeVM()
	vm.Importer(&jsonnet.FileImporter{JPaths: []string{filepath.Join(root, "mixin")}})
	vm.StringOutput = true
	files, err := vm.EvaluateFileMulti(filepath.Join(root, "deploy", "render.jsonnet"))
	if err != nil {
		t.Fatal(err)
	}
	config, err := os.ReadFile(filepath.Join(root, "deploy", "base", "config.yml"))
	if err != nil {
		t.Fatal(err)
	}
	files[dt.Chart+"/files/config.yml"] = string(config)
	readme, err := chartdoc.Render(filepath.Join(root, dt.Chart))
	if err != nil {
		t.Fatalf("the chart's README cannot be generated: %v", err)
	}
	files[dt.Chart+"/README.md"] = string(readme)
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			t.Errorf("%v: run make generate", err)
			continue
		}
		if string(got) != want {
			t.Errorf("%s is stale: run make generate and commit it", name)
		}
	}
	// The dashboards directories hold only what the mixin renders now: a
	// dropped or renamed dashboard must not linger in a ConfigMap.
	for _, dir := range []string{dt.Chart + "/files/dashboards", "deploy/components/dashboards"} {
		entries, err := os.ReadDir(filepath.Join(root, dir))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if _, ok := files[dir+"/"+e.Name()]; !ok {
				t.Errorf("%s/%s is not rendered any more: run make generate (it removes it)", dir, e.Name())
			}
		}
	}
}

// The configuration every variant ships is valid for the exporter (the
// same loader as --config.check), and the chart's `config` value replaces
// it.
func TestConfigValid(t *testing.T) {
	root := testenv.RepoRoot(t)
	cfg, err := config.Load(filepath.Join(root, "deploy", "base", "config.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Targets) == 0 || cfg.Discovery.ModuleFor("quay.io") != "discovered" {
		t.Errorf("config: %d targets, discovery module for quay.io %q", len(cfg.Targets), cfg.Discovery.ModuleFor("quay.io"))
	}
	h := dt.HelmTemplate(t, "config.modules.default.interval=30s")
	cm := dt.Find(t, h, "ConfigMap", "imagepull-exporter")
	if got := dt.Get(cm, "data", "config.yml").(string); got != "modules:\n  default:\n    interval: 30s\n" {
		t.Errorf("helm config override rendered %q", got)
	}
	dep := dt.Find(t, h, "Deployment", "imagepull-exporter")
	base := dt.Find(t, dt.HelmTemplate(t), "Deployment", "imagepull-exporter")
	if dt.Get(dep, "spec", "template", "metadata", "annotations", "checksum/config") == dt.Get(base, "spec", "template", "metadata", "annotations", "checksum/config") {
		t.Error("a config change does not change the pods' checksum/config: helm upgrade would not roll them")
	}
}

// Helm options that have no overlay render what they say.
func TestHelmValues(t *testing.T) {
	objs := dt.HelmTemplate(t, "image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"extraArgs={--kube.namespaces=team-a}", "serviceMonitor.enabled=false", "prometheusRule.enabled=false",
		"kube.discoverTargets=false", "kube.watchEvents=false")
	c := dt.Get(dt.Find(t, objs, "Deployment", "imagepull-exporter"), "spec", "template", "spec", "containers", "0").(map[string]any)
	if c["image"] != "ghcr.io/imagepull/imagepull_exporter@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" {
		t.Errorf("image %v", c["image"])
	}
	if args := strs(c["args"]); !reflect.DeepEqual(args, []string{"--config.file=/etc/imagepull_exporter/config.yml", "--web.listen-address=:9739", "--no-kube.watch-events", "--kube.namespaces=team-a"}) {
		t.Errorf("args %q", args)
	}
	if len(dt.OfKind(objs, "ServiceMonitor"))+len(dt.OfKind(objs, "PrometheusRule")) != 0 {
		t.Error("serviceMonitor/prometheusRule.enabled=false still render them")
	}
	// Without discovery no informer watches workloads, without
	// kube.watchEvents none watches events: the role drops them.
	if got, want := rules(t, dt.Find(t, objs, "ClusterRole", "imagepull-exporter")),
		[]rule{{[]string{""}, []string{"pods", "nodes"}, []string{"list", "watch"}}}; !reflect.DeepEqual(got, want) {
		t.Errorf("kube.discoverTargets=false, kube.watchEvents=false: ClusterRole rules %v, want %v", got, want)
	}
	// The default chart grants events alongside pods and nodes, as the base.
	if got := rules(t, dt.Find(t, dt.HelmTemplate(t), "ClusterRole", "imagepull-exporter")); len(got) == 0 ||
		!reflect.DeepEqual(got[0], rule{[]string{""}, []string{"pods", "nodes", "events"}, []string{"list", "watch"}}) {
		t.Errorf("default chart ClusterRole rules %v: want list/watch on pods, nodes, events first", got)
	}
	other := dt.HelmTemplate(t, "fullnameOverride=probe", "serviceMonitor.additionalLabels.release=kps")
	sm := dt.Find(t, other, "ServiceMonitor", "probe")
	if dt.Get(sm, "metadata", "labels", "release") != "kps" || dt.Get(sm, "spec", "endpoints", "0", "relabelings", "0", "replacement") != "imagepull-exporter" {
		t.Errorf("a renamed release must keep job=imagepull-exporter and take extra labels: %v", sm)
	}
	if crb := dt.Find(t, other, "ClusterRoleBinding", "probe"); dt.Get(crb, "subjects", "0", "name") != "probe" {
		t.Errorf("binding subjects %v", crb["subjects"])
	}
}

// The NetworkPolicy selects the pods that run the Kubernetes join (the
// Deployment or the shards), not the node probes (hostNetwork, which
// NetworkPolicy does not cover); lets in only the monitoring namespace, on
// the metrics port; lets out DNS to kube-dns, registries on 443/80 but
// never link-local (metadata) addresses, and the kube-apiserver. The chart
// takes another namespace selector and more ports.
func TestNetworkPolicy(t *testing.T) {
	objs := dt.Kustomize(t, dt.Combine(t, "deploy/components/sharded", "deploy/components/node-probe", "deploy/components/network-policy"))
	np := dt.Find(t, objs, "NetworkPolicy", "imagepull-exporter")
	sel := dt.Get(np, "spec", "podSelector", "matchLabels").(map[string]any)
	matches := func(w dt.Object) bool {
		for k, v := range sel {
			if dt.Get(w, "spec", "template", "metadata", "labels", k) != v {
				return false
			}
		}
		return true
	}
	if sts := dt.Find(t, objs, "StatefulSet", "imagepull-exporter"); !matches(sts) {
		t.Errorf("the policy %v does not select the exporter's pods", sel)
	}
	if ds := dt.Find(t, objs, "DaemonSet", "imagepull-exporter-node"); matches(ds) {
		t.Errorf("the policy %v selects the hostNetwork node probes, which it cannot govern", sel)
	}
	if got := strs(dt.Get(np, "spec", "policyTypes")); !reflect.DeepEqual(got, []string{"Ingress", "Egress"}) {
		t.Errorf("policyTypes %q", got)
	}
	ingress := dt.Get(np, "spec", "ingress").([]any)
	wantIngress := []any{map[string]any{
		"from":  []any{map[string]any{"namespaceSelector": map[string]any{"matchLabels": map[string]any{"kubernetes.io/metadata.name": "monitoring"}}}},
		"ports": []any{map[string]any{"port": "http", "protocol": "TCP"}},
	}}
	if d := cmp.Diff(wantIngress, ingress); d != "" {
		t.Errorf("ingress (-want +got):\n%s", d)
	}
	if dt.Get(dt.Find(t, objs, "StatefulSet", "imagepull-exporter"), "spec", "template", "spec", "containers", "0", "ports", "0", "name") != "http" {
		t.Error("the exporter's container has no port named http")
	}
	// port -> the destinations allowed on it ("*" for any).
	egress := map[string][]string{}
	for _, r := range dt.Get(np, "spec", "egress").([]any) {
		to := []string{"*"}
		if peers, ok := dt.Get(r, "to").([]any); ok {
			to = nil
			for _, p := range peers {
				to = append(to, strings.TrimSpace(mustYAML(t, p)))
			}
		}
		for _, p := range dt.Get(r, "ports").([]any) {
			key := fmt.Sprintf("%v/%v", dt.Get(p, "port"), dt.Get(p, "protocol"))
			egress[key] = append(egress[key], to...)
		}
	}
	for _, dns := range []string{"53/UDP", "53/TCP"} {
		if len(egress[dns]) != 1 || !strings.Contains(egress[dns][0], "k8s-app: kube-dns") || !strings.Contains(egress[dns][0], "kubernetes.io/metadata.name: kube-system") {
			t.Errorf("egress %s to %q, want kube-dns only", dns, egress[dns])
		}
	}
	if !slices.Contains(egress["80/TCP"], strings.TrimSpace(mustYAML(t, map[string]any{"ipBlock": map[string]any{"cidr": "0.0.0.0/0", "except": []any{"169.254.0.0/16"}}}))) ||
		slices.Contains(egress["80/TCP"], "*") {
		t.Errorf("egress 80/TCP to %q: want anywhere but link-local", egress["80/TCP"])
	}
	for _, p := range []string{"443/TCP", "6443/TCP"} {
		if len(egress[p]) == 0 {
			t.Errorf("no egress on %s (registries, kube-apiserver)", p)
		}
	}
	if len(egress) != 5 {
		t.Errorf("egress ports %v, want 53/UDP, 53/TCP, 80, 443, 6443", egress)
	}

	h := dt.HelmTemplate(t, "networkPolicy.enabled=true", "networkPolicy.ingress.namespaceSelector.matchLabels.team=observability",
		"networkPolicy.registries.extraPorts={5000}", "networkPolicy.kubeAPIServer.to[0].ipBlock.cidr=10.0.0.1/32")
	hp := dt.Find(t, h, "NetworkPolicy", "imagepull-exporter")
	if got := dt.Get(hp, "spec", "ingress", "0", "from", "0", "namespaceSelector", "matchLabels", "team"); got != "observability" {
		t.Errorf("chart ingress namespaceSelector: %v", dt.Get(hp, "spec", "ingress"))
	}
	y := mustYAML(t, dt.Get(hp, "spec", "egress"))
	if !strings.Contains(y, "port: 5000") || !strings.Contains(y, "cidr: 10.0.0.1/32") {
		t.Errorf("chart egress lacks the extra port or the apiserver CIDR:\n%s", y)
	}
	if len(dt.OfKind(dt.HelmTemplate(t), "NetworkPolicy")) != 0 {
		t.Error("the chart renders a NetworkPolicy by default")
	}
}

// The chart mounts credentials without a password in any ConfigMap: the
// service account takes a cloud identity's annotations, the pods its
// labels, every exporter container the extra env, volumes and mounts, and
// credentials lists the user's own Secrets and ConfigMaps as projected
// sources, on the Deployment (or shards) and the node probes alike.
func TestHelmCredentialValues(t *testing.T) {
	objs := dt.HelmTemplate(t, "nodeProbe.enabled=true",
		"serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn=arn:aws:iam::111122223333:role/imagepull-exporter",
		"podLabels.azure\\.workload\\.identity/use=true",
		"extraEnv[0].name=AWS_REGION", "extraEnv[0].value=eu-west-1",
		"extraVolumes[0].name=extra", "extraVolumes[0].emptyDir.medium=Memory",
		"extraVolumeMounts[0].name=extra", "extraVolumeMounts[0].mountPath=/extra",
		"credentials.enabled=true",
		"credentials.secrets[0].name=harbor-pull", "credentials.secrets[0].items[0].key=.dockerconfigjson", "credentials.secrets[0].items[0].path=harbor/config.json",
		"credentials.configMaps[0].name=internal-ca")
	sa := dt.Find(t, objs, "ServiceAccount", "imagepull-exporter")
	if got := dt.Get(sa, "metadata", "annotations", "eks.amazonaws.com/role-arn"); got != "arn:aws:iam::111122223333:role/imagepull-exporter" {
		t.Errorf("ServiceAccount annotation %v", got)
	}
	for _, w := range []dt.Object{dt.Find(t, objs, "Deployment", "imagepull-exporter"), dt.Find(t, objs, "DaemonSet", "imagepull-exporter-node")} {
		pod := dt.Get(w, "spec", "template").(map[string]any)
		if got := dt.Get(pod, "metadata", "labels", "azure.workload.identity/use"); got != "true" {
			t.Errorf("%s: pod label %v", w.Key(), got)
		}
		c := dt.Get(pod, "spec", "containers", "0").(map[string]any)
		env, _ := yaml.Marshal(c["env"])
		mounts, _ := yaml.Marshal(c["volumeMounts"])
		vols, _ := yaml.Marshal(dt.Get(pod, "spec", "volumes"))
		for what, want := range map[string][]string{
			string(env):    {"name: AWS_REGION", "value: eu-west-1", "name: GOMEMLIMIT"},
			string(mounts): {"mountPath: /extra", "mountPath: /etc/imagepull_exporter/credentials"},
			string(vols):   {"medium: Memory", "name: harbor-pull", "key: .dockerconfigjson", "path: harbor/config.json", "name: internal-ca"},
		} {
			for _, s := range want {
				if !strings.Contains(what, s) {
					t.Errorf("%s: %q missing from\n%s", w.Key(), s, what)
				}
			}
		}
		if strings.Contains(string(vols), "imagepull-exporter-credentials") {
			t.Errorf("%s: listed sources must replace the default Secret and ConfigMap:\n%s", w.Key(), vols)
		}
	}
	// No value of the chart's may put a credential into the configuration:
	// the ConfigMap holds only paths.
	cm := dt.Find(t, objs, "ConfigMap", "imagepull-exporter")
	if s := fmt.Sprint(cm["data"]); strings.Contains(s, "arn:aws") || strings.Contains(s, "harbor-pull") {
		t.Errorf("the ConfigMap took chart values it must not: %s", s)
	}
}
