package kube

import "github.com/imagepull/imagepull_exporter/collector"

// PullErrorCause classifies the error a container runtime reported for a
// failed image pull, as the kubelet writes it into a waiting container's
// message (ErrImagePull; ImagePullBackOff since Kubernetes 1.32) or into a
// pod's Failed event. ok is false when the text holds no error (the bare
// "Back-off pulling image" message of older kubelets): then there is no
// cause, and none is guessed. Otherwise cause is a probe reason
// (probe.Reason as a string: dns, connect, tls, timeout, unauthorized,
// forbidden, not_found, rate_limited, server_error, protocol) or
// collector.CauseUnknown for an error it cannot place.
//
// PLACEHOLDER: the table-driven classifier replaces this body (issue 10).
func PullErrorCause(message string) (cause string, ok bool) {
	if message == "" {
		return "", false
	}
	return collector.CauseUnknown, true
}
