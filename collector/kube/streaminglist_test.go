package kube

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientfeatures "k8s.io/client-go/features"
	clientfeaturestesting "k8s.io/client-go/features/testing"
	"k8s.io/client-go/rest"

	"github.com/imagepull/imagepull_exporter/internal/testenv"
)

// requestLog records the query of every request a client sends for one
// path, with the response status.
type requestLog struct {
	path string
	mu   sync.Mutex
	reqs []loggedRequest
}

type loggedRequest struct {
	query  url.Values
	status int
}

func (l *requestLog) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		resp, err := rt.RoundTrip(req)
		if req.URL.Path == l.path {
			status := 0
			if resp != nil {
				status = resp.StatusCode
			}
			l.mu.Lock()
			l.reqs = append(l.reqs, loggedRequest{query: req.URL.Query(), status: status})
			l.mu.Unlock()
		}
		return resp, err
	})
}

// split returns the list requests (no watch=true) and the watch requests.
func (l *requestLog) split() (lists, watches []loggedRequest) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.reqs {
		if r.query.Get("watch") == "true" {
			watches = append(watches, r)
		} else {
			lists = append(lists, r)
		}
	}
	return lists, watches
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// apiserverMetric returns the sum of the apiserver's samples of name whose
// labels include every one of labels ("k=\"v\"").
func apiserverMetric(t *testing.T, k *testenv.Kube, name string, labels ...string) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	body, err := k.Client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		t.Fatalf("apiserver /metrics: %v", err)
	}
	var sum float64
next:
	for _, l := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(l, name+"{") {
			continue
		}
		for _, lb := range labels {
			if !strings.Contains(l, lb) {
				continue next
			}
		}
		v, err := strconv.ParseFloat(l[strings.LastIndexByte(l, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("apiserver /metrics: %q: %v", l, err)
		}
		sum += v
	}
	return sum
}

// Issue 13: the first list must not hold every pod at once. Where the
// apiserver serves streaming lists, the informers fill their caches from
// one (a watch with sendInitialEvents, no LIST at all); where it does not,
// client-go falls back to a LIST, which comes in pages of listPageSize.
// The apiserver serves them when its WatchList gate is on (the default
// since 1.32) and its etcd sends progress notifications on request (3.4.31
// or 3.5.13 and later; Debian 12's etcd 3.4.23 does not, and the apiserver
// answers the streaming request with an error event). The cases:
//   - WatchList off: the apiserver refuses the request (422), paged LIST;
//   - WatchList on, etcd new enough: streaming list, no LIST at all. This
//     is the case CI runs: scripts/install-deps.sh builds bin/etcd (3.6,
//     tools/etcd/go.mod), and an older bin/etcd fails the test rather than
//     quietly testing the fallback twice;
//   - WatchList on, etcd too old: error event, paged LIST. It runs instead
//     of the streaming case only when there is no bin/etcd and the etcd on
//     PATH is older (a machine set up by hand, e.g. Debian 12's etcd-server).
func TestInitialListStreamsOrPages(t *testing.T) {
	// What Start does for the process (EnableStreamingLists), undone
	// after the test.
	clientfeaturestesting.SetFeatureDuringTest(t, clientfeatures.WatchListClient, true)
	oldPage := listPageSize
	listPageSize = 50
	t.Cleanup(func() { listPageSize = oldPage })
	const pods = 130 // three pages of 50
	streams := etcdServesStreamingLists(t)

	for _, tc := range []struct {
		name      string
		watchList bool
		streams   bool // the apiserver can serve streaming lists
	}{
		{"apiserver without WatchList: paginated list", false, false},
		{"apiserver with WatchList: " + map[bool]string{true: "streaming list", false: "etcd too old, paginated list"}[streams], true, streams},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := testenv.StartKube(t, testenv.KubeOptions{
				ExtraArgs: []string{"--feature-gates=WatchList=" + strconv.FormatBool(tc.watchList)},
			})
			const ns = "many"
			k.EnsureNamespace(t, ns)
			createPods(t, k, ns, pods)

			log := &requestLog{path: "/api/v1/namespaces/" + ns + "/pods"}
			cfg := rest.CopyConfig(k.Config)
			cfg.Wrap(log.wrap)
			e := startExporter(t, exporterOptions{rest: cfg, namespaces: []string{ns}, config: configYAML("")})

			objs := e.cluster.pods.list()
			if len(objs) != pods {
				t.Fatalf("the pods informer holds %d objects after sync, want %d", len(objs), pods)
			}
			for _, o := range objs {
				if _, ok := o.(*podInfo); !ok {
					t.Fatalf("the pods informer holds a %T, want the compact *podInfo", o)
				}
			}
			if !e.cluster.pods.up() {
				t.Error("the pods watch is not up after sync")
			}
			lists, watches := log.split()
			if len(watches) == 0 || watches[0].query.Get("sendInitialEvents") != "true" {
				t.Fatalf("the first pods watch request was not a streaming list: %+v", watches)
			}
			streamed := apiserverMetric(t, k, "apiserver_watch_list_duration_seconds_count", `resource="pods"`, `scope="namespace"`)
			serverLists := apiserverMetric(t, k, "apiserver_request_total", `verb="LIST"`, `resource="pods"`, `scope="namespace"`)
			t.Logf("client: %d LIST and %d WATCH requests for the pods (the first answered %d); apiserver: %v streaming lists and %v LISTs of namespaced pods",
				len(lists), len(watches), watches[0].status, streamed, serverLists)

			if tc.streams {
				if watches[0].status != http.StatusOK {
					t.Errorf("streaming list answered %d, want 200", watches[0].status)
				}
				if len(lists) != 0 || serverLists != 0 {
					t.Errorf("the informer sent %d LIST requests (apiserver counted %v), want none: the streaming list replaces them", len(lists), serverLists)
				}
				if streamed != 1 {
					t.Errorf("apiserver_watch_list_duration_seconds_count for pods = %v, want 1 (one streaming list completed)", streamed)
				}
				return
			}
			// client-go tries the streaming list, the apiserver refuses it,
			// and the reflector falls back to a LIST.
			wantStatus := http.StatusUnprocessableEntity // WatchList off: invalid request
			if tc.watchList {
				wantStatus = http.StatusOK // accepted, then an error event
			}
			if watches[0].status != wantStatus {
				t.Errorf("streaming list answered %d, want %d", watches[0].status, wantStatus)
			}
			if streamed != 0 {
				t.Errorf("apiserver_watch_list_duration_seconds_count for pods = %v, want 0", streamed)
			}
			want := (pods + int(listPageSize) - 1) / int(listPageSize)
			if len(lists) != want || serverLists != float64(want) {
				t.Fatalf("the informer sent %d LIST requests (apiserver counted %v), want %d pages of %d", len(lists), serverLists, want, listPageSize)
			}
			for i, r := range lists {
				if r.status != http.StatusOK || r.query.Get("limit") != strconv.FormatInt(listPageSize, 10) {
					t.Errorf("LIST %d: status %d, limit %q; want 200 and limit=%d", i, r.status, r.query.Get("limit"), listPageSize)
				}
				if (i == 0) != (r.query.Get("continue") == "") {
					t.Errorf("LIST %d: continue=%q; want a continue token on every page but the first", i, r.query.Get("continue"))
				}
				if rv := r.query.Get("resourceVersion"); rv == "0" {
					t.Errorf("LIST %d asked for resourceVersion=0, which the watch cache answers whole whatever the limit", i)
				}
			}
		})
	}
}

// etcdServesStreamingLists reports whether the etcd tests run can back
// the apiserver's streaming lists: 3.4.31 or later in 3.4, 3.5.13 or later
// (the apiserver's own bounds, k8s.io/apiserver/pkg/storage/feature). The
// project's own bin/etcd must: the test fails when it is older.
func etcdServesStreamingLists(t *testing.T) bool {
	t.Helper()
	bin := testenv.Bin(t, "etcd")
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatalf("etcd --version: %v", err)
	}
	m := regexp.MustCompile(`etcd Version: (\d+)\.(\d+)\.(\d+)`).FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("etcd --version: no version in %q", out)
	}
	ok := etcdVersionStreams(m[1:])
	t.Logf("etcd %s.%s.%s (%s): streaming lists %s", m[1], m[2], m[3], bin,
		map[bool]string{true: "served", false: "not served, the apiserver falls back to pages"}[ok])
	if !ok && bin == filepath.Join(testenv.RepoRoot(t), "bin", "etcd") {
		t.Fatalf("bin/etcd is %s.%s.%s, too old for streaming lists; scripts/install-deps.sh builds the one tools/etcd/go.mod pins", m[1], m[2], m[3])
	}
	return ok
}

// etcdVersionStreams reports whether etcd major.minor.patch sends the
// progress notifications the apiserver's streaming lists need.
func etcdVersionStreams(version []string) bool {
	v := [3]int{}
	for i := range v {
		v[i], _ = strconv.Atoi(version[i])
	}
	switch {
	case v[0] > 3 || v[0] == 3 && v[1] > 5:
		return true
	case v[0] == 3 && v[1] == 5:
		return v[2] >= 13
	case v[0] == 3 && v[1] == 4:
		return v[2] >= 31
	}
	return false
}

// createPods creates n pods ns/p-0 ... in ns, 16 at a time.
func createPods(t *testing.T, k *testenv.Kube, ns string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			_, err := k.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p-%d", i), Namespace: ns},
				Spec: corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{
					{Name: "app", Image: fmt.Sprintf("ghcr.io/acme/app:v%d", i%7)}}},
			}, metav1.CreateOptions{})
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("create pods: %v", err)
	}
}

func TestEtcdVersionStreams(t *testing.T) {
	for v, want := range map[string]bool{
		"3.4.23": false, "3.4.30": false, "3.4.31": true,
		"3.5.12": false, "3.5.13": true, "3.5.21": true,
		"3.6.0": true, "3.6.16": true, "3.7.0": true, "4.0.0": true,
		"3.3.27": false, "2.3.8": false,
	} {
		if got := etcdVersionStreams(strings.Split(v, ".")); got != want {
			t.Errorf("etcdVersionStreams(%s) = %v, want %v", v, got, want)
		}
	}
}
