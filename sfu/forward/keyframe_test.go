package forward

import (
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// A subscriber that attaches while a requested keyframe is still on its
// way waits for it; one that attaches after it went by gets its own
// request at once instead of waiting out the throttle.
func TestAttachRequestsKeyframeUnlessOneIsComing(t *testing.T) {
	plis := 0
	f := New(Config{Codec: vp8, RequestKeyframe: func() { plis++ }, KeyframeInterval: 500 * time.Millisecond})
	clock := time.Unix(1000, 0)
	f.now = func() time.Time { return clock }
	var retries []func()
	f.after = func(_ time.Duration, fn func()) { retries = append(retries, fn) }
	attach := func() {
		c := &fakeContext{codecs: []webrtc.RTPCodecParameters{vp8}, w: &recorder{}}
		if _, err := f.NewDownTrack("v", "p", nil).Bind(c); err != nil {
			t.Fatal(err)
		}
	}
	keyframe := func(seq uint16) {
		raw, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq}, Payload: []byte{0x90, 0x80, 0x81, 0x23, 0x10, 0x02, 0x00}}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		f.Forward(raw)
	}

	attach()
	clock = clock.Add(150 * time.Millisecond)
	attach() // the first request is unanswered: no second PLI
	if plis != 1 {
		t.Fatalf("two attaches before a keyframe sent %d PLIs, want 1", plis)
	}
	keyframe(1)
	attach() // answered 150 ms ago, more than a fifth of the interval
	if plis != 2 {
		t.Fatalf("an attach after the keyframe sent %d PLIs in all, want 2", plis)
	}
	keyframe(2)
	clock = clock.Add(50 * time.Millisecond)
	attach() // only 50 ms after the last request: throttled
	if plis != 2 {
		t.Fatalf("an attach 50 ms after a request sent a PLI (%d in all)", plis)
	}
	// The throttled attach is retried once the throttle allows.
	if len(retries) != 1 {
		t.Fatalf("%d retries scheduled, want 1", len(retries))
	}
	clock = clock.Add(50 * time.Millisecond)
	retries[0]()
	if plis != 3 {
		t.Fatalf("the retry sent no PLI (%d in all)", plis)
	}
	keyframe(3)
	clock = clock.Add(time.Second)
	f.RequestKeyframe() // a subscriber's PLI, long after: sent
	f.RequestKeyframe() // and again at once: throttled
	if plis != 4 || len(retries) != 1 {
		t.Fatalf("subscriber PLIs: %d in all, %d retries; want 4, 1", plis, len(retries))
	}
}

// A retry is not sent when a keyframe reached the new subscriber first.
func TestAttachRetrySkippedAfterKeyframe(t *testing.T) {
	plis := 0
	f := New(Config{Codec: vp8, RequestKeyframe: func() { plis++ }, KeyframeInterval: 500 * time.Millisecond})
	clock := time.Unix(1000, 0)
	f.now = func() time.Time { return clock }
	var retries []func()
	f.after = func(_ time.Duration, fn func()) { retries = append(retries, fn) }
	for range 2 {
		c := &fakeContext{codecs: []webrtc.RTPCodecParameters{vp8}, w: &recorder{}}
		if _, err := f.NewDownTrack("v", "p", nil).Bind(c); err != nil {
			t.Fatal(err)
		}
		clock = clock.Add(time.Millisecond)
	}
	raw, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96}, Payload: []byte{0x10, 0x00}}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	f.Forward(raw)
	clock = clock.Add(time.Second)
	for _, r := range retries {
		r()
	}
	if plis != 1 || len(retries) != 1 {
		t.Fatalf("%d PLIs, %d retries; want 1, 1: the keyframe served both subscribers", plis, len(retries))
	}
}

// notReady drops packets like pion before the subscriber's DTLS-SRTP is
// up: no error, nothing written.
type notReady struct {
	recorder
	ready bool
}

func (w *notReady) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	if !w.ready {
		return 0, nil
	}
	return w.recorder.WriteRTP(h, payload)
}

// A keyframe that reached the SFU before the subscriber's transport was
// up never reached the subscriber: its first delivered packet asks again.
func TestKeyframeRequestedAgainWhenTransportComesUp(t *testing.T) {
	plis := 0
	f := New(Config{Codec: vp8, RequestKeyframe: func() { plis++ }, KeyframeInterval: 500 * time.Millisecond})
	clock := time.Unix(1000, 0)
	f.now = func() time.Time { return clock }
	f.after = func(time.Duration, func()) {}
	w := &notReady{}
	if _, err := f.NewDownTrack("v", "p", nil).Bind(&writerContext{w}); err != nil {
		t.Fatal(err)
	}
	send := func(seq uint16, key bool) {
		payload := []byte{0x90, 0x80, 0x81, 0x23, 0x11, 0x02, 0x00}
		if key {
			payload[4] = 0x10
		}
		raw, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq}, Payload: payload}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		f.Forward(raw)
	}
	send(1, true) // the answer to the Bind request, dropped by pion
	clock = clock.Add(200 * time.Millisecond)
	w.ready = true
	send(2, false)
	send(3, false)
	if plis != 2 {
		t.Fatalf("%d PLIs, want 2: Bind's, and one when the first packet got through", plis)
	}
	send(4, true)
	send(5, false)
	if plis != 2 {
		t.Fatalf("%d PLIs after the subscriber got its keyframe, want 2", plis)
	}
}

// writerContext binds a DownTrack to any writer.
type writerContext struct{ w webrtc.TrackLocalWriter }

func (c *writerContext) CodecParameters() []webrtc.RTPCodecParameters {
	return []webrtc.RTPCodecParameters{vp8}
}
func (c *writerContext) HeaderExtensions() []webrtc.RTPHeaderExtensionParameter { return nil }
func (c *writerContext) SSRC() webrtc.SSRC                                      { return 7 }
func (c *writerContext) SSRCRetransmission() webrtc.SSRC                        { return 0 }
func (c *writerContext) SSRCForwardErrorCorrection() webrtc.SSRC                { return 0 }
func (c *writerContext) WriteStream() webrtc.TrackLocalWriter                   { return c.w }
func (c *writerContext) ID() string                                             { return "ctx" }
func (c *writerContext) RTCPReader() interceptor.RTCPReader                     { return nil }
