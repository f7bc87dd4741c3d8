package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/jbcalling/platform/sfu/auth"
	"github.com/jbcalling/platform/sfu/room"
	"github.com/jbcalling/platform/sfu/signal"
)

// outQueue bounds messages waiting for a slow client; a client that lets
// it fill is disconnected rather than slowing the room down.
const outQueue = 256

// session is one signalling WebSocket.
type session struct {
	s      *Server
	conn   *websocket.Conn
	ctx    context.Context
	cancel context.CancelFunc
	out    chan []byte
	// closing ends the writer after it sent what is queued.
	closing chan struct{}
	endOnce sync.Once
	status  websocket.StatusCode
	reason  string

	mu  sync.Mutex
	p   *room.Participant
	gen uint64 // p's signalling connection generation, this one's

	// dropped: the connection was lost rather than ended (read or write
	// failure, no pong, a close other than normal, too slow a reader):
	// the participant waits for a resume. replaced: another connection
	// resumed the participant.
	dropped, replaced atomic.Bool

	bucket  tokenBucket
	strikes int
	data    tokenBucket // data messages, the reader's
}

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	if s.isDraining() {
		http.Error(w, "draining", http.StatusServiceUnavailable)
		return
	}
	ip := clientIP(r, s.trusted)
	if !s.sockets.acquire(ip, false) {
		s.metrics.socketsRefused.Inc()
		http.Error(w, "too many signalling connections from this address, or in all", http.StatusTooManyRequests)
		return
	}
	defer s.sockets.release(ip, false)
	// Cross-origin sockets are fine: authentication is the token in the
	// join message, never a cookie, so a foreign page gains nothing.
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		s.log.Debug("websocket accept", "err", err)
		return
	}
	conn.SetReadLimit(signal.MaxMessageSize)
	ctx, cancel := context.WithCancel(context.Background())
	se := &session{s: s, conn: conn, ctx: ctx, cancel: cancel, out: make(chan []byte, outQueue), closing: make(chan struct{}),
		bucket: newTokenBucket(s.cfg.RateLimit, s.cfg.RateBurst), data: newTokenBucket(s.cfg.DataRate, s.cfg.DataBurst)}
	s.mu.Lock()
	if s.draining {
		s.mu.Unlock()
		cancel()
		conn.Close(websocket.StatusTryAgainLater, "draining")
		return
	}
	s.sessions[se] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	s.metrics.connections.Inc()
	defer func() {
		s.metrics.connections.Dec()
		s.mu.Lock()
		delete(s.sessions, se)
		s.mu.Unlock()
		s.wg.Done()
	}()
	se.run()
}

func (se *session) run() {
	writerDone := make(chan struct{})
	go func() { defer close(writerDone); se.writeLoop() }()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); se.keepAlive() }()
	joinTimer := time.AfterFunc(se.s.cfg.JoinTimeout, func() {
		if se.participant() == nil {
			se.sendError(signal.CodeBadMessage, "", "no join within %s", se.s.cfg.JoinTimeout)
			se.end(websocket.StatusPolicyViolation, "join timeout")
		}
	})
	status, reason := se.readLoop()
	joinTimer.Stop()
	if p := se.participant(); p != nil {
		switch window := se.s.cfg.ResumeWindow; {
		case se.replaced.Load():
		case se.dropped.Load() && window > 0 && !se.s.isDraining():
			se.s.metrics.detached.Inc()
			p.Detach(se.gen, window)
		default:
			p.Close()
		}
	}
	se.end(status, reason)
	<-writerDone
	se.cancel()
	wg.Wait()
}

// end makes the writer send what is queued (an error, a goodbye), then
// close the connection with status; the first call wins.
func (se *session) end(status websocket.StatusCode, reason string) {
	se.endOnce.Do(func() {
		se.status, se.reason = status, reason
		close(se.closing)
	})
}

// writeLoop is the only writer of messages and the one that closes the
// connection, so a final error always goes out before the close frame.
func (se *session) writeLoop() {
	failed := false
	write := func(data []byte, timeout time.Duration) {
		if failed {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		if err := se.conn.Write(ctx, websocket.MessageText, data); err != nil {
			failed = true
			se.dropped.Store(true)
			se.cancel()
		}
	}
	for {
		select {
		case data := <-se.out:
			write(data, 10*time.Second)
		case <-se.closing:
			deadline := time.Now().Add(2 * time.Second)
			for {
				select {
				case data := <-se.out:
					if left := time.Until(deadline); left > 0 {
						write(data, left)
					}
					continue
				default:
				}
				break
			}
			se.conn.Close(se.status, se.reason)
			return
		}
	}
}

// keepAlive pings; a client that does not answer within IdleTimeout is
// gone (closed laptop, dead network).
func (se *session) keepAlive() {
	interval := se.s.cfg.IdleTimeout / 3
	if interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-se.ctx.Done():
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(se.ctx, se.s.cfg.IdleTimeout)
			err := se.conn.Ping(ctx)
			cancel()
			if err != nil && se.ctx.Err() == nil {
				se.s.log.Info("closing idle connection", "err", err)
				se.dropped.Store(true)
				se.end(websocket.StatusGoingAway, "idle")
				return
			}
		}
	}
}

// send queues m; a full queue disconnects the client.
func (se *session) send(m signal.Message) {
	data, err := signal.Encode(m)
	if err != nil {
		se.s.log.Error("encoding message", "type", m.MessageType(), "err", err)
		return
	}
	select {
	case se.out <- data:
	default:
		// It resumes with the room as it is now, in one message.
		se.s.log.Warn("client too slow, disconnecting")
		se.dropped.Store(true)
		se.end(websocket.StatusPolicyViolation, "too slow")
	}
}

func (se *session) sendError(code, ref, format string, a ...any) {
	se.send(&signal.Error{Code: code, Message: fmt.Sprintf(format, a...), Ref: ref})
}

func (se *session) drain(deadline time.Time) {
	se.send(&signal.Draining{DeadlineMS: time.Until(deadline).Milliseconds()})
}

// readLoop handles messages until the client leaves or misbehaves; it
// returns the close status.
func (se *session) readLoop() (websocket.StatusCode, string) {
	for {
		typ, data, err := se.conn.Read(se.ctx)
		if err != nil {
			// A close the client chose (1000) ends the session; any other
			// end the server did not cause leaves it to be resumed.
			select {
			case <-se.closing:
			default:
				if websocket.CloseStatus(err) != websocket.StatusNormalClosure {
					se.dropped.Store(true)
				}
			}
			if websocket.CloseStatus(err) != -1 || se.ctx.Err() != nil {
				return websocket.StatusNormalClosure, ""
			}
			// Includes a frame above the read limit, which the library
			// already answered with 1009.
			return websocket.StatusMessageTooBig, "read error"
		}
		if !se.bucket.allow(time.Now()) {
			se.strikes++
			se.s.metrics.rateLimited.Inc()
			if se.strikes > se.s.cfg.RateBurst {
				return websocket.StatusPolicyViolation, "message flood"
			}
			se.sendError(signal.CodeRateLimited, "", "more than %g messages per second", se.s.cfg.RateLimit)
			continue
		}
		if typ != websocket.MessageText {
			se.sendError(signal.CodeBadMessage, "", "binary frames are not part of the protocol")
			continue
		}
		m, err := signal.Decode(data)
		if err != nil {
			code := signal.CodeBadMessage
			switch {
			case errors.Is(err, signal.ErrUnknownType):
				code = signal.CodeUnknownType
			case errors.Is(err, signal.ErrTooLarge):
				code = signal.CodeTooLarge
			}
			se.sendError(code, "", "%v", err)
			continue
		}
		if status, reason, end := se.handle(m); end {
			return status, reason
		}
	}
}

func (se *session) participant() *room.Participant {
	se.mu.Lock()
	defer se.mu.Unlock()
	return se.p
}

// handle acts on one message; end reports that the session is over.
func (se *session) handle(m signal.Message) (status websocket.StatusCode, reason string, end bool) {
	p := se.participant()
	typ := m.MessageType()
	switch m := m.(type) {
	case *signal.Ping:
		se.send(&signal.Pong{})
		return
	case *signal.Pong:
		return
	case *signal.Join, *signal.Resume:
		if p != nil {
			se.sendError(signal.CodeAlreadyJoined, typ, "this connection already joined room %q", p.RoomName())
			return
		}
		if j, ok := m.(*signal.Join); ok {
			return se.join(j)
		}
		return se.resume(m.(*signal.Resume))
	}
	if p == nil {
		se.sendError(signal.CodeNotJoined, typ, "send join first")
		return
	}
	switch m := m.(type) {
	case *signal.Offer, *signal.Answer, *signal.Candidate, *signal.ICERestart:
		se.negotiate(p, m)
	case *signal.Data:
		se.relayData(p, m)
	case *signal.Leave:
		if m.Room != "" && m.Room != p.RoomName() {
			se.sendError(signal.CodeUnknownRoom, typ, "not in room %q", m.Room)
			return
		}
		return websocket.StatusNormalClosure, "left", true
	default:
		se.setting(p, m)
	}
	return
}

// negotiate hands the client's descriptions, candidates and ICE restarts
// to its participant.
func (se *session) negotiate(p *room.Participant, m signal.Message) {
	typ := m.MessageType()
	switch m := m.(type) {
	case *signal.Offer:
		if m.Target != signal.TargetPublisher {
			se.sendError(signal.CodeBadMessage, typ, "clients offer only on the publisher connection")
			return
		}
		if err := p.HandleOffer(m.SDP, m.Tracks); errors.Is(err, room.ErrNotAgent) {
			se.sendError(signal.CodeUnauthorized, typ, "translation tracks come from agents only")
		} else if err != nil {
			se.sendError(signal.CodeBadSDP, typ, "%v", err)
		}
	case *signal.Answer:
		if m.Target != signal.TargetSubscriber {
			se.sendError(signal.CodeBadMessage, typ, "clients answer only on the subscriber connection")
			return
		}
		if err := p.HandleAnswer(m.SDP); err != nil {
			se.sendError(signal.CodeBadSDP, typ, "%v", err)
		}
	case *signal.Candidate:
		if err := p.HandleCandidate(m.Target, m.Candidate); err != nil {
			se.sendError(signal.CodeBadCandidate, typ, "%v", err)
		}
	case *signal.ICERestart:
		if m.Target != signal.TargetSubscriber {
			se.sendError(signal.CodeBadMessage, typ, "clients restart the publisher connection themselves (an offer with new ICE credentials)")
			return
		}
		se.s.rooms.Counters().ClientICERestarts.Add(1)
		p.RestartICE()
	}
}

// relayData sends the client's data message on, within its rate.
func (se *session) relayData(p *room.Participant, m *signal.Data) {
	typ := m.MessageType()
	if m.From != "" || m.TS != 0 {
		se.sendError(signal.CodeBadMessage, typ, "from and ts are the server's to set")
		return
	}
	if !se.data.allow(time.Now()) {
		se.s.metrics.rateLimited.Inc()
		se.sendError(signal.CodeRateLimited, typ, "more than %g data messages per second", se.s.cfg.DataRate)
		return
	}
	if err := p.SendData(m.Topic, m.Payload, m.To); errors.Is(err, room.ErrNotAgent) {
		se.sendError(signal.CodeUnauthorized, typ, "%v", err)
		return
	} else if err != nil {
		se.sendError(signal.CodeUnknownParticipant, typ, "%v", err)
		return
	}
	se.s.metrics.dataMessages.Inc()
}

// setting applies what the client sets about itself (mutes, languages)
// and its subscriptions; any other message is the server's to send.
func (se *session) setting(p *room.Participant, m signal.Message) {
	typ := m.MessageType()
	switch m := m.(type) {
	case *signal.Mute:
		if m.ParticipantID != "" && m.ParticipantID != p.ID() {
			se.sendError(signal.CodeBadMessage, typ, "a client mutes only its own tracks")
			return
		}
		if err := p.SetMute(m.MID, m.TrackID, m.Muted); err != nil {
			se.sendError(signal.CodeUnknownTrack, typ, "%v", err)
		}
	case *signal.Subscription:
		if err := p.SetSubscription(m.ParticipantID, m.TrackID, m.MaxLayer, m.Paused); err != nil {
			se.sendError(signal.CodeUnknownTrack, typ, "%v", err)
		}
	case *signal.Languages:
		if m.ParticipantID != "" && m.ParticipantID != p.ID() {
			se.sendError(signal.CodeBadMessage, typ, "a client sets only its own languages")
			return
		}
		p.SetLanguages(m.Language, m.TranslateTo)
	default:
		se.sendError(signal.CodeBadMessage, typ, "%q is a server message", typ)
	}
}

func (se *session) join(m *signal.Join) (websocket.StatusCode, string, bool) {
	start := time.Now()
	refuse := func(code, format string, a ...any) (websocket.StatusCode, string, bool) {
		se.s.metrics.joinsRefused.WithLabelValues(code).Inc()
		se.sendError(code, signal.TypeJoin, format, a...)
		return websocket.StatusPolicyViolation, code, true
	}
	if m.Version != signal.Version {
		return refuse(signal.CodeVersion, "protocol version %d is not supported; this server speaks %d", m.Version, signal.Version)
	}
	id, err := se.s.verifier.Verify(m.Token, m.Room)
	if err != nil {
		// The reason, never the token.
		return refuse(signal.CodeUnauthorized, "%v", err)
	}
	name := m.Name
	if id.Name != "" {
		name = id.Name
	}
	p, _, err := se.s.rooms.Join(room.JoinRequest{
		Room: m.Room, Name: name, Identity: id.Subject, Agent: id.Agent, Language: m.Language, TranslateTo: m.TranslateTo, Sink: se.send,
		Welcome: func(w room.Welcome) signal.Message {
			return &signal.Joined{Version: signal.Version, ID: w.ID, Room: m.Room, Participants: w.Others, ICEServers: se.s.iceServers(w.ID),
				ResumeToken: w.ResumeToken, ResumeWindowMS: se.s.cfg.ResumeWindow.Milliseconds()}
		},
		OnReplaced: se.replacedBy,
		OnClose: func(reason error) {
			se.sendError(signal.CodeInternal, "", "%v", reason)
			se.end(websocket.StatusGoingAway, "peer connection failed")
		},
	})
	switch {
	case errors.Is(err, room.ErrRoomFull):
		return refuse(signal.CodeRoomFull, "room %q is full", m.Room)
	case errors.Is(err, room.ErrIdentityLimit):
		return refuse(signal.CodeIdentityLimit, "%q has %d participants in room %q already", id.Subject, se.s.cfg.MaxPerIdentity, m.Room)
	case errors.Is(err, room.ErrTooManyRooms):
		return refuse(signal.CodeTooManyRooms, "the server has its maximum number of rooms")
	case errors.Is(err, room.ErrDraining):
		return refuse(signal.CodeDraining, "the server is shutting down")
	case err != nil:
		return refuse(signal.CodeInternal, "%v", err)
	}
	se.mu.Lock()
	se.p, se.gen = p, 1
	se.mu.Unlock()
	se.s.metrics.joinLatency.Observe(time.Since(start).Seconds())
	se.s.log.Info("joined", "room", m.Room, "participant", p.ID(), "identity", id.Subject)
	if len(se.s.cfg.TURNURLs) > 0 {
		go se.renewTURN(p.ID())
	}
	return 0, "", false
}

// replacedBy ends this connection: a new one resumed its participant.
func (se *session) replacedBy() {
	se.replaced.Store(true)
	se.end(websocket.StatusPolicyViolation, "resumed on another connection")
}

// resume takes over a participant whose connection dropped (or that the
// client gave up on).
func (se *session) resume(m *signal.Resume) (websocket.StatusCode, string, bool) {
	if m.Version != signal.Version {
		se.sendError(signal.CodeVersion, signal.TypeResume, "protocol version %d is not supported; this server speaks %d", m.Version, signal.Version)
		return websocket.StatusPolicyViolation, signal.CodeVersion, true
	}
	if se.s.isDraining() {
		se.sendError(signal.CodeDraining, signal.TypeResume, "the server is shutting down")
		return websocket.StatusPolicyViolation, signal.CodeDraining, true
	}
	p, gen, err := se.s.rooms.Resume(room.ResumeRequest{
		ID: m.ParticipantID, Token: m.ResumeToken, Sink: se.send, OnReplaced: se.replacedBy,
		Welcome: func(w room.Welcome) signal.Message {
			return &signal.Resumed{Version: signal.Version, ID: w.ID, Room: w.Room, Participants: w.Others, ICEServers: se.s.iceServers(w.ID),
				ResumeToken: w.ResumeToken, ResumeWindowMS: se.s.cfg.ResumeWindow.Milliseconds()}
		},
	})
	if err != nil {
		se.sendError(signal.CodeResumeFailed, signal.TypeResume, "%v: join again", err)
		return websocket.StatusPolicyViolation, signal.CodeResumeFailed, true
	}
	se.mu.Lock()
	se.p, se.gen = p, gen
	se.mu.Unlock()
	se.s.metrics.resumed.Inc()
	if len(se.s.cfg.TURNURLs) > 0 {
		go se.renewTURN(p.ID())
	}
	return 0, "", false
}

// renewTURN sends fresh TURN credentials every half TURNTTL while the
// session lasts: a participant's credentials outlive its session by at
// most TURNTTL, where one long lifetime let a departed participant use
// the relay for hours.
func (se *session) renewTURN(participant string) {
	t := time.NewTicker(se.s.cfg.TURNTTL / 2)
	defer t.Stop()
	for {
		select {
		case <-se.ctx.Done():
			return
		case <-se.closing:
			return
		case <-t.C:
			se.send(&signal.ICEServers{ICEServers: se.s.iceServers(participant)})
		}
	}
}

// iceServers are the STUN and TURN servers a participant gets, TURN with
// credentials valid for TURNTTL.
func (s *Server) iceServers(participant string) []signal.ICEServer {
	out := []signal.ICEServer{}
	if len(s.cfg.STUNURLs) > 0 {
		out = append(out, signal.ICEServer{URLs: s.cfg.STUNURLs})
	}
	if len(s.cfg.TURNURLs) > 0 {
		user, cred := auth.TURNCredentials(s.cfg.TURNSecret, participant, s.cfg.TURNTTL, time.Now())
		out = append(out, signal.ICEServer{URLs: s.cfg.TURNURLs, Username: user, Credential: cred})
	}
	return out
}

// tokenBucket is a per-connection rate limiter, used only by the
// session's reader goroutine.
type tokenBucket struct {
	rate, burst, tokens float64
	last                time.Time
}

func newTokenBucket(rate float64, burst int) tokenBucket {
	return tokenBucket{rate: rate, burst: float64(burst), tokens: float64(burst)}
}

func (b *tokenBucket) allow(now time.Time) bool {
	if !b.last.IsZero() {
		b.tokens += now.Sub(b.last).Seconds() * b.rate
		if b.tokens > b.burst {
			b.tokens = b.burst
		}
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
