package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/imagepull/imagepull_exporter/internal/testenv"
)

// binPath is the exporter binary, built once by TestMain: the end-to-end
// tests run the real program (flags, signals, exit codes), not run(). Read
// it through exporterBin.
var binPath string

func TestMain(m *testing.M) {
	// The binary's own goroutines (reload, handlers, scheduler) get the
	// race detector when the tests do. Under -short (the fast tier) nothing
	// is built: go build -race of the whole exporter takes longer on two
	// cores than every unit test together, and the tests that run the
	// binary are skipped by exporterBin.
	var remove func()
	binPath, remove = testenv.MainBuildExporter(raceEnabled)
	code := m.Run()
	remove()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// exporterBin returns the binary TestMain built; under -short it skips t.
func exporterBin(t testing.TB) string {
	t.Helper()
	testenv.SkipShort(t, "the exporter binary (go build)")
	return binPath
}

func randomString(prefix string) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// runBinary runs the exporter to completion and returns its output and exit
// code (runBinaryStdin with nothing on stdin).
func runBinary(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runBinaryStdin(t, "", args...)
}

// exporter is the exporter running as a server process.
type exporter struct {
	t       *testing.T
	cmd     *exec.Cmd
	URL     string
	logPath string
	done    chan struct{}
	client  *http.Client
}

// startExporter starts the exporter and waits until it is ready.
func startExporter(t *testing.T, args ...string) *exporter {
	t.Helper()
	e := startExporterProcess(t, args...)
	e.waitFor("ready", func() bool {
		code, _ := e.tryGet("/-/ready")
		return code == 200
	})
	return e
}

// startExporterProcess starts the exporter and waits only until it serves
// HTTP (/-/healthy).
func startExporterProcess(t *testing.T, args ...string) *exporter {
	t.Helper()
	addr := testenv.FreeAddr(t)
	e := &exporter{t: t, URL: "http://" + addr, logPath: filepath.Join(t.TempDir(), "exporter.log"),
		done: make(chan struct{}), client: &http.Client{Timeout: 30 * time.Second}}
	f, err := os.Create(e.logPath)
	if err != nil {
		t.Fatal(err)
	}
	e.cmd = exec.Command(exporterBin(t), append([]string{"--web.listen-address=" + addr, "--log.level=debug"}, args...)...)
	e.cmd.Stdout, e.cmd.Stderr = f, f
	e.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = e.cmd.Wait(); f.Close(); close(e.done) }()
	t.Cleanup(func() {
		if code := e.stop(); code != 0 {
			t.Errorf("the exporter exited with %d on SIGTERM, want 0", code)
		}
		if t.Failed() {
			t.Logf("--- exporter log ---\n%s", e.log())
		}
	})
	e.waitFor("healthy", func() bool {
		code, _ := e.tryGet("/-/healthy")
		return code == 200
	})
	return e
}

// stop sends SIGTERM and returns the exit code.
func (e *exporter) stop() int {
	select {
	case <-e.done:
	default:
		_ = e.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-e.done:
		case <-time.After(15 * time.Second):
			_ = e.cmd.Process.Kill()
			<-e.done
		}
	}
	return e.cmd.ProcessState.ExitCode()
}

func (e *exporter) log() string {
	b, _ := os.ReadFile(e.logPath)
	return string(b)
}

func (e *exporter) tryGet(path string) (int, string) {
	resp, err := e.client.Get(e.URL + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (e *exporter) get(path string) (int, string) {
	e.t.Helper()
	code, body := e.tryGet(path)
	if code == 0 {
		e.t.Fatalf("GET %s: %s", path, body)
	}
	return code, body
}

func (e *exporter) post(path string) (int, string) {
	e.t.Helper()
	resp, err := e.client.Post(e.URL+path, "text/plain", nil)
	if err != nil {
		e.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitFor polls cond; the deadline only bounds a hung test.
func (e *exporter) waitFor(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for !cond() {
		select {
		case <-e.done:
			e.t.Fatalf("the exporter exited while waiting for %s:\n%s", what, e.log())
		default:
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// scrape parses /metrics into "name{k="v",...}" → value, labels sorted.
func (e *exporter) scrape() map[string]float64 {
	e.t.Helper()
	code, body := e.get("/metrics")
	if code != 200 {
		e.t.Fatalf("/metrics: %d %s", code, body)
	}
	return parseMetrics(e.t, body)
}

func parseMetrics(t *testing.T, text string) map[string]float64 {
	t.Helper()
	samples, err := testenv.ParseSamples(text)
	if err != nil {
		t.Fatal(err)
	}
	return samples
}

// lookup returns the value of the one series of metric whose labels include
// every `k="v"` in labels.
func lookup(samples map[string]float64, metric string, labels ...string) (float64, bool) {
	found := testenv.Series(samples, metric, labels...)
	if len(found) != 1 {
		return 0, false
	}
	return samples[found[0]], true
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestConfigCheck(t *testing.T) {
	testdata := filepath.Join(testenv.RepoRoot(t), "collector", "config", "testdata")
	// A credentialed discovery default is valid (exit 0) but warned about
	// on stderr: discovery falls back to it for any image a pod names.
	credDefault := filepath.Join(t.TempDir(), "cred-default.yml")
	writeFile(t, credDefault, "modules:\n  default:\n    auth: {username: alice, password: hunter2-check, registries: [registry.example.com]}\n")
	for _, c := range []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"--config.check"}, 0, "default.yml (embedded): OK: 1 modules, 5 targets\n", ""},
		{[]string{"--config.check", "--config.file", filepath.Join(testdata, "good.yml")}, 0,
			filepath.Join(testdata, "good.yml") + ": OK: 7 modules, 4 targets\n", ""},
		{[]string{"--config.check", "--config.file", filepath.Join(testdata, "invalid-undefined-module.yml")}, 1, "",
			filepath.Join(testdata, "invalid-undefined-module.yml") + `:12: target "x": module "foo" is not defined (defined: default, ecr); add it under modules: or fix the name` + "\n"},
		{[]string{"--config.check", "--config.file", filepath.Join(testdata, "invalid-unknown-module-key.yml")}, 1, "",
			filepath.Join(testdata, "invalid-unknown-module-key.yml") + `:4: module "default": unknown key "intervall"; did you mean "interval"? (valid keys: timeout, interval, auth_check_interval, plain_http, tls, auth, health)` + "\n"},
		{[]string{"--config.check", "--config.file", "/nonexistent/config.yml"}, 1, "",
			"read config file: open /nonexistent/config.yml: no such file or directory\n"},
		{[]string{"--config.check", "--config.file", credDefault}, 0, credDefault + ": OK: 1 modules, 0 targets\n",
			credDefault + `: warning: module "default" has static credentials (auth.username) and is the discovery default: discovery falls back to it for any image a pod names. Its credentials are bound to registry.example.com (by its auth.registries); a discovered image on any other registry is probed anonymously. Set auth.registries to exactly the registries the credentials belong to, or keep the default module anonymous and map registries to this module under discovery: modules:` + "\n"},
		// The probe command refuses a module's credentials on a registry
		// they are not bound to, before sending anything, as /probe does.
		{[]string{"probe", "--config.file", credDefault, "evil.example/x:1"}, 1, "",
			`imagepull_exporter: refused: the credentials of module "default" are not bound to registry evil.example: they are bound to registry.example.com; to send them there, add evil.example to the module's auth.registries` + "\n"},
		{[]string{"--no-such-flag"}, 2, "", "imagepull_exporter: unknown long flag '--no-such-flag'; see --help\n"},
		{[]string{"--probe.registry-budget=0.5", "--config.check"}, 2, "",
			"imagepull_exporter: --probe.registry-budget must be 0 (unlimited) or at least 1, got 0.5\n"},
	} {
		stdout, stderr, code := runBinary(t, c.args...)
		if code != c.code || stdout != c.stdout || stderr != c.stderr {
			t.Errorf("%v:\n exit %d, stdout %q, stderr %q\nwant exit %d, stdout %q, stderr %q",
				c.args, code, stdout, stderr, c.code, c.stdout, c.stderr)
		}
	}
}

// realRegistry starts a real distribution registry with basic auth (two
// users) and one image, and writes a config probing it.
type realRegistry struct {
	reg                *testenv.Registry
	digest             string
	alicePW, bobPW     string
	configPath, pwFile string
}

func startRealRegistry(t *testing.T) *realRegistry {
	t.Helper()
	r := &realRegistry{alicePW: randomString("alice-pw-"), bobPW: randomString("bob-pw-")}
	r.reg = testenv.StartRegistry(t, testenv.RegistryOptions{Auth: testenv.RegistryAuthBasic,
		Users: map[string]testenv.TokenUser{"alice": {Password: r.alicePW}, "bob": {Password: r.bobPW}}})
	r.digest = r.reg.Push(t, "demo/app", "v1")
	dir := t.TempDir()
	r.pwFile = filepath.Join(dir, "bob.pw")
	writeFile(t, r.pwFile, r.bobPW+"\n")
	r.configPath = filepath.Join(dir, "config.yml")
	writeFile(t, r.configPath, fmt.Sprintf(`
modules:
  inline:
    timeout: 2s
    interval: 2s
    plain_http: true
    auth: {username: alice, password: %[1]q}
  file:
    timeout: 2s
    interval: 2s
    plain_http: true
    auth: {username: bob, password_file: bob.pw}
  wrong:
    timeout: 2s
    interval: 2s
    plain_http: true
    auth: {username: alice, password: "not-%[1]s"}
targets:
  - {name: ok-inline, image: %[2]s/demo/app:v1, module: inline}
  - {name: ok-file, image: %[2]s/demo/app:v1, module: file}
  - {name: missing-tag, image: %[2]s/demo/app:nope, module: inline}
  - {name: missing-repo, image: %[2]s/demo/nothing:v1, module: inline}
  - {name: wrong-password, image: %[2]s/demo/app:v1, module: wrong}
`, r.alicePW, r.reg.Addr))
	return r
}

// secrets are the strings that must never leave the exporter.
func (r *realRegistry) secrets() []string {
	return []string{
		r.alicePW, r.bobPW,
		base64.StdEncoding.EncodeToString([]byte("alice:" + r.alicePW)),
		base64.StdEncoding.EncodeToString([]byte("bob:" + r.bobPW)),
	}
}

func assertNoSecret(t *testing.T, where, text string, secrets []string) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(text, s) {
			t.Errorf("%s reveals a credential (%.12s…)", where, s)
		}
	}
}

func TestServeAgainstRealRegistry(t *testing.T) {
	r := startRealRegistry(t)
	e := startExporter(t, "--config.file", r.configPath)

	targets := []string{"ok-inline", "ok-file", "missing-tag", "missing-repo", "wrong-password"}
	var m map[string]float64
	e.waitFor("every target probed", func() bool {
		m = e.scrape()
		for _, tgt := range targets {
			if _, ok := lookup(m, "imagepull_probe_success", `target="`+tgt+`"`); !ok {
				return false
			}
		}
		return true
	})
	for tgt, want := range map[string]float64{"ok-inline": 1, "ok-file": 1, "missing-tag": 0, "missing-repo": 0, "wrong-password": 0} {
		if v, _ := lookup(m, "imagepull_probe_success", `target="`+tgt+`"`); v != want {
			t.Errorf("probe_success{%s} = %v, want %v", tgt, v, want)
		}
	}
	for tgt, reason := range map[string]string{"missing-tag": "not_found", "missing-repo": "not_found", "wrong-password": "unauthorized"} {
		if v, _ := lookup(m, "imagepull_probe_failure_reason", `target="`+tgt+`"`, `reason="`+reason+`"`); v != 1 {
			t.Errorf("failure_reason{%s,%s} = %v, want 1", tgt, reason, v)
		}
	}
	labels := []string{`target="ok-inline"`, `registry="` + r.reg.Addr + `"`, `repository="demo/app"`, `reference="v1"`, `digest="` + r.digest + `"`}
	if v, ok := lookup(m, "imagepull_manifest_info", labels...); !ok || v != 1 {
		t.Errorf("manifest_info with the pushed digest %s: %v %v", r.digest, v, ok)
	}
	if v, _ := lookup(m, "imagepull_auth_success", `target="wrong-password"`); v != 0 {
		t.Errorf("auth_success{wrong-password} = %v", v)
	}
	if v, _ := lookup(m, "imagepull_exporter_config_last_reload_successful"); v != 1 {
		t.Errorf("config_last_reload_successful = %v", v)
	}
	if v, _ := lookup(m, "imagepull_exporter_targets", `source="config"`); v != 5 {
		t.Errorf("exporter_targets{config} = %v", v)
	}
	if _, ok := lookup(m, "imagepull_exporter_build_info"); !ok {
		t.Error("no imagepull_exporter_build_info")
	}
	if v, _ := lookup(m, "imagepull_registry_requests_total", `kind="manifest_get"`); v != 0 {
		t.Errorf("registry_requests_total{manifest_get} = %v", v)
	}
	if gets, heads := r.reg.ManifestRequests(); gets != 0 || heads == 0 {
		t.Errorf("registry access log: %d manifest GETs, %d HEADs; want 0 GETs", gets, heads)
	}

	// promtool's own lint of a real scrape.
	_, scrape := e.get("/metrics")
	check := exec.Command(testenv.Bin(t, "promtool"), "check", "metrics")
	check.Stdin = strings.NewReader(scrape)
	if out, err := check.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}

	// /probe, blackbox style, with the module's credentials.
	q := url.Values{"target": {r.reg.Addr + "/demo/app:v1"}, "module": {"inline"}}
	code, body := e.get("/probe?" + q.Encode())
	pm := parseMetrics(t, body)
	if v, ok := lookup(pm, "imagepull_probe_success"); code != 200 || !ok || v != 1 {
		t.Errorf("/probe: %d, probe_success %v %v\n%s", code, v, ok, body)
	}
	q.Set("debug", "true")
	code, debug := e.get("/probe?" + q.Encode())
	if code != 200 || !strings.Contains(debug, "manifest_head HEAD http://"+r.reg.Addr+"/v2/demo/app/manifests/v1 -> 200") ||
		!strings.Contains(debug, "digest:      "+r.digest) {
		t.Errorf("/probe?debug=true: %d\n%s", code, debug)
	}
	// The credential was sent (basic auth): the debug page shows that
	// an Authorization header went out, redacted.
	if !strings.Contains(debug, "> Authorization: ") {
		t.Errorf("/probe?debug=true shows no Authorization header:\n%s", debug)
	}
	q.Set("module", "wrong")
	_, debugWrong := e.get("/probe?" + q.Encode())
	q.Set("module", "file")
	_, debugFile := e.get("/probe?" + q.Encode())
	if code, body := e.get("/probe?target=" + url.QueryEscape("Bad Ref")); code != 400 || !strings.Contains(body, "bad target") {
		t.Errorf("/probe with a bad image: %d %s", code, body)
	}
	if code, body := e.get("/probe?module=nope&target=nginx"); code != 400 || !strings.Contains(body, `unknown module "nope"`) {
		t.Errorf("/probe with an unknown module: %d %s", code, body)
	}

	_, landing := e.get("/")
	_, statusJSON := e.get("/status.json")
	_, cfgPage := e.get("/config")
	for _, want := range []string{`>ok-inline</a></td>`, `<td class="ok">ok</td>`, `<td class="failed">failed</td>`, "unauthorized", r.digest[7:19]} {
		if !strings.Contains(landing, want) {
			t.Errorf("landing page lacks %s", want)
		}
	}

	// No credential anywhere: metrics, /probe output, debug pages (right,
	// wrong and file passwords), the landing page, the process log.
	secrets := append(r.secrets(), "not-"+r.alicePW)
	assertNoSecret(t, "/metrics", scrape, secrets)
	assertNoSecret(t, "/probe", body, secrets)
	assertNoSecret(t, "/probe?debug=true", debug, secrets)
	assertNoSecret(t, "/probe?debug=true (wrong password)", debugWrong, secrets)
	assertNoSecret(t, "/probe?debug=true (password_file)", debugFile, secrets)
	assertNoSecret(t, "the landing page", landing, secrets)
	assertNoSecret(t, "/status.json", statusJSON, secrets)
	assertNoSecret(t, "/config", cfgPage, secrets)
	if !strings.Contains(cfgPage, "password_file: "+r.pwFile) || strings.Count(cfgPage, "password: <secret>") != 2 {
		t.Errorf("/config does not show the modules as they run:\n%s", cfgPage)
	}
	assertNoSecret(t, "the log", e.log(), secrets)
}

func TestServeHealthAndReadiness(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "config.yml")
	writeFile(t, cfg, "targets: []\n")
	e := startExporter(t, "--config.file", cfg)
	for path, want := range map[string]int{"/-/healthy": 200, "/-/ready": 200, "/-/reload": 405, "/nope": 404} {
		if code, body := e.get(path); code != want {
			t.Errorf("GET %s: %d %s, want %d", path, code, body, want)
		}
	}
}

// /-/ready means ready: with the Kubernetes join on, it answers 503 until
// the informers' first lists are in, as kube-state-metrics' /readyz does,
// while /-/healthy and /metrics already serve.
func TestReadyWaitsForKubernetesCaches(t *testing.T) {
	k := testenv.StartKube(t, testenv.KubeOptions{})
	kubeconfig := k.WriteKubeconfig(k.AdminToken)
	k.Stop() // the caches cannot sync while the apiserver is away
	cfg := filepath.Join(t.TempDir(), "config.yml")
	writeFile(t, cfg, "targets: []\n")
	e := startExporterProcess(t, "--config.file", cfg, "--kubeconfig="+kubeconfig)
	if code, body := e.get("/-/ready"); code != http.StatusServiceUnavailable {
		t.Errorf("/-/ready before the caches synced: %d %s, want 503", code, body)
	}
	if code, _ := e.get("/metrics"); code != http.StatusOK {
		t.Errorf("/metrics before the caches synced: %d, want 200", code)
	}
	k.Start()
	e.waitFor("ready once the apiserver is back", func() bool {
		code, _ := e.tryGet("/-/ready")
		return code == 200
	})
}

func TestReload(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{})
	reg.Push(t, "demo/a", "v1")
	reg.Push(t, "demo/b", "v1")
	cfg := filepath.Join(t.TempDir(), "config.yml")
	good := func(targets ...string) string {
		s := "modules:\n  local: {plain_http: true, timeout: 1s, interval: 1s}\ntargets:\n"
		for _, tgt := range targets {
			s += fmt.Sprintf("  - {name: %s, image: %s/demo/%s:v1, module: local}\n", tgt, reg.Addr, tgt)
		}
		return s
	}
	writeFile(t, cfg, good("a"))
	e := startExporter(t, "--config.file", cfg)

	probes := func(tgt string) float64 {
		v, _ := lookup(e.scrape(), "imagepull_probes_total", `target="`+tgt+`"`, `result="success"`)
		return v
	}
	e.waitFor("a probed", func() bool { return probes("a") >= 1 })

	bad := "modules:\n  local: {plain_http: true, timeout: 1s, interval: 1s}\ntargets:\n  - {name: b, image: " + reg.Addr + "/demo/b:v1, modul: local}\n"
	writeFile(t, cfg, bad)
	code, body := e.post("/-/reload")
	if code != 500 || !strings.Contains(body, cfg+`:4: target "b": unknown key "modul"; did you mean "module"?`) {
		t.Errorf("POST /-/reload with a bad file: %d %q", code, body)
	}
	m := e.scrape()
	if v, _ := lookup(m, "imagepull_exporter_config_last_reload_successful"); v != 0 {
		t.Errorf("reload_successful = %v after a bad reload", v)
	}
	// The old config keeps running: "a" is still probed, "b" never is.
	n := probes("a")
	e.waitFor("a probed again after the failed reload", func() bool { return probes("a") > n })

	// SIGHUP with the bad file: same.
	_ = e.cmd.Process.Signal(syscall.SIGHUP)
	e.waitFor("the SIGHUP reload attempt logged", func() bool {
		return strings.Contains(e.log(), `msg="reloading the configuration failed; keeping the running one" trigger=SIGHUP`)
	})
	if _, ok := lookup(e.scrape(), "imagepull_probe_success", `target="b"`); ok {
		t.Error("a target of the bad file is probed")
	}

	// SIGHUP with a good file applies it: b appears, a and its series go.
	writeFile(t, cfg, good("b"))
	_ = e.cmd.Process.Signal(syscall.SIGHUP)
	e.waitFor("b probed after SIGHUP", func() bool { return probes("b") >= 1 })
	m = e.scrape()
	if v, _ := lookup(m, "imagepull_exporter_config_last_reload_successful"); v != 1 {
		t.Errorf("reload_successful = %v after a good reload", v)
	}
	for k := range m {
		if strings.Contains(k, `target="a"`) {
			t.Errorf("the removed target still has a series: %s", k)
		}
	}

	// POST with a good file.
	writeFile(t, cfg, good("a", "b"))
	if code, body := e.post("/-/reload"); code != 200 {
		t.Errorf("POST /-/reload: %d %s", code, body)
	}
	e.waitFor("a probed after POST /-/reload", func() bool { return probes("a") >= 1 })
}

func TestProbeCommand(t *testing.T) {
	r := startRealRegistry(t)
	img := r.reg.Addr + "/demo/app:v1"
	stdout, stderr, code := runBinary(t, "probe", img, "--module", "inline", "--config.file", r.configPath, "-v")
	if code != 0 {
		t.Fatalf("probe of a good image: exit %d\n%s%s", code, stdout, stderr)
	}
	for _, want := range []string{"module:      inline\n", "image:       " + img + "\n", "result:      success\n",
		"digest:      " + r.digest + "\n", "media type:  application/vnd.docker.distribution.manifest.v2+json\n",
		"rate limit:  none reported", "phases:\n  resolve", "  manifest ", "manifest_head HEAD http://" + r.reg.Addr + "/v2/demo/app/manifests/v1 -> 200",
		"> Authorization: "} {
		if !strings.Contains(stdout, want) {
			t.Errorf("probe output lacks %q:\n%s", want, stdout)
		}
	}
	assertNoSecret(t, "probe -v output", stdout+stderr, r.secrets())

	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"probe", r.reg.Addr + "/demo/app:nope", "--module", "inline", "--config.file", r.configPath}, 1, "result:      FAILED, reason not_found"},
		{[]string{"probe", img, "--module", "wrong", "--config.file", r.configPath, "-v"}, 1, "result:      FAILED, reason unauthorized"},
		{[]string{"probe", img, "--module", "nope", "--config.file", r.configPath}, 1, `module "nope" is not defined in ` + r.configPath},
		{[]string{"probe", "Bad:Ref:", "--config.file", r.configPath}, 1, "invalid image reference"},
		{[]string{"probe"}, 2, "required argument 'image' not provided"},
	} {
		stdout, stderr, code := runBinary(t, c.args...)
		if code != c.code || !strings.Contains(stdout+stderr, c.want) {
			t.Errorf("%v: exit %d, want %d with %q:\n%s%s", c.args, code, c.code, c.want, stdout, stderr)
		}
		assertNoSecret(t, fmt.Sprint(c.args), stdout+stderr, append(r.secrets(), "not-"+r.alicePW))
	}
}

func TestDemo(t *testing.T) {
	// A config with no targets keeps the test off the internet; the demo
	// target is added to whatever config is loaded.
	cfg := filepath.Join(t.TempDir(), "config.yml")
	writeFile(t, cfg, "targets: []\n")
	e := startExporter(t, "--demo", "--config.file", cfg)
	var v float64
	e.waitFor("the demo target probed", func() bool {
		var ok bool
		v, ok = lookup(e.scrape(), "imagepull_probe_success", `target="demo"`, `repository="demo/hello"`, `reference="v1"`)
		return ok
	})
	if v != 1 {
		t.Errorf("probe_success{demo} = %v, want 1\n%s", v, e.log())
	}
	if _, landing := e.get("/"); !strings.Contains(landing, `<td class="ok">ok</td>`) {
		t.Errorf("the landing page shows no green demo target:\n%s", landing)
	}
	// A reload keeps the demo target.
	if code, body := e.post("/-/reload"); code != 200 {
		t.Fatalf("reload: %d %s", code, body)
	}
	if v, _ := lookup(e.scrape(), "imagepull_exporter_targets", `source="config"`); v != 1 {
		t.Errorf("targets after reload = %v, want the demo target", v)
	}
}

func TestWebConfigBasicAuth(t *testing.T) {
	pw := randomString("web-pw-")
	out, err := exec.Command(testenv.Bin(t, "htpasswd"), "-nbBC", "10", "prom", pw).Output()
	if err != nil {
		t.Fatal(err)
	}
	_, hash, _ := strings.Cut(strings.TrimSpace(string(out)), ":")
	dir := t.TempDir()
	webCfg := filepath.Join(dir, "web.yml")
	writeFile(t, webCfg, fmt.Sprintf("basic_auth_users:\n  prom: %s\n", hash))
	cfg := filepath.Join(dir, "config.yml")
	writeFile(t, cfg, "targets: []\n")

	addr := testenv.FreeAddr(t)
	cmd := exec.Command(exporterBin(t), "--web.listen-address="+addr, "--web.config.file="+webCfg, "--config.file="+cfg)
	logPath := filepath.Join(dir, "exporter.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()

	// A deadline for a hung server, not a performance bound: a bcrypt
	// check under -race on a loaded 2-core machine takes seconds.
	client := &http.Client{Timeout: 30 * time.Second}
	status := func(user, pass string) int {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/metrics", nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	deadline := time.Now().Add(30 * time.Second)
	for status("", "") == 0 {
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logPath)
			t.Fatalf("exporter not listening:\n%s", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := status("", ""); got != 401 {
		t.Errorf("/metrics without credentials: %d, want 401", got)
	}
	if got := status("prom", "wrong"); got != 401 {
		t.Errorf("/metrics with a wrong password: %d, want 401", got)
	}
	if got := status("prom", pw); got != 200 {
		t.Errorf("/metrics with the right password: %d, want 200", got)
	}
}
