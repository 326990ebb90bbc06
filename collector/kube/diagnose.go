package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"

	"github.com/imagepull/imagepull_exporter/collector"
	"github.com/imagepull/imagepull_exporter/collector/config"
	"github.com/imagepull/imagepull_exporter/collector/credprovider"
	"github.com/imagepull/imagepull_exporter/probe"
)

// Diagnose explains, in plain words, whether and why an image can or cannot
// be pulled, with the credentials the kubelet would use: the pod's pull
// secrets (or its service account's), the kubelet's matching rules, then the
// module's credentials standing in for the node's. It probes the way the
// exporter does (ping, token, manifest HEAD: never a manifest GET, which
// would spend a Docker Hub pull) and, when a tag is missing, lists the
// repository's tags (probe.Prober.ListTags: GET /v2/<repo>/tags/list on the
// probe's transport and authentication) to suggest the closest.
//
// Kubernetes objects are read with list + a field selector on the name
// rather than get, so the exporter's own role (list/watch) is enough to run
// diagnose from inside its pod; pull secrets are read with get, which only
// the pull-secrets role grants.
type Diagnoser struct {
	// Client reads pods, service accounts and pull secrets; nil diagnoses
	// images without Kubernetes credentials.
	Client kubernetes.Interface
	// Config chooses the module per registry (discovery.modules) and holds
	// the modules.
	Config *config.Config
	// Prober probes and lists tags; its UserAgent is what registries see.
	Prober *probe.Prober
	// Sender sends every probe and tag listing, and counts their
	// requests (Sender.Total); nil means a Sender of its own without a
	// budget, created on first use.
	Sender *collector.Sender
	// Out receives the explanation.
	Out io.Writer
	// Module, when set, is the module to probe with instead of the one
	// discovery.modules maps the registry to (diagnose image --module).
	Module string
	// Report, when set, receives the diagnosis for scripts alongside the
	// text (diagnose -o json): NewDiagnoseReport.
	Report *DiagnoseReport
	// CredentialProviders are the node's kubelet credential provider
	// plugins (--kube.credential-provider-config); nil without them.
	// Diagnose runs them as the node would and says what each did.
	CredentialProviders *credprovider.Providers
}

// DiagnosePod explains every image of pod namespace/name. It returns true
// when every image can be pulled.
func (d *Diagnoser) DiagnosePod(ctx context.Context, namespace, name string) (bool, error) {
	if d.Client == nil {
		return false, errors.New("diagnose pod needs a Kubernetes cluster: give --kubeconfig, run in a pod, or set KUBECONFIG")
	}
	pods, err := d.Client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String()})
	if err != nil {
		return false, fmt.Errorf("read pod %s/%s: %w", namespace, name, err)
	}
	if len(pods.Items) == 0 {
		return false, fmt.Errorf("pod %s/%s does not exist", namespace, name)
	}
	pod := &pods.Items[0]
	secrets, how := d.podSecrets(ctx, pod.Namespace, pod.Spec.ServiceAccountName, secretNames(pod.Spec.ImagePullSecrets))
	fmt.Fprintf(d.Out, "pod %s/%s on node %s, service account %s\n", pod.Namespace, pod.Name, orNone(pod.Spec.NodeName), orDefault(pod.Spec.ServiceAccountName))
	fmt.Fprintf(d.Out, "pull secrets: %s\n", how)
	if r := d.Report; r != nil {
		r.Pod = &PodReport{Namespace: pod.Namespace, Name: pod.Name, Node: pod.Spec.NodeName, ServiceAccount: orDefault(pod.Spec.ServiceAccountName)}
		r.Namespace, r.ServiceAccount, r.PullSecrets = pod.Namespace, orDefault(pod.Spec.ServiceAccountName), how
	}
	kr := d.describeSecrets(ctx, pod.Namespace, secrets)

	statuses := map[string]corev1.ContainerStatus{}
	for _, s := range slices.Concat(pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses) {
		statuses[s.Name] = s
	}
	var events []corev1.Event // the pod's Failed events, read once when needed
	eventsRead := false
	ok := true
	type verdict struct {
		pullable bool
		reason   probe.Reason // the probe's, when it ran and failed
		report   ImageReport
	}
	done := map[string]verdict{}
	for _, c := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
		fmt.Fprintf(d.Out, "\ncontainer %s: %s (pull policy %s)\n", c.Name, c.Image, orNone(string(c.ImagePullPolicy)))
		nodeCause := ""
		var kubelet *KubeletReport
		if s, found := statuses[c.Name]; found {
			kubelet = kubeletReport(s)
			switch {
			case s.State.Waiting != nil:
				fmt.Fprintf(d.Out, "  kubelet: waiting, %s", s.State.Waiting.Reason)
				if s.State.Waiting.Message != "" {
					fmt.Fprintf(d.Out, ": %s", oneLine(s.State.Waiting.Message))
				}
				fmt.Fprintln(d.Out)
				if pullErrorReason(s.State.Waiting.Reason) {
					if !eventsRead {
						events, eventsRead = d.failedEvents(ctx, pod), true
					}
					nodeCause = d.printNodeCause(s.State.Waiting.Message, pod, c.Name, events)
				}
			case s.State.Running != nil:
				fmt.Fprintf(d.Out, "  kubelet: running %s\n", orNone(s.ImageID))
			}
		}
		v, seen := done[c.Image]
		if seen {
			fmt.Fprintln(d.Out, "  same image as above")
		} else {
			v.report = ImageReport{Image: c.Image}
			v.pullable, v.reason = d.diagnose(ctx, c.Image, pod.Namespace, secrets, kr, &v.report)
			done[c.Image] = v
			if !v.pullable {
				ok = false
			}
		}
		ir := v.report
		ir.Container, ir.Kubelet, ir.NodeCause, ir.Comparison = c.Name, kubelet, nodeCause, ""
		// Compare only with a probe that ran (not a reference or secret
		// the exporter could not use).
		if nodeCause != "" && (v.pullable || v.reason != probe.ReasonNone) {
			ir.Comparison = compareCauses(nodeCause, v.reason)
			fmt.Fprintf(d.Out, "  %s\n", ir.Comparison)
		}
		if d.Report != nil {
			d.Report.Images = append(d.Report.Images, ir)
		}
	}
	if d.Report != nil {
		d.Report.Pullable = ok
	}
	return ok, nil
}

// kubeletReport is a container status as the report shows it.
func kubeletReport(s corev1.ContainerStatus) *KubeletReport {
	k := &KubeletReport{ImageID: s.ImageID}
	switch {
	case s.State.Waiting != nil:
		k.State, k.Reason, k.Message = "waiting", s.State.Waiting.Reason, oneLine(s.State.Waiting.Message)
	case s.State.Running != nil:
		k.State = "running"
	case s.State.Terminated != nil:
		k.State, k.Reason = "terminated", s.State.Terminated.Reason
	}
	return k
}

// failedEvents lists the pod's Failed events (list, as the exporter's role
// allows; nil when they cannot be read).
func (d *Diagnoser) failedEvents(ctx context.Context, pod *corev1.Pod) []corev1.Event {
	sel := fields.Set{"involvedObject.kind": "Pod", "involvedObject.name": pod.Name, "reason": "Failed"}.AsSelector().String()
	l, err := d.Client.CoreV1().Events(pod.Namespace).List(ctx, metav1.ListOptions{FieldSelector: sel})
	if err != nil {
		fmt.Fprintf(d.Out, "  (the pod's events are not readable: %v)\n", err)
		return nil
	}
	return l.Items
}

// printNodeCause prints the cause the node reported for a container waiting
// on a pull: the waiting message's, classified, else the newest Failed
// event's ("Failed to pull image ...") when the message is the bare
// back-off text of kubelets before 1.32. It returns the cause, or "".
func (d *Diagnoser) printNodeCause(message string, pod *corev1.Pod, container string, events []corev1.Event) string {
	if cause, ok := PullErrorCause(message); ok {
		fmt.Fprintf(d.Out, "  node's cause: %s (classified from the kubelet's message)\n", cause)
		return cause
	}
	var newest *eventInfo
	for i := range events {
		obj, err := transformEvent(&events[i])
		if err != nil {
			continue
		}
		e := obj.(*eventInfo)
		if !e.PullFailure || e.Container != container || e.Pod != pod.Name || (e.PodUID != "" && e.PodUID != pod.UID) {
			continue
		}
		if newest == nil || e.Last.After(newest.Last) {
			newest = e
		}
	}
	if newest == nil {
		fmt.Fprintln(d.Out, "  node's cause: none (the kubelet's message holds no error and no Failed event of the pod names one)")
		return ""
	}
	for i := range events {
		if events[i].Name == newest.Name {
			fmt.Fprintf(d.Out, "  newest Failed event (node %s, %s): %s\n", orNone(newest.Node), newest.Last.UTC().Format(time.RFC3339),
				oneLine(strings.TrimPrefix(events[i].Message, combinedPrefix)))
		}
	}
	if newest.Cause == noCause {
		fmt.Fprintln(d.Out, "  node's cause: none (the event holds no error)")
		return ""
	}
	cause := newest.Cause.Value()
	fmt.Fprintf(d.Out, "  node's cause: %s (classified from the newest Failed event)\n", cause)
	return cause
}

// compareCauses says whether the node's cause and the exporter's probe
// (from its own network, with the credentials printed above) agree, and
// what a disagreement means.
func compareCauses(node string, probed probe.Reason) string {
	if probed.Inconclusive() {
		// The probe had no credentials, as the node (with the pod's
		// secrets) had none for this registry: a node's 401 is the same
		// answer.
		probed = probe.ReasonUnauthorized
	}
	exporter := "OK"
	if probed != probe.ReasonNone {
		exporter = string(probed)
	}
	switch {
	case node == collector.CauseUnknown:
		return fmt.Sprintf("nodes and exporter: the node's error is not one the exporter can place; the exporter's probe says %s", exporter)
	case string(probed) == node:
		return fmt.Sprintf("nodes and exporter agree: %s", node)
	case probed != probe.ReasonNone:
		return fmt.Sprintf("nodes and exporter disagree: the node says %s, the exporter's probe says %s; both fail, from different networks or with different credentials: fix what the exporter reports, then look again at the node", node, exporter)
	}
	what := ""
	switch probe.Reason(node) {
	case probe.ReasonRateLimited:
		what = "a per-IP pull limit on the nodes' egress address (Docker Hub counts anonymous pulls per address): pull through a mirror or authenticate the pulls (an imagePullSecret with an account)"
	case probe.ReasonUnauthorized, probe.ReasonForbidden:
		what = "the credentials the node pulls with are refused while these are accepted: check the pod's pull secrets and the node's own credentials (credential provider, config.json)"
	case probe.ReasonNotFound:
		what = "the image exists now: it was pushed after the node's last attempt (the kubelet retries), or the node resolves the name elsewhere (a mirror in the runtime's configuration that lacks it)"
	case probe.ReasonDNS, probe.ReasonConnect, probe.ReasonTLS, probe.ReasonTimeout:
		what = "the nodes' network differs from the exporter's: their resolver, firewall or proxy egress, or the CA bundle the runtime trusts"
	default:
		what = "the registry failed for the node only: a transient error, or a mirror or proxy in front of the nodes"
	}
	return fmt.Sprintf("nodes and exporter disagree: the node says %s, the exporter's probe is OK: %s", node, what)
}

// DiagnoseImage explains whether image can be pulled with the credentials a
// pod of service account serviceAccount in namespace would have (no
// namespace: the module's credentials only).
func (d *Diagnoser) DiagnoseImage(ctx context.Context, image, namespace, serviceAccount string) (bool, error) {
	var secrets []string
	var kr *probe.DockerKeyring
	if namespace != "" {
		if d.Client == nil {
			return false, errors.New("--namespace needs a Kubernetes cluster: give --kubeconfig, run in a pod, or set KUBECONFIG")
		}
		var how string
		secrets, how = d.podSecrets(ctx, namespace, serviceAccount, nil)
		fmt.Fprintf(d.Out, "namespace %s, service account %s\n", namespace, orDefault(serviceAccount))
		fmt.Fprintf(d.Out, "pull secrets: %s\n", how)
		if r := d.Report; r != nil {
			r.Namespace, r.ServiceAccount, r.PullSecrets = namespace, orDefault(serviceAccount), how
		}
		kr = d.describeSecrets(ctx, namespace, secrets)
		fmt.Fprintln(d.Out)
	}
	fmt.Fprintf(d.Out, "image %s\n", image)
	ir := ImageReport{Image: image}
	ok, _ := d.diagnose(ctx, image, namespace, secrets, kr, &ir)
	if r := d.Report; r != nil {
		r.Images = append(r.Images, ir)
		r.Pullable = ok
	}
	return ok, nil
}

// podSecrets returns the pull secrets the kubelet would use and says where
// they come from.
func (d *Diagnoser) podSecrets(ctx context.Context, namespace, sa string, own []string) ([]string, string) {
	if len(own) > 0 {
		return own, "the pod's imagePullSecrets: " + strings.Join(own, ", ")
	}
	if sa == "" {
		sa = "default"
	}
	sas, err := d.Client.CoreV1().ServiceAccounts(namespace).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("metadata.name", sa).String()})
	switch {
	case err != nil:
		return nil, fmt.Sprintf("none on the pod; service account %s/%s unreadable (%v)", namespace, sa, err)
	case len(sas.Items) == 0:
		return nil, fmt.Sprintf("none on the pod; service account %s/%s does not exist", namespace, sa)
	}
	s := secretNames(sas.Items[0].ImagePullSecrets)
	if len(s) == 0 {
		return nil, fmt.Sprintf("none (neither the pod nor service account %s lists any): pulls are anonymous unless the node has credentials", sa)
	}
	return s, fmt.Sprintf("none on the pod, so service account %s's: %s", sa, strings.Join(s, ", "))
}

// describeSecrets reads each secret, says what it holds (registry keys,
// never credentials), and returns the kubelet's keyring over them; nil when
// a secret of the right type does not parse (the kubelet fails the pull).
func (d *Diagnoser) describeSecrets(ctx context.Context, namespace string, secrets []string) *probe.DockerKeyring {
	kr := &probe.DockerKeyring{}
	for _, n := range secrets {
		s, err := d.Client.CoreV1().Secrets(namespace).Get(ctx, n, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			fmt.Fprintf(d.Out, "  secret %s/%s: does not exist; the kubelet skips it\n", namespace, n)
			d.Report.secret(n, SecretNotFound, nil, "does not exist; the kubelet skips it")
			continue
		case apierrors.IsForbidden(err):
			fmt.Fprintf(d.Out, "  secret %s/%s: not readable with these credentials (the exporter needs the pull-secrets role); diagnosing without it\n", namespace, n)
			d.Report.secret(n, SecretForbidden, nil, "not readable with these credentials (the exporter needs the pull-secrets role)")
			continue
		case err != nil:
			fmt.Fprintf(d.Out, "  secret %s/%s: cannot read: %v\n", namespace, n, err)
			d.Report.secret(n, SecretError, nil, fmt.Sprintf("cannot read: %v", err))
			continue
		}
		state, cfg, why := parseSecret(s)
		switch state {
		case SecretOK:
			keys := make([]string, 0, len(cfg))
			for k := range cfg {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			fmt.Fprintf(d.Out, "  secret %s/%s: %s with entries for %s\n", namespace, n, s.Type, strings.Join(keys, ", "))
			d.Report.secret(n, state, keys, "")
			kr.Add("secret "+namespace+"/"+n, cfg)
		case SecretInvalid:
			fmt.Fprintf(d.Out, "  %s\n", why)
			d.Report.secret(n, state, nil, why)
			return nil
		default:
			fmt.Fprintf(d.Out, "  %s\n", why)
			d.Report.secret(n, state, nil, why)
		}
	}
	return kr
}

// diagnose probes one image and explains the result; true when it can be
// pulled, else the probe's reason ("" when no probe was sent). ir receives
// the diagnosis for the report.
func (d *Diagnoser) diagnose(ctx context.Context, image, namespace string, secrets []string, kr *probe.DockerKeyring, ir *ImageReport) (bool, probe.Reason) {
	ir.Credentials = []CredentialReport{}
	ref, err := probe.ParseReference(image)
	if err != nil {
		ir.Verdict = fmt.Sprintf("%v (the kubelet reports InvalidImageName)", err)
		fmt.Fprintf(d.Out, "  CANNOT PULL: %s\n", ir.Verdict)
		return false, ""
	}
	ir.Reference = ref.String()
	if len(secrets) > 0 && kr == nil {
		ir.Verdict = "a pull secret of the pod does not parse, and the kubelet fails every pull of the pod until it is fixed"
		fmt.Fprintf(d.Out, "  CANNOT PULL: %s\n", ir.Verdict)
		return false, ""
	}
	modName := config.DefaultModuleName
	if d.Config != nil {
		modName = d.Config.Discovery.ModuleFor(ref.Registry)
	}
	if d.Module != "" {
		modName = d.Module
	}
	mod := moduleOf(d.Config, modName)
	ir.Module, ir.Scheme = modName, schemeOf(mod)
	var secretCreds []probe.Credential
	if kr != nil {
		secretCreds, _ = kr.Resolve(ref)
	}
	fmt.Fprintf(d.Out, "  reference: %s (module %s)\n", ref.String(), modName)
	d.describeProviders(ctx, ref)
	creds, err := withModuleCredentials(ctx, slices.Clip(secretCreds), mod, modName, ref)
	var setup *probe.SetupError
	switch {
	case errors.As(err, &setup):
		// The kubelet logs a failed plugin and pulls with the other
		// credentials it has: so does the probe that predicts it.
		fmt.Fprintf(d.Out, "  credentials: %v\n", err)
		fmt.Fprintln(d.Out, "    (probing as the node would: without the failed plugin's credentials)")
		creds = secretCreds
	case err != nil:
		ir.Verdict = fmt.Sprintf("credentials: %v", err)
		fmt.Fprintf(d.Out, "  CANNOT PULL: %s\n", ir.Verdict)
		return false, ""
	}
	ir.Credentials = credentialReports(creds)
	switch {
	case len(creds) == 0:
		fmt.Fprintln(d.Out, "  credentials: none match this registry, so the pull is anonymous")
		if kr != nil && len(kr.Keys()) > 0 {
			fmt.Fprintf(d.Out, "    (the pull secrets have entries for %s; none matches %s)\n", strings.Join(kr.Keys(), ", "), ref.Registry+"/"+ref.Repository)
		}
		var unbound *probe.UnboundError
		if err := mod.CheckBinding(ref.Registry); errors.As(err, &unbound) {
			unbound.Module = modName
			fmt.Fprintf(d.Out, "    (%v)\n", unbound)
		}
	default:
		fmt.Fprintln(d.Out, "  credentials, tried in this order as the kubelet does:")
		for _, c := range creds {
			fmt.Fprintf(d.Out, "    - user %q from %s\n", c.Username, c.Source)
		}
	}

	res := d.send(ctx, ref, func(ctx context.Context) probe.Result {
		return d.Prober.Probe(ctx, probe.Target{Ref: ref, ModuleName: modName, Module: mod, Keychain: staticKeychain(creds)})
	})
	host := ref.Registry
	if res.Success {
		ir.Pullable, ir.Digest, ir.MediaType = true, res.Digest, res.MediaType
		ir.Verdict = fmt.Sprintf("%s serves %s as %s (%s) in %s", host, ref.Identifier(), res.Digest, res.MediaType, res.Phases[probe.PhaseTotal].Round(time.Millisecond))
		fmt.Fprintf(d.Out, "  OK: %s\n", ir.Verdict)
		if rl := res.RateLimit; rl != nil {
			fmt.Fprintf(d.Out, "  rate limit: %s\n", rateLimitText(rl))
		}
		return true, ""
	}
	// The prober redacts what it returns; this is the second line of
	// defence for everything diagnose prints about the failure.
	red := probe.NewRedactor()
	red.AddCredentials(creds...)
	ir.Reason = string(res.Reason)
	ir.Verdict = red.Redact(d.explain(ctx, ref, mod, modName, res, creds, secretCreds, namespace))
	ir.Error = red.Redact(oneLine(res.Error))
	fmt.Fprintf(d.Out, "  CANNOT PULL: %s\n", ir.Verdict)
	if res.Error != "" {
		fmt.Fprintf(d.Out, "  (probe: %s: %s)\n", res.Reason, ir.Error)
	}
	return false, res.Reason
}

// describeProviders says, for each of the node's credential providers,
// whether its matchImages cover ref and what it answered (the keys of its
// auth entries, never credentials), as the node would run it.
func (d *Diagnoser) describeProviders(ctx context.Context, ref probe.Reference) {
	if d.CredentialProviders == nil {
		return
	}
	fmt.Fprintf(d.Out, "  credential providers of %s, as the node's kubelet runs them:\n", d.CredentialProviders.Source())
	for _, r := range d.CredentialProviders.Explain(ctx, ref) {
		switch {
		case r.Skipped != "":
			fmt.Fprintf(d.Out, "    - %s: not run: %s\n", r.Provider, r.Skipped)
		case r.Err != nil:
			fmt.Fprintf(d.Out, "    - %s: FAILED: %v\n", r.Provider, r.Err)
		case len(r.Keys) == 0:
			fmt.Fprintf(d.Out, "    - %s: ran; answered no credentials\n", r.Provider)
		default:
			sort.Strings(r.Keys)
			fmt.Fprintf(d.Out, "    - %s: answered credentials for %s\n", r.Provider, strings.Join(r.Keys, ", "))
		}
	}
}

// send sends one exchange about ref through the Diagnoser's Sender.
func (d *Diagnoser) send(ctx context.Context, ref probe.Reference, exchange func(context.Context) probe.Result) probe.Result {
	if d.Sender == nil {
		d.Sender = collector.NewSender(nil)
	}
	res, _ := d.Sender.Do(ctx, collector.Send{Purpose: collector.PurposeDiagnose, Registry: ref.Registry}, exchange)
	return res // without a budget the Sender never refuses
}

// explain turns a failed probe into a sentence that says what to do.
func (d *Diagnoser) explain(ctx context.Context, ref probe.Reference, mod probe.Module, modName string, res probe.Result,
	creds, secretCreds []probe.Credential, namespace string) string {
	host := ref.Registry
	who := "anonymous"
	if len(creds) > 0 {
		who = "with " + credList(creds)
	}
	switch res.Reason {
	case probe.ReasonRateLimited:
		msg := host + " answered 429"
		if rl := res.RateLimit; rl != nil {
			subject := "anonymous pull limit"
			if len(creds) > 0 {
				subject = "pull limit of the account"
			}
			if rl.Source != "" {
				subject += " for source " + rl.Source
			}
			msg += fmt.Sprintf(": %s is exhausted (%s of %s%s)", subject, num(rl.Remaining), num(rl.Limit), perWindow(rl.Window))
		} else {
			msg += ": too many requests"
		}
		if res.RetryAfter > 0 {
			msg += fmt.Sprintf("; it asks to retry after %s", res.RetryAfter)
		}
		if len(creds) == 0 {
			return msg + "; configure a pull secret or a mirror"
		}
		return msg + "; wait for the window to reset, use an account with a higher limit, or a mirror"
	case probe.ReasonNotFound:
		if ref.Digest != "" {
			return fmt.Sprintf("digest %s not found in %s/%s; the image was deleted or the digest is wrong", ref.Digest, host, ref.Repository)
		}
		var tags []string
		listed := d.send(ctx, ref, func(ctx context.Context) probe.Result {
			var r probe.Result
			tags, r = d.Prober.ListTags(ctx, probe.Target{Ref: ref, ModuleName: modName, Module: mod, Keychain: staticKeychain(creds)})
			return r
		})
		switch {
		case !listed.Success && listed.Reason != probe.ReasonNotFound:
			return fmt.Sprintf("tag %s not found in %s/%s (listing its tags failed too: %s)", ref.Tag, host, ref.Repository, oneLine(listed.Error))
		case len(tags) == 0: // a repository that does not exist lists as not_found
			return fmt.Sprintf("%s/%s has no tags (the repository does not exist, or is empty); check the image name", host, ref.Repository)
		}
		return fmt.Sprintf("tag %s not found in %s/%s (%s)", ref.Tag, host, ref.Repository, suggestTag(ref.Tag, tags))
	case probe.ReasonUnauthorized, probe.ReasonNoCredentials:
		switch {
		case len(creds) == 0 && namespace != "":
			return fmt.Sprintf("%s requires credentials and none of the pull secrets has an entry for %s; add an imagePullSecret with an entry for %s", host, host, host)
		case len(creds) == 0:
			return fmt.Sprintf("%s requires credentials; diagnose with --namespace and --service-account to use a pod's pull secrets, or give the module %s credentials", host, modName)
		case len(secretCreds) > 0:
			return fmt.Sprintf("%s rejected the credentials (%s); the secret holds a wrong or expired password or token: update it", host, credList(creds))
		}
		return fmt.Sprintf("%s rejected the credentials %s; fix them", host, who)
	case probe.ReasonForbidden:
		return fmt.Sprintf("%s accepted the login (%s) but does not allow pulling %s; grant that account pull access to the repository", host, who, ref.Repository)
	case probe.ReasonDNS:
		return fmt.Sprintf("the name %s does not resolve; check the registry host name and the node's DNS", ref.APIHost())
	case probe.ReasonConnect:
		msg := fmt.Sprintf("cannot connect to %s: the registry is down or unreachable (firewall, proxy, network policy)", ref.APIHost())
		if mod.PlainHTTP && !strings.Contains(ref.APIHost(), ":") {
			// Plain HTTP without a port is port 80, where an HTTPS
			// registry does not listen.
			msg += fmt.Sprintf("; module %s speaks plain HTTP (port 80): if the registry serves HTTPS, use a module without plain_http", modName)
		}
		return msg
	case probe.ReasonTLS:
		return tlsAdvice(ref, modName, res)
	case probe.ReasonTimeout:
		return fmt.Sprintf("%s did not answer within %s; the registry is overloaded or the network is slow", ref.APIHost(), mod.Timeout)
	case probe.ReasonServerError:
		return fmt.Sprintf("%s answered with a server error (5xx); the registry is failing, try later or check its status", host)
	case probe.ReasonProtocol:
		if mod.PlainHTTP && answeredStatus(res, http.StatusBadRequest) {
			// What an HTTPS server (Go's, nginx's) answers a plain-HTTP
			// request on its TLS port.
			return fmt.Sprintf("%s answered 400 to plain HTTP: it most likely serves HTTPS only; module %s has plain_http: true, use a module without it (and with tls.ca_file if its CA is private)", ref.APIHost(), modName)
		}
		return fmt.Sprintf("%s answered in a way the registry API does not allow; is this address a registry?", host)
	}
	return fmt.Sprintf("%s: %s", host, res.Reason)
}

// tlsAdvice says what to do about a failed TLS handshake, by what failed:
// the advice for a certificate from an unknown CA (give the CA) is wrong
// for a registry that speaks plain HTTP, an expired certificate or one for
// another name. The texts matched are crypto/x509's and net/http's, whose
// wording has been stable for years; the probe's error carries them.
func tlsAdvice(ref probe.Reference, modName string, res probe.Result) string {
	host := ref.APIHost()
	e := res.Error
	switch {
	case strings.Contains(e, "server gave HTTP response to HTTPS client"):
		return fmt.Sprintf("%s speaks plain HTTP, not HTTPS (no certificate is involved): probe it with a module with plain_http: true (probe --plain-http), "+
			"and tell the nodes' runtime the registry is plain HTTP (containerd: certs.d/%s/hosts.toml with server = \"http://%s\"); module %s speaks HTTPS", host, ref.Registry, host, modName)
	case strings.Contains(e, "certificate has expired or is not yet valid"):
		return fmt.Sprintf("the certificate of %s has expired or is not yet valid: renew it on the registry (or fix a clock); trusting another CA does not help", host)
	case strings.Contains(e, "certificate is valid for") || strings.Contains(e, "certificate is not valid for any names"):
		return fmt.Sprintf("the certificate of %s is issued for other names: reach the registry by a name in its certificate, or reissue it with %s", host, ref.Registry)
	case strings.Contains(e, "certificate signed by unknown authority") || strings.Contains(e, "certificate is not trusted"):
		return fmt.Sprintf("the certificate of %s is signed by a CA this machine does not trust: give module %s the CA (tls.ca_file, or probe --ca-file), and the nodes too (containerd: certs.d/%s/ca.crt)", host, modName, ref.Registry)
	}
	return fmt.Sprintf("TLS with %s failed: the certificate is not trusted, expired or for another name, or the server does not speak TLS as expected; see the probe's error below", host)
}

// answeredStatus reports whether a request of the probe got status code.
func answeredStatus(res probe.Result, code int) bool {
	for _, rq := range res.Requests {
		if rq.Status == code {
			return true
		}
	}
	return false
}

// suggestTag names the existing tags closest to a missing one.
func suggestTag(missing string, tags []string) string {
	type cand struct {
		tag    string
		dist   int
		prefix int
	}
	cs := make([]cand, 0, len(tags))
	for _, t := range tags {
		cs = append(cs, cand{t, config.EditDistance(strings.ToLower(missing), strings.ToLower(t)), commonPrefix(missing, t)})
	}
	sort.Slice(cs, func(i, j int) bool {
		if cs[i].dist != cs[j].dist {
			return cs[i].dist < cs[j].dist
		}
		if cs[i].prefix != cs[j].prefix {
			return cs[i].prefix > cs[j].prefix
		}
		return cs[i].tag < cs[j].tag
	})
	if cs[0].dist <= 2 || cs[0].dist*3 <= len(missing) {
		return "the tag exists as " + cs[0].tag
	}
	n := min(3, len(cs))
	names := make([]string, n)
	for i := range n {
		names[i] = cs[i].tag
	}
	return fmt.Sprintf("%d tags exist; the closest: %s", len(tags), strings.Join(names, ", "))
}

func commonPrefix(a, b string) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

func rateLimitText(rl *probe.RateLimit) string {
	s := fmt.Sprintf("%s of %s pulls left%s", num(rl.Remaining), num(rl.Limit), perWindow(rl.Window))
	if rl.Source != "" {
		s += " for source " + rl.Source
	}
	return s
}

func perWindow(w time.Duration) string {
	if w <= 0 {
		return ""
	}
	s := w.String() // "6h0m0s", "1h30m0s", "30s"
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return " per " + s
}

func num(f float64) string { return fmt.Sprintf("%g", f) }

func credList(cs []probe.Credential) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = fmt.Sprintf("user %q from %s", c.Username, c.Source)
	}
	return strings.Join(parts, "; ")
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func orDefault(s string) string {
	if s == "" {
		return "default"
	}
	return s
}
