package probe

import (
	"time"
)

// Module says how to probe: timeouts, transport security and credentials. It is
// the `modules:` entry of the configuration file; its YAML schema is a contract
// (extend it, never rename a key).
type Module struct {
	// Timeout bounds one whole probe (every request of it). Default 10s.
	Timeout time.Duration `yaml:"timeout"`
	// Interval is how often targets using this module are probed unless the
	// target overrides it. Default 60s.
	Interval time.Duration `yaml:"interval"`
	// AuthCheckInterval is how often a warm prober redoes ping + token exchange
	// so that authentication stays measured. Default 15m.
	AuthCheckInterval time.Duration `yaml:"auth_check_interval"`
	// PlainHTTP probes http:// registries (local, insecure).
	PlainHTTP bool `yaml:"plain_http"`
	// TLS configures certificate verification.
	TLS TLSConfig `yaml:"tls"`
	// Auth holds the module's credentials: static ones, a docker config or
	// a credential provider plugin; all empty means anonymous (or the
	// node's credential providers, when they are configured).
	Auth AuthConfig `yaml:"auth"`
	// Health says whether the registries this module probes have their
	// own health API read (health.go): auto (a product recognised from
	// what the registry sends the probes), a product (harbor, quay,
	// artifactory, nexus), or none. Default auto.
	Health HealthSetting `yaml:"health"`
}

// TLSConfig configures how the registry's certificate is verified.
type TLSConfig struct {
	CAFile             string `yaml:"ca_file"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// AuthConfig holds the credentials of a module. Password and PasswordFile are
// exclusive; DockerConfig is a path to a docker config.json (or a directory
// holding one); with every field empty the module is anonymous, unless the
// DOCKER_CONFIG environment variable names a docker config directory.
type AuthConfig struct {
	Username     string `yaml:"username"`
	Password     Secret `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
	DockerConfig string `yaml:"docker_config"`
	// Registries binds the static credentials (Username with Password or
	// PasswordFile) to the registries they belong to: host globs matched
	// as the kubelet's keyring matches ("*.example.com", "registry:5000").
	// The credentials are never sent to any other registry (binding.go).
	// Empty means the registries of the configured targets using the module.
	Registries []string `yaml:"registries"`
	// TargetRegistries is the binding when Registries is empty: the
	// registries of the configured targets (and mirrors) that use the
	// module, filled by the configuration loader. Not a config key.
	TargetRegistries []string `yaml:"-"`
	// CredentialProvider names a kubelet credential provider plugin of
	// --kube.credential-provider-config whose short-lived credentials the
	// module uses (ECR, Artifact Registry, ACR): the plugin runs for the
	// images its matchImages cover, and its credentials go only there
	// (and, when Registries is set, only to those registries too).
	// Exclusive with Username and DockerConfig.
	CredentialProvider string `yaml:"credential_provider"`
	// Provider is where the module's plugin credentials come from, filled
	// by the configuration loader: the provider CredentialProvider names,
	// or, for a module without credentials of its own, every provider of
	// --kube.credential-provider-config, as the node's kubelet uses them.
	// Nil without that flag. Not a config key.
	Provider CredentialProvider `yaml:"-"`
}

// Secret is a string that never prints: fmt, logs and YAML marshalling show
// "<secret>" instead of the value.
type Secret string

// String implements fmt.Stringer without revealing the value.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "<secret>"
}

// GoString implements fmt.GoStringer without revealing the value.
func (s Secret) GoString() string { return s.String() }

// MarshalYAML keeps the value out of any re-serialised configuration.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// MarshalText keeps the value out of JSON and other text encodings.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Module defaults.
const (
	DefaultTimeout           = 10 * time.Second
	DefaultInterval          = 60 * time.Second
	DefaultAuthCheckInterval = 15 * time.Minute
)

// DefaultModule is the module used when a target names none and the
// configuration defines no "default" module.
var DefaultModule = Module{
	Timeout:           DefaultTimeout,
	Interval:          DefaultInterval,
	AuthCheckInterval: DefaultAuthCheckInterval,
	Health:            HealthAuto,
}

// UnmarshalYAML fills defaults for keys the file leaves out.
func (m *Module) UnmarshalYAML(unmarshal func(any) error) error {
	*m = DefaultModule
	type plain Module
	return unmarshal((*plain)(m))
}
