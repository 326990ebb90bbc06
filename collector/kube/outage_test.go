package kube

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"

	"github.com/imagepull/imagepull_exporter/internal/testenv"
)

// tcpProxy forwards a loopback port to the apiserver, so a test can cut the
// exporter off while the apiserver keeps serving others: the only way to
// change the cluster "while the apiserver is gone" for the exporter.
type tcpProxy struct {
	t      *testing.T
	addr   string
	target string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

func startProxy(t *testing.T, target string) *tcpProxy {
	p := &tcpProxy{t: t, addr: testenv.FreeAddr(t), target: target, conns: map[net.Conn]bool{}}
	p.Up()
	t.Cleanup(p.Down)
	return p
}

// Up listens again on the same address.
func (p *tcpProxy) Up() {
	p.t.Helper()
	var ln net.Listener
	var err error
	for range 50 { // the port may linger for a moment after Down
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		p.t.Fatalf("proxy listen %s: %v", p.addr, err)
	}
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Go(func() { p.serve(c) })
		}
	})
}

func (p *tcpProxy) track(c net.Conn, on bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on && p.ln == nil {
		return false
	}
	if on {
		p.conns[c] = true
	} else {
		delete(p.conns, c)
	}
	return true
}

func (p *tcpProxy) serve(c net.Conn) {
	defer c.Close()
	up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		return
	}
	defer up.Close()
	if !p.track(c, true) || !p.track(up, true) {
		return
	}
	defer p.track(c, false)
	defer p.track(up, false)
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
	c.Close()
	up.Close()
	<-done
}

// Down closes the listener and every forwarded connection.
func (p *tcpProxy) Down() {
	p.mu.Lock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// TestAPIServerOutage: when the apiserver goes away the watch says so and
// the last known state keeps being served; when it returns, the join
// catches up with what changed meanwhile.
//
// How client-go catches up depends on what the apiserver still has: it
// resumes the watch from its last resourceVersion while etcd keeps that
// history (the events replay), and relists when the history is compacted
// (410 Gone). The apiserver here compacts every 2s, and the test waits until
// the exporter's resourceVersion is gone before reconnecting it, so the
// return is a relist, which the test checks.
func TestAPIServerOutage(t *testing.T) {
	k := testenv.StartKube(t, testenv.KubeOptions{ExtraArgs: []string{"--etcd-compaction-interval=2s"}})
	u, err := url.Parse(k.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := startProxy(t, u.Host)
	viaProxy := rest.CopyConfig(k.Config)
	viaProxy.Host = "https://" + proxy.addr
	const ns = "outage"
	k.EnsureNamespace(t, ns)
	kl := kubelet{t: t, client: k.Client}
	kl.pod(podSpec{ns: ns, name: "before", node: "n1", ctrs: []ctr{{image: "ghcr.io/acme/api:v1", waiting: "ImagePullBackOff"}}})

	e := startExporter(t, exporterOptions{rest: viaProxy, config: configYAML("")})
	up := func(v int) string {
		return fmt.Sprintf(`
# HELP imagepull_kube_watch_up 1 when the watch of the resource has synced and its latest list or watch request to the apiserver succeeded; 0 while the apiserver is unreachable (the last known state keeps being used).
# TYPE imagepull_kube_watch_up gauge
imagepull_kube_watch_up{resource="nodes"} %[1]d
imagepull_kube_watch_up{resource="pods"} %[1]d
`, v)
	}
	const waitingHeader = `
# HELP imagepull_pod_containers_waiting Containers (init and regular) waiting with an image pull reason, per namespace, registry and reason; a series exists only while its count is above zero. InvalidImageName counts under registry="invalid".
# TYPE imagepull_pod_containers_waiting gauge
`
	waitMetrics(t, e.reg, up(1)+waitingHeader+`imagepull_pod_containers_waiting{namespace="outage",reason="ImagePullBackOff",registry="ghcr.io"} 1
`, "imagepull_kube_watch_up", "imagepull_pod_containers_waiting")

	// The apiserver stops: the watch goes down, the last state stays.
	k.Stop()
	waitMetrics(t, e.reg, up(0)+waitingHeader+`imagepull_pod_containers_waiting{namespace="outage",reason="ImagePullBackOff",registry="ghcr.io"} 1
`, "imagepull_kube_watch_up", "imagepull_pod_containers_waiting")

	// While the exporter still cannot reach it, the apiserver comes back
	// and the cluster changes: a pod goes, another starts waiting.
	proxy.Down()
	k.Start()
	del(t, k.Client, ns, "before")
	kl.pod(podSpec{ns: ns, name: "during", node: "n1", ctrs: []ctr{{image: "quay.io/acme/web:v2", waiting: "ErrImagePull"}}})
	lists := e.cluster.pods.lists.Load()
	waitCompacted(t, k, e.cluster.pods.informers[0].LastSyncResourceVersion())
	reconnected := time.Now()
	proxy.Up()
	waitMetrics(t, e.reg, up(1)+waitingHeader+`imagepull_pod_containers_waiting{namespace="outage",reason="ErrImagePull",registry="quay.io"} 1
`, "imagepull_kube_watch_up", "imagepull_pod_containers_waiting")
	if got := e.cluster.pods.lists.Load(); got <= lists {
		t.Errorf("pods were listed %d times before the return and %d after: client-go should have relisted", lists, got)
	}
	if ts := e.cluster.pods.lastEvent.Load(); ts < reconnected.UnixNano() {
		t.Errorf("last event timestamp %s is from before the reconnection at %s: the relist did not refresh it", time.Unix(0, ts), reconnected)
	}
}

// waitCompacted waits until the apiserver no longer has the history after
// resourceVersion rv: a watch from rv is answered 410 Gone.
func waitCompacted(t *testing.T, k *testenv.Kube, rv string) {
	t.Helper()
	waitFor(t, "resourceVersion "+rv+" to be compacted", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		w, err := k.Client.CoreV1().Pods("").Watch(ctx, metav1.ListOptions{ResourceVersion: rv})
		if err != nil {
			return apierrors.IsResourceExpired(err) || apierrors.IsGone(err)
		}
		defer w.Stop()
		select {
		case ev := <-w.ResultChan():
			if ev.Type == watch.Error {
				err := apierrors.FromObject(ev.Object)
				return apierrors.IsResourceExpired(err) || apierrors.IsGone(err)
			}
		case <-time.After(time.Second):
		}
		return false
	})
}
