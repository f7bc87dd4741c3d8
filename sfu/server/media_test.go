package server_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jbcalling/platform/internal/netns"
	"github.com/jbcalling/platform/sfu/client"
	"github.com/jbcalling/platform/sfu/forward"
	"github.com/jbcalling/platform/sfu/server"
	"github.com/jbcalling/platform/sfu/signal"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/transport/v4/test"
	"github.com/pion/webrtc/v4"
)

// Every participant receives every other participant's audio and video,
// intact and in order.
func TestParticipantsExchangeMedia(t *testing.T) {
	netns.Require(t)
	for _, n := range []int{2, 3} {
		t.Run(map[int]string{2: "two", 3: "three"}[n], func(t *testing.T) {
			defer test.TimeOut(60 * time.Second).Stop()
			defer test.CheckRoutines(t)()
			e := start(t, nil)
			defer e.close()

			var peers []*peer
			var sources []*source
			for i := range n {
				p := e.join("room", string(rune('A'+i)), nil)
				defer p.Close()
				peers = append(peers, p)
			}
			for _, p := range peers {
				sources = append(sources, p.publish(t, "video", vp8Cap), p.publish(t, "audio", opusCap))
			}
			defer func() {
				for _, s := range sources {
					s.close()
				}
			}()
			var wg sync.WaitGroup
			var received sync.WaitGroup // each receiver's first 100 packets
			errs := make(chan error, n*n*2)
			for _, sub := range peers {
				got := map[string]bool{}
				for range 2 * (n - 1) {
					rt := <-waitTrack(t, sub)
					key := rt.ParticipantID + "/" + rt.Kind.String()
					if got[key] || rt.ParticipantID == sub.ID() {
						t.Fatalf("%s got %s twice or its own track", sub.ID(), key)
					}
					got[key] = true
					wg.Add(1)
					received.Add(1)
					go func() {
						defer wg.Done()
						err := receiveInOrder(rt, 100)
						received.Done()
						if err != nil {
							errs <- err
						}
						drainTrack(rt)
					}()
				}
			}
			received.Wait()
			// Stopping the sources and leaving lets drainTrack return.
			for _, s := range sources {
				s.close()
			}
			for _, p := range peers {
				p.Close()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

func waitTrack(t *testing.T, p *peer) <-chan *client.RemoteTrack {
	ch := make(chan *client.RemoteTrack, 1)
	select {
	case rt := <-p.tracks:
		ch <- rt
	case <-time.After(15 * time.Second):
		t.Fatalf("%s: timed out waiting for a track", p.ID())
	}
	return ch
}

// A participant who joins after others published receives their tracks,
// and the publisher is asked for a keyframe when it attaches.
func TestLateJoinerReceivesExistingTracks(t *testing.T) {
	netns.Require(t)
	defer test.TimeOut(60 * time.Second).Stop()
	defer test.CheckRoutines(t)()
	e := start(t, nil)
	defer e.close()

	a := e.join("room", "A", nil)
	defer a.Close()
	src := a.publish(t, "cam", vp8Cap)
	defer src.close()
	waitFor(t, "the SFU to receive A's track", func() bool { return e.srv.Rooms().Counters().Forward.PacketsIn.Load() > 10 })

	b := e.join("room", "B", nil)
	defer b.Close()
	if ps := b.Participants(); len(ps) != 1 || ps[0].ID != a.ID() || len(ps[0].Tracks) != 1 || ps[0].Tracks[0].ID != "cam" {
		t.Fatalf("joined lists %+v, want A with track cam", ps)
	}
	rt := b.expectTrack(t, a.ID(), webrtc.RTPCodecTypeVideo)
	if rt.TrackID != "cam" {
		t.Fatalf("track id %q, want cam", rt.TrackID)
	}
	if err := receiveInOrder(rt, 50); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a keyframe request when B attached", func() bool { return a.pliCount("cam") >= 1 })
	src.close()
	b.Close()
	a.Close()
}

// A PLI from a subscriber reaches the publisher (throttled, so the test
// asks until a second one arrives after the attach-time request).
func TestSubscriberPLIReachesPublisher(t *testing.T) {
	netns.Require(t)
	defer test.TimeOut(60 * time.Second).Stop()
	defer test.CheckRoutines(t)()
	e := start(t, nil)
	defer e.close()

	call := e.videoCall(t, nil)
	defer call.close()
	a, b, src, rt := call.a, call.b, call.src, call.rt
	go drainTrack(rt)
	waitFor(t, "the attach keyframe request", func() bool { return a.pliCount("cam") >= 1 })
	before := e.srv.Rooms().Counters().PLIs.Load()
	waitFor(t, "B's PLI at A", func() bool {
		if err := b.RequestKeyframe(rt); err != nil {
			t.Fatalf("RequestKeyframe: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
		return a.pliCount("cam") >= 2
	})
	if e.srv.Rooms().Counters().PLIs.Load() <= before {
		t.Fatal("the SFU did not count B's PLIs")
	}
	src.close()
	b.Close()
	a.Close()
}

// Leaving and disconnecting both remove the participant and its tracks
// from the others, and free everything (CheckRoutines).
func TestLeaveAndDisconnectCleanUp(t *testing.T) {
	netns.Require(t)
	for _, tc := range []struct {
		name string
		end  func(p *peer) error
	}{
		{"leave", func(p *peer) error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return p.Leave(ctx)
		}},
		{"abrupt disconnect", func(p *peer) error { return p.Close() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer test.TimeOut(60 * time.Second).Stop()
			defer test.CheckRoutines(t)()
			e := start(t, nil)
			defer e.close()
			a := e.join("room", "A", nil)
			defer a.Close()
			b := e.join("room", "B", nil)
			defer b.Close()
			src := b.publish(t, "cam", vp8Cap)
			defer src.close()
			rt := a.expectTrack(t, b.ID(), webrtc.RTPCodecTypeVideo)
			ended := make(chan struct{})
			go func() { drainTrack(rt); close(ended) }()

			if err := tc.end(b); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			a.expectEvent(t, "participant_left for B", func(m signal.Message) bool {
				l, ok := m.(*signal.ParticipantLeft)
				return ok && l.ID == b.ID()
			})
			select {
			case <-ended:
			case <-time.After(15 * time.Second):
				t.Fatal("B's track did not end at A")
			}
			waitFor(t, "the room to hold only A", func() bool {
				rooms, ps := e.srv.Rooms().Stats()
				return rooms == 1 && ps == 1 && e.srv.Rooms().Counters().TracksCurrent.Load() == 0
			})
			src.close()
			a.Close()
			waitFor(t, "the room to close", func() bool { r, _ := e.srv.Rooms().Stats(); return r == 0 })
		})
	}
}

// A publisher that stops a track (renegotiating without it) removes it
// from its subscribers, who are told so.
func TestUnpublish(t *testing.T) {
	netns.Require(t)
	defer test.TimeOut(60 * time.Second).Stop()
	defer test.CheckRoutines(t)()
	e := start(t, nil)
	defer e.close()
	call := e.videoCall(t, nil)
	defer call.close()
	a, b, src, rt := call.a, call.b, call.src, call.rt
	if err := receiveInOrder(rt, 20); err != nil {
		t.Fatal(err)
	}
	ended := make(chan struct{})
	go func() { drainTrack(rt); close(ended) }()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Unpublish(ctx, src.sender); err != nil {
		t.Fatalf("Unpublish: %v", err)
	}
	b.expectEvent(t, "track_unpublished", func(m signal.Message) bool {
		u, ok := m.(*signal.TrackUnpublished)
		return ok && u.ParticipantID == a.ID() && u.TrackID == "cam"
	})
	select {
	case <-ended:
	case <-time.After(15 * time.Second):
		t.Fatal("the track did not end at B")
	}
	waitFor(t, "no tracks at the SFU", func() bool { return e.srv.Rooms().Counters().TracksCurrent.Load() == 0 })
	src.close()
	a.Close()
	b.Close()
}

// A publisher names the track it mutes by its transceiver's mid; the
// others hear of it by the track id the SFU forwards.
func TestMute(t *testing.T) {
	netns.Require(t)
	defer test.TimeOut(60 * time.Second).Stop()
	defer test.CheckRoutines(t)()
	e := start(t, nil)
	defer e.close()
	call := e.videoCall(t, nil)
	defer call.close()
	a, b := call.a, call.b
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, muted := range []bool{true, false} {
		if err := a.SetMuted(ctx, "cam", muted); err != nil {
			t.Fatal(err)
		}
		b.expectEvent(t, "mute", func(m signal.Message) bool {
			u, ok := m.(*signal.Mute)
			return ok && u.ParticipantID == a.ID() && u.TrackID == "cam" && u.Muted == muted && u.MID == ""
		})
	}
	call.src.close()
	a.Close()
	b.Close()
}

// Each codec the SFU negotiates reaches the subscriber as that codec.
func TestCodecs(t *testing.T) {
	netns.Require(t)
	e := start(t, nil)
	defer e.close()
	for _, codec := range []webrtc.RTPCodecCapability{
		opusCap,
		vp8Cap,
		{MimeType: webrtc.MimeTypeVP9, ClockRate: 90000, SDPFmtpLine: "profile-id=0"},
		{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"},
	} {
		t.Run(codec.MimeType, func(t *testing.T) {
			a := e.join("codecs-"+codec.MimeType, "A", nil)
			defer a.Close()
			b := e.join("codecs-"+codec.MimeType, "B", nil)
			defer b.Close()
			src := a.publish(t, "t", codec)
			defer src.close()
			kind := webrtc.RTPCodecTypeVideo
			if codec.MimeType == webrtc.MimeTypeOpus {
				kind = webrtc.RTPCodecTypeAudio
			}
			rt := b.expectTrack(t, a.ID(), kind)
			if err := receiveInOrder(rt, 20); err != nil {
				t.Fatal(err)
			}
			if got := rt.Track.Codec(); !strings.EqualFold(got.MimeType, codec.MimeType) {
				t.Fatalf("subscriber got %s, want %s", got.MimeType, codec.MimeType)
			}
			src.close()
		})
	}
}

// The audio-level header extension reaches subscribers, under the ID they
// negotiated, so clients can show who speaks.
func TestAudioLevelForwarded(t *testing.T) {
	netns.Require(t)
	e := start(t, nil)
	defer e.close()
	withAudioLevel := func(o *client.Options) {
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
	a := e.join("room", "A", withAudioLevel)
	defer a.Close()
	b := e.join("room", "B", withAudioLevel)
	defer b.Close()

	tr, sender := a.publishTrack(t, "mic", opusCap)
	extID := func(exts []webrtc.RTPHeaderExtensionParameter) uint8 {
		for _, x := range exts {
			if x.URI == sdp.AudioLevelURI {
				return uint8(x.ID)
			}
		}
		t.Fatal("audio level extension not negotiated")
		return 0
	}
	pubID := extID(sender.GetParameters().HeaderExtensions)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for n := uint16(1); ; n++ {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			p := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: n, Timestamp: uint32(n) * 960}, Payload: []byte{0xfc, byte(n)}}
			_ = p.SetExtension(pubID, []byte{0x80 | byte(n%127)}) // voice activity + level
			if err := tr.WriteRTP(p); err != nil {
				return
			}
		}
	}()
	defer func() { close(stop); <-done }()

	rt := b.expectTrack(t, a.ID(), webrtc.RTPCodecTypeAudio)
	subID := extID(rt.Receiver.GetParameters().HeaderExtensions)
	for range 20 {
		_ = rt.Track.SetReadDeadline(time.Now().Add(10 * time.Second))
		p, _, err := rt.Track.ReadRTP()
		if err != nil {
			t.Fatal(err)
		}
		if got, want := p.GetExtension(subID), []byte{0x80 | byte(p.SequenceNumber%127)}; !bytes.Equal(got, want) {
			t.Fatalf("packet %d: audio level %v at ID %d, want %v", p.SequenceNumber, got, subID, want)
		}
	}
}

// A publisher that numbers its packets for transport-cc (as browsers do)
// gets TWCC feedback from the SFU for its bandwidth estimate.
func TestTWCCFeedbackToPublisher(t *testing.T) {
	netns.Require(t)
	e := start(t, nil)
	defer e.close()
	var mu sync.Mutex
	feedback := 0
	a := e.join("room", "A", func(o *client.Options) {
		o.Configure = func(m *webrtc.MediaEngine, ir *interceptor.Registry) error {
			if err := m.RegisterDefaultCodecs(); err != nil {
				return err
			}
			if err := webrtc.ConfigureTWCCHeaderExtensionSender(m, ir); err != nil {
				return err
			}
			return webrtc.RegisterDefaultInterceptors(m, ir)
		}
		o.OnRTCP = func(_ string, pkts []rtcp.Packet) {
			for _, p := range pkts {
				if _, ok := p.(*rtcp.TransportLayerCC); ok {
					mu.Lock()
					feedback++
					mu.Unlock()
				}
			}
		}
	})
	defer a.Close()
	src := a.publish(t, "cam", vp8Cap)
	defer src.close()
	waitFor(t, "TWCC feedback at the publisher", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return feedback > 0
	})
}

// The SFU asks the publisher again for a packet that never arrived (its
// NACK generator, which runs on the fast receive path's goroutine).
func TestNACKToPublisher(t *testing.T) {
	netns.Require(t)
	e := start(t, nil)
	defer e.close()
	nacked := make(chan []uint16, 16)
	a := e.join("room", "A", func(o *client.Options) {
		o.OnRTCP = func(_ string, pkts []rtcp.Packet) {
			for _, p := range pkts {
				if n, ok := p.(*rtcp.TransportLayerNack); ok {
					var seqs []uint16
					for _, pair := range n.Nacks {
						seqs = append(seqs, pair.PacketList()...)
					}
					nacked <- seqs
				}
			}
		}
	})
	defer a.Close()
	tr, _ := a.publishTrack(t, "cam", vp8Cap)
	const lost = 40
	for n := uint32(1); n <= 80; n++ {
		if n != lost {
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(n), Timestamp: n * 3000, Marker: true}, Payload: payloadFor(n)}
			if err := tr.WriteRTP(pkt); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	deadline := time.After(10 * time.Second)
	for {
		select {
		case seqs := <-nacked:
			if slices.Contains(seqs, lost) {
				if c := e.srv.Paths(); c.FastPublishers.Load() != 1 {
					t.Fatalf("%d publisher connections on the fast receive path, want 1", c.FastPublishers.Load())
				}
				return
			}
		case <-deadline:
			t.Fatalf("no NACK for packet %d", lost)
		}
	}
}

// Publishers get receiver reports for what they send: the SFU's highest
// sequence number, and the timestamp of the publisher's last sender
// report (LSR), from which it measures the round trip.
func TestReceiverReportsToPublisher(t *testing.T) {
	netns.Require(t)
	e := start(t, nil)
	defer e.close()
	reports := make(chan rtcp.ReceptionReport, 64)
	a := e.join("room", "A", func(o *client.Options) {
		o.OnRTCP = func(_ string, pkts []rtcp.Packet) {
			for _, p := range pkts {
				if rr, ok := p.(*rtcp.ReceiverReport); ok {
					for _, r := range rr.Reports {
						select {
						case reports <- r:
						default:
						}
					}
				}
			}
		}
	})
	defer a.Close()
	src := a.publish(t, "cam", vp8Cap)
	defer src.close()
	ssrc := uint32(src.sender.GetParameters().Encodings[0].SSRC)
	deadline := time.After(15 * time.Second)
	for {
		select {
		case r := <-reports:
			if r.SSRC != ssrc {
				t.Fatalf("receiver report for SSRC %#x, want %#x", r.SSRC, ssrc)
			}
			if r.LastSequenceNumber == 0 {
				t.Fatalf("receiver report without a highest sequence number: %+v", r)
			}
			if r.LastSenderReport != 0 { // the client sends sender reports each second
				return
			}
		case <-deadline:
			t.Fatal("no receiver report answering the publisher's sender reports")
		}
	}
}

// A subscriber's NACK is answered from the track's history with a
// retransmission of the lost packet (on the direct path), and counted.
func TestNACKRetransmission(t *testing.T) {
	netns.Require(t)
	e := start(t, nil)
	defer e.close()
	// The packet is not really lost, so B's SRTP replay protection would
	// drop the retransmission; switching it off lets the test see it.
	call := e.videoCall(t, func(o *client.Options) { o.SettingEngine.DisableSRTPReplayProtection(true) })
	defer call.close()
	b, rt := call.b, call.rt

	var lost uint16
	for range 20 {
		_ = rt.Track.SetReadDeadline(time.Now().Add(10 * time.Second))
		p, _, err := rt.Track.ReadRTP()
		if err != nil {
			t.Fatal(err)
		}
		lost = p.SequenceNumber - 10 // "lost" ten packets ago
	}
	nack := &rtcp.TransportLayerNack{MediaSSRC: uint32(rt.Track.SSRC()), Nacks: []rtcp.NackPair{{PacketID: lost}}}
	if err := b.Subscriber().WriteRTCP([]rtcp.Packet{nack}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_ = rt.Track.SetReadDeadline(deadline)
		p, _, err := rt.Track.ReadRTP()
		if err != nil {
			t.Fatalf("no retransmission of %d: %v", lost, err)
		}
		if p.SequenceNumber == lost {
			if !bytes.Equal(p.Payload, payloadFor(binary.BigEndian.Uint32(p.Payload))) || uint16(binary.BigEndian.Uint32(p.Payload)) != lost {
				t.Fatal("the retransmission does not carry the original payload")
			}
			break
		}
	}
	if e.srv.Rooms().Counters().NACKs.Load() == 0 || e.srv.Rooms().Counters().Forward.Retransmissions.Load() == 0 {
		t.Fatal("the SFU did not count the NACK and its retransmission")
	}
	// B's RTCP came in on the fast receive path, not pion's.
	if _, text := e.get(t, "/metrics"); metricValue(t, text, "sfu_fast_rtcp_received_total") == 0 {
		t.Fatal("no RTCP handled by the fast receive path")
	}
}

// Subscribers get RTCP sender reports for what they receive (browsers sync
// audio with video and measure the round trip with them): the track's
// SSRC, a packet count, and an RTP time that matches the media's clock.
func TestSenderReportsReachSubscribers(t *testing.T) {
	netns.Require(t)
	e := start(t, nil)
	defer e.close()
	call := e.videoCall(t, nil)
	defer call.close()
	rt := call.rt
	var newest uint32
	go func() { // keep reading media so RTCP flows; remember the newest timestamp
		for {
			_ = rt.Track.SetReadDeadline(time.Now().Add(10 * time.Second))
			p, _, err := rt.Track.ReadRTP()
			if err != nil {
				return
			}
			atomic.StoreUint32(&newest, p.Timestamp)
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_ = rt.Receiver.SetReadDeadline(deadline)
		pkts, _, err := rt.Receiver.ReadRTCP()
		if err != nil {
			t.Fatalf("no sender report: %v", err)
		}
		for _, p := range pkts {
			sr, ok := p.(*rtcp.SenderReport)
			if !ok || sr.SSRC != uint32(rt.Track.SSRC()) {
				continue
			}
			// Within half a second of the media's own clock (90 kHz).
			if d := int32(sr.RTPTime - atomic.LoadUint32(&newest)); d < -45000 || d > 45000 {
				t.Fatalf("sender report RTP time %d is %d ticks from the newest packet's", sr.RTPTime, d)
			}
			if sr.PacketCount == 0 || sr.OctetCount == 0 || sr.NTPTime>>32 < 3_900_000_000 {
				t.Fatalf("sender report %+v", sr)
			}
			return
		}
	}
}

// Participants joining, publishing and leaving concurrently leave the SFU
// consistent: survivors receive each other, and nothing is left behind.
func TestConcurrentChurn(t *testing.T) {
	netns.Require(t)
	defer test.TimeOut(120 * time.Second).Stop()
	defer test.CheckRoutines(t)()
	// A participant whose close frame is lost (seen once under the race
	// detector) is a dropped connection to the server, kept for a resume:
	// a short window lets the churn end within the test's waits.
	e := start(t, func(c *server.Config) { c.ResumeWindow = 2 * time.Second })
	defer e.close()

	const n = 6
	stop := make(chan struct{})
	defer close(stop)
	peers := make([]*peer, n)
	sources := make([]*source, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := e.dial("churn", string(rune('A'+i)), nil)
			if err != nil {
				t.Errorf("join %d: %v", i, err)
				return
			}
			peers[i] = p
			go func() { // consume every track so pion's buffers keep moving
				for {
					select {
					case rt := <-p.tracks:
						go drainTrack(rt)
					case <-stop:
						return
					}
				}
			}()
		}()
	}
	wg.Wait()
	if t.Failed() {
		for _, p := range peers {
			if p != nil {
				p.Close()
			}
		}
		return
	}
	for i, p := range peers {
		wg.Add(1)
		go func() { defer wg.Done(); sources[i] = p.publish(t, "cam", vp8Cap) }()
	}
	wg.Wait()
	// Half leave at once, some politely, some abruptly.
	for i := range n / 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sources[i].close()
			if i%2 == 0 {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = peers[i].Leave(ctx)
			} else {
				peers[i].Close()
			}
		}()
	}
	wg.Wait()
	waitFor(t, "the survivors' tracks only", func() bool {
		_, ps := e.srv.Rooms().Stats()
		return ps == n-n/2 && e.srv.Rooms().Counters().TracksCurrent.Load() == n-n/2
	})
	// A late joiner gets exactly the survivors' tracks.
	late := e.join("churn", "late", nil)
	got := map[string]bool{}
	for range n - n/2 {
		rt := <-waitTrack(t, late)
		got[rt.ParticipantID] = true
		go drainTrack(rt)
	}
	for _, p := range peers[n/2:] {
		if !got[p.ID()] {
			t.Errorf("late joiner did not get %s's track", p.ID())
		}
	}
	late.Close()
	for i := n / 2; i < n; i++ {
		sources[i].close()
		peers[i].Close()
	}
	waitFor(t, "an empty SFU", func() bool { r, ps := e.srv.Rooms().Stats(); return r == 0 && ps == 0 })
}

// A NACK naming hundreds of packets in a few bytes draws at most
// forward.MaxResendPerNACK retransmissions (it drew 512, 581 KB).
func TestNACKFloodBounded(t *testing.T) {
	netns.Require(t)
	e := start(t, nil)
	defer e.close()
	call := e.videoCall(t, nil)
	defer call.close()
	b, rt := call.b, call.rt
	var newest uint16
	for range 300 {
		_ = rt.Track.SetReadDeadline(time.Now().Add(10 * time.Second))
		p, _, err := rt.Track.ReadRTP()
		if err != nil {
			t.Fatal(err)
		}
		newest = p.SequenceNumber
	}
	go drainTrack(rt)
	nack := &rtcp.TransportLayerNack{MediaSSRC: uint32(rt.Track.SSRC())}
	for i := range uint16(17) { // 17 × 17 = 289 packets
		nack.Nacks = append(nack.Nacks, rtcp.NackPair{PacketID: newest - 290 + 17*i, LostPackets: 0xffff})
	}
	before := e.srv.Rooms().Counters().Forward.Retransmissions.Load()
	if err := b.Subscriber().WriteRTCP([]rtcp.Packet{nack}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "retransmissions", func() bool { return e.srv.Rooms().Counters().Forward.Retransmissions.Load() > before })
	time.Sleep(500 * time.Millisecond)
	if n := e.srv.Rooms().Counters().Forward.Retransmissions.Load() - before; n > forward.MaxResendPerNACK {
		t.Fatalf("one NACK for %d packets drew %d retransmissions, want at most %d", len(nack.Nacks)*17, n, forward.MaxResendPerNACK)
	}
}
