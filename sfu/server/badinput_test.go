package server_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jbcalling/platform/internal/netns"
	"github.com/jbcalling/platform/sfu/auth"
	"github.com/jbcalling/platform/sfu/client"
	"github.com/jbcalling/platform/sfu/server"
	"github.com/jbcalling/platform/sfu/signal"
	"github.com/pion/webrtc/v4"
)

// rawConn is a misbehaving client speaking the protocol by hand.
type rawConn struct {
	t *testing.T
	c *websocket.Conn
}

func (e *env) raw(t *testing.T) *rawConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, e.url, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c.SetReadLimit(1 << 20)
	return &rawConn{t: t, c: c}
}

func (r *rawConn) send(msg string) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// next reads one message; a closed connection returns its close status.
func (r *rawConn) next() (signal.Message, websocket.StatusCode) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, data, err := r.c.Read(ctx)
	if err != nil {
		if s := websocket.CloseStatus(err); s != -1 {
			return nil, s
		}
		r.t.Fatalf("read: %v", err)
	}
	m, err := signal.Decode(data)
	if err != nil {
		r.t.Fatalf("server sent %s: %v", data, err)
	}
	return m, -1
}

// expectError skips other messages until an error and checks its code.
// expectError skips messages until an error, which must have code; it
// returns the error's fields (a value, not an error to check).
func (r *rawConn) expectError(code string) signal.Error {
	r.t.Helper()
	for {
		m, status := r.next()
		if m == nil {
			r.t.Fatalf("connection closed (%d) before error %q", status, code)
		}
		if e, ok := m.(*signal.Error); ok {
			if e.Code != code {
				r.t.Fatalf("error %q (%s), want %q", e.Code, e.Message, code)
			}
			return *e
		}
	}
}

// expect skips messages until one of type typ that match accepts.
func (r *rawConn) expect(t *testing.T, typ string, match func(signal.Message) bool) signal.Message {
	t.Helper()
	for {
		m, s := r.next()
		if m == nil {
			t.Fatalf("connection closed (%d) before a matching %q", s, typ)
		}
		if m.MessageType() == typ && (match == nil || match(m)) {
			return m
		}
	}
}

func (r *rawConn) expectClosed(status websocket.StatusCode) {
	r.t.Helper()
	for {
		m, s := r.next()
		if m == nil {
			if s != status {
				r.t.Fatalf("closed with %d, want %d", s, status)
			}
			return
		}
	}
}

// expectAlive checks the connection still answers.
func (r *rawConn) expectAlive() {
	r.t.Helper()
	r.send(`{"type":"ping"}`)
	for {
		m, s := r.next()
		if m == nil {
			r.t.Fatalf("connection closed (%d), want it open", s)
		}
		if _, ok := m.(*signal.Pong); ok {
			return
		}
	}
}

func (r *rawConn) join(room string) *signal.Joined {
	r.t.Helper()
	r.send(`{"type":"join","v":1,"room":"` + room + `","name":"raw"}`)
	m, s := r.next()
	j, ok := m.(*signal.Joined)
	if !ok {
		r.t.Fatalf("join: got %#v (close %d)", m, s)
	}
	return j
}

func (r *rawConn) close() { r.c.Close(websocket.StatusNormalClosure, "") }

// publishOffer is a real publisher offer from pion.
func publishOffer(t *testing.T) string {
	t.Helper()
	pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(*settingEngine())).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	tr, _ := webrtc.NewTrackLocalStaticRTP(vp8Cap, "v", "s")
	if _, err := pc.AddTrack(tr); err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return offer.SDP
}

func jsonString(s string) string {
	b := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\r", `\r`, "\n", `\n`).Replace(s)
	return `"` + b + `"`
}

// Every kind of bad input gets an error reply (the connection stays
// usable) or a clean close; none disturbs the server.
func TestBadInput(t *testing.T) {
	netns.Require(t)
	e := start(t, func(c *server.Config) { c.RateLimit, c.RateBurst = 20, 30 })
	defer e.close()

	tests := []struct {
		name   string
		joined bool // join first
		send   []string
		code   string // expected error code; "" for a close
		status websocket.StatusCode
		alive  bool // connection must stay open afterwards
	}{
		{name: "malformed JSON", send: []string{`{"type":"join",`}, code: signal.CodeBadMessage, alive: true},
		{name: "not an object", send: []string{`[1,2]`}, code: signal.CodeBadMessage, alive: true},
		{name: "no type", send: []string{`{"room":"x"}`}, code: signal.CodeBadMessage, alive: true},
		{name: "unknown type", send: []string{`{"type":"subscribe_all"}`}, code: signal.CodeUnknownType, alive: true},
		{name: "wrong field type", send: []string{`{"type":"join","v":"one","room":"x"}`}, code: signal.CodeBadMessage, alive: true},
		{name: "join without room", send: []string{`{"type":"join","v":1}`}, code: signal.CodeBadMessage, alive: true},
		{name: "offer before join", send: []string{`{"type":"offer","target":"publisher","sdp":"v=0"}`}, code: signal.CodeNotJoined, alive: true},
		{name: "server message from client", joined: true, send: []string{`{"type":"participant_left","id":"p-1"}`}, code: signal.CodeBadMessage, alive: true},
		{name: "unsupported version", send: []string{`{"type":"join","v":99,"room":"x"}`}, code: signal.CodeVersion, status: websocket.StatusPolicyViolation},
		{name: "second join", joined: true, send: []string{`{"type":"join","v":1,"room":"other"}`}, code: signal.CodeAlreadyJoined, alive: true},
		{name: "leave unknown room", joined: true, send: []string{`{"type":"leave","room":"elsewhere"}`}, code: signal.CodeUnknownRoom, alive: true},
		{name: "malformed SDP", joined: true, send: []string{`{"type":"offer","target":"publisher","sdp":"v=0\r\nthis is not sdp"}`}, code: signal.CodeBadSDP, alive: true},
		{name: "offer on subscriber", joined: true, send: []string{`{"type":"offer","target":"subscriber","sdp":"v=0"}`}, code: signal.CodeBadMessage, alive: true},
		{name: "answer without offer", joined: true, send: []string{`{"type":"answer","target":"subscriber","sdp":"v=0"}`}, code: signal.CodeBadSDP, alive: true},
		{name: "bad target", joined: true, send: []string{`{"type":"candidate","target":"both","candidate":null}`}, code: signal.CodeBadMessage, alive: true},
		{name: "garbage candidate", joined: true, send: []string{
			`{"type":"offer","target":"publisher","sdp":` + jsonString(publishOffer(t)) + `}`,
			`{"type":"candidate","target":"publisher","candidate":{"candidate":"candidate:garbage","sdpMid":"0"}}`,
		}, code: signal.CodeBadCandidate, alive: true},
		{name: "mute unknown track", joined: true, send: []string{`{"type":"mute","trackId":"nope","muted":true}`}, code: signal.CodeUnknownTrack, alive: true},
		{name: "mute unknown mid", joined: true, send: []string{`{"type":"mute","mid":"7","muted":true}`}, code: signal.CodeUnknownTrack, alive: true},
		{name: "mute naming nothing", joined: true, send: []string{`{"type":"mute","muted":true}`}, code: signal.CodeBadMessage, alive: true},
		{name: "oversized message", send: []string{`{"type":"join","v":1,"room":"` + strings.Repeat("x", signal.MaxMessageSize) + `"}`}, status: websocket.StatusMessageTooBig},
		{name: "flood", send: repeat(`{"type":"ping"}`, 200), code: signal.CodeRateLimited, status: websocket.StatusPolicyViolation},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.raw(t)
			defer r.close()
			if tc.joined {
				r.join("bad-input")
			}
			for _, m := range tc.send {
				r.send(m)
			}
			if tc.code != "" {
				r.expectError(tc.code)
			}
			if tc.alive {
				r.expectAlive()
			} else {
				r.expectClosed(tc.status)
			}
		})
	}
	t.Run("binary frame", func(t *testing.T) {
		r := e.raw(t)
		defer r.close()
		if err := r.c.Write(context.Background(), websocket.MessageBinary, []byte{1, 2, 3}); err != nil {
			t.Fatal(err)
		}
		r.expectError(signal.CodeBadMessage)
		r.expectAlive()
	})
	if code, body := e.get(t, "/health"); code != http.StatusOK {
		t.Fatalf("after bad input /health: %d %s", code, body)
	}
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// A misbehaving client in the room does not disturb the media of others.
func TestBadClientDoesNotDisturbOthers(t *testing.T) {
	netns.Require(t)
	e := start(t, nil)
	defer e.close()
	call := e.videoCall(t, nil)
	defer call.close()
	src, rt := call.src, call.rt

	bad := e.raw(t)
	defer bad.close()
	bad.join("room")
	for _, m := range []string{`{`, `{"type":"offer","target":"publisher","sdp":"garbage"}`, `{"type":"answer","target":"subscriber","sdp":"garbage"}`, `{"type":"mute","trackId":"cam","muted":true}`} {
		bad.send(m)
	}
	if err := receiveInOrder(rt, 100); err != nil {
		t.Fatalf("B's media during the bad client: %v", err)
	}
	bad.c.CloseNow() // and an abrupt exit
	if err := receiveInOrder(rt, 50); err != nil {
		t.Fatalf("B's media after the bad client vanished: %v", err)
	}
	src.close()
}

// Joins need a valid token unless anonymous joins are allowed.
func TestAuthentication(t *testing.T) {
	netns.Require(t)
	secret := []byte("test-secret")
	e := start(t, func(c *server.Config) { c.AllowAnonymous, c.JWTSecret = false, secret })
	defer e.close()
	good, _ := auth.Sign(secret, "r", "user-1", "Ana", time.Hour)
	wrongRoom, _ := auth.Sign(secret, "other", "user-1", "Ana", time.Hour)
	forged, _ := auth.Sign([]byte("guess"), "r", "user-1", "Ana", time.Hour)
	for _, tc := range []struct {
		name, token string
		ok          bool
	}{
		{"no token", "", false},
		{"garbage", "abc", false},
		{"wrong room", wrongRoom, false},
		{"wrong secret", forged, false},
		{"valid", good, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := e.dial("r", "x", func(o *client.Options) { o.Token = tc.token })
			if tc.ok {
				if err != nil {
					t.Fatalf("valid token refused: %v", err)
				}
				p.Close()
				return
			}
			var se *signal.Error
			if !errors.As(err, &se) || se.Code != signal.CodeUnauthorized {
				if p != nil {
					p.Close()
				}
				t.Fatalf("err %v, want unauthorized", err)
			}
			if strings.Contains(se.Message, "test-secret") || (tc.token != "" && strings.Contains(se.Message, tc.token)) {
				t.Fatalf("error message leaks a secret: %q", se.Message)
			}
		})
	}
}

// A connection that never joins is closed.
func TestJoinTimeout(t *testing.T) {
	netns.Require(t)
	e := start(t, func(c *server.Config) { c.JoinTimeout = 300 * time.Millisecond })
	defer e.close()
	r := e.raw(t)
	defer r.close()
	r.expectError(signal.CodeBadMessage)
	r.expectClosed(websocket.StatusPolicyViolation)
}

// A peer connection that never connects ends the participant after the
// ICE timeout, with an error saying so.
func TestICETimeout(t *testing.T) {
	netns.Require(t)
	e := start(t, func(c *server.Config) { c.ICETimeout = 500 * time.Millisecond })
	defer e.close()
	r := e.raw(t)
	defer r.close()
	r.join("room")
	r.send(`{"type":"offer","target":"publisher","sdp":` + jsonString(publishOffer(t)) + `}`) // and never any ICE
	if e := r.expectError(signal.CodeInternal); !strings.Contains(e.Message, "connect") && !strings.Contains(e.Message, "no answer") {
		t.Fatalf("error %q does not say why", e.Message)
	}
	r.expectClosed(websocket.StatusGoingAway)
	waitFor(t, "the participant to be gone", func() bool { _, ps := e.srv.Rooms().Stats(); return ps == 0 })
}

// Participants that join and never negotiate (the subscriber connection
// is offered at join) are all gone within the ICE timeout of joining, and
// the room admits others again: silent joins cannot hold a room.
func TestSilentJoinsExpire(t *testing.T) {
	netns.Require(t)
	e := start(t, func(c *server.Config) { c.ICETimeout, c.MaxParticipants = 700*time.Millisecond, 20 })
	defer e.close()
	var raws []*rawConn
	for range 20 {
		r := e.raw(t)
		defer r.close()
		r.join("room")
		raws = append(raws, r)
	}
	start := time.Now()
	for _, r := range raws {
		if e := r.expectError(signal.CodeInternal); !strings.Contains(e.Message, "no answer") && !strings.Contains(e.Message, "joining") {
			t.Fatalf("error %q does not say why", e.Message)
		}
		r.expectClosed(websocket.StatusGoingAway)
	}
	waitFor(t, "the silent participants to be gone", func() bool { _, ps := e.srv.Rooms().Stats(); return ps == 0 })
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("silent participants lasted %s after joining, ICE timeout 700ms", d)
	}
	r := e.raw(t)
	defer r.close()
	r.join("room")
}

// One token subject holds at most --max-per-identity places in a room;
// another subject, or the same one in another room, still joins.
func TestIdentityLimit(t *testing.T) {
	netns.Require(t)
	secret := []byte("test-secret")
	e := start(t, func(c *server.Config) { c.AllowAnonymous, c.JWTSecret, c.MaxPerIdentity = false, secret, 2 })
	defer e.close()
	tok := func(room, sub string) string {
		s, err := auth.Sign(secret, room, sub, "", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	dial := func(room, sub string) (*peer, error) {
		return e.dial(room, "x", func(o *client.Options) { o.Token = tok(room, sub) })
	}
	for range 2 {
		p, err := dial("r", "user-1")
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
	}
	_, err := dial("r", "user-1")
	var se *signal.Error
	if !errors.As(err, &se) || se.Code != signal.CodeIdentityLimit {
		t.Fatalf("third join of one identity: %v, want %s", err, signal.CodeIdentityLimit)
	}
	for _, c := range []struct{ room, sub string }{{"r", "user-2"}, {"other", "user-1"}} {
		p, err := dial(c.room, c.sub)
		if err != nil {
			t.Fatalf("%s in %s: %v", c.sub, c.room, err)
		}
		p.Close()
	}
}

// A client that stops answering pings is disconnected after the idle
// timeout, waits as "reconnecting" for the resume window (a dead network
// looks the same), then leaves.
func TestIdleTimeout(t *testing.T) {
	netns.Require(t)
	e := start(t, func(c *server.Config) { c.IdleTimeout, c.ResumeWindow = 600*time.Millisecond, time.Second })
	defer e.close()
	watcher := e.raw(t)
	defer watcher.close()
	watcher.join("room")
	r := e.raw(t)
	defer r.close()
	joined := r.join("room")
	// Not reading means not answering the server's pings; the watcher
	// reads on.
	watcher.expect(t, signal.TypeParticipantStatus, func(m signal.Message) bool {
		s := m.(*signal.ParticipantStatus)
		return s.ID == joined.ID && s.Status == signal.StatusReconnecting
	})
	watcher.expect(t, signal.TypeParticipantLeft, func(m signal.Message) bool { return m.(*signal.ParticipantLeft).ID == joined.ID })
	_, ps := e.srv.Rooms().Stats()
	if ps != 1 {
		t.Fatalf("%d participants after the idle one's window, want the watcher alone", ps)
	}
}

// A refused offer leaves the session usable, and its stale error does not
// fail the client's next publish.
func TestClientPublishAfterRefusedOffer(t *testing.T) {
	netns.Require(t)
	e := start(t, func(c *server.Config) { c.MaxTracks = 0 })
	defer e.close()
	p := e.join("room", "A", nil)
	defer p.Close()
	if err := p.Send(context.Background(), &signal.Offer{Target: signal.TargetPublisher, SDP: "v=0\r\nnonsense"}); err != nil {
		t.Fatal(err)
	}
	p.expectEvent(t, "bad_sdp", func(m signal.Message) bool { se, ok := m.(*signal.Error); return ok && se.Code == signal.CodeBadSDP })
	src := p.publish(t, "cam", vp8Cap)
	src.close()
}

// A client that never answers the server's subscriber offer is ended
// (it would otherwise silently miss every later track).
func TestSubscriberOfferUnanswered(t *testing.T) {
	netns.Require(t)
	e := start(t, func(c *server.Config) { c.ICETimeout = 2 * time.Second })
	defer e.close()
	a := e.join("room", "A", nil)
	defer a.Close()
	src := a.publish(t, "cam", vp8Cap)
	defer src.close()
	waitFor(t, "A's track at the SFU", func() bool { return e.srv.Rooms().Counters().TracksCurrent.Load() == 1 })

	r := e.raw(t)
	defer r.close()
	r.join("room") // gets an offer for A's track and ignores it
	// Unanswered, its subscriber connection is not connected either:
	// whichever timer fires first says so.
	if e := r.expectError(signal.CodeInternal); !strings.Contains(e.Message, "no answer") && !strings.Contains(e.Message, "not connected within") {
		t.Fatalf("error %q does not say why", e.Message)
	}
	r.expectClosed(websocket.StatusGoingAway)
	src.close()
}
