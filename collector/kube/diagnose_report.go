package kube

import (
	"strings"

	"github.com/imagepull/imagepull_exporter/probe"
)

// DiagnoseReportSchema is the version of DiagnoseReport's shape, its
// "schema" field. Fields are only ever added within a version; a field that
// changes meaning or goes away bumps it.
const DiagnoseReportSchema = 1

// DiagnoseReport is a diagnosis for scripts: what `imagepull_exporter
// diagnose pod|image -o json` prints, filled by a Diagnoser alongside its
// text (Diagnoser.Report). The README documents every field. It holds no
// credential: users and where their credentials come from, never a
// password or token.
type DiagnoseReport struct {
	Schema int `json:"schema"`
	// Pullable is true when every image can be pulled.
	Pullable bool `json:"pullable"`
	// Pod is the pod diagnosed (diagnose pod); null for diagnose image.
	Pod *PodReport `json:"pod"`
	// Namespace and ServiceAccount whose pull secrets were used; empty
	// when none were (diagnose image without --namespace).
	Namespace      string `json:"namespace"`
	ServiceAccount string `json:"service_account"`
	// PullSecrets says in words where the pull secrets come from.
	PullSecrets string `json:"pull_secrets"`
	// Secrets is each pull secret as read: its state (ok, not_found,
	// forbidden, wrong_type, invalid, error) and the registries it has
	// entries for.
	Secrets []SecretReport `json:"secrets"`
	// Images is one entry per container (diagnose pod; a repeated image
	// repeats its diagnosis) or the one image (diagnose image).
	Images []ImageReport `json:"images"`
}

// PodReport names the pod diagnosed.
type PodReport struct {
	Namespace      string `json:"namespace"`
	Name           string `json:"name"`
	Node           string `json:"node"`
	ServiceAccount string `json:"service_account"`
}

// SecretReport is one pull secret.
type SecretReport struct {
	Name       string   `json:"name"`
	State      string   `json:"state"`
	Registries []string `json:"registries"`
	// Detail says why a secret is not usable ("" when ok).
	Detail string `json:"detail"`
}

// CredentialReport is one credential tried, in the kubelet's order.
type CredentialReport struct {
	Username string `json:"username"`
	Source   string `json:"source"`
}

// KubeletReport is what the kubelet reports of a container (diagnose pod).
type KubeletReport struct {
	// State is waiting, running, terminated, or "" when the status holds
	// no state.
	State   string `json:"state"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
	ImageID string `json:"image_id"`
}

// ImageReport is the diagnosis of one image.
type ImageReport struct {
	// Container is the container's name (diagnose pod), else "".
	Container string `json:"container"`
	// Image is the reference as written; Reference the normalised one
	// ("" when it does not parse).
	Image     string `json:"image"`
	Reference string `json:"reference"`
	// Module probed with, and Scheme (http or https) it speaks.
	Module      string             `json:"module"`
	Scheme      string             `json:"scheme"`
	Credentials []CredentialReport `json:"credentials"`
	Pullable    bool               `json:"pullable"`
	// Reason is the probe's failure reason; "" when pullable, or when no
	// probe could be sent (an invalid reference or pull secret: Verdict
	// says which).
	Reason string `json:"reason"`
	// Verdict is the sentence of the text output: what was found and,
	// when the image cannot be pulled, what to do.
	Verdict string `json:"verdict"`
	// Error is the probe's error text, redacted.
	Error     string `json:"error"`
	Digest    string `json:"digest"`
	MediaType string `json:"media_type"`
	// Kubelet is the container's status (diagnose pod); null for diagnose
	// image and for a container the pod has no status of yet.
	Kubelet *KubeletReport `json:"kubelet"`
	// NodeCause is the pull error the node reported, classified into the
	// probe's reasons ("" when none); Comparison says whether it agrees
	// with the exporter's probe.
	NodeCause  string `json:"node_cause"`
	Comparison string `json:"comparison"`
}

// NewDiagnoseReport returns the empty report a Diagnoser fills
// (Diagnoser.Report), its lists [] rather than null in JSON.
func NewDiagnoseReport() *DiagnoseReport {
	return &DiagnoseReport{Schema: DiagnoseReportSchema, Secrets: []SecretReport{}, Images: []ImageReport{}}
}

func credentialReports(cs []probe.Credential) []CredentialReport {
	out := make([]CredentialReport, 0, len(cs))
	for _, c := range cs {
		out = append(out, CredentialReport{Username: c.Username, Source: c.Source})
	}
	return out
}

func schemeOf(m probe.Module) string {
	if m.PlainHTTP {
		return "http"
	}
	return "https"
}

// secret records one pull secret's state; a nil report records nothing.
func (r *DiagnoseReport) secret(name, state string, registries []string, detail string) {
	if r == nil {
		return
	}
	if registries == nil {
		registries = []string{}
	}
	r.Secrets = append(r.Secrets, SecretReport{Name: name, State: state, Registries: registries, Detail: strings.TrimSpace(detail)})
}
