// Package simulcast turns the layers a publisher sends of one video track
// (the same picture at several resolutions, each its own RTP stream) into
// the one continuous stream a subscriber receives: one layer at a time,
// switching only at a keyframe of the layer switched to, with sequence
// numbers, timestamps and VP8 picture IDs rewritten so that the subscriber
// never sees a switch. VP8 and H264 (whose payloads carry no numbers to
// rewrite) are switched.
package simulcast

import (
	"errors"
	"strings"
	"time"

	"github.com/jbcalling/platform/sfu/codecs"
	"github.com/pion/rtp"
)

// Switchable reports whether the layers of a track of codec mime can be
// switched between.
func Switchable(mime string) bool {
	return strings.EqualFold(mime, "video/vp8") || strings.EqualFold(mime, "video/h264")
}

// Paused as a target: the subscriber receives none of the track.
const Paused = -1

// Switcher is one subscriber's view of one simulcast video track. It is
// not safe for concurrent use: the track's forwarding loop owns it.
type Switcher struct {
	clock uint32 // RTP clock rate
	// isKey, for H264, finds keyframes; nil for VP8, whose payload
	// descriptor says and carries the numbers to rewrite.
	isKey   func([]byte) bool
	target  int
	current int // Paused before the first keyframe and while paused

	started bool // something was sent
	// The newest packet sent, in output numbers.
	lastSeq uint16
	lastTS  uint32
	lastAt  time.Time
	lastPic uint16
	lastTL0 uint8

	// The current layer's mapping onto the output.
	firstSeq uint16 // its first packet sent: older ones of it are dropped
	seqOff   uint16
	tsOff    uint32
	picOff   uint16
	tl0Off   uint8
}

// NewSwitcher returns a switcher for a track of codec mime (one Switchable)
// whose RTP clock runs at clockRate (90000 for video), paused.
func NewSwitcher(mime string, clockRate uint32) *Switcher {
	s := &Switcher{clock: clockRate, target: Paused, current: Paused}
	if strings.EqualFold(mime, "video/h264") {
		s.isKey = codecs.KeyframeDetector(mime)
	}
	return s
}

// parse reads what a switch needs of a payload: for VP8 its descriptor,
// for H264 whether it begins a keyframe.
func (s *Switcher) parse(p []byte) (codecs.VP8Descriptor, error) {
	if s.isKey == nil {
		return codecs.ParseVP8(p)
	}
	if len(p) == 0 {
		return codecs.VP8Descriptor{}, errNoPayload // padding
	}
	return codecs.VP8Descriptor{PicAt: -1, TL0At: -1, Keyframe: s.isKey(p)}, nil
}

var errNoPayload = errors.New("simulcast: no payload")

// SetTarget chooses the layer the subscriber should receive (0 the lowest,
// Paused for none). Pausing takes effect at once; another layer at its
// next keyframe, the current one going on meanwhile.
func (s *Switcher) SetTarget(layer int) {
	s.target = layer
	if layer == Paused {
		s.current = Paused
	}
}

// Target is the layer asked for.
func (s *Switcher) Target() int { return s.target }

// Current is the layer being sent (Paused for none).
func (s *Switcher) Current() int { return s.current }

// Result says what became of a packet.
type Result struct {
	// Send: the packet was rewritten for the subscriber; send it.
	Send bool
	// Switched: it is the first packet of a new layer (a keyframe).
	Switched bool
	// WantKeyframe: a packet of the target layer was dropped while
	// waiting for its keyframe; ask the publisher for one (throttled).
	WantKeyframe bool
}

// Packet decides on one packet of layer and, when it is to be sent,
// rewrites h and the VP8 payload descriptor at the start of payload in
// place (the caller passes its own copies). now is its arrival.
func (s *Switcher) Packet(layer int, h *rtp.Header, payload []byte, now time.Time) Result {
	d, err := s.parse(payload)
	if err != nil {
		// Padding (browsers probe with it on the media stream) or a
		// descriptor that does not parse: never a switch point, but on
		// the current layer sent on, since its index is in the layer's
		// numbering and dropping it would leave the subscriber a gap.
		if layer != s.current || layer == Paused || seqBefore(h.SequenceNumber, s.firstSeq) {
			return Result{}
		}
		s.rewrite(h, codecs.VP8Descriptor{PicAt: -1, TL0At: -1}, payload, now)
		return Result{Send: true}
	}
	var r Result
	switch {
	case layer == s.current && layer != Paused:
		if seqBefore(h.SequenceNumber, s.firstSeq) {
			return Result{} // sent before the switch to this layer
		}
	case layer == s.target:
		if !d.Keyframe {
			return Result{WantKeyframe: true}
		}
		s.switchTo(layer, h, d, payload, now)
		r.Switched = true
	default:
		return Result{} // a layer nobody wants here
	}
	s.rewrite(h, d, payload, now)
	r.Send = true
	return r
}

// switchTo maps layer's numbers onto the output so that its first packet
// (h) follows the newest one sent.
func (s *Switcher) switchTo(layer int, h *rtp.Header, d codecs.VP8Descriptor, payload []byte, now time.Time) {
	s.current, s.firstSeq = layer, h.SequenceNumber
	if !s.started {
		s.seqOff, s.tsOff, s.picOff, s.tl0Off = 0, 0, 0, 0
		return
	}
	s.seqOff = s.lastSeq + 1 - h.SequenceNumber
	// The new layer's clock has its own origin: continue the output's by
	// the time that passed, at least one tick, so frames stay in order.
	ticks := uint32(now.Sub(s.lastAt).Seconds() * float64(s.clock))
	s.tsOff = s.lastTS + max(ticks, 1) - h.Timestamp
	if d.PicAt >= 0 {
		s.picOff = (s.lastPic + 1 - d.Picture(payload)) & d.PictureMask()
	}
	if d.TL0At >= 0 {
		s.tl0Off = s.lastTL0 + 1 - payload[d.TL0At]
	}
}

func (s *Switcher) rewrite(h *rtp.Header, d codecs.VP8Descriptor, payload []byte, now time.Time) {
	h.SequenceNumber += s.seqOff
	h.Timestamp += s.tsOff
	if d.PicAt >= 0 {
		d.SetPicture(payload, (d.Picture(payload)+s.picOff)&d.PictureMask())
	}
	if d.TL0At >= 0 {
		payload[d.TL0At] += s.tl0Off
	}
	if !s.started || seqBefore(s.lastSeq, h.SequenceNumber) {
		s.started = true
		s.lastSeq, s.lastTS, s.lastAt = h.SequenceNumber, h.Timestamp, now
		if d.PicAt >= 0 {
			s.lastPic = d.Picture(payload)
		}
		if d.TL0At >= 0 {
			s.lastTL0 = payload[d.TL0At]
		}
	}
}

// Offsets map the current layer's timestamps, picture IDs and TL0PICIDX
// onto the output: a retransmission of one of its packets is rewritten
// with them (Rewrite), so that it carries the bytes first sent.
type Offsets struct {
	TS  uint32
	Pic uint16
	TL0 uint8
	// VP8: the payloads carry a VP8 descriptor to rewrite.
	VP8 bool
}

// Offsets are the current layer's.
func (s *Switcher) Offsets() Offsets {
	return Offsets{TS: s.tsOff, Pic: s.picOff, TL0: s.tl0Off, VP8: s.isKey == nil}
}

// Last is the newest packet sent, in output numbers: its timestamp and
// when it arrived (the subscriber's sender reports); ok is false before
// the first.
func (s *Switcher) Last() (ts uint32, at time.Time, ok bool) { return s.lastTS, s.lastAt, s.started }

// Rewrite applies off to a packet of the layer it was taken for: its
// timestamp and, in place, its VP8 payload descriptor.
func Rewrite(off Offsets, h *rtp.Header, payload []byte) {
	h.Timestamp += off.TS
	if !off.VP8 {
		return
	}
	d, err := codecs.ParseVP8(payload)
	if err != nil {
		return // sent as it was, its timestamp alone rewritten (Packet)
	}
	if d.PicAt >= 0 {
		d.SetPicture(payload, (d.Picture(payload)+off.Pic)&d.PictureMask())
	}
	if d.TL0At >= 0 {
		payload[d.TL0At] += off.TL0
	}
}

// seqBefore reports whether a comes before b in 16-bit serial order.
func seqBefore(a, b uint16) bool { return a != b && b-a < 0x8000 }
