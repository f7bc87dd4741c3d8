package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jbcalling/platform/internal/netns"
	"github.com/jbcalling/platform/sfu/server"
	"github.com/jbcalling/platform/sfu/signal"
	"github.com/pion/webrtc/v4"
)

// resumeMsg is a resume message for a participant.
func resumeMsg(id, token string) string {
	return `{"type":"resume","v":1,"participantId":"` + id + `","resumeToken":"` + token + `"}`
}

// until reads r's messages up to and including one of type typ, and
// returns them all.
func (r *rawConn) until(t *testing.T, typ string) []signal.Message {
	t.Helper()
	var seen []signal.Message
	for {
		m, s := r.next()
		if m == nil {
			t.Fatalf("connection closed (%d) before a %q", s, typ)
		}
		seen = append(seen, m)
		if m.MessageType() == typ {
			return seen
		}
	}
}

func noneOf(t *testing.T, seen []signal.Message, types ...string) {
	t.Helper()
	for _, m := range seen {
		for _, typ := range types {
			if m.MessageType() == typ {
				t.Fatalf("got %s %+v", typ, m)
			}
		}
	}
}

// A participant whose WebSocket drops stays in the room as reconnecting; a
// new WebSocket with its resume token takes it over, gets the room as it
// is and the data it missed, and nobody saw it leave. A second takeover
// ends the first connection; a wrong or used token, or a resume after the
// window, is refused.
func TestResume(t *testing.T) {
	netns.Require(t)
	e := start(t, func(c *server.Config) { c.ResumeWindow = 2 * time.Second })
	defer e.close()
	w := e.raw(t)
	defer w.close()
	wID := w.join("resume").ID
	a := e.raw(t)
	joined := a.join("resume")
	if joined.ResumeToken == "" || joined.ResumeWindowMS != 2000 {
		t.Fatalf("joined without a resume token and window: %+v", joined)
	}

	a.c.CloseNow() // the network, not the client: no close handshake
	seen := w.until(t, signal.TypeParticipantStatus)
	if s := seen[len(seen)-1].(*signal.ParticipantStatus); s.ID != joined.ID || s.Status != signal.StatusReconnecting {
		t.Fatalf("status %+v, want %s reconnecting", s, joined.ID)
	}
	w.send(`{"type":"data","topic":"chat","payload":"while you were away","to":["` + joined.ID + `"]}`)
	w.expectAlive()

	bad := e.raw(t)
	bad.send(resumeMsg(joined.ID, strings.Repeat("0", len(joined.ResumeToken))))
	bad.expectError(signal.CodeResumeFailed)
	bad.expectClosed(websocket.StatusPolicyViolation)

	a2 := e.raw(t)
	defer a2.close()
	a2.send(resumeMsg(joined.ID, joined.ResumeToken))
	resumed, ok := func() (*signal.Resumed, bool) { m, _ := a2.next(); r, ok := m.(*signal.Resumed); return r, ok }()
	if !ok {
		t.Fatal("no resumed reply")
	}
	if resumed.ID != joined.ID || resumed.Room != "resume" || len(resumed.Participants) != 1 || resumed.Participants[0].ID != wID ||
		resumed.ResumeToken == "" || resumed.ResumeToken == joined.ResumeToken {
		t.Fatalf("resumed %+v: want the same id, the room with the watcher, a new token", resumed)
	}
	if d := a2.expect(t, signal.TypeData, nil).(*signal.Data); string(d.Payload) != `"while you were away"` || d.From != wID {
		t.Fatalf("held data: %+v", d)
	}
	// The subscriber offer from the join was never answered: it comes again.
	if o := a2.expect(t, signal.TypeOffer, nil).(*signal.Offer); o.Target != signal.TargetSubscriber {
		t.Fatalf("offer for %s", o.Target)
	}
	seen = w.until(t, signal.TypeParticipantStatus)
	noneOf(t, seen, signal.TypeParticipantLeft, signal.TypeParticipantJoined)
	if s := seen[len(seen)-1].(*signal.ParticipantStatus); s.Status != signal.StatusConnected {
		t.Fatalf("status %+v, want connected", s)
	}

	// The used token no longer works.
	old := e.raw(t)
	old.send(resumeMsg(joined.ID, joined.ResumeToken))
	old.expectError(signal.CodeResumeFailed)

	// A takeover while a2 still looks alive (a half-open connection the
	// server has not noticed) ends a2 and nothing else.
	a3 := e.raw(t)
	a3.send(resumeMsg(joined.ID, resumed.ResumeToken))
	if m := a3.expect(t, signal.TypeResumed, nil).(*signal.Resumed); m.ID != joined.ID {
		t.Fatalf("resumed %+v", m)
	}
	a2.expectClosed(websocket.StatusPolicyViolation)
	w.send(`{"type":"ping"}`)
	noneOf(t, w.until(t, signal.TypePong), signal.TypeParticipantLeft, signal.TypeParticipantStatus)

	// Gone for longer than the window: left, and no resume.
	a3.c.CloseNow()
	w.expect(t, signal.TypeParticipantStatus, nil)
	w.expect(t, signal.TypeParticipantLeft, func(m signal.Message) bool { return m.(*signal.ParticipantLeft).ID == joined.ID })
	late := e.raw(t)
	late.send(resumeMsg(joined.ID, resumed.ResumeToken))
	late.expectError(signal.CodeResumeFailed)
}

// A leave, or a close the client chose, ends the participant at once.
func TestCloseIsNotADrop(t *testing.T) {
	netns.Require(t)
	e := start(t, nil)
	defer e.close()
	w := e.raw(t)
	defer w.close()
	w.join("bye")
	a := e.raw(t)
	id := a.join("bye").ID
	a.c.Close(websocket.StatusNormalClosure, "bye")
	seen := w.until(t, signal.TypeParticipantLeft)
	noneOf(t, seen, signal.TypeParticipantStatus)
	if l := seen[len(seen)-1].(*signal.ParticipantLeft); l.ID != id {
		t.Fatalf("left %s, want %s", l.ID, id)
	}
}

// The Go client resumes by itself when its WebSocket drops: the others
// see it reconnecting and back, never leaving, and its media and its
// negotiation go on.
func TestClientResumes(t *testing.T) {
	netns.Require(t)
	e := start(t, nil)
	defer e.close()
	call := e.videoCall(t, nil)
	defer call.close()
	a, b := call.a, call.b
	if err := receiveInOrder(call.rt, 10); err != nil {
		t.Fatal(err)
	}
	a.DropSignalling()
	b.expectEvent(t, "A reconnecting", func(m signal.Message) bool {
		s, ok := m.(*signal.ParticipantStatus)
		return ok && s.ID == a.ID() && s.Status == signal.StatusReconnecting
	})
	b.expectEvent(t, "A back", func(m signal.Message) bool {
		if _, left := m.(*signal.ParticipantLeft); left {
			t.Fatal("A left")
		}
		s, ok := m.(*signal.ParticipantStatus)
		return ok && s.ID == a.ID() && s.Status == signal.StatusConnected
	})
	waitFor(t, "A's client to count its resume", func() bool { return a.Resumes() == 1 })
	if err := receiveFlowing(call.rt, 20); err != nil {
		t.Fatalf("media after the resume: %v", err)
	}
	// Negotiation works on the new connection: a second track reaches B.
	mic := a.publish(t, "mic", opusCap)
	defer mic.close()
	b.expectTrack(t, a.ID(), webrtc.RTPCodecTypeAudio)
	if _, text := e.get(t, "/metrics"); metricValue(t, text, "sfu_sessions_resumed_total") != 1 || metricValue(t, text, "sfu_sessions_dropped_total") != 1 {
		t.Fatalf("metrics do not count one drop and one resume")
	}
}

// A client that asks gets a subscriber offer with new ICE credentials,
// and media goes on over the restarted connection.
func TestICERestartOnRequest(t *testing.T) {
	netns.Require(t)
	e := start(t, nil)
	defer e.close()
	call := e.videoCall(t, nil)
	defer call.close()
	b := call.b
	if err := receiveInOrder(call.rt, 10); err != nil {
		t.Fatal(err)
	}
	ufrag := func() string {
		d := b.Subscriber().RemoteDescription()
		if d == nil {
			return ""
		}
		for _, l := range strings.Split(d.SDP, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(l), "a=ice-ufrag:"); ok {
				return v
			}
		}
		return ""
	}
	before := ufrag()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Send(ctx, &signal.ICERestart{Target: signal.TargetSubscriber}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "an offer with new ICE credentials", func() bool { u := ufrag(); return u != "" && u != before })
	if err := receiveFlowing(call.rt, 50); err != nil {
		t.Fatalf("media after the ICE restart: %v", err)
	}
	if err := b.Send(ctx, &signal.ICERestart{Target: signal.TargetPublisher}); err != nil {
		t.Fatal(err)
	}
	b.expectEvent(t, "a refusal of a publisher restart request", func(m signal.Message) bool {
		er, ok := m.(*signal.Error)
		return ok && er.Code == signal.CodeBadMessage && er.Ref == signal.TypeICERestart
	})
}
