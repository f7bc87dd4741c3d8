package room

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/jbcalling/platform/sfu/signal"
	"github.com/pion/webrtc/v4"
)

// A track one participant publishes reaches the other's subscriber
// connection, with the signalling in the order clients rely on: each
// connection's candidates after its description, one subscriber offer at
// a time.
func TestPublishedTrackReachesTheOthers(t *testing.T) {
	n := newTestNet(t)
	m := newTestManager(t, n, Config{})
	alice := newTestClient(t, n, m, "r", "alice")
	bob := newTestClient(t, n, m, "r", "bob")
	alice.waitFor("participant-joined", 5*time.Second, func(msg signal.Message) bool {
		j, ok := msg.(*signal.ParticipantJoined)
		return ok && j.Participant.ID == bob.p.ID()
	})

	alice.publishVP8("cam")
	bob.waitFor("track-published", 10*time.Second, func(msg signal.Message) bool {
		p, ok := msg.(*signal.TrackPublished)
		return ok && p.ParticipantID == alice.p.ID()
	})
	select {
	case remote := <-bob.tracks:
		pkt, _, err := remote.ReadRTP()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(pkt.Payload, vp8Keyframe) {
			t.Errorf("bob got payload %x, want %x", pkt.Payload, vp8Keyframe)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("bob's subscriber connection got no track")
	}
	waitState(t, "alice's publisher connection", alice.pub, webrtc.PeerConnectionStateConnected, 5*time.Second)
	alice.check()
	bob.check()
}

// Candidates a client trickles before its offer are kept and used once
// the offer arrives: the offer here carries none of its own, and the
// client ignores the server's, so only its early ones can connect.
func TestCandidatesBeforeTheOfferAreKept(t *testing.T) {
	n := newTestNet(t)
	m := newTestManager(t, n, Config{})
	c := newTestClient(t, n, m, "r", "early", deaf)
	if _, err := c.pub.CreateDataChannel("x", nil); err != nil {
		t.Fatal(err)
	}
	offer, err := c.pub.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(c.pub)
	if err := c.pub.SetLocalDescription(offer); err != nil { // trickles, before HandleOffer
		t.Fatal(err)
	}
	<-gathered
	if bytes.Contains([]byte(offer.SDP), []byte("a=candidate")) {
		t.Fatal("the offer carries candidates; the test needs one without")
	}
	if err := c.p.HandleOffer(offer.SDP, nil); err != nil {
		t.Fatal(err)
	}
	waitState(t, "the publisher connection", c.pub, webrtc.PeerConnectionStateConnected, 10*time.Second)
	c.check()
}

// A subscriber that is slow to answer gets one offer at a time; what
// changed meanwhile comes in the next offer, after its answer.
func TestOneSubscriberOfferAtATime(t *testing.T) {
	n := newTestNet(t)
	m := newTestManager(t, n, Config{})
	slow := newTestClient(t, n, m, "r", "slow", manual)
	slow.waitFor("the join offer", 5*time.Second, isOffer)

	pub := newTestClient(t, n, m, "r", "pub")
	pub.publishVP8("a")
	pub.publishVP8("b")
	for _, id := range []string{"a", "b"} {
		slow.waitFor("track-published "+id, 10*time.Second, func(msg signal.Message) bool {
			p, ok := msg.(*signal.TrackPublished)
			return ok && p.Track.ID == id
		})
	}
	time.Sleep(200 * time.Millisecond) // room for a wrong second offer
	offers := func() (n int, last *signal.Offer) {
		slow.mu.Lock()
		defer slow.mu.Unlock()
		for _, msg := range slow.msgs {
			if o, ok := msg.(*signal.Offer); ok {
				n++
				last = o
			}
		}
		return n, last
	}
	if got, _ := offers(); got != 1 {
		t.Fatalf("%d subscriber offers before the first was answered, want 1", got)
	}
	if err := answerApplied(slow, 1); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if got, last := offers(); got == 2 {
			if c := bytes.Count([]byte(last.SDP), []byte("m=video")); c != 2 {
				t.Errorf("the second offer has %d video sections, want both tracks'", c)
			}
			if err := answerApplied(slow, 2); err != nil {
				t.Fatal(err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no second offer after the answer")
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitState(t, "the subscriber connection", slow.sub, webrtc.PeerConnectionStateConnected, 10*time.Second)
	slow.check()
}

// A participant whose client never answers the subscriber offer is ended
// within the ICE timeout of joining, and the others are told.
func TestAParticipantThatNeverAnswersIsEnded(t *testing.T) {
	n := newTestNet(t)
	m := newTestManager(t, n, Config{ICETimeout: time.Second})
	stays := newTestClient(t, n, m, "r", "stays")
	reasons := make(chan error, 1)
	silent, _, err := m.Join(JoinRequest{Room: "r", Name: "silent", Sink: func(signal.Message) {},
		OnClose: func(reason error) { reasons <- reason }})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case reason := <-reasons:
		// Whichever of the two timers fires first.
		if !errors.Is(reason, ErrNoAnswer) && !errors.Is(reason, ErrNotConnected) {
			t.Errorf("ended with %v, want %v or %v", reason, ErrNoAnswer, ErrNotConnected)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a participant that never connected is still in the room")
	}
	stays.waitFor("participant-left", 5*time.Second, func(msg signal.Message) bool {
		l, ok := msg.(*signal.ParticipantLeft)
		return ok && l.ID == silent.ID()
	})
	if err := stays.closeReason(0); !errors.Is(err, errNoClose) {
		t.Errorf("the connected participant was ended too: %v", err)
	}
	if _, participants := m.Stats(); participants != 1 {
		t.Errorf("%d participants, want 1", participants)
	}
}

// A participant whose client answers but never connects is ended within
// the ICE timeout of its answer.
func TestAParticipantThatNeverConnectsIsEnded(t *testing.T) {
	n := newTestNet(t)
	m := newTestManager(t, n, Config{ICETimeout: time.Second})
	c := newTestClient(t, n, m, "r", "unreachable", mute)
	if err := c.closeReason(5 * time.Second); !errors.Is(err, ErrNotConnected) && !errors.Is(err, ErrICETimeout) {
		t.Errorf("ended with %v, want %v or %v", err, ErrNotConnected, ErrICETimeout)
	}
	if c.sub.RemoteDescription() == nil {
		t.Error("the client never got the offer it was to answer")
	}
	if _, participants := m.Stats(); participants != 0 {
		t.Errorf("%d participants, want none", participants)
	}
}

// Unpublishing a track, or leaving, takes the tracks from everyone, who
// get a new offer without them; the last to leave removes the room.
func TestUnpublishingAndLeaving(t *testing.T) {
	n := newTestNet(t)
	m := newTestManager(t, n, Config{})
	alice := newTestClient(t, n, m, "r", "alice")
	bob := newTestClient(t, n, m, "r", "bob")
	alice.publishVP8("cam")
	alice.publishVP8("screen")
	screen := alice.publishVP8("screen2")
	for range 3 {
		select {
		case <-bob.tracks:
		case <-time.After(10 * time.Second):
			t.Fatal("bob got no track")
		}
	}
	waitSenders(t, bob, 3)

	if err := alice.pub.RemoveTrack(screen); err != nil {
		t.Fatal(err)
	}
	alice.renegotiate()
	bob.waitFor("track-unpublished", 5*time.Second, func(msg signal.Message) bool {
		u, ok := msg.(*signal.TrackUnpublished)
		return ok && u.ParticipantID == alice.p.ID() && u.TrackID == "screen2"
	})
	waitSenders(t, bob, 2)

	if !alice.p.Close() {
		t.Fatal("Close did not close")
	}
	if alice.p.Close() {
		t.Error("a second Close closed again")
	}
	bob.waitFor("participant-left", 5*time.Second, func(msg signal.Message) bool {
		l, ok := msg.(*signal.ParticipantLeft)
		return ok && l.ID == alice.p.ID()
	})
	waitSenders(t, bob, 0)
	if rooms, participants := m.Stats(); rooms != 1 || participants != 1 {
		t.Errorf("%d rooms and %d participants after alice left, want 1 and 1", rooms, participants)
	}
	bob.p.Close()
	if rooms, participants := m.Stats(); rooms != 0 || participants != 0 {
		t.Errorf("%d rooms and %d participants after everyone left, want none", rooms, participants)
	}
	waitDone(t, "Manager.Wait", m.Wait)
	alice.check()
	bob.check()
}

// When the link drops, the server restarts ICE on both connections (it
// offers the subscriber connection afresh and asks the client to offer
// the publisher's), and both connect again once the link is back.
func TestAnICERestartAfterTheLinkDrops(t *testing.T) {
	n := newTestNet(t)
	m := newTestManager(t, n, Config{ICETimeout: 20 * time.Second})
	c := newTestClient(t, n, m, "r", "mobile")
	c.publishVP8("cam")
	waitState(t, "the subscriber connection", c.sub, webrtc.PeerConnectionStateConnected, 10*time.Second)
	waitState(t, "the publisher connection", c.pub, webrtc.PeerConnectionStateConnected, 10*time.Second)
	ufrag := iceUfrag(c.sub.RemoteDescription().SDP)

	n.cut.Store(true)
	c.waitFor("an ICE restart of the publisher connection", 10*time.Second, func(msg signal.Message) bool {
		r, ok := msg.(*signal.ICERestart)
		return ok && r.Target == signal.TargetPublisher
	})
	c.waitFor("a restarting subscriber offer", 10*time.Second, func(msg signal.Message) bool {
		o, ok := msg.(*signal.Offer)
		return ok && iceUfrag(o.SDP) != ufrag
	})
	n.cut.Store(false)
	waitState(t, "the subscriber connection", c.sub, webrtc.PeerConnectionStateConnected, 15*time.Second)
	waitState(t, "the publisher connection", c.pub, webrtc.PeerConnectionStateConnected, 15*time.Second)
	if got := m.Counters().ServerICERestarts.Load(); got == 0 {
		t.Error("no server ICE restart counted")
	}
	if err := c.closeReason(0); !errors.Is(err, errNoClose) {
		t.Errorf("the participant was ended: %v", err)
	}
	c.check()
}
