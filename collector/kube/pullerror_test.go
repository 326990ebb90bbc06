package kube

import (
	"strings"
	"testing"

	"github.com/imagepull/imagepull_exporter/collector"
	"github.com/imagepull/imagepull_exporter/probe"
)

// Message shapes as the runtimes write them and the kubelet reports them,
// each built from the format strings of the file named in its comment.
// Versions read: containerd v1.6.38, v1.7.34, v2.0.0 and main at
// 301026e58c (v2.4.0-beta.0+); containers/image main at df7e80d2 (v5.36.1+,
// CRI-O's registry client); cri-o main at f954a17e (v1.36.0+);
// cri-dockerd main at 246bd657 (v0.4.3+); moby main at b985e231 (docker
// v29.7.2+); kubernetes pkg/kubelet/images/image_manager.go (1.32+ with
// prevPullErrMsg, and the pre-1.32 bare back-off) and
// staging/src/k8s.io/cri-client/pkg/remote_image.go (strips
// "rpc error: code = Unknown desc = " since 1.29; older kubelets keep it).
//
// Prefixes: containerd's CRI returns errgrpc.ToGRPC(err)
// (internal/cri/instrument/instrumented_service.go), so errdefs.NotFound
// arrives as code = NotFound and the kubelet keeps that prefix; anything
// else is code = Unknown, which newer kubelets strip.
const (
	rpcUnknown  = "rpc error: code = Unknown desc = "
	rpcNotFound = "rpc error: code = NotFound desc = "
	ctrdPull    = `failed to pull and unpack image "docker.io/library/nginx:1.27": ` // containerd pkg/cri/server/image_pull.go (v1.6, v1.7), internal/cri/server/images/image_pull.go (v2)
	ctrdResolve = `failed to resolve reference "docker.io/library/nginx:1.27": `     // containerd pull.go (v1.6, v1.7), client/pull.go (v2)
	crioSource  = "initializing source docker://docker.io/library/nginx:1.27: "      // containers/image copy/copy.go
)

var pullErrorCases = []struct {
	name    string
	message string
	cause   string // "" with ok false
}{
	// --- no error: ok false, never guessed ---
	// kubernetes pkg/kubelet/images/image_manager.go before 1.32, and 1.32+ before the first failure is stored.
	{"bare back-off", `Back-off pulling image "docker.io/library/nginx:1.27"`, ""},
	// the same, with an image whose name holds reason words: the reference is masked.
	{"bare back-off, wordy image", `Back-off pulling image "registry.example.com/failed-jobs/unauthorized:timeout"`, ""},
	// image_manager.go normal events, were a caller to pass one.
	{"pulling event", `Pulling image "docker.io/library/nginx:1.27"`, ""},
	{"already present", `Container image "docker.io/library/nginx:1.27" already present on machine`, ""},
	{"empty", "", ""},

	// --- containerd (CRI plugin, docker resolver) ---
	// core/remotes/docker/resolver.go: 404 on the manifest HEAD gives "<ref>: not found" (errdefs.ErrNotFound), code NotFound; all versions.
	{"containerd missing tag", rpcNotFound + ctrdPull + ctrdResolve + "docker.io/library/nginx:1.27: not found", "not_found"},
	// the same, reported in the 1.32+ back-off.
	{"containerd missing tag in back-off", `Back-off pulling image "nginx:1.27": ErrImagePull: ` + rpcNotFound + ctrdPull + ctrdResolve + "docker.io/library/nginx:1.27: not found", "not_found"},
	// the same in a Failed event of an older kubelet.
	{"containerd missing tag in event", `Failed to pull image "nginx:1.27": ` + rpcNotFound + ctrdPull + ctrdResolve + "docker.io/library/nginx:1.27: not found", "not_found"},
	// resolver.go + authorizer.go invalidAuthorization: Docker Hub's 401 error="insufficient_scope" (missing or private repository); README: forbidden.
	{"containerd insufficient_scope", rpcUnknown + ctrdPull + ctrdResolve + "pull access denied, repository does not exist or may require authorization: server message: insufficient_scope: authorization failed", "forbidden"},
	// the same without the prefix (cri-client strips Unknown since 1.29).
	{"containerd insufficient_scope unprefixed", ctrdPull + ctrdResolve + "pull access denied, repository does not exist or may require authorization: server message: insufficient_scope: authorization failed", "forbidden"},
	// authorizer.go invalidAuthorization with error="invalid_token": the credential was rejected.
	{"containerd invalid_token", ctrdPull + ctrdResolve + "pull access denied, repository does not exist or may require authorization: server message: invalid_token: authorization failed", "unauthorized"},
	// authorizer.go AddResponses: Basic challenge and no credentials (v1.7+ / v2 text).
	{"containerd no basic auth credentials", rpcUnknown + ctrdPull + ctrdResolve + "pull access denied, repository does not exist or may require authorization: authorization failed: no basic auth credentials", "unauthorized"},
	// core/remotes/errors/errors.go ErrUnexpectedStatus on the HEAD, v2 with errcode.go unexpectedResponseErr joining the body (errors.Join: newline).
	{"containerd HEAD 429 with body", ctrdPull + ctrdResolve + "unexpected status from HEAD request to https://registry-1.docker.io/v2/library/nginx/manifests/1.27: 429 Too Many Requests\ntoomanyrequests: You have reached your unauthenticated pull rate limit. https://www.docker.com/increase-rate-limit", "rate_limited"},
	// remotes/errors/errors.go (v1.6, v1.7): no body.
	{"containerd HEAD 429", rpcUnknown + ctrdPull + ctrdResolve + "unexpected status from HEAD request to https://registry-1.docker.io/v2/library/nginx/manifests/1.27: 429 Too Many Requests", "rate_limited"},
	// resolver.go: a 401 on the HEAD without a bearer error.
	{"containerd HEAD 401", ctrdPull + ctrdResolve + "unexpected status from HEAD request to https://registry.example.com/v2/team/app/manifests/1.0: 401 Unauthorized", "unauthorized"},
	// resolver.go: a 403 (v2.2+ adds the GET body: errcode DENIED).
	{"containerd HEAD 403 with body", ctrdPull + ctrdResolve + "unexpected status from HEAD request to https://registry.example.com/v2/team/app/manifests/1.0: 403 Forbidden\ndenied: requested access to the resource is denied", "forbidden"},
	// resolver.go: 5xx.
	{"containerd HEAD 500", rpcUnknown + ctrdPull + ctrdResolve + "unexpected status from HEAD request to https://registry.example.com/v2/team/app/manifests/1.0: 500 Internal Server Error", "server_error"},
	{"containerd HEAD 502", ctrdPull + ctrdResolve + "unexpected status from HEAD request to https://registry.example.com/v2/team/app/manifests/1.0: 502 Bad Gateway", "server_error"},
	{"containerd HEAD 503", ctrdPull + ctrdResolve + "unexpected status from HEAD request to https://registry.example.com/v2/team/app/manifests/1.0: 503 Service Unavailable", "server_error"},
	{"containerd HEAD 504", ctrdPull + ctrdResolve + "unexpected status from HEAD request to https://registry.example.com/v2/team/app/manifests/1.0: 504 Gateway Timeout", "server_error"},
	// authorizer.go fetchToken: the token endpoint's 401 inside "failed to resolve reference" is unauthorized, whatever wraps it.
	{"containerd anonymous token 401", rpcUnknown + ctrdPull + ctrdResolve + `failed to authorize: failed to fetch anonymous token: unexpected status from GET request to https://auth.docker.io/token?scope=repository%3Alibrary%2Fnginx%3Apull&service=registry.docker.io: 401 Unauthorized`, "unauthorized"},
	// the shorter form the issue quotes.
	{"containerd anonymous token 401 short", "failed to fetch anonymous token: unexpected status: 401 Unauthorized", "unauthorized"},
	// authorizer.go: the token endpoint's 503 is the registry's outage, not a credential.
	{"containerd anonymous token 503", ctrdPull + ctrdResolve + "failed to authorize: failed to fetch anonymous token: unexpected status from GET request to https://auth.docker.io/token?scope=x: 503 Service Unavailable", "server_error"},
	// authorizer.go: oauth POST failure with credentials (status unknown to us).
	{"containerd oauth token", ctrdPull + ctrdResolve + "failed to authorize: failed to fetch oauth token: authorization server did not include a token in the response", "protocol"},
	{"containerd oauth 403", ctrdPull + ctrdResolve + "failed to authorize: failed to fetch oauth token: unexpected status from POST request to https://auth.example.com/token: 403 Forbidden", "forbidden"},
	// resolver.go request.do: "failed to do request: " + Go's *url.Error (quoted URL since Go 1.14) + net.OpError.
	{"containerd dns", rpcUnknown + ctrdPull + ctrdResolve + `failed to do request: Head "https://registry.example.com/v2/team/app/manifests/1.0": dial tcp: lookup registry.example.com on 10.96.0.10:53: no such host`, "dns"},
	{"containerd dns timeout", ctrdPull + ctrdResolve + `failed to do request: Head "https://registry.example.com/v2/team/app/manifests/1.0": dial tcp: lookup registry.example.com on 10.96.0.10:53: read udp 10.244.1.7:41234->10.96.0.10:53: i/o timeout`, "timeout"},
	{"containerd connect timeout", ctrdPull + ctrdResolve + `failed to do request: Head "https://registry.example.com/v2/team/app/manifests/1.0": dial tcp 203.0.113.7:443: i/o timeout`, "timeout"},
	{"containerd refused", ctrdPull + ctrdResolve + `failed to do request: Head "https://registry.example.com/v2/team/app/manifests/1.0": dial tcp 203.0.113.7:443: connect: connection refused`, "connect"},
	{"containerd reset", ctrdPull + ctrdResolve + `failed to do request: Head "https://registry.example.com/v2/team/app/manifests/1.0": read tcp 10.244.1.7:50022->203.0.113.7:443: read: connection reset by peer`, "connect"},
	{"containerd no route", ctrdPull + ctrdResolve + `failed to do request: Head "https://registry.example.com/v2/team/app/manifests/1.0": dial tcp 203.0.113.7:443: connect: no route to host`, "connect"},
	{"containerd unreachable", ctrdPull + ctrdResolve + `failed to do request: Head "https://registry.example.com/v2/team/app/manifests/1.0": dial tcp [2001:db8::7]:443: connect: network is unreachable`, "connect"},
	{"containerd x509", rpcUnknown + ctrdPull + ctrdResolve + `failed to do request: Head "https://registry.example.com/v2/team/app/manifests/1.0": tls: failed to verify certificate: x509: certificate signed by unknown authority`, "tls"},
	{"containerd x509 pre-go1.20", ctrdPull + ctrdResolve + `failed to do request: Head "https://registry.example.com/v2/team/app/manifests/1.0": x509: certificate signed by unknown authority`, "tls"},
	{"containerd remote tls alert", ctrdPull + ctrdResolve + `failed to do request: Head "https://registry.example.com/v2/team/app/manifests/1.0": remote error: tls: handshake failure`, "tls"},
	// net/http's text for a plain-HTTP registry: tls as in the probe (probe/classify.go isTLSError).
	{"containerd plain http", ctrdPull + ctrdResolve + `failed to do request: Head "https://registry.example.com:5000/v2/team/app/manifests/1.0": http: server gave HTTP response to HTTPS client`, "tls"},
	{"containerd tls handshake timeout", ctrdPull + ctrdResolve + `failed to do request: Head "https://registry.example.com/v2/team/app/manifests/1.0": net/http: TLS handshake timeout`, "tls"},
	// the CRI's own deadline (errgrpc maps context.DeadlineExceeded).
	{"containerd deadline", "rpc error: code = DeadlineExceeded desc = failed to pull and unpack image \"docker.io/library/nginx:1.27\": failed to resolve reference \"docker.io/library/nginx:1.27\": failed to do request: Head \"https://registry-1.docker.io/v2/library/nginx/manifests/1.27\": context deadline exceeded", "timeout"},
	// v1.6 remotes/docker/fetcher.go: blob fetch with a registry error body.
	{"containerd v1.6 blob 429", rpcUnknown + ctrdPull + "failed to copy: httpReadSeeker: failed open: unexpected status code https://registry-1.docker.io/v2/library/nginx/blobs/sha256:aa: 429 Too Many Requests - Server message: toomanyrequests: You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit", "rate_limited"},
	// v1.6 fetcher.go: a missing blob.
	{"containerd v1.6 blob 404", rpcNotFound + ctrdPull + "failed to copy: httpReadSeeker: failed open: content at https://registry.example.com/v2/team/app/blobs/sha256:aa not found: not found", "not_found"},
	// v2 client/pull.go with the transfer service path: "failed to resolve image: ".
	{"containerd transfer service", rpcNotFound + ctrdPull + "failed to resolve image: docker.io/library/nginx:1.27: not found", "not_found"},
	// core/images/image.go platform matcher: the image has no variant for the node.
	{"containerd no platform", rpcNotFound + ctrdPull + "no match for platform in manifest: not found", "not_found"},
	// auth/fetch.go GenerateTokenOptions: a challenge without realm.
	{"containerd no realm", ctrdPull + ctrdResolve + "no realm specified for token auth challenge", "protocol"},
	// the kubelet cannot reach containerd at all: the node, not the registry.
	{"runtime socket down", `rpc error: code = Unavailable desc = connection error: desc = "transport: Error while dialing: dial unix /run/containerd/containerd.sock: connect: connection refused"`, "unknown"},
	{"context canceled", ctrdPull + ctrdResolve + `failed to do request: Head "https://registry.example.com/v2/team/app/manifests/1.0": context canceled`, "unknown"},
	{"no space", ctrdPull + "failed to extract layer sha256:aa: write /var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/9/fs/x: no space left on device", "unknown"},

	// --- CRI-O (containers/image) ---
	// docker/docker_client.go detectPropertiesHelper: "pinging container registry %s: %w".
	{"crio ping dns", rpcUnknown + crioSource + `pinging container registry registry.example.com: Get "https://registry.example.com/v2/": dial tcp: lookup registry.example.com on 10.96.0.10:53: no such host`, "dns"},
	{"crio ping x509", crioSource + `pinging container registry registry.example.com: Get "https://registry.example.com/v2/": tls: failed to verify certificate: x509: certificate has expired or is not yet valid: current time 2026-01-02T00:00:00Z is after 2025-12-31T23:59:59Z`, "tls"},
	// cri-o server/image_pull.go wraps ECONNREFUSED in cri-api's RegistryUnavailable; the kubelet's evalCRIPullErr
	// rewrites it to "image pull failed for ... because the registry is unavailable: ..." (prefix stripped by cri-client).
	{"crio registry unavailable", "image pull failed for registry.example.com/team/app:1.0 because the registry is unavailable: " + crioSource + `pinging container registry registry.example.com: Get "https://registry.example.com/v2/": dial tcp 203.0.113.7:443: connect: connection refused`, "connect"},
	{"crio registry unavailable in back-off", `Back-off pulling image "registry.example.com/team/app:1.0": RegistryUnavailable: image pull failed for registry.example.com/team/app:1.0 because the registry is unavailable: ` + crioSource + `pinging container registry registry.example.com: Get "https://registry.example.com/v2/": dial tcp 203.0.113.7:443: connect: connection refused`, "connect"},
	// docker/docker_client.go fetchManifest + registryHTTPResponseToError: MANIFEST_UNKNOWN with its default message.
	{"crio manifest unknown", rpcUnknown + crioSource + "reading manifest 1.27 in docker.io/library/nginx: manifest unknown", "not_found"},
	// docker/distribution_error.go handleErrorResponse: 401 insufficient_scope becomes DENIED, default message reworded.
	{"crio insufficient_scope", crioSource + "reading manifest latest in docker.io/library/no-such-repo: requested access to the resource is denied", "forbidden"},
	// 401 with a body (quay.io): errcode UNAUTHORIZED with its own message.
	{"crio quay unauthorized", crioSource + "reading manifest 1.0 in quay.io/team/app: unauthorized: access to the requested resource is not authorized", "unauthorized"},
	// 401 invalid_token: UNAUTHORIZED default message.
	{"crio authentication required", crioSource + "reading manifest 1.0 in registry.example.com/team/app: authentication required", "unauthorized"},
	// 429 with Docker Hub's body.
	{"crio toomanyrequests", crioSource + "reading manifest 1.27 in docker.io/library/nginx: toomanyrequests: You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit", "rate_limited"},
	// docker/errors.go httpResponseToError on the token endpoint: 429 and 401.
	{"crio token 429", crioSource + "pinging container registry registry.example.com: too many requests to registry", "rate_limited"},
	{"crio token 401", crioSource + "unable to retrieve auth token: invalid username/password: unauthorized: incorrect username or password", "unauthorized"},
	// docker/distribution_error.go: a 5xx is UnexpectedHTTPStatusError.
	{"crio 503", crioSource + "reading manifest 1.0 in registry.example.com/team/app: received unexpected HTTP status: 503 Service Unavailable", "server_error"},
	// registryHTTPResponseToError: a 4xx with a non-JSON body.
	{"crio 404 html", crioSource + `reading manifest 1.0 in registry.example.com/team/app: StatusCode: 404, "<html><body>404 page not found</body></html>..."`, "not_found"},
	// docker/docker_image_src.go newImageSource: mirrors tried first; the primary's error is the one about the pod's reference.
	{"crio mirrors", crioSource + "(Mirrors also failed: [mirror.example.com/library/nginx:1.27: pinging container registry mirror.example.com: Get \"https://mirror.example.com/v2/\": dial tcp 10.0.0.9:443: connect: connection refused]): docker.io/library/nginx:1.27: reading manifest 1.27 in docker.io/library/nginx: toomanyrequests: You have reached your pull rate limit.", "rate_limited"},
	// docker/docker_client.go getBearerToken: a token reply that is not JSON.
	{"crio bad token", crioSource + `decoding bearer token (last URL "https://auth.example.com/token?scope=x", body start "<html>"): invalid character '<' looking for beginning of value`, "protocol"},
	// cri-o internal/storage/image.go: signature policy.
	{"crio signature", "SignatureValidationFailed: image pull failed for registry.example.com/team/app:1.0 because the signature validation failed: Source image rejected: A signature was required, but no signature exists", "unknown"},

	// --- cri-dockerd / docker (moby daemon/internal/distribution/errors.go; client/request.go "Error response from daemon: ") ---
	{"docker manifest unknown", rpcUnknown + "Error response from daemon: manifest for nginx:nope not found: manifest unknown: manifest unknown", "not_found"},
	{"docker pull access denied", rpcUnknown + "Error response from daemon: pull access denied for no-such-repo, repository does not exist or may require 'docker login': denied: requested access to the resource is denied", "forbidden"},
	// moby daemon/containerd/image_pull.go (containerd image store): no suffix.
	{"docker containerd store denied", "Error response from daemon: pull access denied for no-such-repo, repository does not exist or may require 'docker login'", "forbidden"},
	{"docker toomanyrequests", "Error response from daemon: toomanyrequests: You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit", "rate_limited"},
	{"docker unauthorized", `Error response from daemon: Head "https://registry.example.com/v2/team/app/manifests/1.0": unauthorized: incorrect username or password`, "unauthorized"},
	{"docker client timeout", `Error response from daemon: Get "https://registry.example.com/v2/": net/http: request canceled while waiting for connection (Client.Timeout exceeded while awaiting headers)`, "timeout"},
	// cri-dockerd core/image.go filterHTTPError: 502/503/504 become "RegistryUnavailable: %v".
	{"cri-dockerd registry unavailable", "image pull failed for registry.example.com/team/app:1.0 because the registry is unavailable: received unexpected HTTP status: 502 Bad Gateway", "server_error"},
	// an older kubelet's own text, with no detail: an error, not placeable.
	{"bare registry unavailable", "image pull failed for registry.example.com/team/app:1.0 because the registry is unavailable.", "unknown"},

	// --- text the classifier cannot place ---
	{"unplaceable", rpcUnknown + "something went wrong in a plugin", "unknown"},
	{"back-off with odd suffix", `Back-off pulling image "x": ErrImagePull: `, "unknown"},
}

func TestPullErrorCause(t *testing.T) {
	for _, tc := range pullErrorCases {
		t.Run(tc.name, func(t *testing.T) {
			cause, ok := PullErrorCause(tc.message)
			if ok != (tc.cause != "") || cause != tc.cause {
				t.Errorf("PullErrorCause(%q) = %q, %v; want %q, %v", tc.message, cause, ok, tc.cause, tc.cause != "")
			}
		})
	}
}

// TestPullErrorCauseWrappers: every wrapper the kubelet puts around a
// runtime's error leaves the cause unchanged.
func TestPullErrorCauseWrappers(t *testing.T) {
	for _, tc := range pullErrorCases {
		if tc.cause == "" {
			continue
		}
		for _, w := range pullErrorWrappers {
			if got, ok := PullErrorCause(w + tc.message); !ok || got != tc.cause {
				t.Errorf("%s: PullErrorCause(%q) = %q, %v; want %q", tc.name, w+tc.message, got, ok, tc.cause)
			}
		}
	}
}

var pullErrorWrappers = []string{
	rpcUnknown,
	`Failed to pull image "registry.example.com/team/app:1.0": `,
	`Back-off pulling image "registry.example.com/team/app:1.0": ErrImagePull: `,
	`Back-off pulling image "registry.example.com/team/app:1.0": ErrImagePull: ` + rpcUnknown,
}

// TestPullErrorCausesClosed: every cause is a probe reason a node can
// report, or unknown; never config (the exporter's own files).
func TestPullErrorCausesClosed(t *testing.T) {
	for _, tc := range pullErrorCases {
		if tc.cause != "" && !pullErrorCauseAllowed(tc.cause) {
			t.Errorf("%s: cause %q outside the closed set", tc.name, tc.cause)
		}
	}
	for _, r := range append(pullErrorRules, pullErrorFallbacks...) {
		if !pullErrorCauseAllowed(r.cause) {
			t.Errorf("rule cause %q outside the closed set", r.cause)
		}
	}
}

func pullErrorCauseAllowed(c string) bool {
	if c == collector.CauseUnknown {
		return true
	}
	for _, r := range probe.Reasons {
		if string(r) == c && !r.Local() {
			return true
		}
	}
	return false
}

// pullErrorVocabulary is every word that can make a text an error: the
// markers, the rule phrases and the status phrases.
func pullErrorVocabulary() []string {
	v := append([]string(nil), pullErrorMarkers...)
	for _, r := range append(pullErrorRules, pullErrorFallbacks...) {
		v = append(v, r.phrases...)
	}
	for _, s := range httpStatusPhrases {
		v = append(v, s.phrase)
	}
	return v
}

func pullErrorWindow(s string) string {
	if len(s) > pullErrorHead+pullErrorTail {
		s = s[:pullErrorHead] + "\n" + s[len(s)-pullErrorTail:]
	}
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// FuzzPullErrorCause checks, for any text:
//   - no panic, and the same answer twice;
//   - ok false gives an empty cause; ok true a cause in the closed set
//     (probe.Reasons without config, or unknown);
//   - the invariant for "no error, no guess": when the inspected window
//     (the first and last 2 KiB), ASCII-lowercased, holds no word of the
//     vocabulary (pullErrorMarkers, every rule and status phrase) and no
//     `": ` (the separator after the quoted reference of the kubelet's
//     1.32+ back-off text with its error), ok is false;
//   - only the window counts: a text longer than 4 KiB gets the answer of
//     its window;
//   - a kubelet wrapper around a placed error keeps its cause.
func FuzzPullErrorCause(f *testing.F) {
	for _, tc := range pullErrorCases {
		f.Add(tc.message)
	}
	f.Add(strings.Repeat("a", 5000) + ": not found")
	vocab := pullErrorVocabulary()
	f.Fuzz(func(t *testing.T, msg string) {
		cause, ok := PullErrorCause(msg)
		if c2, ok2 := PullErrorCause(msg); c2 != cause || ok2 != ok {
			t.Fatalf("not deterministic: %q, %v then %q, %v", cause, ok, c2, ok2)
		}
		if !ok && cause != "" {
			t.Fatalf("ok false with cause %q", cause)
		}
		if ok && !pullErrorCauseAllowed(cause) {
			t.Fatalf("cause %q outside the closed set", cause)
		}
		w := pullErrorWindow(msg)
		if ok && !strings.Contains(w, `": `) {
			found := false
			for _, p := range vocab {
				if strings.Contains(w, p) {
					found = true
					break
				}
			}
			if !found {
				t.Fatalf("ok true (%q) for a text with no error word: %q", cause, msg)
			}
		}
		if len(msg) > pullErrorHead+pullErrorTail {
			win := msg[:pullErrorHead] + "\n" + msg[len(msg)-pullErrorTail:]
			if c2, ok2 := PullErrorCause(win); c2 != cause || ok2 != ok {
				t.Fatalf("answer depends on more than the window: %q, %v vs %q, %v", cause, ok, c2, ok2)
			}
		}
		if ok && cause != collector.CauseUnknown && len(msg) < pullErrorTail/2 {
			for _, wr := range pullErrorWrappers {
				if c2, ok2 := PullErrorCause(wr + msg); !ok2 || c2 != cause {
					t.Fatalf("wrapper %q changed %q to %q, %v", wr, cause, c2, ok2)
				}
			}
		}
	})
}
