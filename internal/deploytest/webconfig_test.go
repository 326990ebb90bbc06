package deploytest_test

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"sigs.k8s.io/yaml"

	dt "github.com/imagepull/imagepull_exporter/internal/deploytest"
	"github.com/imagepull/imagepull_exporter/internal/testenv"
)

// deploy/examples/web-config.yml works with the exporter as built: the real
// binary, started with the example (its certificate, key and password
// swapped for the test's own, every other setting as shipped), serves only
// TLS, answers 401 without credentials or with a wrong password, on every
// endpoint, and 200 with the right one. The shipped hash is a real bcrypt
// hash, so the example applied unchanged lets no one in rather than
// failing open.
func TestWebConfigExample(t *testing.T) {
	bin := exporterBinary(t)
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "deploy", "examples", "web-config.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var web map[string]any
	if err := yaml.Unmarshal(b, &web); err != nil {
		t.Fatal(err)
	}
	users, _ := web["basic_auth_users"].(map[string]any)
	if len(users) != 1 {
		t.Fatalf("basic_auth_users %v: want one user", users)
	}
	for user, hash := range users {
		cost, err := bcrypt.Cost([]byte(hash.(string)))
		if err != nil || cost < 10 {
			t.Errorf("user %s: %q is not a bcrypt hash of cost 10 or more (%v)", user, hash, err)
		}
	}
	tlsCfg := web["tls_server_config"].(map[string]any)
	for _, k := range []string{"cert_file", "key_file"} {
		if p, _ := tlsCfg[k].(string); !strings.HasPrefix(p, "/etc/imagepull_exporter/web/") {
			t.Errorf("tls_server_config.%s %q: want it under /etc/imagepull_exporter/web/, where the manifests mount the Secrets", k, p)
		}
	}

	dir := t.TempDir()
	cert := testenv.NewSelfSignedCert(t, dir, time.Time{})
	pwBytes := make([]byte, 16)
	_, _ = rand.Read(pwBytes)
	pw := hex.EncodeToString(pwBytes)
	hash, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.DefaultCost)
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg["cert_file"], tlsCfg["key_file"] = cert.CertFile, cert.KeyFile
	web["basic_auth_users"] = map[string]any{"prometheus": string(hash)}
	out, err := yaml.Marshal(web)
	if err != nil {
		t.Fatal(err)
	}
	webFile := filepath.Join(dir, "web-config.yml")
	cfgFile := filepath.Join(dir, "config.yml")
	for f, content := range map[string][]byte{webFile: out, cfgFile: []byte("targets: []\n")} {
		if err := os.WriteFile(f, content, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	addr := testenv.FreeAddr(t)
	p := testenv.StartProcess(t, "imagepull_exporter", bin,
		[]string{"--config.file=" + cfgFile, "--web.listen-address=" + addr, "--web.config.file=" + webFile},
		[]string{"KUBECONFIG="}, dir)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: cert.Pool, MinVersion: tls.VersionTLS12}}}
	defer client.CloseIdleConnections()
	p.WaitHTTP("https://"+addr+"/-/healthy", http.StatusUnauthorized, time.Minute, client)

	status := func(url, user, pass string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Errorf("GET %s: %v", url, err)
			return 0
		}
		defer resp.Body.Close()
		if user != "" && pass == pw && resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: the example's security headers are missing: %v", url, resp.Header)
		}
		return resp.StatusCode
	}
	base := "https://" + addr
	for _, path := range []string{"/metrics", "/probe?target=example.com/x:1", "/logs", "/", "/-/ready"} {
		if got := status(base+path, "", ""); got != http.StatusUnauthorized {
			t.Errorf("%s without credentials: %d, want 401", path, got)
		}
		if got := status(base+path, "prometheus", "wrong"); got != http.StatusUnauthorized {
			t.Errorf("%s with a wrong password: %d, want 401", path, got)
		}
	}
	for _, path := range []string{"/metrics", "/-/ready"} {
		if got := status(base+path, "prometheus", pw); got != http.StatusOK {
			t.Errorf("%s with the password: %d, want 200", path, got)
		}
	}
	// Plain HTTP gets no metrics: the listener speaks TLS only.
	if resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/metrics"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP /metrics: 200, want TLS only")
		}
	}
	if p.Exited() {
		t.Fatalf("the exporter exited:\n%s", p.Output())
	}
}

// components/web-config (and the chart's webConfig) hands every workload
// the example's layout: --web.config.file under the mount of the two
// Secrets, the files the example names; and every ServiceMonitor scrapes
// over https with basic auth.
func TestWebConfigComponent(t *testing.T) {
	objs := dt.Kustomize(t, dt.Combine(t, "deploy/components/sharded", "deploy/components/node-probe", "deploy/components/web-config"))
	specs := podSpecs(objs)
	if len(specs) != 2 {
		t.Fatalf("workloads %v, want the StatefulSet and the DaemonSet", specs)
	}
	for key, spec := range specs {
		c := dt.Get(spec, "containers", "0").(map[string]any)
		if !slices.Contains(strs(c["args"]), "--web.config.file=/etc/imagepull_exporter/web/web-config.yml") {
			t.Errorf("%s: args %q lack --web.config.file", key, strs(c["args"]))
		}
		if !slices.ContainsFunc(c["volumeMounts"].([]any), func(m any) bool {
			return dt.Get(m, "name") == "web" && dt.Get(m, "mountPath") == "/etc/imagepull_exporter/web" && dt.Get(m, "readOnly") == true
		}) {
			t.Errorf("%s: no read-only web mount at /etc/imagepull_exporter/web: %v", key, c["volumeMounts"])
		}
		var files []string
		for _, v := range spec["volumes"].([]any) {
			if dt.Get(v, "name") != "web" {
				continue
			}
			for _, src := range dt.Get(v, "projected", "sources").([]any) {
				for _, it := range dt.Get(src, "secret", "items").([]any) {
					files = append(files, dt.Get(it, "path").(string))
				}
			}
		}
		if want := []string{"web-config.yml", "tls.crt", "tls.key"}; !reflect.DeepEqual(files, want) {
			t.Errorf("%s: the web volume holds %q, want %q (what deploy/examples/web-config.yml names)", key, files, want)
		}
	}
	for _, sm := range dt.OfKind(objs, "ServiceMonitor") {
		ep := dt.Get(sm, "spec", "endpoints", "0")
		if dt.Get(ep, "scheme") != "https" || dt.Get(ep, "basicAuth", "password", "key") != "password" || dt.Get(ep, "tlsConfig", "ca", "secret", "key") != "ca.crt" {
			t.Errorf("%s: endpoint %v, want https with the TLS Secret's CA and basic auth", sm.Key(), ep)
		}
	}
}
