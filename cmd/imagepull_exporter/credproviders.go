package main

import (
	"fmt"
	"log/slog"
	"sync"

	"github.com/alecthomas/kingpin/v2"

	"github.com/imagepull/imagepull_exporter/collector/config"
	"github.com/imagepull/imagepull_exporter/collector/credprovider"
)

// credProviderFlags are the kubelet credential provider flags: the same
// configuration and plugins a node's kubelet uses
// (--image-credential-provider-config, --image-credential-provider-bin-dir).
// They are read once, at start, as the kubelet reads them.
type credProviderFlags struct {
	configFile string
	binDir     string

	once sync.Once
	p    *credprovider.Providers
	err  error
}

func addCredentialProviderFlags(app *kingpin.Application) *credProviderFlags {
	f := &credProviderFlags{}
	app.Flag("kube.credential-provider-config", "The kubelet's CredentialProviderConfig file (or directory), as on the nodes (--image-credential-provider-config): for an image a provider's matchImages cover, the exporter runs its plugin as the kubelet does and probes with its credentials. Modules without credentials of their own use every provider, as the node does; auth.credential_provider names one.").
		PlaceHolder("FILE").StringVar(&f.configFile)
	app.Flag("kube.credential-provider-bin-dir", "Directory holding the credential provider plugins (the node's --image-credential-provider-bin-dir, mounted read-only, or the exporter image's own).").
		PlaceHolder("DIR").StringVar(&f.binDir)
	return f
}

// providers loads the providers on first use; nil without
// --kube.credential-provider-config. Plugin failures are logged by logger
// (nil: not logged); their texts carry no credentials.
func (f *credProviderFlags) providers(logger *slog.Logger) (*credprovider.Providers, error) {
	f.once.Do(func() {
		if f.configFile == "" {
			if f.binDir != "" {
				f.err = fmt.Errorf("--kube.credential-provider-bin-dir needs --kube.credential-provider-config, the providers' configuration")
			}
			return
		}
		opts := credprovider.Options{ConfigPath: f.configFile, BinDir: f.binDir}
		if logger != nil {
			opts.OnRun = func(name string, err error) {
				if err != nil {
					logger.Warn("credential provider plugin failed", "provider", name, "err", err)
				} else {
					logger.Debug("credential provider plugin ran", "provider", name)
				}
			}
		}
		f.p, f.err = credprovider.Load(opts)
	})
	return f.p, f.err
}

// configOptions are the configuration loader's options from the flags.
func (f *credProviderFlags) configOptions(logger *slog.Logger) (config.Options, error) {
	p, err := f.providers(logger)
	if err != nil || p == nil {
		return config.Options{}, err
	}
	return config.Options{CredentialProviders: p}, nil
}
