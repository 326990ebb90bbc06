package main

import (
	"fmt"
	"log/slog"
	"sync"

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

// addFlags declares the two flags on every command that resolves
// credentials (serve, probe, diagnose), all bound to f: only one command
// is parsed.
func (f *credProviderFlags) addFlags(cmds ...flagAdder) {
	for _, c := range cmds {
		c.Flag("kube.credential-provider-config", "The nodes' kubelet CredentialProviderConfig (file or directory): images its providers' matchImages cover are probed with their plugins' credentials, as the kubelet pulls them.").
			PlaceHolder("FILE").StringVar(&f.configFile)
		c.Flag("kube.credential-provider-bin-dir", "Directory of the credential provider plugins (the nodes' --image-credential-provider-bin-dir).").
			PlaceHolder("DIR").StringVar(&f.binDir)
	}
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
