package deploytest_test

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	dt "github.com/imagepull/imagepull_exporter/internal/deploytest"
	"github.com/imagepull/imagepull_exporter/internal/testenv"
)

var flagRE = regexp.MustCompile(`--\[?(?:no-)?\]?([a-z0-9][a-z0-9.-]*)`)

// Every flag any variant of deploy/ passes exists in the exporter: a
// manifest with a misspelt or renamed flag would crash-loop.
func TestManifestFlagsExist(t *testing.T) {
	bin := exporterBinary(t)
	known := map[string]bool{}
	for _, args := range [][]string{{"--help"}, {"serve", "--help"}} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", bin, args, err, out)
		}
		for _, m := range flagRE.FindAllStringSubmatch(string(out), -1) {
			known[m[1]] = true
		}
	}
	var all []dt.Object
	for _, ov := range overlays {
		all = append(all, dt.Kustomize(t, ov.dir)...)
	}
	all = append(all, dt.HelmTemplate(t, "pullSecrets.enabled=true", "sharding.enabled=true", "nodeProbe.enabled=true")...)
	for _, spec := range podSpecs(all) {
		for _, c := range spec["containers"].([]any) {
			for _, a := range strs(c.(map[string]any)["args"]) {
				name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
				name = strings.TrimPrefix(name, "no-") // kingpin's --[no-]flag
				if !strings.HasPrefix(a, "--") || !known[name] {
					t.Errorf("a manifest passes %q, which `imagepull_exporter --help` does not list", a)
				}
			}
		}
	}
}

// The node-probe DaemonSet's pod gets no API token, yet runs in a pod
// (KUBERNETES_SERVICE_HOST is always set there): with its own args and the
// node's runtime configuration mounted where the args point, the exporter
// must start, serve, and leave the Kubernetes join to the Deployment rather
// than fail over the missing token.
func TestNodeProbeRunsWithoutToken(t *testing.T) {
	bin := exporterBinary(t)
	objs := dt.Kustomize(t, "deploy/overlays/node-probe")
	dir := t.TempDir()
	// The node's /etc as the DaemonSet mounts it under /host/etc: an empty
	// containerd certs.d (no mirrors), no CRI-O configuration.
	hostEtc := filepath.Join(dir, "host", "etc")
	for _, d := range []string{"containerd/certs.d", "containers"} {
		if err := os.MkdirAll(filepath.Join(hostEtc, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// One target on a local registry instead of the shipped public ones:
	// tests send nothing to the internet.
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{})
	reg.Push(t, "demo/app", "v1")
	cfg := filepath.Join(dir, "config.yml")
	config := "modules:\n  default: {timeout: 5s, interval: 60s, plain_http: true}\n" +
		"targets:\n  - {name: demo, image: " + reg.Ref("demo/app", "v1") + "}\n"
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := testenv.FreeAddr(t)
	ds := dt.Find(t, objs, "DaemonSet", "imagepull-exporter-node")
	var args []string
	for _, a := range strs(dt.Get(ds, "spec", "template", "spec", "containers", "0", "args")) {
		switch {
		case strings.HasPrefix(a, "--config.file="):
			a = "--config.file=" + cfg
		case strings.HasPrefix(a, "--web.listen-address="):
			a = "--web.listen-address=" + addr
		case a == "--node.name=$(NODE_NAME)":
			a = "--node.name=node-a" // the kubelet expands $(NODE_NAME)
		}
		args = append(args, strings.ReplaceAll(a, "=/host/etc/", "="+hostEtc+"/"))
	}
	// What every pod's environment has, token or not.
	env := []string{"KUBECONFIG=", "KUBERNETES_SERVICE_HOST=127.0.0.1", "KUBERNETES_SERVICE_PORT=1", goMemLimit(t, ds)}
	p := testenv.StartProcess(t, "imagepull_exporter", bin, args, env, dir)
	p.WaitHTTP("http://"+addr+"/-/ready", http.StatusOK, time.Minute, nil)
	p.WaitHTTP("http://"+addr+"/-/healthy", http.StatusOK, 10*time.Second, nil)
	// The probe series carry the node, and no Kubernetes watch runs.
	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	var metrics string
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := client.Get("http://" + addr + "/metrics")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			metrics = string(b)
		}
		if regexp.MustCompile(`(?m)^imagepull_probe_success\{[^}]*node="node-a"[^}]*target="demo"[^}]*\} 1$`).MatchString(metrics) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no successful probe series with node=\"node-a\":\n%s\nlog:\n%s", grepLines(metrics, "imagepull_probe_success"), p.Output())
		}
		time.Sleep(250 * time.Millisecond)
	}
	// On hostNetwork, /probe would probe any registry from the node's
	// address for whoever reaches the port: the DaemonSet's args keep it off.
	if resp, err := client.Get("http://" + addr + "/probe?target=" + reg.Ref("demo/app", "v1")); err != nil {
		t.Error(err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("the node probe serves /probe: %d, want 404", resp.StatusCode)
		}
	}
	if strings.Contains(metrics, "imagepull_kube_watch_up") {
		t.Errorf("the node probe runs Kubernetes watches; the join belongs to the Deployment:\n%s", grepLines(metrics, "imagepull_kube_watch_up"))
	}
	if p.Exited() {
		t.Fatalf("the node probe exited:\n%s", p.Output())
	}
}
