package probe

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/imagepull/imagepull_exporter/internal/testenv"
)

// benchConcurrency is how many probes run at once, as the scheduler's
// --probe.concurrency would allow.
const benchConcurrency = 8

// BenchmarkProbe probes 100 and 1000 targets (distinct repositories) on a
// local real registry, first cold (a fresh Prober: ping, auth, HEAD) then
// warm (cached transport and token: one HEAD), and reports per probe:
// requests, CPU time (user+system of this process, via getrusage) and heap
// allocations, plus the peak heap in use and the heap the Prober's caches
// retain per target. Run with
//
//	go test -run='^$' -bench=. -benchtime=1x ./probe/
//
// In the bearer case the token issuer runs in this process, so its CPU (an
// RSA signature per token) is included in the cold figures; the registry is
// a separate process and is not.
func BenchmarkProbe(b *testing.B) {
	const maxTargets = 1000
	for _, mode := range []struct {
		name string
		opts testenv.RegistryOptions
	}{
		{"anonymous", testenv.RegistryOptions{}},
		{"bearer", testenv.RegistryOptions{Auth: testenv.RegistryAuthToken, Users: map[string]testenv.TokenUser{"": {Pull: []string{"**"}}}}},
	} {
		b.Run(mode.name, func(b *testing.B) {
			r := testenv.StartRegistry(b, mode.opts)
			refs := make([]string, maxTargets)
			for i := range refs {
				refs[i] = fmt.Sprintf("bench/repo-%04d:v1", i)
			}
			digest := r.PushMany(b, refs, benchConcurrency)
			targets := make([]Target, maxTargets)
			for i, ref := range refs {
				targets[i] = target(b, r.Addr+"/"+ref, plainModule())
			}
			for _, n := range []int{100, 1000} {
				b.Run(fmt.Sprintf("targets=%d", n), func(b *testing.B) {
					b.ReportAllocs()
					var cold, warm passStats
					var peak uint64
					var retained float64
					for i := 0; i < b.N; i++ {
						runtime.GC()
						var base runtime.MemStats
						runtime.ReadMemStats(&base)
						stop := sampleHeap(&peak)
						p := NewProber(ProberOptions{UserAgent: testUA})
						cold.add(runPass(b, p, targets[:n], digest))
						warm.add(runPass(b, p, targets[:n], digest))
						stop()
						runtime.GC()
						var after runtime.MemStats
						runtime.ReadMemStats(&after)
						retained += (float64(after.HeapInuse) - float64(base.HeapInuse)) / float64(n)
						p.Close()
					}
					if warm.requests != warm.probes {
						b.Errorf("warm probes sent %.0f requests for %.0f probes, want one each", warm.requests, warm.probes)
					}
					b.ReportMetric(cold.perProbe(cold.requests), "req/probe-cold")
					b.ReportMetric(warm.perProbe(warm.requests), "req/probe-warm")
					b.ReportMetric(cold.perProbe(float64(cold.cpu.Microseconds())), "cpu-µs/probe-cold")
					b.ReportMetric(warm.perProbe(float64(warm.cpu.Microseconds())), "cpu-µs/probe-warm")
					b.ReportMetric(cold.perProbe(cold.allocs), "allocs/probe-cold")
					b.ReportMetric(warm.perProbe(warm.allocs), "allocs/probe-warm")
					b.ReportMetric(warm.perProbe(float64(warm.wall.Microseconds())), "wall-µs/probe-warm")
					b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
					b.ReportMetric(retained/float64(b.N), "cache-B/target")
				})
			}
		})
	}
}

type passStats struct {
	probes   float64
	requests float64
	allocs   float64
	cpu      time.Duration
	wall     time.Duration
}

func (s *passStats) add(o passStats) {
	s.probes += o.probes
	s.requests += o.requests
	s.allocs += o.allocs
	s.cpu += o.cpu
	s.wall += o.wall
}

func (s passStats) perProbe(v float64) float64 {
	if s.probes == 0 {
		return 0
	}
	return v / s.probes
}

// runPass probes every target once, benchConcurrency at a time, and fails
// the benchmark on any unsuccessful probe.
func runPass(b *testing.B, p *Prober, targets []Target, digest string) passStats {
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	cpu0 := processCPU()
	start := time.Now()
	results := make([]Result, len(targets))
	work := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < benchConcurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				results[i] = p.Probe(ctx, targets[i])
				cancel()
			}
		}()
	}
	for i := range targets {
		work <- i
	}
	close(work)
	wg.Wait()
	wall := time.Since(start)
	cpu := processCPU() - cpu0
	runtime.ReadMemStats(&ms1)
	st := passStats{probes: float64(len(targets)), allocs: float64(ms1.Mallocs - ms0.Mallocs), cpu: cpu, wall: wall}
	for _, res := range results {
		if !res.Success || res.Digest != digest {
			b.Fatalf("probe of %s: %s %s (digest %s)", res.Ref, res.Reason, res.Error, res.Digest)
		}
		st.requests += float64(len(res.Requests))
	}
	return st
}

// processCPU is the user + system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// sampleHeap records the peak HeapInuse into *peak until stop is called.
func sampleHeap(peak *uint64) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > *peak {
				*peak = ms.HeapInuse
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}
