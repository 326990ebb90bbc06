package testenv

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// KubeVersion is the release bin/kube-apiserver and bin/kubectl are built
// from (tools/kube/go.mod, scripts/install-deps.sh); it must match
// client-go's minor in go.mod.
const KubeVersion = "v1.34.4"

// StaticToken is a bearer token in kube-apiserver's --token-auth-file. The
// file is read once at start, so static tokens are fixed when the apiserver
// starts; tokens made later come from TokenRequest (ServiceAccountToken).
type StaticToken struct {
	Token  string
	User   string
	Groups []string
}

// KubeOptions configures StartKube. The zero value is a working cluster.
type KubeOptions struct {
	// Tokens are extra static tokens besides the admin's. They carry no
	// permissions until the test binds a role (BindClusterRole with
	// rbacv1.Subject{Kind: "User", Name: tok.User}).
	Tokens []StaticToken
	// ExtraArgs are appended to kube-apiserver's flags (later flags win).
	ExtraArgs []string
}

// Kube is a real kube-apiserver backed by a real etcd, both on loopback in a
// temporary directory, with RBAC on and no kubelets, controllers or
// scheduler: the test plays the kubelet by writing pod status through the
// status subresource and by creating Node objects. Nothing finalizes
// deletions a controller would handle (a deleted namespace stays
// Terminating), so tests use fresh namespaces instead of deleting them.
//
// One start costs about 5 s of a 2-core machine. Tests of a package that
// need no outage share one Kube: start it in a parent test and run the cases
// as subtests, each in its own namespace. A test that calls Stop/Start gets
// its own.
type Kube struct {
	// URL is the apiserver's https://127.0.0.1:PORT (self-signed cert).
	URL string
	// AdminToken authenticates as a member of system:masters.
	AdminToken string
	// Config is an admin rest.Config: bearer token, TLS verification off,
	// no client-side rate limit (test setups create thousands of objects),
	// and a 30 s timeout per request. Copy it and clear Timeout for watches.
	Config *rest.Config
	// Client is an admin clientset built from Config.
	Client kubernetes.Interface
	// Dir holds the tokens, keys, certs, kubeconfigs and both logs.
	Dir string
	// Etcd and APIServer are the two processes; their logs are printed
	// when the test fails.
	Etcd, APIServer *Process

	t      testing.TB
	mu     sync.Mutex
	nfiles int
}

// StartKube starts etcd and kube-apiserver and waits until the apiserver is
// ready (/readyz, which includes RBAC's bootstrap roles) and the default
// namespace exists. Both are stopped by t.Cleanup.
func StartKube(t testing.TB, opts KubeOptions) *Kube {
	t.Helper()
	etcdBin := Bin(t, "etcd")
	apiBin := Bin(t, "kube-apiserver")
	dir := t.TempDir()

	clientAddr, peerAddr := FreeAddr(t), FreeAddr(t)
	etcd := StartProcess(t, "etcd", etcdBin, []string{
		"--name=testenv",
		"--data-dir=" + filepath.Join(dir, "etcd"),
		"--listen-client-urls=http://" + clientAddr,
		"--advertise-client-urls=http://" + clientAddr,
		"--listen-peer-urls=http://" + peerAddr,
		"--initial-advertise-peer-urls=http://" + peerAddr,
		"--initial-cluster=testenv=http://" + peerAddr,
		"--log-level=warn",
	}, nil, dir)
	etcd.WaitHTTP("http://"+clientAddr+"/health", http.StatusOK, 30*time.Second, nil)

	admin := randomHex(16)
	var tokens strings.Builder
	// Format: token,user,uid,"group1,group2".
	fmt.Fprintf(&tokens, "%s,admin,admin,\"system:masters\"\n", admin)
	for i, tok := range opts.Tokens {
		if tok.Token == "" || tok.User == "" || strings.ContainsAny(tok.Token+tok.User, ",\"\n") {
			t.Fatalf("testenv: static token %d needs a token and a user without commas, quotes or newlines", i)
		}
		fmt.Fprintf(&tokens, "%s,%s,%s,\"%s\"\n", tok.Token, tok.User, tok.User, strings.Join(tok.Groups, ","))
	}
	tokensFile := filepath.Join(dir, "tokens.csv")
	writeFile(t, tokensFile, tokens.String(), 0o600)
	saKey := filepath.Join(dir, "sa.key")
	writeFile(t, saKey, rsaKeyPEM(t), 0o600)

	port := FreePort(t)
	args := []string{
		"--etcd-servers=http://" + clientAddr,
		"--cert-dir=" + filepath.Join(dir, "certs"),
		fmt.Sprintf("--secure-port=%d", port),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + saKey,
		"--service-account-signing-key-file=" + saKey,
		"--token-auth-file=" + tokensFile,
		"--authorization-mode=RBAC",
		"--service-cluster-ip-range=10.0.0.0/24",
		// No controller-manager creates default ServiceAccounts, which
		// this plugin would require for every pod.
		"--disable-admission-plugins=ServiceAccount",
		// Nothing serves the kubernetes Service's endpoints: skip the
		// lease writes every few seconds.
		"--endpoint-reconciler-type=none",
		"--profiling=false",
	}
	args = append(args, opts.ExtraArgs...)
	api := StartProcess(t, "kube-apiserver", apiBin, args, nil, dir)

	url := fmt.Sprintf("https://127.0.0.1:%d", port)
	cfg := &rest.Config{
		Host:            url,
		BearerToken:     admin,
		TLSClientConfig: rest.TLSClientConfig{Insecure: true},
		QPS:             -1, // no client-side throttling
		Timeout:         30 * time.Second,
		UserAgent:       "testenv",
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("testenv: kube client: %v", err)
	}
	k := &Kube{URL: url, AdminToken: admin, Config: cfg, Client: client, Dir: dir,
		Etcd: etcd, APIServer: api, t: t}
	k.waitReady()
	return k
}

// Stop stops kube-apiserver (etcd keeps the data), to simulate the API
// going away. Clients see connection refused until Start.
func (k *Kube) Stop() { k.APIServer.Stop() }

// Start starts kube-apiserver again on the same port with the same etcd,
// and waits until it is ready.
func (k *Kube) Start() {
	k.t.Helper()
	k.APIServer.Start()
	k.waitReady()
}

func (k *Kube) waitReady() {
	k.t.Helper()
	insecure := &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
	}
	defer insecure.CloseIdleConnections()
	// Cold start on a loaded 2-core machine can take far longer than the
	// usual 5 s; this is a wait, not a performance assertion.
	k.APIServer.WaitHTTP(k.URL+"/readyz", http.StatusOK, 2*time.Minute, insecure)
	// The apiserver creates the system namespaces just after it turns
	// ready; tests create objects in "default" right away.
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := k.Client.CoreV1().Namespaces().Get(ctx, metav1.NamespaceDefault, metav1.GetOptions{})
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			k.t.Fatalf("testenv: namespace default never appeared: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ConfigFor returns a rest.Config like Config that authenticates with token.
func (k *Kube) ConfigFor(token string) *rest.Config {
	cfg := rest.CopyConfig(k.Config)
	cfg.BearerToken = token
	return cfg
}

// ClientFor returns a clientset that authenticates with token.
func (k *Kube) ClientFor(t testing.TB, token string) kubernetes.Interface {
	t.Helper()
	c, err := kubernetes.NewForConfig(k.ConfigFor(token))
	if err != nil {
		t.Fatalf("testenv: kube client: %v", err)
	}
	return c
}

// WriteKubeconfig writes a kubeconfig for the apiserver that authenticates
// with token (TLS verification off) and returns its path.
func (k *Kube) WriteKubeconfig(token string) string {
	k.t.Helper()
	k.mu.Lock()
	k.nfiles++
	path := filepath.Join(k.Dir, fmt.Sprintf("kubeconfig-%d.yaml", k.nfiles))
	k.mu.Unlock()
	// %q gives a double-quoted YAML scalar: tokens and URLs never need
	// more escaping than Go's.
	writeFile(k.t, path, fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: testenv
  cluster:
    server: %q
    insecure-skip-tls-verify: true
users:
- name: testenv
  user:
    token: %q
contexts:
- name: testenv
  context:
    cluster: testenv
    user: testenv
    namespace: default
current-context: testenv
`, k.URL, token), 0o600)
	return path
}

// EnsureNamespace creates namespace ns unless it exists.
func (k *Kube) EnsureNamespace(t testing.TB, ns string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := k.Client.CoreV1().Namespaces().Create(ctx,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("testenv: create namespace %s: %v", ns, err)
	}
}

// ServiceAccountToken creates the ServiceAccount namespace/name (and its
// namespace) unless they exist, and returns a one-hour token for it from the
// TokenRequest API, the way a projected token volume gets one.
func (k *Kube) ServiceAccountToken(t testing.TB, namespace, name string) string {
	t.Helper()
	k.EnsureNamespace(t, namespace)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sas := k.Client.CoreV1().ServiceAccounts(namespace)
	_, err := sas.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("testenv: create serviceaccount %s/%s: %v", namespace, name, err)
	}
	ttl := int64(3600)
	tr, err := sas.CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &ttl},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("testenv: token request for %s/%s: %v", namespace, name, err)
	}
	return tr.Status.Token
}

// BindClusterRole binds clusterRole to subject with a ClusterRoleBinding
// (named after both) and returns the binding's name. RBAC takes effect for
// the next request: the authorizer reads bindings from the apiserver's cache,
// which a write updates before the call returns.
func (k *Kube) BindClusterRole(t testing.TB, clusterRole string, subject rbacv1.Subject) string {
	t.Helper()
	name := dns1123("testenv-" + clusterRole + "-" + subject.Kind + "-" + subject.Namespace + "-" + subject.Name)
	if subject.Kind == rbacv1.UserKind || subject.Kind == rbacv1.GroupKind {
		subject.APIGroup = rbacv1.GroupName
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := k.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: clusterRole},
		Subjects:   []rbacv1.Subject{subject},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("testenv: bind clusterrole %s to %s %s: %v", clusterRole, subject.Kind, subject.Name, err)
	}
	k.waitBound(ctx, t, clusterRole, subject)
	return name
}

// waitBound waits until the apiserver authorizes subject for the first rule
// of clusterRole. RBAC authorizes from an informer cache, so a new binding
// takes effect a moment after it is created; without the wait the caller's
// next request can be forbidden (seen as a rare flake).
func (k *Kube) waitBound(ctx context.Context, t testing.TB, clusterRole string, subject rbacv1.Subject) {
	t.Helper()
	role, err := k.Client.RbacV1().ClusterRoles().Get(ctx, clusterRole, metav1.GetOptions{})
	if err != nil || len(role.Rules) == 0 || len(role.Rules[0].Verbs) == 0 {
		return // nothing to check against (the role may come later)
	}
	rule := role.Rules[0]
	first := func(l []string) string {
		if len(l) == 0 {
			return ""
		}
		return l[0]
	}
	verb := first(rule.Verbs)
	if verb == rbacv1.VerbAll {
		verb = "get"
	}
	spec := authorizationv1.SubjectAccessReviewSpec{}
	if len(rule.NonResourceURLs) > 0 {
		spec.NonResourceAttributes = &authorizationv1.NonResourceAttributes{Path: first(rule.NonResourceURLs), Verb: verb}
	} else {
		spec.ResourceAttributes = &authorizationv1.ResourceAttributes{Verb: verb,
			Group: first(rule.APIGroups), Resource: first(rule.Resources), Name: first(rule.ResourceNames)}
	}
	switch subject.Kind {
	case rbacv1.ServiceAccountKind:
		spec.User = "system:serviceaccount:" + subject.Namespace + ":" + subject.Name
		spec.Groups = []string{"system:serviceaccounts", "system:serviceaccounts:" + subject.Namespace}
	case rbacv1.GroupKind:
		spec.User, spec.Groups = "testenv-member", []string{subject.Name}
	default:
		spec.User = subject.Name
	}
	var last string
	for ctx.Err() == nil {
		sar, err := k.Client.AuthorizationV1().SubjectAccessReviews().Create(ctx,
			&authorizationv1.SubjectAccessReview{Spec: spec}, metav1.CreateOptions{})
		if err == nil && sar.Status.Allowed {
			return
		}
		last = fmt.Sprint(err)
		if err == nil {
			last = "denied: " + sar.Status.Reason
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("testenv: binding of clusterrole %s to %s %s never took effect: %s", clusterRole, subject.Kind, subject.Name, last)
}

// ClusterRoleToken returns a TokenRequest token for a ServiceAccount in
// namespace "testenv" bound only to clusterRole (which the test creates,
// e.g. from deploy/): the way to prove a role is enough, and not more.
func (k *Kube) ClusterRoleToken(t testing.TB, clusterRole string) string {
	t.Helper()
	const ns = "testenv"
	sa := dns1123("sa-" + clusterRole)
	token := k.ServiceAccountToken(t, ns, sa)
	k.BindClusterRole(t, clusterRole, rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: sa})
	return token
}

// Kubectl runs kubectl against the apiserver as the holder of token (the
// admin when token is empty), with stdin when it is not nil, and returns
// its combined output. It fails the test only when kubectl cannot run or
// does not finish within two minutes; the caller judges the exit status.
func (k *Kube) Kubectl(t testing.TB, token string, stdin io.Reader, args ...string) (string, error) {
	t.Helper()
	if token == "" {
		token = k.AdminToken
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, Bin(t, "kubectl"), append([]string{"--kubeconfig", k.WriteKubeconfig(token)}, args...)...)
	cmd.Stdin = stdin
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("testenv: kubectl %s did not finish: %v\n%s", strings.Join(args, " "), ctx.Err(), out)
	}
	if err != nil {
		var exit *exec.ExitError
		if !errors.As(err, &exit) {
			t.Fatalf("testenv: kubectl %s: %v", strings.Join(args, " "), err)
		}
		return string(out), fmt.Errorf("kubectl %s: %w", strings.Join(args, " "), err)
	}
	return string(out), nil
}

var notDNS = regexp.MustCompile(`[^a-z0-9-]+`)

// dns1123 turns s into a valid object name (lowercase, [a-z0-9-], at most
// 63 characters, keeping a hash suffix when it shortens so names stay
// distinct).
func dns1123(s string) string {
	n := strings.Trim(notDNS.ReplaceAllString(strings.ToLower(s), "-"), "-")
	if len(n) > 63 || n != s {
		sum := fnv32(s)
		if len(n) > 54 {
			n = strings.TrimRight(n[:54], "-")
		}
		n = fmt.Sprintf("%s-%08x", n, sum)
	}
	return n
}

func fnv32(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

// rsaKeyPEM returns a fresh 2048-bit RSA key, PKCS#1 PEM: kube-apiserver
// signs ServiceAccount tokens with it and verifies them with its public half.
func rsaKeyPEM(t testing.TB) string {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("testenv: generate service account key: %v", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
}

func writeFile(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatalf("testenv: write %s: %v", path, err)
	}
}

// PrometheusOperatorCRDs returns the prometheus-operator CRD manifests
// (ServiceMonitor, PrometheusRule, ...) that make deps copies into
// bin/crds/prometheus-operator from the Go module, for InstallCRDs.
func PrometheusOperatorCRDs(t testing.TB) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(RepoRoot(t), "bin", "crds", "prometheus-operator", "*.yaml"))
	if len(files) == 0 {
		t.Fatal("testenv: prometheus-operator CRDs not found in bin/crds/prometheus-operator; run `make deps` (scripts/install-deps.sh) to install them")
	}
	return files
}

// InstallCRDs applies CRD manifests (server-side: the largest exceed the
// client-side apply annotation limit) and waits until every CRD in the
// cluster is established, so objects of the new kinds can be created.
func (k *Kube) InstallCRDs(t testing.TB, files ...string) {
	t.Helper()
	args := []string{"apply", "--server-side"}
	for _, f := range files {
		args = append(args, "-f", f)
	}
	if out, err := k.Kubectl(t, "", nil, args...); err != nil {
		t.Fatalf("testenv: install CRDs: %v\n%s", err, out)
	}
	if out, err := k.Kubectl(t, "", nil, "wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"); err != nil {
		t.Fatalf("testenv: CRDs not established: %v\n%s", err, out)
	}
}

// KubeLeakOptions are the goleak options of a test binary that talks to the
// apiserver: client-go caches TLS transports process-wide, so their idle
// keep-alive connections outlive any one client, and klog's flush daemon
// starts with the package. None of them belongs to a test.
func KubeLeakOptions() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
	}
}
