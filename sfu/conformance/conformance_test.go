// Package conformance_test drives the SFU exactly as sfu/PROTOCOL.md tells
// a third party to: raw JSON over a WebSocket and plain pion peer
// connections, without the project's own client or message types. When
// the server and the document part, this test fails.
package conformance_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jbcalling/platform/internal/netns"
	"github.com/jbcalling/platform/sfu/server"
	"github.com/jbcalling/platform/sfu/server/servertest"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
)

func TestMain(m *testing.M) { netns.Main(m) }

const wait = 15 * time.Second

// msg is one JSON message as received.
type msg map[string]any

func (m msg) str(k string) string { s, _ := m[k].(string); return s }

func (m msg) list(k string) []any { l, _ := m[k].([]any); return l }

// peer is one participant: its signalling socket (replaced on resume),
// every message it received in order, and its two peer connections.
type peer struct {
	t    *testing.T
	name string
	url  string

	mu       sync.Mutex
	conn     *websocket.Conn
	log      []msg
	taken    map[int]bool
	closedBy map[*websocket.Conn]websocket.StatusCode

	pub, sub *webrtc.PeerConnection
	// Server candidates that came before the description they belong to.
	pending map[string][]webrtc.ICECandidateInit
	tracks  chan *webrtc.TrackRemote
	dc      chan string
	ready   chan struct{}   // closed once both peer connections exist
	packets [2]atomic.Int64 // received by kind: audio, video
}

func dial(t *testing.T, url, name string) *peer {
	t.Helper()
	p := &peer{t: t, name: name, url: url, taken: map[int]bool{}, closedBy: map[*websocket.Conn]websocket.StatusCode{},
		pending: map[string][]webrtc.ICECandidateInit{}, tracks: make(chan *webrtc.TrackRemote, 8), dc: make(chan string, 1), ready: make(chan struct{})}
	p.connect()
	return p
}

func (p *peer) connect() {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, _, err := websocket.Dial(ctx, p.url, nil)
	if err != nil {
		p.t.Fatalf("%s: dial: %v", p.name, err)
	}
	p.mu.Lock()
	p.conn = c
	p.mu.Unlock()
	go p.read(c)
	p.t.Cleanup(func() { c.CloseNow() })
}

func (p *peer) send(v any) {
	p.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		p.t.Fatal(err)
	}
	p.sendRaw(string(b))
}

func (p *peer) sendRaw(s string) {
	p.mu.Lock()
	c := p.conn
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte(s)); err != nil {
		p.t.Errorf("%s: write %s: %v", p.name, s, err)
	}
}

// read records every message and does what the document asks of a
// client: answer subscriber offers, apply publisher answers, add
// candidates once their description is set.
func (p *peer) read(c *websocket.Conn) {
	for {
		_, b, err := c.Read(context.Background())
		if err != nil {
			p.mu.Lock()
			p.closedBy[c] = websocket.CloseStatus(err)
			p.mu.Unlock()
			return
		}
		var m msg
		if err := json.Unmarshal(b, &m); err != nil {
			p.t.Errorf("%s: a server message is not one JSON object: %s", p.name, b)
			continue
		}
		p.mu.Lock()
		p.log = append(p.log, m)
		p.mu.Unlock()
		if err := p.handle(m); err != nil {
			p.t.Errorf("%s: handling %s: %v", p.name, b, err)
		}
	}
}

func (p *peer) handle(m msg) error {
	target := m.str("target")
	switch m.str("type") {
	case "offer", "answer", "candidate":
		<-p.ready
	}
	switch m.str("type") {
	case "offer":
		if target != "subscriber" {
			return errors.New("the server offered on a connection other than subscriber")
		}
		if err := p.sub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: m.str("sdp")}); err != nil {
			return err
		}
		ans, err := p.sub.CreateAnswer(nil)
		if err != nil {
			return err
		}
		if err := p.sub.SetLocalDescription(ans); err != nil {
			return err
		}
		p.send(map[string]any{"type": "answer", "target": "subscriber", "sdp": ans.SDP})
		return p.flush("subscriber", p.sub)
	case "answer":
		if target != "publisher" {
			return errors.New("the server answered on a connection other than publisher")
		}
		if err := p.pub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: m.str("sdp")}); err != nil {
			return err
		}
		return p.flush("publisher", p.pub)
	case "candidate":
		raw, ok := m["candidate"].(map[string]any)
		if !ok {
			return nil // null: end of candidates
		}
		b, _ := json.Marshal(raw)
		var c webrtc.ICECandidateInit
		if err := json.Unmarshal(b, &c); err != nil {
			return err
		}
		pc := p.pc(target)
		if pc.RemoteDescription() == nil {
			p.pending[target] = append(p.pending[target], c)
			return nil
		}
		return pc.AddICECandidate(c)
	}
	return nil
}

func (p *peer) pc(target string) *webrtc.PeerConnection {
	if target == "publisher" {
		return p.pub
	}
	return p.sub
}

func (p *peer) flush(target string, pc *webrtc.PeerConnection) error {
	for _, c := range p.pending[target] {
		if err := pc.AddICECandidate(c); err != nil {
			return err
		}
	}
	p.pending[target] = nil
	return nil
}

// next waits for a message of type typ that match accepts (nil: any) and
// that no earlier call returned.
func (p *peer) next(typ string, match func(msg) bool) msg {
	p.t.Helper()
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		for i, m := range p.log {
			if !p.taken[i] && m.str("type") == typ && (match == nil || match(m)) {
				p.taken[i] = true
				p.mu.Unlock()
				return m
			}
		}
		p.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	p.t.Fatalf("%s: no %q message within %s; received %v", p.name, typ, wait, p.types())
	return nil
}

func (p *peer) types() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var ts []string
	for _, m := range p.log {
		ts = append(ts, m.str("type")+"/"+m.str("target"))
	}
	return ts
}

func (p *peer) received(typ string, match func(msg) bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range p.log {
		if m.str("type") == typ && match(m) {
			return true
		}
	}
	return false
}

// peerConnections makes both connections with joined.iceServers and
// trickles their candidates, as the document describes.
func (p *peer) peerConnections(joined msg) {
	p.t.Helper()
	b, _ := json.Marshal(joined["iceServers"])
	var servers []webrtc.ICEServer
	if err := json.Unmarshal(b, &servers); err != nil {
		p.t.Fatalf("joined.iceServers is not a list of RTCIceServer: %v", err)
	}
	for _, target := range []string{"publisher", "subscriber"} {
		pc, err := webrtc.NewPeerConnection(webrtc.Configuration{ICEServers: servers})
		if err != nil {
			p.t.Fatal(err)
		}
		p.t.Cleanup(func() { pc.Close() })
		pc.OnICECandidate(func(c *webrtc.ICECandidate) {
			if c == nil {
				p.send(map[string]any{"type": "candidate", "target": target, "candidate": nil})
				return
			}
			p.send(map[string]any{"type": "candidate", "target": target, "candidate": c.ToJSON()})
		})
		if target == "publisher" {
			p.pub = pc
		} else {
			p.sub = pc
		}
	}
	p.sub.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { p.tracks <- tr })
	p.sub.OnDataChannel(func(d *webrtc.DataChannel) { p.dc <- d.Label() })
	close(p.ready)
}

func (p *peer) join(room string) msg {
	p.t.Helper()
	p.send(map[string]any{"type": "join", "v": 1, "room": room, "name": p.name})
	j := p.next("joined", nil)
	p.peerConnections(j)
	return j
}

// descriptionFirst checks, for each connection, that no server candidate
// came before the server's first offer or answer on it.
func (p *peer) descriptionFirst() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	described := map[string]bool{}
	for _, m := range p.log {
		switch m.str("type") {
		case "offer", "answer":
			described[m.str("target")] = true
		case "candidate":
			if !described[m.str("target")] {
				p.t.Errorf("%s: a %s candidate came before the server's description for it", p.name, m.str("target"))
			}
		}
	}
}

// mediaSections splits an SDP into its m= sections.
func mediaSections(sdp string) []string {
	parts := strings.Split(sdp, "\r\nm=")
	out := make([]string, 0, len(parts))
	for _, s := range parts[1:] {
		out = append(out, "m="+s)
	}
	return out
}

func ufrag(sdp string) string {
	_, rest, _ := strings.Cut(sdp, "a=ice-ufrag:")
	v, _, _ := strings.Cut(rest, "\r\n")
	return v
}

func TestConformance(t *testing.T) {
	netns.Require(t)
	sfu := servertest.Start(t, netns.Addr, func(c *server.Config) {
		c.Logger = servertest.Logger(t, slog.LevelError)
	})
	url := sfu.WSURL()

	// Join: joined, then the subscriber offer at once, with the data channel.
	ana := dial(t, url, "Ana")
	aj := ana.join("conformance")
	anaID := aj.str("id")
	if aj["v"] != 1.0 || anaID == "" || aj.str("room") != "conformance" || len(aj.list("participants")) != 0 {
		t.Fatalf("joined = %v, want v 1, an id, the room, no participants", aj)
	}
	if servers, ok := aj["iceServers"].([]any); !ok || len(servers) != 0 {
		t.Errorf("joined.iceServers = %v, want [] without --stun or TURN", aj["iceServers"])
	}
	if aj.str("resumeToken") == "" || aj["resumeWindowMs"] != 20000.0 {
		t.Errorf("joined: resumeToken %q resumeWindowMs %v, want a token and 20000", aj.str("resumeToken"), aj["resumeWindowMs"])
	}
	offer := ana.next("offer", nil)
	if !strings.Contains(offer.str("sdp"), "m=application") {
		t.Errorf("the subscriber offer at join has no data channel section")
	}
	select {
	case l := <-ana.dc:
		if l != "sfu" {
			t.Errorf("data channel label %q, want sfu", l)
		}
	case <-time.After(wait):
		t.Fatal("the subscriber connection offered at join did not connect (no data channel)")
	}

	// Cy, in the room before Ana publishes, hears of each track as the
	// server starts receiving it.
	cy := dial(t, url, "Cy")
	cy.join("conformance")

	// Publish audio and a "screen" video, sendonly, named by mid.
	audio, _ := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "a", "ana")
	video, _ := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "v", "ana")
	var mids []string
	for _, tr := range []webrtc.TrackLocal{audio, video} {
		if _, err := ana.pub.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			t.Fatal(err)
		}
	}
	po, err := ana.pub.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ana.pub.SetLocalDescription(po); err != nil {
		t.Fatal(err)
	}
	for _, tr := range ana.pub.GetTransceivers() {
		mids = append(mids, tr.Mid())
	}
	ana.send(map[string]any{"type": "offer", "target": "publisher", "sdp": po.SDP,
		"tracks": []map[string]string{{"mid": mids[1], "source": "screen"}}})
	pa := ana.next("answer", func(m msg) bool { return m.str("target") == "publisher" })
	for _, sec := range mediaSections(pa.str("sdp")) {
		if !strings.Contains(sec, "a=recvonly") {
			t.Errorf("publisher answer section is not recvonly:\n%s", sec)
		}
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() { // Opus every 20 ms, a VP8 keyframe every 100 ms
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			_ = audio.WriteSample(media.Sample{Data: []byte{0xf8, 0xff, 0xfe}, Duration: 20 * time.Millisecond})
			if n%5 == 0 {
				_ = video.WriteSample(media.Sample{Data: []byte{0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x10, 0x00, 0x10, 0x00}, Duration: 100 * time.Millisecond})
			}
		}
	}()

	for _, kind := range []string{"audio", "video"} {
		tp := cy.next("track_published", func(m msg) bool { return m.str("participantId") == anaID })
		if tr, _ := tp["track"].(map[string]any); tr == nil || tr["id"] == "" {
			t.Errorf("track_published without a track: %v (want %s)", tp, kind)
		}
	}

	// A participant joining now: Ana's tracks only in joined, with their source.
	bo := dial(t, url, "Bo")
	bj := bo.join("conformance")
	boID := bj.str("id")
	var first map[string]any
	for _, x := range bj.list("participants") {
		if o, _ := x.(map[string]any); o["id"] == anaID {
			first = o
		}
	}
	if len(bj.list("participants")) != 2 || first == nil || first["name"] != "Ana" {
		t.Fatalf("Bo's joined lists %v, want Ana (%s) and Cy", bj.list("participants"), anaID)
	}
	trackIDs := map[string]string{} // kind -> id
	for _, x := range first["tracks"].([]any) {
		tr := x.(map[string]any)
		trackIDs[tr["kind"].(string)] = tr["id"].(string)
		wantSource := map[string]any{"audio": "microphone", "video": "screen"}[tr["kind"].(string)]
		if tr["source"] != wantSource {
			t.Errorf("track %v: source %v, want %v", tr, tr["source"], wantSource)
		}
		wantCodec := map[string]string{"audio": "audio/opus", "video": "video/VP8"}[tr["kind"].(string)]
		if !strings.EqualFold(tr["codec"].(string), wantCodec) {
			t.Errorf("track %v: codec %v, want %s", tr, tr["codec"], wantCodec)
		}
	}
	if len(trackIDs) != 2 {
		t.Fatalf("Ana's tracks in joined: %v, want audio and video", first["tracks"])
	}
	ana.next("participant_joined", func(m msg) bool {
		pj, _ := m["participant"].(map[string]any)
		return pj["id"] == boID && pj["name"] == "Bo"
	})

	// Bo's subscriber offer: one section per track, stream id = Ana's id,
	// track id = the id joined gave, written sendrecv.
	bOffer := bo.next("offer", func(m msg) bool { return strings.Contains(m.str("sdp"), "a=msid:"+anaID) })
	for kind, id := range trackIDs {
		found := false
		for _, sec := range mediaSections(bOffer.str("sdp")) {
			if strings.HasPrefix(sec, "m="+kind) && strings.Contains(sec, "a=msid:"+anaID+" "+id) {
				found = true
				if !strings.Contains(sec, "a=sendrecv") {
					t.Errorf("the %s section is not sendrecv as documented:\n%s", kind, sec)
				}
			}
		}
		if !found {
			t.Errorf("no %s section with msid %s %s in Bo's offer", kind, anaID, id)
		}
	}
	got := map[string]bool{}
	defer bo.sub.Close() // ends the counting readers
	for len(got) < 2 {
		select {
		case tr := <-bo.tracks:
			if tr.StreamID() != anaID || tr.ID() != trackIDs[tr.Kind().String()] {
				t.Errorf("remote track stream %s id %s, want %s %s", tr.StreamID(), tr.ID(), anaID, trackIDs[tr.Kind().String()])
			}
			got[tr.Kind().String()] = true
			go bo.count(tr)
		case <-time.After(wait):
			t.Fatalf("Bo got tracks %v, want audio and video", got)
		}
	}

	// Mute names the track by mid; the others hear of it by track id.
	ana.send(map[string]any{"type": "mute", "mid": mids[1], "muted": true})
	bo.next("mute", func(m msg) bool {
		return m.str("participantId") == anaID && m.str("trackId") == trackIDs["video"] && m["muted"] == true
	})
	ana.send(map[string]any{"type": "mute", "mid": "99", "muted": true})
	if e := ana.next("error", nil); e.str("code") != "unknown_track" || e.str("ref") != "mute" {
		t.Errorf("mute of an unknown mid: %v, want unknown_track", e)
	}

	// Bad input gets an error and the connection stays open.
	ana.sendRaw(`{"type":"bogus"}`)
	if e := ana.next("error", nil); e.str("code") != "unknown_type" {
		t.Errorf("unknown type: %v, want unknown_type", e)
	}
	ana.sendRaw(`{"type":"ping"}`)
	ana.next("pong", nil)

	// Data: stamped with sender and time; to an unknown id, an error.
	before := time.Now().UnixMilli()
	ana.send(map[string]any{"type": "data", "topic": "chat", "payload": map[string]string{"text": "hola"}})
	d := bo.next("data", nil)
	if d.str("from") != anaID || d.str("topic") != "chat" || d["payload"].(map[string]any)["text"] != "hola" {
		t.Errorf("data at Bo: %v", d)
	}
	if ts, _ := d["ts"].(float64); int64(ts) < before-1000 || int64(ts) > time.Now().UnixMilli()+1000 {
		t.Errorf("data ts %v is not the server's time now (%d)", d["ts"], before)
	}
	ana.send(map[string]any{"type": "data", "topic": "chat", "payload": 1, "to": []string{"p-nobody"}})
	if e := ana.next("error", nil); e.str("code") != "unknown_participant" {
		t.Errorf("data to nobody: %v, want unknown_participant", e)
	}

	// ICE restart on request: a re-offer with new credentials, media goes on.
	bo.flowing(t)
	bo.send(map[string]any{"type": "ice_restart", "target": "subscriber"})
	bo.next("offer", func(m msg) bool { return ufrag(m.str("sdp")) != ufrag(bOffer.str("sdp")) })
	bo.flowing(t)

	// Resume: the socket drops, the others see "reconnecting", a new
	// socket takes over with the token, the others see "connected".
	bo.mu.Lock()
	old := bo.conn
	bo.mu.Unlock()
	old.CloseNow()
	ana.next("participant_status", func(m msg) bool { return m.str("id") == boID && m.str("status") == "reconnecting" })
	bo.connect()
	bo.send(map[string]any{"type": "resume", "v": 1, "participantId": boID, "resumeToken": bj.str("resumeToken")})
	r := bo.next("resumed", nil)
	if r.str("id") != boID || len(r.list("participants")) != 2 || r.str("resumeToken") == "" || r.str("resumeToken") == bj.str("resumeToken") {
		t.Errorf("resumed = %v, want Bo's id, Ana and Cy, a new token", r)
	}
	ana.next("participant_status", func(m msg) bool { return m.str("id") == boID && m.str("status") == "connected" })
	if ana.received("participant_left", func(m msg) bool { return m.str("id") == boID }) {
		t.Error("Ana saw Bo leave during a resume")
	}

	// A spent token fails, and that socket is closed.
	eve := dial(t, url, "Eve")
	eve.send(map[string]any{"type": "resume", "v": 1, "participantId": boID, "resumeToken": bj.str("resumeToken")})
	if e := eve.next("error", nil); e.str("code") != "resume_failed" {
		t.Errorf("resume with a spent token: %v, want resume_failed", e)
	}

	// Leave: the server closes the socket normally; the others hear it.
	bo.send(map[string]any{"type": "leave"})
	ana.next("participant_left", func(m msg) bool { return m.str("id") == boID })
	deadline := time.Now().Add(wait)
	for {
		bo.mu.Lock()
		status, closed := bo.closedBy[bo.conn]
		bo.mu.Unlock()
		if closed {
			if status != websocket.StatusNormalClosure {
				t.Errorf("after leave the server closed with %d, want 1000", status)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the server did not close the socket after leave")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Tracks already in the room come in joined, not as track_published.
	if bo.received("track_published", func(m msg) bool { return m.str("participantId") == anaID }) {
		t.Error("Bo got track_published for tracks joined already listed")
	}
	ana.descriptionFirst()
	bo.descriptionFirst()
}

// count counts tr's packets until its connection closes.
func (p *peer) count(tr *webrtc.TrackRemote) {
	n := &p.packets[0]
	if tr.Kind() == webrtc.RTPCodecTypeVideo {
		n = &p.packets[1]
	}
	for {
		if _, _, err := tr.ReadRTP(); err != nil {
			return
		}
		n.Add(1)
	}
}

// flowing waits until both kinds of media have arrived since the call.
func (p *peer) flowing(t *testing.T) {
	t.Helper()
	a, v := p.packets[0].Load(), p.packets[1].Load()
	deadline := time.Now().Add(wait)
	for p.packets[0].Load() == a || p.packets[1].Load() == v {
		if time.Now().After(deadline) {
			t.Fatalf("%s: media stopped: audio %d video %d packets, none new within %s", p.name, a, v, wait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
