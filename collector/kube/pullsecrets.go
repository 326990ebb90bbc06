package kube

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/imagepull/imagepull_exporter/collector/config"
	"github.com/imagepull/imagepull_exporter/probe"
)

// Pull secrets are read one by one with GET, by name, and only those a pod,
// workload or service account references: the exporter never lists or
// watches secrets, so its role needs `get` on secrets and nothing more
// (deploy/overlays/pull-secrets). Each is parsed on arrival into a
// probe.DockerConfig; the raw secret is dropped, and nothing of it leaves
// the process: logs and errors name a secret by namespace/name only.

// Secret states, for diagnose and logs.
const (
	SecretOK        = "ok"
	SecretNotFound  = "not_found"  // the kubelet skips it (and logs a warning)
	SecretForbidden = "forbidden"  // the exporter may not read it (pull-secrets role missing?)
	SecretWrongType = "wrong_type" // not kubernetes.io/dockerconfigjson or dockercfg with its key: the kubelet ignores it
	SecretInvalid   = "invalid"    // the right type but unparsable: the kubelet fails every pull of the pod
	SecretError     = "error"      // the GET failed otherwise; retried at the next refresh
)

// DefaultSecretTTL is how long a fetched pull secret is used before it is
// read again: rotation shows up within this time.
const DefaultSecretTTL = 2 * time.Minute

// secretFetchTimeout bounds one GET of a secret.
const secretFetchTimeout = 10 * time.Second

// secretFetchConcurrency bounds the GETs in flight.
const secretFetchConcurrency = 4

type nsName struct{ namespace, name string }

func (n nsName) String() string { return n.namespace + "/" + n.name }

// secretEntry is one fetched pull secret, parsed.
type secretEntry struct {
	fetched time.Time
	state   string
	cfg     probe.DockerConfig // nil unless state is SecretOK
	errText string             // credential-free reason for a non-ok state
	version string             // hash of the parsed content: changes when the secret is rotated
}

// secretCache holds the referenced pull secrets.
type secretCache struct {
	client kubernetes.Interface
	ttl    time.Duration
	now    func() time.Time

	mu      sync.RWMutex
	entries map[nsName]*secretEntry
}

func newSecretCache(client kubernetes.Interface, ttl time.Duration, now func() time.Time) *secretCache {
	if ttl <= 0 {
		ttl = DefaultSecretTTL
	}
	return &secretCache{client: client, ttl: ttl, now: now, entries: map[nsName]*secretEntry{}}
}

func (c *secretCache) get(k nsName) *secretEntry {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.entries[k]
}

// refresh fetches the wanted secrets that are missing or older than the
// TTL, and forgets the ones no longer wanted.
func (c *secretCache) refresh(ctx context.Context, wanted map[nsName]bool) {
	now := c.now()
	c.mu.Lock()
	for k := range c.entries {
		if !wanted[k] {
			delete(c.entries, k)
		}
	}
	var stale []nsName
	for k := range wanted {
		if e, ok := c.entries[k]; !ok || now.Sub(e.fetched) >= c.ttl {
			stale = append(stale, k)
		}
	}
	c.mu.Unlock()
	sort.Slice(stale, func(i, j int) bool { return stale[i].String() < stale[j].String() })

	sem := make(chan struct{}, secretFetchConcurrency)
	var wg sync.WaitGroup
	for _, k := range stale {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return
		}
		wg.Go(func() {
			defer func() { <-sem }()
			e := c.fetch(ctx, k)
			if ctx.Err() != nil {
				return
			}
			c.mu.Lock()
			c.entries[k] = e
			c.mu.Unlock()
		})
	}
	wg.Wait()
}

func (c *secretCache) fetch(ctx context.Context, k nsName) *secretEntry {
	ctx, cancel := context.WithTimeout(ctx, secretFetchTimeout)
	defer cancel()
	s, err := c.client.CoreV1().Secrets(k.namespace).Get(ctx, k.name, metav1.GetOptions{})
	e := &secretEntry{fetched: c.now()}
	switch {
	case apierrors.IsNotFound(err):
		e.state, e.errText = SecretNotFound, "secret "+k.String()+" does not exist"
	case apierrors.IsForbidden(err):
		e.state, e.errText = SecretForbidden, "the exporter may not read secret "+k.String()+" (is the pull-secrets role bound?)"
	case err != nil:
		// API errors describe the request, never the secret's data.
		e.state, e.errText = SecretError, fmt.Sprintf("get secret %s: %v", k, err)
	default:
		e.state, e.cfg, e.errText = parseSecret(s)
		e.version = configVersion(e.cfg)
	}
	return e
}

// parseSecret applies the kubelet's rule (credentialprovider/secrets): a
// kubernetes.io/dockerconfigjson secret with a non-empty .dockerconfigjson,
// or a kubernetes.io/dockercfg secret with a non-empty .dockercfg; any other
// secret is ignored. A secret of the right type that does not parse makes
// the kubelet fail the pull.
func parseSecret(s *corev1.Secret) (state string, cfg probe.DockerConfig, errText string) {
	name := s.Namespace + "/" + s.Name
	var err error
	switch {
	case s.Type == corev1.SecretTypeDockerConfigJson && len(s.Data[corev1.DockerConfigJsonKey]) > 0:
		cfg, err = probe.ParseDockerConfigJSON(s.Data[corev1.DockerConfigJsonKey])
	case s.Type == corev1.SecretTypeDockercfg && len(s.Data[corev1.DockerConfigKey]) > 0:
		cfg, err = probe.ParseDockercfg(s.Data[corev1.DockerConfigKey])
	default:
		return SecretWrongType, nil, fmt.Sprintf("secret %s is of type %q without a non-empty %s (or %q with %s): the kubelet ignores it",
			name, s.Type, corev1.DockerConfigJsonKey, corev1.SecretTypeDockercfg, corev1.DockerConfigKey)
	}
	if err != nil {
		return SecretInvalid, nil, fmt.Sprintf("secret %s: %v: the kubelet fails every pull of pods using it", name, err)
	}
	return SecretOK, cfg, ""
}

// configVersion is a hash of a parsed docker config, to notice rotation
// without keeping the old content.
func configVersion(cfg probe.DockerConfig) string {
	keys := make([]string, 0, len(cfg))
	for k := range cfg {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%s\x00%s\x00%s\x00", k, cfg[k].Username, string(cfg[k].Password))
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// pullSecretKeychain is the probe.Keychain of one pod (or workload): the
// credentials the kubelet would try for an image, in its order — every
// matching entry of the pod's pull secrets (one keyring across all of them,
// as the kubelet builds it), then the node's own credentials, for which the
// module's credentials stand in (config.json or a credential provider on a
// node; the exporter's module for that registry here).
type pullSecretKeychain struct {
	cache      *secretCache
	namespace  string
	secrets    []string // in the pod's order
	moduleName string
	config     func() *config.Config // nil: no module credentials
}

// Resolve implements probe.Keychain.
func (k *pullSecretKeychain) Resolve(ref probe.Reference) ([]probe.Credential, error) {
	return k.ResolveContext(context.Background(), ref)
}

// ResolveContext implements probe.ContextKeychain: the module's
// credentials may come from a credential provider plugin, whose run the
// probe's timeout bounds.
func (k *pullSecretKeychain) ResolveContext(ctx context.Context, ref probe.Reference) ([]probe.Credential, error) {
	kr, err := k.keyring()
	if err != nil {
		return nil, err
	}
	creds, _ := kr.Resolve(ref)
	if k.config == nil {
		return creds, nil
	}
	return withModuleCredentials(ctx, creds, moduleOf(k.config(), k.moduleName), k.moduleName, ref)
}

// withModuleCredentials appends to creds the module's credentials for ref,
// which stand in for the node's own (its config.json or credential
// providers: with --kube.credential-provider-config, a module without
// credentials of its own resolves the node's plugins): the kubelet tries
// those after the pod's pull secrets. One the secrets already hold is not
// tried twice. A plugin's failure stays a *probe.SetupError (reason
// config).
func withModuleCredentials(ctx context.Context, creds []probe.Credential, mod probe.Module, moduleName string, ref probe.Reference) ([]probe.Credential, error) {
	mk, err := probe.ModuleKeychain(mod)
	if err != nil {
		return nil, fmt.Errorf("module %q credentials: %w", moduleName, err)
	}
	more, err := probe.ResolveKeychain(ctx, mk, ref)
	if err != nil {
		var se *probe.SetupError
		if errors.As(err, &se) {
			return nil, err
		}
		return nil, fmt.Errorf("module %q credentials: %w", moduleName, err)
	}
	for _, m := range more {
		if !slices.ContainsFunc(creds, func(c probe.Credential) bool {
			return c.Username == m.Username && c.Password == m.Password && c.IdentityToken == m.IdentityToken
		}) {
			creds = append(creds, m)
		}
	}
	return creds, nil
}

// keyring builds the kubelet's keyring over the pod's readable secrets.
// Missing secrets are skipped as the kubelet skips them; an unparsable one
// fails the resolution, as it fails the kubelet's pull.
func (k *pullSecretKeychain) keyring() (*probe.DockerKeyring, error) {
	kr := &probe.DockerKeyring{}
	for _, name := range k.secrets {
		e := k.cache.get(nsName{k.namespace, name})
		if e == nil {
			continue
		}
		if e.state == SecretInvalid {
			return nil, fmt.Errorf("%s", e.errText)
		}
		if e.cfg != nil {
			kr.Add("secret "+k.namespace+"/"+name, e.cfg)
		}
	}
	return kr, nil
}

// effectivePullSecrets returns the pull secrets the kubelet uses for a pod
// (or a workload's future pods): the pod's own imagePullSecrets, or, when
// it names none, its service account's. That is what the ServiceAccount
// admission plugin writes into a pod at creation (it copies the service
// account's secrets only into pods that name none); the kubelet then reads
// only the pod's list. Taking the service account's for a pod without any
// covers templates (no pod yet), clusters without that admission plugin,
// and service accounts that gained a secret after the pod was created,
// which the pod's replacement will get.
func (c *Cluster) effectivePullSecrets(namespace, serviceAccount string, own []string) []string {
	if len(own) > 0 || c.serviceAccounts == nil {
		return own
	}
	if serviceAccount == "" {
		serviceAccount = "default"
	}
	if sa, ok := c.serviceAccounts.get(namespace, serviceAccount).(*serviceAccountInfo); ok {
		return sa.PullSecrets
	}
	return nil
}

func secretsLabel(namespace string, names []string) string {
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = namespace + "/" + n
	}
	return strings.Join(parts, ",")
}
