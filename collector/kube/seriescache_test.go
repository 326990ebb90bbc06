package kube

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// randomJoinResult draws a joinResult over a small label space, so that
// successive draws share some series, change the value of others, and drop
// and add the rest.
func randomJoinResult(rng *rand.Rand) *joinResult {
	pick := func(prefix string, n int) string { return fmt.Sprintf("%s%d", prefix, rng.IntN(n)) }
	res := &joinResult{
		waiting: map[nsRegReason]int{}, blocked: map[regCause]int{}, mutable: map[mutableKey]int{},
		tagDigests: map[tagKey]int{}, drift: map[tagKey]int{}, rescheduleRisk: map[nsRegReason]int{},
		pullError: map[nsRegReason]int{}, nodeErrors: map[nodeRegCause]int{},
		nodesSynced: rng.IntN(4) != 0, workloadsSynced: rng.IntN(4) != 0,
		folded: rng.IntN(3), workloadsDropped: rng.IntN(2),
	}
	for range rng.IntN(30) {
		res.waiting[nsRegReason{pick("ns", 5), pick("reg", 4), pick("reason", 3)}] = rng.IntN(50)
		res.rescheduleRisk[nsRegReason{pick("ns", 5), pick("reg", 4), pick("reason", 3)}] = rng.IntN(50)
		res.pullError[nsRegReason{pick("ns", 5), pick("reg", 4), pick("cause", 3)}] = rng.IntN(50)
		res.blocked[regCause{pick("reg", 4), pick("cause", 3)}] = rng.IntN(50)
		res.nodeErrors[nodeRegCause{pick("node", 5), pick("reg", 4), pick("cause", 3)}] = rng.IntN(50)
		res.mutable[mutableKey{pick("ns", 5), pick("reg", 4), pick("policy", 2), pick("kind", 2)}] = rng.IntN(50)
		res.tagDigests[tagKey{pick("reg", 4), pick("repo", 4), pick("tag", 3)}] = 2 + rng.IntN(3)
		res.drift[tagKey{pick("reg", 4), pick("repo", 4), pick("tag", 3)}] = rng.IntN(2)
	}
	seen := map[workloadSeries]bool{}
	for range rng.IntN(20) {
		w := workloadSeries{namespace: pick("ns", 3), kind: pick("kind", 2), workload: pick("w", 4),
			container: pick("c", 2), image: pick("img", 3), cause: pick("cause", 3), registry: pick("reg", 4)}
		if !seen[w] { // one series per label set, as the join emits them
			seen[w] = true
			res.workloads = append(res.workloads, w)
		}
	}
	return res
}

type collectFunc func(ch chan<- prometheus.Metric)

func (f collectFunc) Describe(ch chan<- *prometheus.Desc) {
	prometheus.DescribeByCollect(f, ch)
}
func (f collectFunc) Collect(ch chan<- prometheus.Metric) { f(ch) }

func exposition(t *testing.T, c prometheus.Collector) string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

// The cached series are exactly MustNewConstMetric's, scrape after scrape,
// as series come, change and go; and the cache forgets the series the last
// scrape did not send.
func TestSeriesCacheMatchesConstMetrics(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 1))
	var cache seriesCache
	for round := range 200 {
		res := randomJoinResult(rng)
		want := exposition(t, collectFunc(res.collect))
		n := 0
		got := exposition(t, collectFunc(func(ch chan<- prometheus.Metric) {
			cache.scrape(func(series seriesFunc) {
				n = 0 // Describe collects too (DescribeByCollect): count the last
				counted := make(chan prometheus.Metric)
				done := make(chan struct{})
				go func() {
					for m := range counted {
						n++
						ch <- m
					}
					close(done)
				}()
				res.collectWith(counted, series)
				close(counted)
				<-done
			})
		}))
		if got != want {
			t.Fatalf("round %d: the cached exposition differs from MustNewConstMetric's\ncached:\n%s\nconst:\n%s", round, got, want)
		}
		// Every series but the two without labels is keyed in the cache.
		if len(cache.m) > n || len(cache.m) < n-2 {
			t.Fatalf("round %d: the cache holds %d series after a scrape that sent %d", round, len(cache.m), n)
		}
	}
}

// An invalid label value is an error of that series, not a panic of the
// scrape.
func TestSeriesCacheInvalidLabel(t *testing.T) {
	var cache seriesCache
	var got prometheus.Metric
	cache.scrape(func(series seriesFunc) {
		got = series(descBlocked, 1, "reg\xff", "cause")
	})
	if err := got.Write(nil); err == nil {
		t.Fatal("an invalid UTF-8 label value gave a valid metric")
	}
	if len(cache.m) != 0 {
		t.Fatalf("the invalid series was cached: %d entries", len(cache.m))
	}
}
