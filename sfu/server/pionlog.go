package server

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/pion/logging"
)

// pionLogs routes pion's logs into the server's slog logger, one level
// down: pion logs routine shutdown races as errors, which would make noise
// at the default level. The ICE muxes' warnings go to debug: they log each
// datagram they cannot place, which anyone on the Internet can send (one
// line per malformed STUN datagram). Lines that remain are rate limited,
// shared by all of pion: a flood of them cannot fill the log.
type pionLogs struct {
	log   *slog.Logger
	limit *lineLimit
}

func newPionLogs(log *slog.Logger) pionLogs {
	return pionLogs{log: log, limit: &lineLimit{bucket: rate.NewLimiter(pionLinesPerSecond, pionLinesBurst)}}
}

// pion log lines per second above debug, and at once.
const pionLinesPerSecond, pionLinesBurst = 10, 50

func (f pionLogs) NewLogger(scope string) logging.LeveledLogger {
	l := pionLogger{log: f.log.With("pion", scope), limit: f.limit, warn: slog.LevelInfo}
	if scope == "udpmux" || scope == "tcpmux" {
		l.warn = slog.LevelDebug
	}
	return l
}

type pionLogger struct {
	log   *slog.Logger
	limit *lineLimit
	warn  slog.Level // the level pion's warnings get
}

func (l pionLogger) logf(level slog.Level, format string, args ...any) {
	ctx := context.Background()
	if !l.log.Enabled(ctx, level) {
		return
	}
	if level > slog.LevelDebug {
		ok, suppressed := l.limit.allow(time.Now())
		if suppressed > 0 {
			l.log.Log(ctx, slog.LevelWarn, "pion log lines suppressed", "lines", suppressed)
		}
		if !ok {
			return
		}
	}
	l.log.Log(ctx, level, fmt.Sprintf(format, args...))
}

func (l pionLogger) Trace(msg string)                  {}
func (l pionLogger) Tracef(format string, args ...any) {}
func (l pionLogger) Debug(msg string)                  {}
func (l pionLogger) Debugf(format string, args ...any) {}
func (l pionLogger) Info(msg string)                   { l.logf(slog.LevelDebug, "%s", msg) }
func (l pionLogger) Infof(format string, args ...any)  { l.logf(slog.LevelDebug, format, args...) }
func (l pionLogger) Warn(msg string)                   { l.logf(l.warn, "%s", msg) }
func (l pionLogger) Warnf(format string, args ...any)  { l.logf(l.warn, format, args...) }
func (l pionLogger) Error(msg string)                  { l.logf(slog.LevelWarn, "%s", msg) }
func (l pionLogger) Errorf(format string, args ...any) { l.logf(slog.LevelWarn, format, args...) }

// lineLimit is a token bucket of log lines that counts the lines it
// refused, to report them once lines are allowed again.
type lineLimit struct {
	bucket     *rate.Limiter
	mu         sync.Mutex
	suppressed int
}

// allow reports whether a line may be logged now and, when it may, how
// many were refused since the last one allowed.
func (b *lineLimit) allow(now time.Time) (ok bool, suppressed int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.bucket.AllowN(now, 1) {
		b.suppressed++
		return false, 0
	}
	suppressed, b.suppressed = b.suppressed, 0
	return true, suppressed
}
