package kube

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/imagepull/imagepull_exporter/collector"
	"github.com/imagepull/imagepull_exporter/internal/testenv"
	"github.com/imagepull/imagepull_exporter/probe"
)

// createWorkload creates a Deployment, StatefulSet, DaemonSet, Job or
// CronJob in the real apiserver and returns what it stored.
func createWorkload[T any](t *testing.T, k *testenv.Kube, obj T) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out any
	var err error
	switch o := any(obj).(type) {
	case *appsv1.Deployment:
		out, err = k.Client.AppsV1().Deployments(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
	case *appsv1.StatefulSet:
		out, err = k.Client.AppsV1().StatefulSets(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
	case *appsv1.DaemonSet:
		out, err = k.Client.AppsV1().DaemonSets(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
	case *batchv1.Job:
		out, err = k.Client.BatchV1().Jobs(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
	case *batchv1.CronJob:
		out, err = k.Client.BatchV1().CronJobs(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
	default:
		t.Fatalf("createWorkload: %T", obj)
	}
	if err != nil {
		t.Fatalf("create %T: %v", obj, err)
	}
	return out.(T)
}

// workloadSeriesText is the exposition of imagepull_workload_image_unavailable
// and imagepull_kube_workload_series_dropped for the given series lines.
func workloadSeriesText(dropped int, lines ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# HELP imagepull_kube_workload_series_dropped %s\n# TYPE imagepull_kube_workload_series_dropped gauge\nimagepull_kube_workload_series_dropped %d\n",
		testenv.HelpOf(descWorkloadDropped), dropped)
	if len(lines) > 0 {
		fmt.Fprintf(&b, "# HELP imagepull_workload_image_unavailable %s\n# TYPE imagepull_workload_image_unavailable gauge\n",
			testenv.HelpOf(descWorkloadUnavailable))
		for _, l := range lines {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// unavailable is one series line, its labels in exposition order.
func unavailable(ns, kind, workload, container, image, cause, registry string) string {
	return fmt.Sprintf(`imagepull_workload_image_unavailable{cause=%q,container=%q,image=%q,kind=%q,namespace=%q,registry=%q,workload=%q} 1`,
		cause, container, image, kind, ns, registry, workload)
}

// testWorkloadImages: the workloads' unavailable images against the real
// apiserver (discovery reads the templates there) and real registries,
// probed by the real scheduler with the module's credentials.
func testWorkloadImages(t *testing.T, k *testenv.Kube) {
	const ns = "workloads"
	k.EnsureNamespace(t, ns)
	r := testenv.StartRegistry(t, testenv.RegistryOptions{})
	// A private registry this exporter has no credentials for.
	private := testenv.StartRegistry(t, testenv.RegistryOptions{Auth: testenv.RegistryAuthBasic})
	r.Push(t, "app", "v1")
	nightly := r.Push(t, "cron", "nightly")
	private.Push(t, "private", "v1")

	cfg := configYAML("") + fmt.Sprintf(`discovery:
  modules:
    - {registry: %q, module: local}
    - {registry: %q, module: local}
`, r.Addr, private.Addr)
	e := startExporter(t, exporterOptions{rest: k.Config, namespaces: []string{ns}, config: cfg, discover: true})

	img := func(repoTag string) string { return r.Addr + "/" + repoTag }
	spec := func(cs ...tctr) corev1.PodSpec { return templateSpec(cs...) }

	// Served: no series.
	createWorkload(t, k, daemonSet(ns, "agent", spec(tctr{name: "agent", image: img("app:v1")})))
	cron := createWorkload(t, k, cronJob(ns, "nightly", false, spec(tctr{name: "report", image: img("cron:nightly")})))
	rollout := deployment(ns, "rollout", 2, spec(tctr{name: "app", image: img("app:v1")}))
	rollout.Spec.Paused = true
	rollout = createWorkload(t, k, rollout)
	// The pods would pull with their own credentials, which the exporter
	// does not have: it cannot know, so no series.
	createWorkload(t, k, deployment(ns, "private", 1, spec(tctr{name: "app", image: private.Ref("private", "v1")})))
	// Not parsable: nothing to probe.
	createWorkload(t, k, deployment(ns, "invalid", 1, spec(tctr{name: "app", image: "Upper/Case:v1"})))
	// Missing, in every state a workload can be in while no pod pulls.
	createWorkload(t, k, cronJob(ns, "suspended", true, spec(tctr{name: "report", image: img("cron:gone")})))
	createWorkload(t, k, deployment(ns, "idle", 0, spec(tctr{name: "web", image: img("no-such-repo:v1")})))
	createWorkload(t, k, statefulSet(ns, "db", spec(tctr{name: "migrate", image: img("migrate:gone"), init: true},
		tctr{name: "db", image: img("app:v1")})))
	createWorkload(t, k, job(ns, "backfill", spec(tctr{name: "run", image: img("batch:gone")})))
	// Missing but left out: a Job its CronJob answers for, and a Job that
	// failed and will never pull again.
	owned := job(ns, "nightly-29000000", spec(tctr{name: "report", image: img("cron:gone-too")}))
	yes := true
	owned.OwnerReferences = []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "CronJob", Name: cron.Name, UID: cron.UID, Controller: &yes}}
	createWorkload(t, k, owned)
	failed := createWorkload(t, k, job(ns, "failed", spec(tctr{name: "run", image: img("batch:gone-too")})))
	// Play the Job controller: the status it writes when backoffLimit is
	// reached (FailureTarget first, then Failed, as 1.31+ require).
	now := metav1.Now()
	failed.Status = batchv1.JobStatus{StartTime: &now, Failed: 7, Conditions: []batchv1.JobCondition{
		{Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded", LastTransitionTime: now},
		{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded", LastTransitionTime: now},
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := k.Client.BatchV1().Jobs(ns).UpdateStatus(ctx, failed, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("mark the job failed: %v", err)
	}

	// Every image has a result before the exact set is compared, so that
	// an absent series is a decision, not a probe still to come.
	ref := func(s string) probe.Reference {
		t.Helper()
		r, err := probe.ParseReference(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	wantReasons := map[string]probe.Reason{
		img("app:v1"): "", img("cron:nightly"): "", private.Ref("private", "v1"): probe.ReasonNoCredentials,
		img("cron:gone"): probe.ReasonNotFound, img("no-such-repo:v1"): probe.ReasonNotFound,
		img("migrate:gone"): probe.ReasonNotFound, img("batch:gone"): probe.ReasonNotFound,
		img("cron:gone-too"): probe.ReasonNotFound, img("batch:gone-too"): probe.ReasonNotFound,
	}
	waitFor(t, "every template's image probed", func() bool {
		for s, want := range wantReasons {
			if got, ok := e.sched.ImageResult(ref(s).String(), ref(s)); !ok || got != want {
				return false
			}
		}
		return true
	})
	// The private registry answered with a challenge: it is up, and that
	// is not a cause.
	if got := e.sched.RegistryCause(private.Addr); got != collector.CauseRegistryOK {
		t.Errorf("RegistryCause(%s) = %q, want %q", private.Addr, got, collector.CauseRegistryOK)
	}
	if h := e.sched.RegistryHealth(private.Addr); !h.Up {
		t.Errorf("RegistryHealth(%s) = %+v, want up", private.Addr, h)
	}

	waitMetrics(t, e.reg, workloadSeriesText(0,
		unavailable(ns, "CronJob", "suspended", "report", img("cron:gone"), "not_found", r.Addr),
		unavailable(ns, "Deployment", "idle", "web", img("no-such-repo:v1"), "not_found", r.Addr),
		unavailable(ns, "Job", "backfill", "run", img("batch:gone"), "not_found", r.Addr),
		unavailable(ns, "StatefulSet", "db", "migrate", img("migrate:gone"), "not_found", r.Addr),
	), "imagepull_workload_image_unavailable", "imagepull_kube_workload_series_dropped")

	// The tag the CronJob runs is deleted from the registry; the paused
	// Deployment's template is rolled to a tag that does not exist (its
	// pods, were there a controller, would still run v1).
	r.DeleteManifest(t, "cron", nightly)
	rollout.Spec.Template.Spec.Containers[0].Image = img("app:v9")
	if _, err := k.Client.AppsV1().Deployments(ns).Update(ctx, rollout, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("roll the paused deployment: %v", err)
	}
	waitMetrics(t, e.reg, workloadSeriesText(0,
		unavailable(ns, "CronJob", "nightly", "report", img("cron:nightly"), "not_found", r.Addr),
		unavailable(ns, "CronJob", "suspended", "report", img("cron:gone"), "not_found", r.Addr),
		unavailable(ns, "Deployment", "idle", "web", img("no-such-repo:v1"), "not_found", r.Addr),
		unavailable(ns, "Deployment", "rollout", "app", img("app:v9"), "not_found", r.Addr),
		unavailable(ns, "Job", "backfill", "run", img("batch:gone"), "not_found", r.Addr),
		unavailable(ns, "StatefulSet", "db", "migrate", img("migrate:gone"), "not_found", r.Addr),
	), "imagepull_workload_image_unavailable", "imagepull_kube_workload_series_dropped")

	// The tag is pushed again: the CronJob's series goes.
	r.Push(t, "cron", "nightly")
	waitMetrics(t, e.reg, workloadSeriesText(0,
		unavailable(ns, "CronJob", "suspended", "report", img("cron:gone"), "not_found", r.Addr),
		unavailable(ns, "Deployment", "idle", "web", img("no-such-repo:v1"), "not_found", r.Addr),
		unavailable(ns, "Deployment", "rollout", "app", img("app:v9"), "not_found", r.Addr),
		unavailable(ns, "Job", "backfill", "run", img("batch:gone"), "not_found", r.Addr),
		unavailable(ns, "StatefulSet", "db", "migrate", img("migrate:gone"), "not_found", r.Addr),
	), "imagepull_workload_image_unavailable", "imagepull_kube_workload_series_dropped")
}

// testWorkloadImagesPullSecrets: with --kube.use-pull-secrets, each
// template's image is judged with the template's own pull secrets (or its
// service account's): the wrong secret's workload has a series
// (unauthorized), the right one's beside it none.
func testWorkloadImagesPullSecrets(t *testing.T, k *testenv.Kube) {
	const ns = "workloads-ps"
	k.EnsureNamespace(t, ns)
	r := testenv.StartRegistry(t, testenv.RegistryOptions{Auth: testenv.RegistryAuthBasic,
		Users: map[string]testenv.TokenUser{"puller": {Password: "right-pw-4d1e"}}})
	r.Push(t, "app", "v1")
	secret := func(name, pw string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Type: corev1.SecretTypeDockerConfigJson,
			Data: map[string][]byte{corev1.DockerConfigJsonKey: dockerConfigJSON(r.Addr, "puller", pw)}}
	}
	createSecret(t, k, secret("right", "right-pw-4d1e"))
	createSecret(t, k, secret("wrong", "wrong-pw-0c9a"))
	createServiceAccount(t, k, ns, "builder", "wrong")

	cfg := configYAML("") + fmt.Sprintf(`discovery:
  modules:
    - {registry: %q, module: local}
`, r.Addr)
	e := startExporter(t, exporterOptions{rest: k.Config, namespaces: []string{ns}, config: cfg, discover: true, pullSecret: true})

	img := r.Ref("app", "v1")
	withSecrets := func(spec corev1.PodSpec, sa string, secrets ...string) corev1.PodSpec {
		spec.ServiceAccountName = sa
		for _, s := range secrets {
			spec.ImagePullSecrets = append(spec.ImagePullSecrets, corev1.LocalObjectReference{Name: s})
		}
		return spec
	}
	app := templateSpec(tctr{name: "app", image: img})
	createWorkload(t, k, deployment(ns, "good", 1, withSecrets(app, "", "right")))
	createWorkload(t, k, deployment(ns, "bad", 1, withSecrets(app, "", "wrong")))
	// Its own secret wins over its service account's wrong one.
	createWorkload(t, k, cronJob(ns, "own-secret", false, withSecrets(app, "builder", "right")))
	// None of its own: the service account's wrong one.
	createWorkload(t, k, job(ns, "via-sa", withSecrets(app, "builder")))

	ref, err := probe.ParseReference(img)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both targets probed", func() bool {
		good, okG := e.sched.ImageResult(targetName(ref, ns, []string{"right"}), ref)
		bad, okB := e.sched.ImageResult(targetName(ref, ns, []string{"wrong"}), ref)
		return okG && okB && good == probe.ReasonNone && bad == probe.ReasonUnauthorized
	})
	waitMetrics(t, e.reg, workloadSeriesText(0,
		unavailable(ns, "Deployment", "bad", "app", img, "unauthorized", r.Addr),
		unavailable(ns, "Job", "via-sa", "app", img, "unauthorized", r.Addr),
	), "imagepull_workload_image_unavailable", "imagepull_kube_workload_series_dropped")
}
