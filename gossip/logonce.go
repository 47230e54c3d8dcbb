package gossip

import (
	"sync"
	"time"

	"go.uber.org/zap"
)

// A flood of bad input must not become a flood of log lines: every refusal
// is counted in Stats, but each cause of refusal (with the source it came
// from) is logged at most once per refusalLogEvery. The next line logged
// for that cause says how many were held back since the last one.

// refusalLogEvery is how often one cause of refusal may be logged.
const refusalLogEvery = time.Minute

// maxRateKeys bounds the causes a rateLog tracks. Its keys are built from
// fixed reasons and sources, far fewer than this; past it, new keys share
// one line, so no input can make the set grow.
const maxRateKeys = 64

// rateOverflowKey is the key shared by causes past maxRateKeys.
const rateOverflowKey = "other"

// rateLog lets one line per key through per interval and counts the lines
// it holds back. It is safe for concurrent use.
type rateLog struct {
	every time.Duration

	mu   sync.Mutex
	keys map[string]*rateState
}

type rateState struct {
	last       time.Time // when a line was last let through
	suppressed uint64    // lines held back since
}

func newRateLog(every time.Duration) *rateLog {
	return &rateLog{every: every, keys: make(map[string]*rateState)}
}

// allow reports whether a line for key may be logged at now and, if so, how
// many lines for key were held back since the last one let through.
func (r *rateLog) allow(key string, now time.Time) (bool, uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.keys[key]
	if !ok {
		if len(r.keys) >= maxRateKeys {
			key = rateOverflowKey
			s = r.keys[key]
		}
		if s == nil {
			r.keys[key] = &rateState{last: now}
			return true, 0
		}
	}
	if now.Sub(s.last) < r.every {
		s.suppressed++
		return false, 0
	}
	held := s.suppressed
	s.last, s.suppressed = now, 0
	return true, held
}

// log calls emit with a field saying how many lines were held back (none
// when nothing was) if a line for key may be logged at now.
func (r *rateLog) log(key string, now time.Time, emit func(suppressed zap.Field)) {
	ok, held := r.allow(key, now)
	if !ok {
		return
	}
	f := zap.Skip()
	if held > 0 {
		f = zap.Uint64("suppressed", held)
	}
	emit(f)
}
