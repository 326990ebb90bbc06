package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
)

// probeError is a failure with its reason. Its text is built by the prober
// from redacted parts only.
type probeError struct {
	reason Reason
	msg    string
}

func (e *probeError) Error() string { return e.msg }

func failf(reason Reason, format string, args ...any) *probeError {
	return &probeError{reason: reason, msg: fmt.Sprintf(format, args...)}
}

// classifyTransportError maps an error of an HTTP exchange that got no
// response to a reason. The order matters: a deadline wins over whatever
// the cut-off operation reported, and a failed TLS handshake wins over the
// connection error it ends with.
func classifyTransportError(ctx context.Context, err error, tlsFailed bool) Reason {
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, errTooManyRedirects), errors.Is(err, errManifestGet), isOversizedHeaders(err):
		return ReasonProtocol
	case errors.Is(err, context.DeadlineExceeded), ctx.Err() != nil:
		return ReasonTimeout
	case errors.As(err, &dnsErr):
		if dnsErr.IsTimeout {
			return ReasonTimeout
		}
		return ReasonDNS
	case isTLSError(err), tlsFailed:
		return ReasonTLS
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ReasonTimeout
	}
	// Refused, reset, unreachable, a closed connection: the registry (or
	// the path to it) is not answering.
	return ReasonConnect
}

// isOversizedHeaders reports net/http's refusal of a reply whose headers
// exceed Transport.MaxResponseHeaderBytes: the registry answered, with a
// reply no client should accept, so it is a protocol failure, not connect.
// net/http has no error type for it; its text is stable since Go 1.7.
func isOversizedHeaders(err error) bool {
	return strings.Contains(err.Error(), "net/http: server response headers exceeded ")
}

func isTLSError(err error) bool {
	var (
		verr  *tls.CertificateVerificationError
		rerr  tls.RecordHeaderError
		aerr  tls.AlertError
		uaerr x509.UnknownAuthorityError
		cierr x509.CertificateInvalidError
		hnerr x509.HostnameError
		srerr x509.SystemRootsError
	)
	if errors.As(err, &verr) || errors.As(err, &rerr) || errors.As(err, &aerr) || errors.As(err, &uaerr) ||
		errors.As(err, &cierr) || errors.As(err, &hnerr) || errors.As(err, &srerr) {
		return true
	}
	// net/http turns a plain-HTTP answer to a TLS hello into this text
	// (no exported error type); it means the module wants plain_http.
	s := err.Error()
	return strings.Contains(s, "server gave HTTP response to HTTPS client") || strings.Contains(s, "tls: ")
}

// describeTransportError renders an exchange error without the URL that
// net/http's *url.Error repeats (the caller names the redacted URL).
func describeTransportError(err error) string {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "no answer before the probe deadline (module timeout)"
	}
	s := err.Error()
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		s += " (is the registry running and listening on that port?)"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		s += " (the connection was closed before a reply)"
	case strings.Contains(s, "server gave HTTP response to HTTPS client"):
		s += " (set plain_http: true in the module for an http:// registry)"
	}
	return s
}

// statusReason maps the status of a reply that is not a success.
func statusReason(code int) Reason {
	switch {
	case code == http.StatusUnauthorized:
		return ReasonUnauthorized
	case code == http.StatusForbidden:
		return ReasonForbidden
	case code == http.StatusNotFound:
		return ReasonNotFound
	case code == http.StatusTooManyRequests:
		return ReasonRateLimited
	case code >= 500:
		return ReasonServerError
	}
	return ReasonProtocol
}

// codeReason maps a distribution error code (the "code" of the JSON error
// body, https://distribution.github.io/distribution/spec/api/#errors).
func codeReason(code string) Reason {
	switch strings.ToUpper(code) {
	case "UNAUTHORIZED":
		return ReasonUnauthorized
	case "DENIED":
		return ReasonForbidden
	case "NAME_UNKNOWN", "MANIFEST_UNKNOWN", "BLOB_UNKNOWN":
		return ReasonNotFound
	case "TOOMANYREQUESTS":
		return ReasonRateLimited
	case "UNAVAILABLE":
		return ReasonServerError
	}
	return ReasonNone
}

// maxErrorBody bounds what is read of an error reply.
const maxErrorBody = 64 << 10

// errorBody summarises a JSON error body: the registry form
// {"errors":[{"code","message"}]}, Docker Hub's token endpoint
// {"details": ...} and OAuth2's {"error","error_description"}. It returns the
// first registry error code (for the reason) and a short, printable summary.
func errorBody(body []byte) (code, summary string) {
	var v struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
		Details          string `json:"details"`
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description"`
	}
	if json.Unmarshal(body, &v) != nil {
		return "", ""
	}
	var parts []string
	for i, e := range v.Errors {
		if i == 0 {
			code = e.Code
		}
		if i == 3 {
			break
		}
		parts = append(parts, strings.TrimSpace(e.Code+" "+e.Message))
	}
	for _, s := range []string{v.Details, v.Error, v.ErrorDescription} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	return code, printable(strings.Join(parts, "; "), 200)
}

// printable keeps printable ASCII of s, at most n bytes, so that a reply
// cannot inject control characters or megabytes into an error text.
func printable(s string, n int) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < n; i++ {
		if c := s[i]; c >= 0x20 && c < 0x7f {
			b.WriteByte(c)
		}
	}
	if b.Len() >= n {
		b.WriteString("...")
	}
	return b.String()
}
