package server_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/jbcalling/platform/internal/netns"
	"github.com/jbcalling/platform/sfu/client"
	"github.com/jbcalling/platform/sfu/signal"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// withAudioLevel negotiates the ssrc-audio-level extension, as browsers do.
func withAudioLevel(o *client.Options) {
	o.Configure = func(m *webrtc.MediaEngine, ir *interceptor.Registry) error {
		if err := m.RegisterDefaultCodecs(); err != nil {
			return err
		}
		if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.AudioLevelURI}, webrtc.RTPCodecTypeAudio); err != nil {
			return err
		}
		return webrtc.RegisterDefaultInterceptors(m, ir)
	}
}

// speaker publishes Opus packets at the audio level *dBov (-dBov, 0 the
// loudest, 127 silence) until stopped.
func speaker(t *testing.T, p *peer, dBov *atomic.Uint32) (stop func()) {
	t.Helper()
	tr, sender := p.publishTrack(t, "mic", opusCap)
	var id uint8
	for _, x := range sender.GetParameters().HeaderExtensions {
		if x.URI == sdp.AudioLevelURI {
			id = uint8(x.ID)
		}
	}
	if id == 0 {
		t.Fatal("audio level extension not negotiated")
	}
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for n := uint16(1); ; n++ {
			select {
			case <-quit:
				return
			case <-time.After(20 * time.Millisecond):
			}
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: n, Timestamp: uint32(n) * 960}, Payload: []byte{0xfc, byte(n)}}
			_ = pkt.SetExtension(id, []byte{0x80 | uint8(dBov.Load())})
			if tr.WriteRTP(pkt) != nil {
				return
			}
		}
	}()
	return func() { close(quit); <-done }
}

// The server ranks speakers by the levels it forwards and tells the room
// when the ranking changes: the loud one first, the silent one never.
func TestActiveSpeakers(t *testing.T) {
	netns.Require(t)
	e := start(t, nil)
	defer e.close()
	ana := e.join("speakers", "Ana", withAudioLevel)
	defer ana.Close()
	bo := e.join("speakers", "Bo", withAudioLevel)
	defer bo.Close()
	watcher := e.join("speakers", "Watcher", nil)
	defer watcher.Close()

	var anaLevel, boLevel atomic.Uint32
	anaLevel.Store(20) // Ana speaks, Bo is silent
	boLevel.Store(127)
	defer speaker(t, ana, &anaLevel)()
	defer speaker(t, bo, &boLevel)()
	speakers := func(m signal.Message) []signal.Speaker {
		if s, ok := m.(*signal.ActiveSpeakers); ok {
			return s.Speakers
		}
		return nil
	}
	watcher.expectEvent(t, "Ana alone as the active speaker", func(m signal.Message) bool {
		s := speakers(m)
		return len(s) == 1 && s[0].ParticipantID == ana.ID() && s[0].Level >= 0.01
	})
	// Bo starts and is louder; Ana goes on more quietly: Bo first.
	boLevel.Store(10)
	anaLevel.Store(30)
	watcher.expectEvent(t, "Bo, then Ana", func(m signal.Message) bool {
		s := speakers(m)
		return len(s) == 2 && s[0].ParticipantID == bo.ID() && s[1].ParticipantID == ana.ID() && s[0].Level > s[1].Level
	})
	// Both fall silent: an empty list.
	boLevel.Store(127)
	anaLevel.Store(127)
	watcher.expectEvent(t, "no active speaker", func(m signal.Message) bool {
		s, ok := m.(*signal.ActiveSpeakers)
		return ok && len(s.Speakers) == 0
	})
}
