package kube

import (
	"fmt"
	"os"

	clientfeatures "k8s.io/client-go/features"
)

// watchListEnv is the environment variable client-go reads its
// WatchListClient gate from (k8s.io/client-go/features/envvar.go: the
// prefix KUBE_FEATURE_ and the gate's name).
const watchListEnv = "KUBE_FEATURE_" + string(clientfeatures.WatchListClient)

// EnableStreamingLists turns on client-go's WatchListClient gate (beta, off
// by default in client-go 0.34) for the whole process, unless
// KUBE_FEATURE_WatchListClient says otherwise. Every informer created
// afterwards fills its cache from a streaming list (KEP-3157): a watch with
// sendInitialEvents=true that delivers the objects one event at a time,
// each shrunk by the informer's transform as it arrives, instead of one
// LIST response holding every pod. An apiserver without the WatchList
// feature (off, or older than 1.27) refuses the request as invalid and
// the reflector falls back to a paginated LIST by itself (reflector.go,
// ListAndWatchWithContext). Call it before any informer is created.
func EnableStreamingLists() error {
	if _, set := os.LookupEnv(watchListEnv); set {
		return nil // the operator's choice, which client-go applies
	}
	gates, ok := clientfeatures.FeatureGates().(interface {
		Set(clientfeatures.Feature, bool) error
	})
	if !ok {
		return fmt.Errorf("client-go feature gates %T cannot be set", clientfeatures.FeatureGates())
	}
	return gates.Set(clientfeatures.WatchListClient, true)
}
