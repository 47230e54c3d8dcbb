package swarm

import (
	"context"
	"log/slog"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// zapHandler routes anacrolix/torrent's slog output into the injected zap
// logger: its info and debug chatter at debug level, its warnings and errors
// at warn, so that zap's info level stays quiet.
type zapHandler struct {
	log    *zap.Logger
	prefix string // open groups, "a.b."
}

func newSlogger(log *zap.Logger) *slog.Logger {
	return slog.New(&zapHandler{log: log.WithOptions(zap.WithCaller(false))})
}

func zapLevel(l slog.Level) zapcore.Level {
	if l >= slog.LevelWarn {
		return zapcore.WarnLevel
	}
	return zapcore.DebugLevel
}

func (h *zapHandler) Enabled(_ context.Context, l slog.Level) bool {
	return h.log.Core().Enabled(zapLevel(l))
}

func (h *zapHandler) Handle(_ context.Context, r slog.Record) error {
	ce := h.log.Check(zapLevel(r.Level), r.Message)
	if ce == nil {
		return nil
	}
	fields := make([]zap.Field, 0, r.NumAttrs())
	r.Attrs(func(a slog.Attr) bool {
		fields = appendAttr(fields, h.prefix, a)
		return true
	})
	ce.Write(fields...)
	return nil
}

func (h *zapHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	var fields []zap.Field
	for _, a := range attrs {
		fields = appendAttr(fields, h.prefix, a)
	}
	return &zapHandler{log: h.log.With(fields...), prefix: h.prefix}
}

func (h *zapHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &zapHandler{log: h.log, prefix: h.prefix + name + "."}
}

func appendAttr(fields []zap.Field, prefix string, a slog.Attr) []zap.Field {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return fields
	}
	if a.Value.Kind() == slog.KindGroup {
		if a.Key != "" {
			prefix += a.Key + "."
		}
		for _, g := range a.Value.Group() {
			fields = appendAttr(fields, prefix, g)
		}
		return fields
	}
	return append(fields, zap.Any(prefix+a.Key, a.Value.Any()))
}
