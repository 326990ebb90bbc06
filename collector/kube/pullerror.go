package kube

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/imagepull/imagepull_exporter/collector"
	"github.com/imagepull/imagepull_exporter/probe"
)

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
// The texts it knows, and the source each comes from, are listed in
// pullerror_test.go. The work is bounded: at most pullErrorHead bytes from
// the start and pullErrorTail from the end are read (the runtimes wrap the
// root cause last, so a long message keeps its cause in the tail), and every
// step is a linear scan.
func PullErrorCause(message string) (cause string, ok bool) {
	s, stripped, code := unwrapPullError(normalizePullError(message))
	for _, r := range pullErrorRules {
		for _, p := range r.phrases {
			if strings.Contains(s, p) {
				return r.cause, true
			}
		}
	}
	if c, found := httpStatusCause(s); found {
		return c, true
	}
	for _, r := range pullErrorFallbacks {
		for _, p := range r.phrases {
			if strings.Contains(s, p) {
				return r.cause, true
			}
		}
	}
	if c, found := grpcCodeCauses[code]; found {
		return c, true
	}
	if stripped || containsAny(s, pullErrorMarkers) {
		return collector.CauseUnknown, true
	}
	return "", false
}

// The inspected window: the head holds the kubelet's and the runtime's
// wrappers, the tail the innermost error. 4 KiB in all is far more than any
// runtime writes for one pull (containerd's longest, with a registry error
// body joined in, is a few hundred bytes).
const (
	pullErrorHead = 2 << 10
	pullErrorTail = 2 << 10
)

type pullErrorRule struct {
	cause   string
	phrases []string
}

// pullErrorRules are tried in order on the normalized text (lower case,
// image references and URLs masked) and the first phrase found wins. The
// order is the point:
//
//  1. Node-local failures first (the kubelet cannot reach the runtime's
//     socket, a full disk, the runtime's own configuration): they are no
//     evidence about the registry, whatever network words they contain
//     ("dial unix ...: connect: connection refused" is containerd's socket,
//     not the registry), so they are unknown.
//  2. Transport failures next, in the probe's order (probe/classify.go): a
//     request that got no reply has no status, so a transport error in the
//     text is the root cause of every wrapper around it ("failed to fetch
//     anonymous token: ... no such host" is dns, not unauthorized). A
//     timeout wins over dns as in the probe (a resolver that times out is
//     "lookup ...: i/o timeout"), a failed or timed-out TLS handshake is tls
//     as in the probe (which marks any handshake error tls), and tls wins
//     over the connection error the handshake ends with.
//  3. What the registry said in words: its error codes (distribution's
//     errcode, rendered "toomanyrequests: ...", "denied: ...",
//     "unauthorized: ...", "manifest unknown") and the bearer challenge's
//     error. These come before the HTTP status because they are more
//     precise: Docker Hub answers 401 with error="insufficient_scope" for a
//     repository that does not exist or is private, which the probe
//     reports forbidden (README, probe/prober.go headUnauthorized), and a
//     401 whose body says DENIED is forbidden in the probe too.
//
// Then httpStatusCause, then pullErrorFallbacks.
var pullErrorRules = []pullErrorRule{
	{collector.CauseUnknown, []string{
		"dial unix",                 // the kubelet's CRI socket, or the runtime's
		"error while dialing",       // gRPC transport to the runtime
		"error reading from server", // the runtime's gRPC connection dropped
		"no space left on device",
		"no resolve hosts", "no pull hosts", // containerd hosts.toml allows no host for this
		"signature validation failed", "signaturevalidationfailed", // a signature policy, not the registry
		"is not present with pull policy", // imagePullPolicy: Never
	}},
	{string(probe.ReasonTLS), []string{"tls handshake timeout"}},
	{string(probe.ReasonTimeout), []string{
		"i/o timeout", "deadline exceeded", "exceeded while awaiting headers",
		"timeout awaiting response headers", "connection timed out", "operation timed out",
	}},
	{string(probe.ReasonDNS), []string{
		"no such host", "server misbehaving", "name resolution", "name or service not known",
		"dial tcp: lookup", "no address associated with hostname",
	}},
	// net/http's answer when a plain-HTTP registry answers the TLS hello is
	// tls here as in the probe (classify.go isTLSError, with its test): the
	// two must name one fault alike for the join to compare them, and the
	// fix is the node's TLS setup for that registry (hosts.toml
	// "http://" server, CRI-O's insecure registry), not the registry.
	{string(probe.ReasonTLS), []string{"x509:", "tls: ", "server gave http response to https client"}},
	{string(probe.ReasonConnect), []string{
		"connection refused", "connection reset", "no route to host", "network is unreachable",
		"host is unreachable", "broken pipe", "unexpected eof", "server closed idle connection",
	}},
	{string(probe.ReasonRateLimited), []string{"toomanyrequests", "too many requests", "pull rate limit"}},
	// The bearer challenge's error (RFC 6750), as containerd's resolver
	// reports it ("server message: insufficient_scope: authorization
	// failed"): insufficient_scope is forbidden, as the probe says it;
	// invalid_token is a rejected credential.
	{string(probe.ReasonForbidden), []string{"insufficient_scope"}},
	{string(probe.ReasonUnauthorized), []string{
		"invalid_token",
		"no basic auth credentials", // containerd: Basic challenge and no credentials; before "pull access denied", which wraps it
	}},
	// distribution's DENIED (its default message is "requested access to the
	// resource is denied"), CRI-O's rendering of insufficient_scope (the
	// same words), docker's and containerd's "pull access denied".
	{string(probe.ReasonForbidden), []string{"denied: ", "requested access to the resource is denied", "pull access denied", "access denied"}},
	{string(probe.ReasonUnauthorized), []string{
		"unauthorized: ", "authentication required", "incorrect username or password",
		"unable to retrieve auth token", // CRI-O: 401 from the token endpoint
	}},
	{string(probe.ReasonNotFound), []string{
		"manifest unknown", "name unknown", "repository name not known", "blob unknown",
	}},
}

// pullErrorFallbacks are phrases that say less than a status does: tried
// only when neither a rule nor an HTTP status matched.
var pullErrorFallbacks = []pullErrorRule{
	// containerd's errdefs.ErrNotFound renders as "not found"; its resolver
	// returns "<ref>: not found" for a 404 on the manifest, its fetcher
	// "content at <url> not found: not found", its platform matcher "no match
	// for platform in manifest: not found". All are about the image.
	{string(probe.ReasonNotFound), []string{": not found", "no match for platform"}},
	// Replies no client should accept: a token response without a token or
	// not JSON, a challenge without a realm, a digest header that is not a
	// digest, a body that does not match its digest, a redirect loop. The
	// probe calls each of these protocol.
	{string(probe.ReasonProtocol), []string{
		"failed to find supported auth scheme", "unable to decode token response", "decoding bearer token",
		"did not include a token", "no realm specified", "missing realm", "invalid token auth challenge realm",
		"not a valid digest", "digest mismatch", "unexpected commit digest", "redirects",
		"server response headers exceeded",
	}},
	// Context words of the token exchange: unauthorized when nothing in the
	// text says why the exchange failed (a status or a transport error would
	// have matched first, and so would a reply the exchange could not use,
	// above).
	{string(probe.ReasonUnauthorized), []string{
		"failed to fetch anonymous token", "failed to fetch oauth token", "failed to authorize",
		"authorization failed",
	}},
}

// grpcCodeCauses is the last resort: the status code of the runtime's
// gRPC error, when the text said nothing placeable. containerd's errgrpc
// maps errdefs.ErrNotFound to NotFound and a context deadline to
// DeadlineExceeded. Unavailable is left out: it is the kubelet's connection
// to the runtime, not the registry. ResourceExhausted is left out: it is
// the node's resources as often as a registry's limit.
var grpcCodeCauses = map[string]string{
	"notfound":         string(probe.ReasonNotFound),
	"deadlineexceeded": string(probe.ReasonTimeout),
	"unauthenticated":  string(probe.ReasonUnauthorized),
	"permissiondenied": string(probe.ReasonForbidden),
}

// pullErrorMarkers make a text an error when no rule placed it: ok is true
// and the cause unknown. Every rule phrase is a marker too. The kubelet's
// own texts without an error ("Back-off pulling image", "Pulling image",
// "Successfully pulled image", "already present on machine") hold none.
var pullErrorMarkers = []string{
	"error", "fail", "denied", "unable", "cannot", "can't", "invalid", "unexpected",
	"not found", "unknown", "unavailable", "refused", "timeout", "timed out", "exceeded",
	"not allowed", "unsupported", "mismatch", "canceled", "cancelled", "forbidden",
	"unauthorized", "rejected", "errimagepull", "registryunavailable",
}

// httpStatusCause finds the first HTTP status the text quotes the way the
// runtimes write it: Go's Response.Status ("429 Too Many Requests",
// containerd's "unexpected status from HEAD request to <url>: <status>",
// CRI-O's and docker's "received unexpected HTTP status: <status>"), or
// CRI-O's "StatusCode: 404," and "error parsing HTTP 404 response body". A
// status maps as in the probe (classify.go statusReason).
func httpStatusCause(s string) (string, bool) {
	best, cause := -1, ""
	for _, st := range httpStatusPhrases {
		if i := strings.Index(s, st.phrase); i >= 0 && (best < 0 || i < best) {
			best, cause = i, st.cause
		}
	}
	return cause, best >= 0
}

type statusPhrase struct {
	phrase string
	cause  string
}

var httpStatusPhrases = func() []statusPhrase {
	var out []statusPhrase
	for code := 400; code < 600; code++ {
		text := http.StatusText(code)
		if text == "" {
			continue
		}
		c := statusCause(code)
		n := strconv.Itoa(code)
		out = append(out,
			statusPhrase{n + " " + strings.ToLower(text), c},
			statusPhrase{"statuscode: " + n, c},
			statusPhrase{"http " + n + " response", c},
		)
	}
	return out
}()

// statusCause is probe/classify.go's statusReason for the codes above 399.
func statusCause(code int) string {
	switch {
	case code == http.StatusUnauthorized:
		return string(probe.ReasonUnauthorized)
	case code == http.StatusForbidden:
		return string(probe.ReasonForbidden)
	case code == http.StatusNotFound:
		return string(probe.ReasonNotFound)
	case code == http.StatusTooManyRequests:
		return string(probe.ReasonRateLimited)
	case code >= 500:
		return string(probe.ReasonServerError)
	}
	return string(probe.ReasonProtocol)
}

// unwrapPullError strips the kubelet's wrappers and the gRPC prefix from
// the normalized text, in any order and any number of times:
//
//	rpc error: code = <Code> desc = <err>       (the CRI call; newer kubelets drop it for Unknown)
//	Back-off pulling image "<ref>"              (bare: no error, the text is empty and stripped false)
//	Back-off pulling image "<ref>": <Err>: <msg> (1.32+, <Err> ErrImagePull, RegistryUnavailable, ...)
//	Failed to pull image "<ref>": <err>         (the Failed event)
//
// and CRI-O's "(Mirrors also failed: [...]): " list, keeping the primary
// registry's error, the one about the pod's image reference. stripped
// reports that a wrapper which itself means "the pull failed" was removed;
// code is the innermost gRPC code, lower case.
func unwrapPullError(s string) (rest string, stripped bool, code string) {
	if i := strings.Index(s, "(mirrors also failed: "); i >= 0 {
		if j := strings.LastIndex(s[i:], "]): "); j >= 0 {
			s, stripped = s[:i]+s[i+j+len("]): "):], true
		}
	}
	for {
		s = strings.TrimSpace(s)
		switch {
		case strings.HasPrefix(s, "rpc error: code = "):
			t := s[len("rpc error: code = "):]
			c, after, found := strings.Cut(t, " desc = ")
			if !found || strings.ContainsAny(c, " :") {
				return s, stripped, code
			}
			s, stripped, code = after, true, c
		case strings.HasPrefix(s, `back-off pulling image ""`):
			s = s[len(`back-off pulling image ""`):]
			if s == "" {
				return "", stripped, code
			}
			after, found := strings.CutPrefix(s, ": ")
			if !found {
				return s, stripped, code
			}
			s, stripped = stripKubeletErrName(after), true
		case strings.HasPrefix(s, `failed to pull image "": `):
			s, stripped = s[len(`failed to pull image "": `):], true
		default:
			return s, stripped, code
		}
	}
}

// stripKubeletErrName removes the name of the kubelet's error the 1.32+
// back-off message puts before the pull error (pkg/kubelet/images
// image_manager.go stores fmt.Sprintf("%s: %s", err, msg)). The names are
// kubelet's ErrImagePull and cri-api's RegistryUnavailable and
// SignatureValidationFailed; any single word followed by ": " is accepted.
func stripKubeletErrName(s string) string {
	name, after, found := strings.Cut(s, ": ")
	if !found || strings.ContainsAny(name, " \"") {
		return s
	}
	return after
}

// normalizePullError bounds the text, lowers its ASCII letters and masks
// image references and URLs, so that a repository named "unauthorized" or a
// host named "timeout.example" cannot read as a cause: a double-quoted
// string without blanks (containerd's %q references, Go's quoted URLs)
// becomes "", and a blank-separated word with a '/' or '.' inside becomes
// "_" with its trailing punctuation kept ("docker.io/library/x:1:" becomes
// "_:"). "i/o" and "net/http" are words of Go's errors and stay.
func normalizePullError(message string) string {
	if len(message) > pullErrorHead+pullErrorTail {
		message = message[:pullErrorHead] + "\n" + message[len(message)-pullErrorTail:]
	}
	b := []byte(message)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	// Quoted strings without blanks.
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		out = append(out, b[i])
		if b[i] != '"' {
			continue
		}
		j := i + 1
		for j < len(b) && b[j] != '"' && !isBlank(b[j]) {
			j++
		}
		if j < len(b) && b[j] == '"' {
			out = append(out, '"')
			i = j
		}
	}
	// Words with '/' or '.' inside.
	b, out = out, make([]byte, 0, len(out))
	for i := 0; i < len(b); {
		if isBlank(b[i]) {
			out = append(out, b[i])
			i++
			continue
		}
		j := i
		for j < len(b) && !isBlank(b[j]) {
			j++
		}
		out = append(out, maskWord(b[i:j])...)
		i = j
	}
	return string(out)
}

func maskWord(w []byte) []byte {
	lead := 0
	for lead < len(w) && (w[lead] == '(' || w[lead] == '[' || w[lead] == '"') {
		lead++
	}
	end := len(w)
	for end > lead && strings.IndexByte(`:,;.)]"`, w[end-1]) >= 0 {
		end--
	}
	core := string(w[lead:end])
	if core == "i/o" || core == "net/http" || !strings.ContainsAny(core, "/.") {
		return w
	}
	m := make([]byte, 0, len(w)-(end-lead)+1)
	m = append(m, w[:lead]...)
	m = append(m, '_')
	return append(m, w[end:]...)
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func containsAny(s string, phrases []string) bool {
	for _, p := range phrases {
		if strings.Contains(s, p) {
			return true
		}
	}
	return false
}
