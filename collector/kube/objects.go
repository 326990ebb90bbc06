package kube

import (
	"fmt"
	"slices"
	"strings"
	"unique"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/imagepull/imagepull_exporter/probe"
)

// The informers keep compact copies of the objects, made by the transform
// functions below, instead of the API types: memory is per pod, and a
// stripped *corev1.Pod still carries a PodSpec struct of several hundred
// bytes of zero fields per pod and per container. Image references are parsed
// once, when the object arrives, and interned with unique.Make: ten thousand
// pods running forty distinct images hold forty parsed references, each
// container an 8-byte handle to one of them.

// Kinds of image reference, the `kind` label of
// imagepull_pod_containers_mutable_ref (KindDigest is never exported).
const (
	KindLatest = "latest" // the tag "latest", written out
	KindTag    = "tag"    // another tag
	KindNoTag  = "no_tag" // no tag and no digest: the runtime pulls "latest"
	KindDigest = "digest" // pinned by digest (possibly with a tag)
)

// RegistryInvalid is the registry label of images whose reference does not
// parse (InvalidImageName).
const RegistryInvalid = "invalid"

// imageInfo is an image reference as written in a pod spec, parsed once.
// It is comparable so that unique.Make can intern it.
type imageInfo struct {
	Image   string          // as written
	Ref     probe.Reference // normalised; zero when Invalid
	Invalid bool            // the reference does not parse
	Kind    string          // KindLatest, KindTag, KindNoTag or KindDigest
}

// Registry is the registry label: the normalised host, or "invalid".
func (i imageInfo) Registry() string {
	if i.Invalid {
		return RegistryInvalid
	}
	return i.Ref.Registry
}

// nodeKey is how a running image is matched against node.status.images:
// registry/repository@digest when pinned, else registry/repository:tag.
func (i imageInfo) nodeKey() string {
	if i.Invalid {
		return ""
	}
	return imageKey(i.Ref)
}

func imageKey(r probe.Reference) string {
	if r.Digest != "" {
		return r.Registry + "/" + r.Repository + "@" + r.Digest
	}
	return r.Registry + "/" + r.Repository + ":" + r.Tag
}

// parseImage parses and interns an image reference as the kubelet reads it.
func parseImage(image string) unique.Handle[imageInfo] {
	info := imageInfo{Image: image}
	ref, err := probe.ParseReference(image)
	if err != nil {
		info.Invalid = true
		return unique.Make(info)
	}
	info.Ref = ref
	switch {
	case ref.Digest != "":
		info.Kind = KindDigest
	case !hasExplicitTag(image):
		info.Kind = KindNoTag
	case ref.Tag == "latest":
		info.Kind = KindLatest
	default:
		info.Kind = KindTag
	}
	return unique.Make(info)
}

// hasExplicitTag reports whether image names a tag: a ':' after the last '/'
// (a ':' before it is a registry port).
func hasExplicitTag(image string) bool {
	name, _, _ := strings.Cut(image, "@")
	i := strings.LastIndexByte(name, ':')
	return i >= 0 && !strings.Contains(name[i+1:], "/")
}

// Image-related waiting reasons of the kubelet (pkg/kubelet/images/types.go
// and kuberuntime): the containers imagepull_pod_containers_waiting counts.
var imageWaitingReasons = []string{
	"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
	"RegistryUnavailable", "SignatureValidationFailed", "ImageInspectError",
}

// waitingReason returns the interned image waiting reason, or "" for any
// other reason (ContainerCreating, CrashLoopBackOff, ...), which the join
// does not count.
func waitingReason(r string) string {
	if i := slices.Index(imageWaitingReasons, r); i >= 0 {
		return imageWaitingReasons[i]
	}
	return ""
}

// pullErrorReasons are the waiting reasons whose message holds the
// runtime's pull error: ErrImagePull always, ImagePullBackOff since
// Kubernetes 1.32 ("Back-off pulling image "x": ErrImagePull: <err>"; older
// kubelets write the bare back-off text and the error only into the pod's
// Failed event). The node-reported cause is only looked for there.
func pullErrorReason(reason string) bool {
	return reason == "ErrImagePull" || reason == "ImagePullBackOff"
}

var noCause unique.Handle[string]

// classify is PullErrorCause, interned: the transform keeps the cause, never
// the message (hundreds of bytes per waiting container). The zero handle is
// "no cause".
func classify(message string) unique.Handle[string] {
	if cause, ok := PullErrorCause(message); ok && cause != "" {
		return unique.Make(cause)
	}
	return noCause
}

// containerInfo is what the join keeps of one container: spec and status.
type containerInfo struct {
	// Fields are ordered so that the two bools share one word: 72 bytes
	// per container, where declaration order would take 80.

	// Name is interned (most pods share a few container names); it matches
	// a Failed event's involved container to the container.
	Name unique.Handle[string]
	Img  unique.Handle[imageInfo]
	// Digest is the manifest digest the runtime resolved, from the status'
	// imageID when it is a repo digest (registry/repo@sha256:...); zero when
	// the runtime reported only an image ID.
	Digest unique.Handle[string]
	// Cause is the pull error the node reported in the waiting message,
	// classified at transform time (PullErrorCause); zero when the
	// container does not wait on a pull or the message holds no error.
	Cause      unique.Handle[string]
	PullPolicy string // Always, IfNotPresent, Never (defaulted by the apiserver)
	Waiting    string // an image waiting reason, else ""
	Init       bool
	Running    bool
}

// podInfo is the compact pod the informer stores.
type podInfo struct {
	metav1.ObjectMeta // Name, Namespace, UID, ResourceVersion only

	Node           string
	ServiceAccount string
	PullSecrets    []string
	OwnerKind      string // the controller owner's kind, if any
	OwnerName      string
	Containers     []containerInfo // init containers first
}

// GetObjectKind implements runtime.Object.
func (*podInfo) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// DeepCopyObject implements runtime.Object.
func (p *podInfo) DeepCopyObject() runtime.Object {
	c := *p
	p.ObjectMeta.DeepCopyInto(&c.ObjectMeta)
	c.PullSecrets = slices.Clone(p.PullSecrets)
	c.Containers = slices.Clone(p.Containers)
	return &c
}

var noDigest unique.Handle[string]

// digestOf extracts the manifest digest from a container status' imageID.
// containerd reports "docker.io/library/nginx@sha256:..."; dockershim
// reported "docker-pullable://nginx@sha256:..."; a bare "sha256:..." is the
// image config ID, which is not what the registry serves for the tag.
func digestOf(imageID string) unique.Handle[string] {
	_, d, ok := strings.Cut(imageID, "@")
	if !ok || !strings.Contains(d, ":") {
		return noDigest
	}
	return unique.Make(d)
}

func minimalMeta(m *metav1.ObjectMeta) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion}
}

func secretNames(refs []corev1.LocalObjectReference) []string {
	if len(refs) == 0 {
		return nil
	}
	out := make([]string, 0, len(refs))
	for _, r := range refs {
		if r.Name != "" {
			out = append(out, r.Name)
		}
	}
	return out
}

// transformPod is the pods informer's transform: it keeps what the join,
// discovery and pull secrets need and drops the rest.
func transformPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		if _, done := obj.(*podInfo); done {
			return obj, nil // already transformed (the function must be idempotent)
		}
		return nil, fmt.Errorf("pods informer: unexpected object type %T", obj)
	}
	p := &podInfo{
		ObjectMeta:     minimalMeta(&pod.ObjectMeta),
		Node:           pod.Spec.NodeName,
		ServiceAccount: pod.Spec.ServiceAccountName,
		PullSecrets:    secretNames(pod.Spec.ImagePullSecrets),
	}
	if o := metav1.GetControllerOfNoCopy(pod); o != nil {
		p.OwnerKind, p.OwnerName = o.Kind, o.Name
	}
	p.Containers = make([]containerInfo, 0, len(pod.Spec.InitContainers)+len(pod.Spec.Containers))
	add := func(specs []corev1.Container, statuses []corev1.ContainerStatus, init bool) {
		for i := range specs {
			c := containerInfo{
				Name:       unique.Make(specs[i].Name),
				Img:        parseImage(specs[i].Image),
				PullPolicy: string(specs[i].ImagePullPolicy),
				Init:       init,
			}
			for j := range statuses {
				s := &statuses[j]
				if s.Name != specs[i].Name {
					continue
				}
				if s.State.Waiting != nil {
					c.Waiting = waitingReason(s.State.Waiting.Reason)
					if pullErrorReason(c.Waiting) {
						c.Cause = classify(s.State.Waiting.Message)
					}
				}
				c.Running = s.State.Running != nil
				c.Digest = digestOf(s.ImageID)
				break
			}
			p.Containers = append(p.Containers, c)
		}
	}
	add(pod.Spec.InitContainers, pod.Status.InitContainerStatuses, true)
	add(pod.Spec.Containers, pod.Status.ContainerStatuses, false)
	return p, nil
}

// nodeInfo is the compact node: its name and the images it holds.
type nodeInfo struct {
	metav1.ObjectMeta
	// Images holds the nodeKey of every name in status.images. The kubelet
	// reports at most --node-status-max-images images (default 50, the
	// largest first; -1 = all), so a node may hold more images than listed:
	// an image missing here may still be on the node.
	Images []unique.Handle[string]
}

// GetObjectKind implements runtime.Object.
func (*nodeInfo) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// DeepCopyObject implements runtime.Object.
func (n *nodeInfo) DeepCopyObject() runtime.Object {
	c := *n
	n.ObjectMeta.DeepCopyInto(&c.ObjectMeta)
	c.Images = slices.Clone(n.Images)
	return &c
}

func transformNode(obj any) (any, error) {
	node, ok := obj.(*corev1.Node)
	if !ok {
		if _, done := obj.(*nodeInfo); done {
			return obj, nil
		}
		return nil, fmt.Errorf("nodes informer: unexpected object type %T", obj)
	}
	n := &nodeInfo{ObjectMeta: minimalMeta(&node.ObjectMeta)}
	for _, img := range node.Status.Images {
		for _, name := range img.Names {
			ref, err := probe.ParseReference(name)
			if err != nil {
				continue
			}
			n.Images = append(n.Images, unique.Make(imageKey(ref)))
		}
	}
	return n, nil
}

// templateInfo is a workload's pod template: the images a controller will
// start even when no pod runs (scaled to zero, a CronJob between runs, a
// paused rollout), which discovery probes and the workloads' unavailable
// images report.
type templateInfo struct {
	metav1.ObjectMeta
	Kind           string
	ServiceAccount string
	PullSecrets    []string
	Containers     []templateContainer // init containers first
	// Finished is a Job that completed or failed: its controller starts
	// no pod again, so its images are never pulled again.
	Finished bool
	// CronJobOwned is a Job a CronJob controls: the CronJob's template
	// answers for the images of the Jobs it starts.
	CronJobOwned bool
}

// templateContainer is one container of a template: 16 bytes, both
// handles interned (templates share a few container names and images).
type templateContainer struct {
	Name unique.Handle[string]
	Img  unique.Handle[imageInfo]
}

// GetObjectKind implements runtime.Object.
func (*templateInfo) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// DeepCopyObject implements runtime.Object.
func (w *templateInfo) DeepCopyObject() runtime.Object {
	c := *w
	w.ObjectMeta.DeepCopyInto(&c.ObjectMeta)
	c.PullSecrets = slices.Clone(w.PullSecrets)
	c.Containers = slices.Clone(w.Containers)
	return &c
}

func templateOf(kind string, meta *metav1.ObjectMeta, spec *corev1.PodSpec) *templateInfo {
	w := &templateInfo{
		ObjectMeta:     minimalMeta(meta),
		Kind:           kind,
		ServiceAccount: spec.ServiceAccountName,
		PullSecrets:    secretNames(spec.ImagePullSecrets),
		Containers:     make([]templateContainer, 0, len(spec.InitContainers)+len(spec.Containers)),
	}
	for _, cs := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for i := range cs {
			w.Containers = append(w.Containers, templateContainer{Name: unique.Make(cs[i].Name), Img: parseImage(cs[i].Image)})
		}
	}
	return w
}

// jobFinished reports whether the Job controller will start no pod of the
// Job again: Complete or Failed, or the conditions that precede them once
// the outcome is decided (SuccessCriteriaMet, FailureTarget: the
// controller only terminates the remaining pods).
func jobFinished(j *batchv1.Job) bool {
	for _, c := range j.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobComplete, batchv1.JobFailed, batchv1.JobSuccessCriteriaMet, batchv1.JobFailureTarget:
			return true
		}
	}
	return false
}

func transformWorkload(obj any) (any, error) {
	switch o := obj.(type) {
	case *templateInfo:
		return o, nil
	case *appsv1.Deployment:
		return templateOf("Deployment", &o.ObjectMeta, &o.Spec.Template.Spec), nil
	case *appsv1.StatefulSet:
		return templateOf("StatefulSet", &o.ObjectMeta, &o.Spec.Template.Spec), nil
	case *appsv1.DaemonSet:
		return templateOf("DaemonSet", &o.ObjectMeta, &o.Spec.Template.Spec), nil
	case *batchv1.Job:
		w := templateOf("Job", &o.ObjectMeta, &o.Spec.Template.Spec)
		w.Finished = jobFinished(o)
		if ctl := metav1.GetControllerOfNoCopy(o); ctl != nil && ctl.Kind == "CronJob" {
			w.CronJobOwned = true
		}
		return w, nil
	case *batchv1.CronJob:
		return templateOf("CronJob", &o.ObjectMeta, &o.Spec.JobTemplate.Spec.Template.Spec), nil
	}
	return nil, fmt.Errorf("workload informer: unexpected object type %T", obj)
}

// serviceAccountInfo keeps a ServiceAccount's image pull secrets.
type serviceAccountInfo struct {
	metav1.ObjectMeta
	PullSecrets []string
}

// GetObjectKind implements runtime.Object.
func (*serviceAccountInfo) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// DeepCopyObject implements runtime.Object.
func (s *serviceAccountInfo) DeepCopyObject() runtime.Object {
	c := *s
	s.ObjectMeta.DeepCopyInto(&c.ObjectMeta)
	c.PullSecrets = slices.Clone(s.PullSecrets)
	return &c
}

func transformServiceAccount(obj any) (any, error) {
	sa, ok := obj.(*corev1.ServiceAccount)
	if !ok {
		if _, done := obj.(*serviceAccountInfo); done {
			return obj, nil
		}
		return nil, fmt.Errorf("serviceaccounts informer: unexpected object type %T", obj)
	}
	return &serviceAccountInfo{ObjectMeta: minimalMeta(&sa.ObjectMeta), PullSecrets: secretNames(sa.ImagePullSecrets)}, nil
}
