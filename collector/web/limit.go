package web

import (
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// Defaults of the /probe limits (--web.probe-concurrency,
// --web.probe-client-rate).
const (
	// DefaultProbeConcurrency is below the scheduler's
	// (collector.DefaultConcurrency): /probe shares the process with the
	// scheduled probes and should not be able to crowd them out.
	DefaultProbeConcurrency = 4
	// DefaultProbeClientRate is per client address and minute: enough for
	// a Prometheus scraping a few hundred /probe targets, far below a loop.
	DefaultProbeClientRate = 600
)

// maxProbeClients caps the per-client buckets kept: past it, buckets that
// have refilled (the same as new ones) are dropped, and if none has, a new
// client is refused until one does.
const maxProbeClients = 4096

// clientLimiter is a token bucket per client address for /probe. The
// address is the connection's: X-Forwarded-For and the like are not
// honoured, since anyone can send them. IPv6 clients are keyed by their
// /64, which one host usually holds whole.
type clientLimiter struct {
	perMinute float64 // <= 0: unlimited
	burst     float64
	now       func() time.Time

	mu        sync.Mutex
	clients   map[netip.Prefix]*clientBucket
	lastSweep time.Time
}

type clientBucket struct {
	tokens float64
	last   time.Time
}

func newClientLimiter(perMinute float64, now func() time.Time) *clientLimiter {
	if now == nil {
		now = time.Now
	}
	// Ten seconds' worth: Prometheus spreads its scrapes over the
	// interval, a loop does not.
	return &clientLimiter{perMinute: perMinute, burst: max(1, perMinute/6), now: now,
		clients: map[netip.Prefix]*clientBucket{}}
}

// clientKey is the limiter's key of r: the connection's address, its /64
// for IPv6. A RemoteAddr that is no IP (a test's pipe) gives the zero
// Prefix: such requests share one bucket.
func clientKey(r *http.Request) netip.Prefix {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Prefix{}
	}
	a = a.Unmap()
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, _ := a.WithZone("").Prefix(bits)
	return p
}

// allow takes a token of client's bucket. full is true when the client is
// new and maxProbeClients buckets are in use.
func (l *clientLimiter) allow(client netip.Prefix) (ok, full bool) {
	if l == nil || l.perMinute <= 0 {
		return true, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	refilled := func(c *clientBucket) float64 {
		return min(l.burst, c.tokens+now.Sub(c.last).Minutes()*l.perMinute)
	}
	c, ok := l.clients[client]
	if !ok {
		if len(l.clients) >= maxProbeClients || now.Sub(l.lastSweep) >= time.Minute {
			l.lastSweep = now
			for k, old := range l.clients {
				if refilled(old) >= l.burst {
					delete(l.clients, k)
				}
			}
			if len(l.clients) >= maxProbeClients {
				return false, true
			}
		}
		c = &clientBucket{tokens: l.burst, last: now}
		l.clients[client] = c
	}
	c.tokens, c.last = refilled(c), now
	if c.tokens < 1 {
		return false, false
	}
	c.tokens--
	return true, false
}
