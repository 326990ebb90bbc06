package kube

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/imagepull/imagepull_exporter/collector"
	"github.com/imagepull/imagepull_exporter/internal/testenv"
	"github.com/imagepull/imagepull_exporter/probe"
)

// tctr is one container of a workload template.
type tctr struct {
	name, image string
	init        bool
}

func templateSpec(cs ...tctr) corev1.PodSpec {
	var s corev1.PodSpec
	for _, c := range cs {
		ct := corev1.Container{Name: c.name, Image: c.image}
		if c.init {
			s.InitContainers = append(s.InitContainers, ct)
		} else {
			s.Containers = append(s.Containers, ct)
		}
	}
	return s
}

// The constructors below make objects the apiserver accepts (selectors,
// restart policies), so the integration tests use them too.

func podTemplate(name string, spec corev1.PodSpec) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}}, Spec: spec}
}

func selector(name string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}}
}

func deployment(ns, name string, replicas int32, spec corev1.PodSpec) *appsv1.Deployment {
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{Replicas: &replicas, Selector: selector(name), Template: podTemplate(name, spec)}}
}

func statefulSet(ns, name string, spec corev1.PodSpec) *appsv1.StatefulSet {
	return &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.StatefulSetSpec{Selector: selector(name), Template: podTemplate(name, spec)}}
}

func daemonSet(ns, name string, spec corev1.PodSpec) *appsv1.DaemonSet {
	return &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DaemonSetSpec{Selector: selector(name), Template: podTemplate(name, spec)}}
}

func job(ns, name string, spec corev1.PodSpec) *batchv1.Job {
	spec.RestartPolicy = corev1.RestartPolicyNever
	return &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: spec}}}
}

func cronJob(ns, name string, suspend bool, spec corev1.PodSpec) *batchv1.CronJob {
	spec.RestartPolicy = corev1.RestartPolicyNever
	return &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: batchv1.CronJobSpec{Schedule: "17 3 * * *", Suspend: &suspend,
			JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: spec}}}}}
}

func withCondition(j *batchv1.Job, typ batchv1.JobConditionType) *batchv1.Job {
	j.Status.Conditions = append(j.Status.Conditions, batchv1.JobCondition{Type: typ, Status: corev1.ConditionTrue})
	return j
}

func ownedBy(j *batchv1.Job, kind, name string) *batchv1.Job {
	yes := true
	j.OwnerReferences = []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: kind, Name: name, UID: "u", Controller: &yes}}
	return j
}

// workloadWatch is the offline cluster's watch of o's kind.
func (c *Cluster) workloadWatch(t testing.TB, o any) *resourceWatch {
	t.Helper()
	name := map[string]string{
		"*v1.Deployment": ResourceDeployments, "*v1.StatefulSet": ResourceStatefulSets,
		"*v1.DaemonSet": ResourceDaemonSets, "*v1.Job": ResourceJobs, "*v1.CronJob": ResourceCronJobs,
	}[fmt.Sprintf("%T", o)]
	for _, rw := range c.workloads {
		if rw.name == name {
			return rw
		}
	}
	t.Fatalf("no %s watch: the cluster does not watch workloads", name)
	return nil
}

func TestTransformWorkload(t *testing.T) {
	spec := templateSpec(tctr{name: "migrate", image: "ghcr.io/acme/migrate:v1", init: true},
		tctr{name: "app", image: "ghcr.io/acme/api:v1"}, tctr{name: "sidecar", image: "UPPER/case"})
	for _, tc := range []struct {
		obj                    any
		kind                   string
		finished, cronJobOwned bool
	}{
		{deployment("ns", "w", 0, spec), "Deployment", false, false},
		{statefulSet("ns", "w", spec), "StatefulSet", false, false},
		{daemonSet("ns", "w", spec), "DaemonSet", false, false},
		{cronJob("ns", "w", true, spec), "CronJob", false, false},
		{job("ns", "w", spec), "Job", false, false},
		{withCondition(job("ns", "w", spec), batchv1.JobSuspended), "Job", false, false},
		{withCondition(job("ns", "w", spec), batchv1.JobComplete), "Job", true, false},
		{withCondition(job("ns", "w", spec), batchv1.JobFailed), "Job", true, false},
		{withCondition(job("ns", "w", spec), batchv1.JobFailureTarget), "Job", true, false},
		{withCondition(job("ns", "w", spec), batchv1.JobSuccessCriteriaMet), "Job", true, false},
		{ownedBy(job("ns", "w", spec), "CronJob", "nightly"), "Job", false, true},
		{ownedBy(job("ns", "w", spec), "Workflow", "wf"), "Job", false, false},
	} {
		x, err := transformWorkload(tc.obj)
		if err != nil {
			t.Fatal(err)
		}
		w := x.(*templateInfo)
		var got []string
		for _, c := range w.Containers {
			got = append(got, c.Name.Value()+"="+c.Img.Value().Image)
		}
		want := []string{"migrate=ghcr.io/acme/migrate:v1", "app=ghcr.io/acme/api:v1", "sidecar=UPPER/case"}
		if w.Kind != tc.kind || w.Name != "w" || w.Namespace != "ns" || !reflect.DeepEqual(got, want) ||
			w.Finished != tc.finished || w.CronJobOwned != tc.cronJobOwned || w.OwnerReferences != nil {
			t.Errorf("%T %+v: kind %s, containers %v, finished %v, cronjob-owned %v; want %s, %v, %v, %v",
				tc.obj, w.ObjectMeta, w.Kind, got, w.Finished, w.CronJobOwned, tc.kind, want, tc.finished, tc.cronJobOwned)
		}
		if again, err := transformWorkload(w); err != nil || again != x {
			t.Errorf("transform not idempotent: %v, %v", again, err)
		}
	}
}

// TestWorkloadImages: which workload containers get a series, with which
// cause, over an offline cluster and fixed probe answers.
func TestWorkloadImages(t *testing.T) {
	status := staticStatus{
		causes: map[string]string{
			"reg.example":  collector.CauseRegistryOK,
			"down.example": string(probe.ReasonConnect),
		},
		tags: map[tagKey]tagResult{
			{"reg.example", "app", "v1"}:      {digest: digestA, ok: true},
			{"reg.example", "app", "gone"}:    {reason: probe.ReasonNotFound, ok: true},
			{"reg.example", "private", "v1"}:  {reason: probe.ReasonForbidden, ok: true},
			{"reg.example", "app", "secret"}:  {reason: probe.ReasonUnauthorized, ok: true},
			{"reg.example", "app", "nocreds"}: {reason: probe.ReasonNoCredentials, ok: true},
			{"reg.example", "app", "cfg"}:     {reason: probe.ReasonConfig, ok: true},
			{"reg.example", "app", "badca"}:   {reason: probe.ReasonTLS, ok: true}, // one module's CA; the registry is up
			{"reg.example", "app", "busy"}:    {reason: probe.ReasonRateLimited, ok: true},
			{"down.example", "app", "v1"}:     {reason: probe.ReasonConnect, ok: true},
			{"reg.example", "app", digestA}:   {reason: probe.ReasonNotFound, ok: true},
		},
	}
	c := offlineCluster(t, Options{Status: status, WatchWorkloads: true})
	gone := "reg.example/app:gone"
	paused := deployment("a", "paused", 3, templateSpec(tctr{name: "web", image: gone}))
	paused.Spec.Paused = true
	c.feed(t,
		deployment("a", "zero", 0, templateSpec(tctr{name: "web", image: gone}, tctr{name: "ok", image: "reg.example/app:v1"})),
		paused,
		statefulSet("a", "db", templateSpec(tctr{name: "migrate", image: "reg.example/private:v1", init: true},
			tctr{name: "db", image: "reg.example/app:v1"})),
		daemonSet("b", "agent", templateSpec(tctr{name: "nocreds", image: "reg.example/app:nocreds"},
			tctr{name: "cfg", image: "reg.example/app:cfg"}, tctr{name: "badca", image: "reg.example/app:badca"},
			tctr{name: "busy", image: "reg.example/app:busy"})),
		daemonSet("b", "edge", templateSpec(tctr{name: "proxy", image: "down.example/app:v1"})),
		job("b", "once", templateSpec(tctr{name: "run", image: "reg.example/app:secret"})),
		withCondition(job("b", "done", templateSpec(tctr{name: "run", image: gone})), batchv1.JobComplete),
		withCondition(job("b", "failed", templateSpec(tctr{name: "run", image: gone})), batchv1.JobFailed),
		ownedBy(job("b", "nightly-29000000", templateSpec(tctr{name: "run", image: gone})), "CronJob", "nightly"),
		cronJob("b", "nightly", true, templateSpec(tctr{name: "run", image: gone})),
		deployment("c", "odd", 1, templateSpec(tctr{name: "invalid", image: "UPPER/case"},
			tctr{name: "unprobed", image: "unprobed.example/x:1"},
			tctr{name: "pinned", image: "reg.example/app:v1@" + digestA})),
	)
	res := c.join()
	got := seriesStrings(res.workloads)
	want := []string{
		`a Deployment paused web reg.example/app:gone not_found reg.example`,
		`a Deployment zero web reg.example/app:gone not_found reg.example`,
		`a StatefulSet db migrate reg.example/private:v1 forbidden reg.example`,
		`b CronJob nightly run reg.example/app:gone not_found reg.example`,
		`b DaemonSet agent busy reg.example/app:busy rate_limited reg.example`,
		`b DaemonSet edge proxy down.example/app:v1 connect down.example`,
		`b Job once run reg.example/app:secret unauthorized reg.example`,
		`c Deployment odd pinned reg.example/app:v1@` + digestA + ` not_found reg.example`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("workload series:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if res.workloadsDropped != 0 {
		t.Errorf("dropped %d with no cap", res.workloadsDropped)
	}

	// The exposition, once the workloads have synced; the dropped gauge
	// is there at 0.
	res.workloadsSynced = true
	wantText := `
# HELP imagepull_kube_workload_series_dropped ` + testenv.HelpOf(descWorkloadDropped) + `
# TYPE imagepull_kube_workload_series_dropped gauge
imagepull_kube_workload_series_dropped 0
# HELP imagepull_workload_image_unavailable ` + testenv.HelpOf(descWorkloadUnavailable) + `
# TYPE imagepull_workload_image_unavailable gauge
imagepull_workload_image_unavailable{cause="connect",container="proxy",image="down.example/app:v1",kind="DaemonSet",namespace="b",registry="down.example",workload="edge"} 1
imagepull_workload_image_unavailable{cause="forbidden",container="migrate",image="reg.example/private:v1",kind="StatefulSet",namespace="a",registry="reg.example",workload="db"} 1
imagepull_workload_image_unavailable{cause="not_found",container="pinned",image="reg.example/app:v1@` + digestA + `",kind="Deployment",namespace="c",registry="reg.example",workload="odd"} 1
imagepull_workload_image_unavailable{cause="not_found",container="run",image="reg.example/app:gone",kind="CronJob",namespace="b",registry="reg.example",workload="nightly"} 1
imagepull_workload_image_unavailable{cause="not_found",container="web",image="reg.example/app:gone",kind="Deployment",namespace="a",registry="reg.example",workload="paused"} 1
imagepull_workload_image_unavailable{cause="not_found",container="web",image="reg.example/app:gone",kind="Deployment",namespace="a",registry="reg.example",workload="zero"} 1
imagepull_workload_image_unavailable{cause="rate_limited",container="busy",image="reg.example/app:busy",kind="DaemonSet",namespace="b",registry="reg.example",workload="agent"} 1
imagepull_workload_image_unavailable{cause="unauthorized",container="run",image="reg.example/app:secret",kind="Job",namespace="b",registry="reg.example",workload="once"} 1
`
	col := resCollector{res}
	if err := testutil.CollectAndCompare(col, strings.NewReader(wantText),
		"imagepull_workload_image_unavailable", "imagepull_kube_workload_series_dropped"); err != nil {
		t.Error(err)
	}
	if problems, err := testutil.CollectAndLint(col, "imagepull_workload_image_unavailable", "imagepull_kube_workload_series_dropped"); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}

	// Before the workloads have synced: no series, not even the gauge.
	res.workloadsSynced = false
	if n := testutil.CollectAndCount(col, "imagepull_workload_image_unavailable", "imagepull_kube_workload_series_dropped"); n != 0 {
		t.Errorf("%d series before the workloads synced", n)
	}
}

// resCollector exposes one join result.
type resCollector struct{ res *joinResult }

func (r resCollector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(r, ch) }
func (r resCollector) Collect(ch chan<- prometheus.Metric) { r.res.collect(ch) }

func seriesStrings(ws []workloadSeries) []string {
	var out []string
	for _, w := range ws {
		out = append(out, strings.Join([]string{w.namespace, w.kind, w.workload, w.container, w.image, w.cause, w.registry}, " "))
	}
	slices.Sort(out)
	return out
}

// targetStatus answers ImageResult per target name and counts the
// questions.
type targetStatus struct {
	staticStatus
	results map[string]probe.Reason
	mu      sync.Mutex
	calls   map[string]int
}

func (s *targetStatus) ImageResult(target string, _ probe.Reference) (probe.Reason, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[target]++
	r, ok := s.results[target]
	return r, ok
}

// In pull-secret mode a template's image is read from the target discovery
// names after the template's pull secrets, else its service account's
// (the "default" one when it names none); each (target, reference) is
// asked once per join.
func TestWorkloadImagesPullSecretMode(t *testing.T) {
	const img = "reg.example/app:v1"
	ref, err := probe.ParseReference(img)
	if err != nil {
		t.Fatal(err)
	}
	status := &targetStatus{
		staticStatus: staticStatus{causes: map[string]string{"reg.example": collector.CauseRegistryOK}},
		results: map[string]probe.Reason{
			targetName(ref, "ps", []string{"wrong"}):  probe.ReasonUnauthorized,
			targetName(ref, "ps", []string{"right"}):  probe.ReasonNone,
			targetName(ref, "ps", []string{"dflt"}):   probe.ReasonNotFound, // the default SA's secret sees no such tag
			targetName(ref, "other", nil):             probe.ReasonNoCredentials,
			targetName(ref, "ps", []string{"a", "b"}): probe.ReasonForbidden,
			targetName(ref, "other", []string{"sa2"}): probe.ReasonNone,
		},
		calls: map[string]int{},
	}
	withSecrets := func(d *appsv1.Deployment, sa string, secrets ...string) *appsv1.Deployment {
		d.Spec.Template.Spec.ServiceAccountName = sa
		for _, s := range secrets {
			d.Spec.Template.Spec.ImagePullSecrets = append(d.Spec.Template.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: s})
		}
		return d
	}
	spec := func() corev1.PodSpec { return templateSpec(tctr{name: "app", image: img}) }
	sa := func(ns, name string, secrets ...string) *corev1.ServiceAccount {
		s := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		for _, n := range secrets {
			s.ImagePullSecrets = append(s.ImagePullSecrets, corev1.LocalObjectReference{Name: n})
		}
		return s
	}
	c := offlineCluster(t, Options{Status: status, WatchWorkloads: true, UsePullSecrets: true})
	c.feed(t,
		sa("ps", "builder", "right"), sa("ps", "default", "dflt"), sa("other", "runner", "sa2"),
		withSecrets(deployment("ps", "own-wrong", 1, spec()), "builder", "wrong"), // its own secrets win over its SA's
		withSecrets(deployment("ps", "own-wrong-2", 1, spec()), "", "wrong"),      // same target: asked once
		withSecrets(deployment("ps", "via-sa", 1, spec()), "builder"),
		withSecrets(deployment("ps", "via-default-sa", 1, spec()), ""),
		withSecrets(deployment("ps", "two", 1, spec()), "", "a", "b"),
		withSecrets(deployment("other", "no-sa-secrets", 1, spec()), "nobody"),
		withSecrets(deployment("other", "sa2", 1, spec()), "runner"),
	)
	res := c.join()
	want := []string{
		"ps Deployment own-wrong app " + img + " unauthorized reg.example",
		"ps Deployment own-wrong-2 app " + img + " unauthorized reg.example",
		"ps Deployment two app " + img + " forbidden reg.example",
		"ps Deployment via-default-sa app " + img + " not_found reg.example",
	}
	if got := seriesStrings(res.workloads); !slices.Equal(got, want) {
		t.Errorf("workload series:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	wantCalls := map[string]int{
		img + " via ps/wrong": 1, img + " via ps/right": 1, img + " via ps/dflt": 1,
		img + " via ps/a,ps/b": 1, img: 1, img + " via other/sa2": 1,
	}
	if !reflect.DeepEqual(status.calls, wantCalls) {
		t.Errorf("ImageResult asked %v, want %v", status.calls, wantCalls)
	}

	// Without pull-secret mode every template is read from the target
	// probing the reference with its module's credentials.
	status.calls = map[string]int{}
	status.results = map[string]probe.Reason{img: probe.ReasonNotFound}
	c = offlineCluster(t, Options{Status: status, WatchWorkloads: true})
	c.feed(t, withSecrets(deployment("ps", "own-wrong", 1, spec()), "builder", "wrong"),
		withSecrets(deployment("ps", "via-sa", 1, spec()), "builder"))
	if got := seriesStrings(c.join().workloads); len(got) != 2 || !reflect.DeepEqual(status.calls, map[string]int{img: 1}) {
		t.Errorf("without pull secrets: series %v, asked %v", got, status.calls)
	}
}

// Past --kube.max-workload-series: registries that are down go first, then
// the namespaces take turns; the same series are kept whatever the order
// the informers list them in.
func TestCapWorkloadSeries(t *testing.T) {
	s := func(ns, workload string, down bool) workloadSeries {
		return workloadSeries{namespace: ns, kind: "Deployment", workload: workload, container: "app",
			image: "r.example/x:1", cause: "not_found", registry: "r.example", down: down}
	}
	all := []workloadSeries{
		s("a", "a1", false), s("a", "a2", false), s("a", "a3", false),
		s("b", "b1", false),
		s("c", "c1", false), s("c", "c2", false),
		s("a", "a0-down", true), s("b", "b0-down", true),
	}
	for _, tc := range []struct {
		limit   int
		kept    []string
		dropped int
	}{
		{0, nil, 0}, // no cap: all
		{8, nil, 0},
		{1, []string{"a1"}, 7},
		{4, []string{"a1", "b1", "c1", "a2"}, 4},
		{6, []string{"a1", "b1", "c1", "a2", "c2", "a3"}, 2},
		{7, []string{"a1", "b1", "c1", "a2", "c2", "a3", "a0-down"}, 1},
	} {
		for range 5 {
			in := slices.Clone(all)
			rand.Shuffle(len(in), func(i, j int) { in[i], in[j] = in[j], in[i] })
			got, dropped := capWorkloadSeries(in, tc.limit)
			var names []string
			for _, w := range got {
				names = append(names, w.workload)
			}
			want := tc.kept
			if want == nil {
				if len(got) != len(all) {
					t.Errorf("limit %d: kept %v, want all", tc.limit, names)
				}
			} else if !slices.Equal(names, want) {
				t.Errorf("limit %d: kept %v, want %v", tc.limit, names, want)
			}
			if dropped != tc.dropped {
				t.Errorf("limit %d: dropped %d, want %d", tc.limit, dropped, tc.dropped)
			}
		}
	}
}

// The cap and the registry fold through the join: the cap keeps 3 of 5
// series (the dropped gauge says 2), then the fold keeps the two heaviest
// registries (r4's two running containers, then r0 by name among the ones
// a workload series weighs one) and the kept series of the others go under
// registry="other".
func TestWorkloadSeriesCapAndFold(t *testing.T) {
	tags := map[tagKey]tagResult{}
	var objs []any
	for i := range 5 {
		reg := fmt.Sprintf("r%d.example", i)
		tags[tagKey{reg, "app", "gone"}] = tagResult{reason: probe.ReasonNotFound, ok: true}
		objs = append(objs, deployment("ns", fmt.Sprintf("w%d", i), 0, templateSpec(tctr{name: "app", image: reg + "/app:gone"})))
	}
	objs = append(objs, pod("ns", "p", "n1", ctr{image: "r4.example/app:v1", running: true}, ctr{image: "r4.example/app:v2", running: true}))
	c := offlineCluster(t, Options{Status: staticStatus{tags: tags}, WatchWorkloads: true, MaxWorkloadSeries: 3, MaxRegistries: 2})
	c.feed(t, objs...)
	res := c.join()
	want := []string{
		"ns Deployment w0 app r0.example/app:gone not_found r0.example",
		"ns Deployment w1 app r1.example/app:gone not_found other",
		"ns Deployment w2 app r2.example/app:gone not_found other",
	}
	if got := seriesStrings(res.workloads); !slices.Equal(got, want) {
		t.Errorf("workload series:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// r3's series was dropped before the fold: it weighs nothing there.
	if res.workloadsDropped != 2 || res.folded != 2 {
		t.Errorf("dropped %d, folded %d; want 2 and 2 (r1, r2)", res.workloadsDropped, res.folded)
	}
}
