package collector

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/imagepull/imagepull_exporter/collector/config"
	"github.com/imagepull/imagepull_exporter/probe"
)

// RedactingHandler is a slog.Handler that passes the message and every
// attribute of a record (nested groups, errors and Stringers included)
// through the one redactor before the handler it wraps sees them, at every
// level: the secrets of the running configuration's modules (SetSecrets),
// their base64 user:password forms, and whatever has the shape of a
// credential (a bearer token, a token field). Log lines are built from
// texts the prober already redacts; this is the last line of defence for
// the one sink every part of the exporter writes to.
type RedactingHandler struct {
	next  slog.Handler
	red   *atomic.Pointer[probe.Redactor]
	extra *atomic.Pointer[func() *probe.Redactor]
}

// SetDynamicSecrets makes the handler also redact with the redactor f
// returns at each record: the credentials credential provider plugins hand
// out while the exporter runs (credprovider.Providers.Redactor), which no
// configuration holds.
func (h *RedactingHandler) SetDynamicSecrets(f func() *probe.Redactor) {
	h.extra.Store(&f)
}

// redactor is what redactAttr applies.
type redactor interface{ Redact(string) string }

// both applies the configuration's redactor, then the dynamic one.
type both struct{ a, b *probe.Redactor }

func (r both) Redact(s string) string { return r.b.Redact(r.a.Redact(s)) }

// current is the redactor to apply now.
func (h *RedactingHandler) current() redactor {
	red := h.red.Load()
	if f := h.extra.Load(); f != nil {
		return both{red, (*f)()}
	}
	return red
}

// NewRedactingHandler wraps next. Until SetSecrets is called only the
// shape rules apply.
func NewRedactingHandler(next slog.Handler) *RedactingHandler {
	h := &RedactingHandler{next: next, red: &atomic.Pointer[probe.Redactor]{}, extra: &atomic.Pointer[func() *probe.Redactor]{}}
	h.red.Store(probe.NewRedactor())
	return h
}

// SetSecrets makes the handler redact every secret cfg's modules hold
// (their passwords, password files and docker configs, whatever the
// registry). Call it with each configuration that becomes the running one.
func (h *RedactingHandler) SetSecrets(cfg *config.Config) {
	r := probe.NewRedactor()
	if cfg != nil {
		for _, m := range cfg.Modules {
			r.AddModule(m)
		}
	}
	h.red.Store(r)
}

// Redactor returns the redactor of the running configuration's secrets,
// for other sinks that show texts from every module (the status page).
func (h *RedactingHandler) Redactor() *probe.Redactor { return h.red.Load() }

// Enabled implements slog.Handler.
func (h *RedactingHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

// Handle implements slog.Handler.
func (h *RedactingHandler) Handle(ctx context.Context, rec slog.Record) error {
	red := h.current()
	out := slog.NewRecord(rec.Time, rec.Level, red.Redact(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redactAttr(red, a))
		return true
	})
	return h.next.Handle(ctx, out)
}

// WithAttrs implements slog.Handler. The attributes are redacted with the
// secrets known now.
func (h *RedactingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	red := h.current()
	clean := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		clean[i] = redactAttr(red, a)
	}
	return &RedactingHandler{next: h.next.WithAttrs(clean), red: h.red, extra: h.extra}
}

// WithGroup implements slog.Handler.
func (h *RedactingHandler) WithGroup(name string) slog.Handler {
	return &RedactingHandler{next: h.next.WithGroup(name), red: h.red, extra: h.extra}
}

func redactAttr(red redactor, a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, red.Redact(v.String()))
	case slog.KindGroup:
		group := v.Group()
		clean := make([]any, len(group))
		for i, g := range group {
			clean[i] = redactAttr(red, g)
		}
		return slog.Group(a.Key, clean...)
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			return slog.String(a.Key, red.Redact(x.Error()))
		case fmt.Stringer:
			return slog.String(a.Key, red.Redact(x.String()))
		default:
			// Keep other values as they are unless their text holds a
			// secret: a JSON handler renders a slice as a list.
			if s := fmt.Sprint(x); red.Redact(s) != s {
				return slog.String(a.Key, red.Redact(s))
			}
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}
