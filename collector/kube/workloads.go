package kube

import (
	"cmp"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imagepull/imagepull_exporter/probe"
)

// The workloads' unavailable images: for every container (init containers
// included) of every Deployment, StatefulSet, DaemonSet, Job and CronJob
// template, the latest probe result of its image with the credentials the
// kubelet would pull it with; a series while that result says the image
// cannot be pulled. Templates are read whatever the workload's state —
// scaled to zero, suspended, a paused rollout (the template holds the new
// image) — because that is when a missing image hides until a pod needs
// it. Left out:
//   - Jobs a CronJob controls: the CronJob's template answers for them, so
//     the owning team is paged once, by the CronJob (a running Job's pods
//     that cannot pull show in imagepull_pod_containers_waiting);
//   - finished Jobs (Complete, Failed, or decided): they never pull again;
//   - references that do not parse: nothing can probe them, so there is no
//     probe reason to report (the pods they start wait in InvalidImageName,
//     which imagepull_pod_containers_waiting counts under registry="invalid");
//   - images no probe has answered for yet (not discovered, excluded by
//     discovery.exclude, or past --kube.max-discovered-targets): the
//     exporter does not know.

var (
	descWorkloadUnavailable = prometheus.NewDesc("imagepull_workload_image_unavailable",
		"1 while the image of a workload's container (init containers included; Deployments, StatefulSets, DaemonSets, Jobs and CronJobs, scaled to zero, suspended or mid-rollout too) cannot be pulled: its latest probe, with the credentials the kubelet would use, failed for cause. Jobs a CronJob controls are covered by the CronJob; finished Jobs are left out. No series while the image can be pulled, is unprobed, or the probe had no credentials.",
		[]string{"namespace", "kind", "workload", "container", "image", "cause", "registry"}, nil)
	descWorkloadDropped = prometheus.NewDesc("imagepull_kube_workload_series_dropped",
		"Series of imagepull_workload_image_unavailable beyond --kube.max-workload-series left out of the latest join: those of registries that are down first, then the last of each namespace in turn.",
		nil, nil)
)

// workloadSeries is one series of imagepull_workload_image_unavailable.
type workloadSeries struct {
	namespace, kind, workload, container, image, cause, registry string
	// down: the image's registry is down, so ImagePullRegistryUnreachable
	// already pages for it; such series are the first to go past the cap.
	down bool
}

// imageResultKey memoises ImageResult per target and reference. The
// target is keyed by its secrets label (secretsLabel, "" without secrets)
// rather than its name, so that a hit builds no string.
type imageResultKey struct {
	ref     probe.Reference
	secrets string
}

type imageResult struct {
	reason probe.Reason
	ok     bool
}

// imageResult asks for ref probed with the credentials the target named
// targetName(ref, namespace, secrets) uses: the one discovery made for
// these pull secrets, else a target probing ref with its module's
// credentials (Scheduler.ImageResult).
func (s *statusCache) imageResult(ref probe.Reference, secrets string) imageResult {
	if s.status == nil {
		return imageResult{}
	}
	k := imageResultKey{ref, secrets}
	if r, ok := s.images[k]; ok {
		return r
	}
	name := ref.String()
	if secrets != "" {
		name += " via " + secrets
	}
	reason, ok := s.status.ImageResult(name, ref)
	r := imageResult{reason, ok}
	s.images[k] = r
	return r
}

// workloadImages evaluates every template once. The caller has set up sc.
func (c *Cluster) workloadImages(sc *statusCache) []workloadSeries {
	var out []workloadSeries
	// Most templates name no pull secrets of their own and share their
	// namespace's few service accounts: their secrets label is worked out
	// once per service account.
	type nsSA struct{ namespace, serviceAccount string }
	saLabels := map[nsSA]string{}
	for _, rw := range c.workloads {
		for _, obj := range rw.list() {
			w, ok := obj.(*templateInfo)
			if !ok || w.Finished || w.CronJobOwned {
				continue
			}
			// As discovery names the target (targetName): the
			// template's own pull secrets, else its service account's.
			secrets := ""
			switch {
			case !c.opts.UsePullSecrets:
			case len(w.PullSecrets) > 0:
				secrets = secretsLabel(w.Namespace, w.PullSecrets)
			default:
				k := nsSA{w.Namespace, w.ServiceAccount}
				l, ok := saLabels[k]
				if !ok {
					if s := c.effectivePullSecrets(w.Namespace, w.ServiceAccount, nil); len(s) > 0 {
						l = secretsLabel(w.Namespace, s)
					}
					saLabels[k] = l
				}
				secrets = l
			}
			for _, ct := range w.Containers {
				img := ct.Img.Value()
				if img.Invalid {
					continue
				}
				r := sc.imageResult(img.Ref, secrets)
				if !r.ok {
					continue
				}
				cause := imageCause(sc, img.Ref.Registry, r.reason)
				if cause == "" {
					continue
				}
				out = append(out, workloadSeries{namespace: w.Namespace, kind: w.Kind, workload: w.Name,
					container: ct.Name.Value(), image: img.Image, cause: cause, registry: img.Ref.Registry,
					down: registryFailing(sc.registryCause(img.Ref.Registry))})
			}
		}
	}
	return out
}

// capWorkloadSeries keeps at most limit series (<= 0: all) and returns
// them with the number left out. Which are kept is a pure function of the
// series, so that a steady state keeps the same ones from scrape to scrape:
//  1. series whose registry is up before those whose registry is down: a
//     down registry fails every image it serves, which can be thousands of
//     series at once, and ImagePullRegistryUnreachable already pages for it
//     (the workload alert is inhibited meanwhile); a missing tag or a
//     rejected secret on a healthy registry pages no one else;
//  2. then the namespaces take turns: every namespace's first series (by
//     kind, workload, container), then every namespace's second, and so
//     on, so that one namespace with many broken workloads cannot silence
//     the alerts of the others' teams;
//  3. then by namespace name.
func capWorkloadSeries(series []workloadSeries, limit int) ([]workloadSeries, int) {
	if limit <= 0 || len(series) <= limit {
		return series, 0
	}
	slices.SortFunc(series, func(a, b workloadSeries) int {
		return cmp.Or(compareBool(a.down, b.down), cmp.Compare(a.namespace, b.namespace),
			cmp.Compare(a.kind, b.kind), cmp.Compare(a.workload, b.workload), cmp.Compare(a.container, b.container))
	})
	type ranked struct {
		rank int
		s    workloadSeries
	}
	rs := make([]ranked, len(series))
	for i, s := range series {
		rs[i].s = s
		if i > 0 && s.down == series[i-1].down && s.namespace == series[i-1].namespace {
			rs[i].rank = rs[i-1].rank + 1
		}
	}
	// Stable: within one class and rank the order by namespace stays.
	slices.SortStableFunc(rs, func(a, b ranked) int {
		return cmp.Or(compareBool(a.s.down, b.s.down), cmp.Compare(a.rank, b.rank))
	})
	for i := range series[:limit] {
		series[i] = rs[i].s
	}
	return series[:limit], len(series) - limit
}

// compareBool orders false before true.
func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}
