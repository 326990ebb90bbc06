package kube

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// maxSeriesLabels is the most variable labels a join series has
// (imagepull_workload_image_unavailable's seven).
const maxSeriesLabels = 7

// seriesCache keeps the label pairs of the join's gauges from one scrape to
// the next. prometheus.MustNewConstMetric validates, sorts and allocates
// every label pair of every series at every scrape: at 30,000 pods that
// and the garbage it left were a fifth of a whole-process scrape's CPU,
// for series whose labels rarely change. A cached series is built once by
// prometheus.NewConstMetric (the same validation and the same pairs) and
// then only its value is new; a series no scrape sent for a whole scrape
// is forgotten, so the cache holds what the last scrape sent.
type seriesCache struct {
	mu  sync.Mutex
	gen uint64
	m   map[seriesKey]*cachedSeries
}

type seriesKey struct {
	desc   *prometheus.Desc
	n      int
	values [maxSeriesLabels]string
}

type cachedSeries struct {
	labels []*dto.LabelPair // shared by every scrape's metric: read only
	gen    uint64
}

// gaugeMetric is one scrape's sample of a cached series.
type gaugeMetric struct {
	desc   *prometheus.Desc
	labels []*dto.LabelPair
	value  float64
}

func (g *gaugeMetric) Desc() *prometheus.Desc { return g.desc }

func (g *gaugeMetric) Write(out *dto.Metric) error {
	v := g.value
	// cap = len: a wrapping registerer that appends labels and sorts them
	// gets an array of its own, never the one every scrape shares.
	out.Label = g.labels[:len(g.labels):len(g.labels)]
	out.Gauge = &dto.Gauge{Value: &v}
	return nil
}

// seriesFunc makes one gauge sample of desc with the label values.
type seriesFunc func(desc *prometheus.Desc, value float64, labelValues ...string) prometheus.Metric

// constSeries is the uncached seriesFunc: what the cache must equal.
func constSeries(desc *prometheus.Desc, value float64, labelValues ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, value, labelValues...)
}

// scrape runs collect with a seriesFunc backed by the cache, then forgets
// the series collect did not send. Scrapes that overlap take turns.
func (c *seriesCache) scrape(collect func(series seriesFunc)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[seriesKey]*cachedSeries{}
	}
	c.gen++
	collect(c.series)
	for k, s := range c.m {
		if s.gen != c.gen {
			delete(c.m, k)
		}
	}
}

// series is the cached seriesFunc; c.mu is held.
func (c *seriesCache) series(desc *prometheus.Desc, value float64, labelValues ...string) prometheus.Metric {
	if len(labelValues) > maxSeriesLabels {
		return constSeries(desc, value, labelValues...)
	}
	k := seriesKey{desc: desc, n: len(labelValues)}
	copy(k.values[:], labelValues)
	s, ok := c.m[k]
	if !ok {
		m, err := prometheus.NewConstMetric(desc, prometheus.GaugeValue, value, labelValues...)
		if err != nil {
			return prometheus.NewInvalidMetric(desc, err)
		}
		var pb dto.Metric
		if err := m.Write(&pb); err != nil {
			return prometheus.NewInvalidMetric(desc, err)
		}
		s = &cachedSeries{labels: pb.Label}
		c.m[k] = s
	}
	s.gen = c.gen
	return &gaugeMetric{desc: desc, labels: s.labels, value: value}
}
