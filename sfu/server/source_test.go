package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/jbcalling/platform/internal/netns"
	"github.com/jbcalling/platform/sfu/signal"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// A track published as a screen is announced as one, to those in the room
// and to those who join later; others get their kind's default source.
func TestTrackSource(t *testing.T) {
	netns.Require(t)
	e := start(t, nil)
	defer e.close()
	ana := e.join("sources", "Ana", nil)
	defer ana.Close()
	bo := e.join("sources", "Bo", nil)
	defer bo.Close()

	cam := ana.publish(t, "cam", vp8Cap)
	defer cam.close()
	screen, err := webrtc.NewTrackLocalStaticRTP(vp8Cap, "screen", ana.ID())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := ana.PublishAs(ctx, signal.SourceScreen, screen); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() { // the SFU learns a track from its first packet
		for seq := uint16(1); ; seq++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			_ = screen.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(seq) * 3000, Marker: true}, Payload: payloadFor(uint32(seq))})
		}
	}()
	want := map[string]string{"cam": signal.SourceCamera, "screen": signal.SourceScreen}
	for range want {
		m := bo.expectEvent(t, "a track_published", func(m signal.Message) bool { _, ok := m.(*signal.TrackPublished); return ok }).(*signal.TrackPublished)
		if w := want[m.Track.ID]; w == "" || m.Track.Source != w {
			t.Fatalf("track %q published with source %q, want %q", m.Track.ID, m.Track.Source, w)
		}
	}
	cy := e.join("sources", "Cy", nil)
	defer cy.Close()
	for _, p := range cy.Participants() {
		if p.ID != ana.ID() {
			continue
		}
		for _, tr := range p.Tracks {
			if tr.Source != want[tr.ID] {
				t.Fatalf("joined lists track %q with source %q, want %q", tr.ID, tr.Source, want[tr.ID])
			}
		}
		if len(p.Tracks) != 2 {
			t.Fatalf("joined lists %d tracks of Ana's, want 2", len(p.Tracks))
		}
	}
}
