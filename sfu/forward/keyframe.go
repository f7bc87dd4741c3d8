package forward

import (
	"time"

	"github.com/pion/webrtc/v4"
)

// RequestKeyframe asks the publisher for a keyframe (a subscriber's PLI or
// FIR) unless one was asked for within the throttle interval. Audio tracks
// ignore it.
func (f *Forwarder) RequestKeyframe() { f.requestKeyframe(false) }

// requestKeyframe for a subscriber that attaches: it has no keyframe yet,
// so unless one is already on its way it is asked for after only a fifth
// of the throttle interval, and a throttled request is retried when the
// throttle allows unless a keyframe went by meanwhile. Dropping it for the
// whole interval left late joiners black until the publisher's next
// periodic keyframe (seconds, measured with sfuload).
func (f *Forwarder) requestKeyframe(attach bool) {
	if f.kind != webrtc.RTPCodecTypeVideo || f.cfg.RequestKeyframe == nil {
		return
	}
	now := f.now().UnixNano()
	last := f.lastKeyframe.Load()
	gap := int64(f.cfg.KeyframeInterval)
	if attach && f.isKey != nil && !f.awaiting.Load() {
		gap /= 5
	}
	if now-last < gap || !f.lastKeyframe.CompareAndSwap(last, now) {
		if attach && f.isKey != nil {
			f.retryAttach(time.Duration(gap - (now - last)))
		}
		return
	}
	f.awaiting.Store(true)
	f.cfg.Counters.KeyframeRequests.Add(1)
	f.cfg.RequestKeyframe()
}

// attached asks for a keyframe for a subscriber that has none.
func (f *Forwarder) attached() {
	f.lastAttach.Store(f.now().UnixNano())
	f.requestKeyframe(true)
}

// retryAttach asks again after wait if a subscriber attached after the
// last keyframe went by; one retry is pending at a time.
func (f *Forwarder) retryAttach(wait time.Duration) {
	if !f.retrying.CompareAndSwap(false, true) {
		return
	}
	f.after(max(wait, 0)+time.Millisecond, func() {
		f.retrying.Store(false)
		if f.lastAttach.Load() > f.lastKeySeen.Load() && !f.ended.Load() && f.Subscribers() > 0 {
			f.requestKeyframe(true)
		}
	})
}
