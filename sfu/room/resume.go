package room

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"time"

	"github.com/jbcalling/platform/sfu/signal"
)

// ErrResumeFailed: no participant to resume with that id and token (it
// left, its window passed, or the token is wrong).
var ErrResumeFailed = errors.New("room: nothing to resume")

// maxHeld bounds the data messages kept for a participant while its
// signalling connection is gone; older ones beyond it are dropped.
const maxHeld = 256

// Welcome is what the first message on a signalling connection (joined,
// resumed) says of the participant.
type Welcome struct {
	ID, Room    string
	Others      []signal.Participant
	ResumeToken string
}

// A participant's signalling connection: where its messages go, which
// connection that is (gen), and how to end it when another takes over.
// While detached its messages are dropped, but for data messages, which
// are held for the next connection: the room's state and the negotiation
// are sent afresh on resume.

// send delivers m to the participant's signalling connection.
func (p *Participant) send(m signal.Message) {
	select {
	case <-p.closed:
		return
	default:
	}
	p.sinkMu.Lock()
	defer p.sinkMu.Unlock()
	if p.detached {
		if _, ok := m.(*signal.Data); ok {
			if len(p.held) == maxHeld {
				p.held = p.held[1:]
			}
			p.held = append(p.held, m)
		}
		return
	}
	p.sink(m)
}

func newResumeToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Detach tells p that its signalling connection gen dropped: p stays in
// its room, media flowing, for window, the others hear it is
// reconnecting, and if no connection resumes it by then it leaves. A
// connection that is not p's current one (another took over) changes
// nothing.
func (p *Participant) Detach(gen uint64, window time.Duration) {
	p.sinkMu.Lock()
	if gen != p.gen || p.detached || p.isClosed() {
		p.sinkMu.Unlock()
		return
	}
	p.detached = true
	p.sink, p.onReplaced = nil, nil
	p.expiry = time.AfterFunc(window, func() {
		p.sinkMu.Lock()
		gone := p.detached && p.gen == gen
		p.sinkMu.Unlock()
		if gone {
			p.log.Info("not resumed within the window: leaving", "window", window)
			p.Close()
		}
	})
	p.sinkMu.Unlock()
	p.log.Info("signalling dropped: waiting for a resume", "window", window)
	for _, o := range p.room.others(p) {
		o.send(&signal.ParticipantStatus{ID: p.id, Status: signal.StatusReconnecting})
	}
}

// CloseDetached ends every participant waiting for a resume (the server
// shuts down).
func (m *Manager) CloseDetached() {
	for _, p := range m.participants() {
		if p.Detached() {
			p.Close()
		}
	}
}

// Detached reports whether p waits for a resume.
func (p *Participant) Detached() bool {
	p.sinkMu.Lock()
	defer p.sinkMu.Unlock()
	return p.detached
}

// ResumeRequest describes a new signalling connection taking a
// participant over.
type ResumeRequest struct {
	ID, Token string
	Sink      Sink
	// OnReplaced ends the connection when yet another takes over.
	OnReplaced func()
	// Welcome makes the first message on the connection (resumed).
	Welcome func(Welcome) signal.Message
}

// Resume binds a new signalling connection to a participant that was
// detached, or whose connection the client gave up on (the server may not
// have noticed yet: that one is ended). The connection gets the room as
// it is now, then the data messages it missed; an unanswered subscriber
// offer is sent again, and ICE restarted where the connections dropped.
// It returns the participant and the connection's generation.
func (m *Manager) Resume(req ResumeRequest) (*Participant, uint64, error) {
	m.mu.Lock()
	p := m.byID[req.ID]
	m.mu.Unlock()
	if p == nil {
		return nil, 0, ErrResumeFailed
	}
	r := p.room
	r.mu.Lock()
	p.sinkMu.Lock()
	if p.isClosed() || subtle.ConstantTimeCompare([]byte(req.Token), []byte(p.resumeToken)) != 1 {
		p.sinkMu.Unlock()
		r.mu.Unlock()
		return nil, 0, ErrResumeFailed
	}
	wasDetached, replaced := p.detached, p.onReplaced
	if p.expiry != nil {
		p.expiry.Stop()
		p.expiry = nil
	}
	p.gen++
	gen := p.gen
	p.sink, p.onReplaced, p.detached = req.Sink, req.OnReplaced, false
	p.resumeToken = newResumeToken()
	others := r.othersLocked(p)
	infos := make([]signal.Participant, 0, len(others))
	for _, o := range r.snapshotLocked() {
		if o.p != p {
			infos = append(infos, o.info)
		}
	}
	// Under the room lock: nothing reaches the connection before its
	// welcome, and the welcome's room is the one later messages amend.
	p.sink(req.Welcome(Welcome{ID: p.id, Room: r.name, Others: infos, ResumeToken: p.resumeToken}))
	for _, h := range p.held {
		p.sink(h)
	}
	p.held = nil
	p.sinkMu.Unlock()
	r.mu.Unlock()

	if replaced != nil {
		replaced()
	}
	if wasDetached {
		for _, o := range others {
			o.send(&signal.ParticipantStatus{ID: p.id, Status: signal.StatusConnected})
		}
	}
	p.log.Info("resumed", "detached", wasDetached)
	p.renegotiate()
	return p, gen, nil
}

// renegotiate picks the negotiation up on a new signalling connection:
// the subscriber offer the client may never have seen goes again, and a
// connection whose ICE dropped meanwhile is restarted.
func (p *Participant) renegotiate() {
	p.negMu.Lock()
	awaiting := p.awaiting
	p.negMu.Unlock()
	switch {
	case awaiting:
		p.resendOffer()
	case iceDown(p.sub.ICEConnectionState()):
		p.RestartICE()
	}
	if p.pub.RemoteDescription() != nil && iceDown(p.pub.ICEConnectionState()) {
		p.send(&signal.ICERestart{Target: signal.TargetPublisher})
	}
}
