package kube

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// RESTConfig finds the cluster to watch, in the order the flags document:
// the kubeconfig file named by --kubeconfig, else the in-cluster service
// account, else the KUBECONFIG environment variable (a list of files, as
// kubectl reads it). ok is false, with no error, when none applies: the
// exporter then runs as a pure prober.
func RESTConfig(kubeconfig string) (cfg *rest.Config, ok bool, err error) {
	if kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, false, fmt.Errorf("load --kubeconfig %s: %w", kubeconfig, err)
		}
		return cfg, true, nil
	}
	cfg, err = rest.InClusterConfig()
	if err == nil {
		return cfg, true, nil
	}
	if !errors.Is(err, rest.ErrNotInCluster) {
		// In a pod, but the service account token or CA is unreadable:
		// that is a misconfiguration to report, not a reason to go quiet.
		return nil, false, fmt.Errorf("in-cluster Kubernetes configuration: %w", err)
	}
	if os.Getenv(clientcmd.RecommendedConfigPathEnvVar) == "" {
		return nil, false, nil
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules() // reads $KUBECONFIG
	cfg, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, false, fmt.Errorf("load $KUBECONFIG: %w", err)
	}
	return cfg, true, nil
}

// LogJoinOff says, once at start, that no cluster was found and why the
// Kubernetes metrics are absent.
func LogJoinOff(logger *slog.Logger) {
	logger.Info("no Kubernetes configuration (no --kubeconfig, not running in a pod, no $KUBECONFIG): the Kubernetes join is off, running as a pure prober")
}
