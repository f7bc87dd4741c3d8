package room

import (
	"fmt"
	"strings"
	"time"

	"github.com/jbcalling/platform/sfu/signal"
	"github.com/pion/webrtc/v4"
)

// armICETimer ends the participant if pc is not connected in time after
// its first negotiation.
func (p *Participant) armICETimer(pc *webrtc.PeerConnection, target string) {
	t := time.AfterFunc(p.m.cfg.ICETimeout, func() {
		if s := pc.ConnectionState(); s != webrtc.PeerConnectionStateConnected && s != webrtc.PeerConnectionStateClosed {
			p.m.cfg.Counters.ICEFailures.Add(1)
			p.fail(fmt.Errorf("%w: %s after %s", ErrICETimeout, target, p.m.cfg.ICETimeout))
		}
	})
	go func() { <-p.closed; t.Stop() }()
}

// HandleOffer answers the client's publisher offer; sources name what
// some of its transceivers carry (a screen rather than a camera).
func (p *Participant) HandleOffer(sdp string, sources []signal.TrackSource) error {
	// An offer that restarts ICE restarts it here too, within
	// SetRemoteDescription: the new candidates wait for the answer.
	cq := p.candidates[signal.TargetPublisher]
	cq.Hold()
	defer cq.Release(p.send)
	if len(sources) > 0 {
		p.negMu.Lock()
		if p.sources == nil {
			p.sources = map[string]signal.TrackSource{}
		}
		for _, s := range sources {
			if s.Source == signal.SourceTranslation && !p.agent {
				p.negMu.Unlock()
				return ErrNotAgent
			}
			if _, known := p.sources[s.MID]; len(p.sources) < 64 || known {
				p.sources[s.MID] = s
			}
		}
		p.negMu.Unlock()
	}
	if err := p.pub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdp}); err != nil {
		return fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	answer, err := p.pub.CreateAnswer(nil)
	if err != nil {
		p.rollback(p.pub)
		return fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	if err := p.pub.SetLocalDescription(answer); err != nil {
		p.rollback(p.pub)
		return fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	p.send(&signal.Answer{Target: signal.TargetPublisher, SDP: answer.SDP})
	p.negMu.Lock()
	pend := p.pendPub
	p.pendPub = nil
	arm := !p.pubTimerSet
	p.pubTimerSet = true
	p.negMu.Unlock()
	if arm {
		p.armICETimer(p.pub, signal.TargetPublisher)
	}
	p.addCandidates(p.pub, pend)
	return nil
}

func (p *Participant) rollback(pc *webrtc.PeerConnection) {
	if err := pc.SetLocalDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeRollback}); err != nil {
		p.log.Debug("rollback", "err", err)
	}
}

// HandleAnswer applies the client's answer to the subscriber offer and
// sends the next offer if the room changed meanwhile.
func (p *Participant) HandleAnswer(sdp string) error {
	p.negMu.Lock()
	if !p.awaiting {
		p.negMu.Unlock()
		return ErrNoOffer
	}
	err := p.sub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp})
	if err != nil {
		p.rollback(p.sub)
	}
	p.awaiting = false
	again := p.again
	p.again = false
	pend := p.pendSub
	p.pendSub = nil
	arm := err == nil && !p.subTimerSet
	if arm {
		p.subTimerSet = true
	}
	p.negMu.Unlock()
	if arm {
		p.armICETimer(p.sub, signal.TargetSubscriber)
	}
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	p.addCandidates(p.sub, pend)
	if again {
		p.negotiate()
	}
	return nil
}

// HandleCandidate adds a trickled candidate; candidates that arrive before
// the remote description are kept until it is set.
func (p *Participant) HandleCandidate(target string, c *signal.ICECandidate) error {
	if c == nil || strings.TrimSpace(c.Candidate) == "" {
		return nil // end of candidates
	}
	init := webrtc.ICECandidateInit{Candidate: c.Candidate, SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex, UsernameFragment: c.UsernameFragment}
	pc := p.pub
	if target == signal.TargetSubscriber {
		pc = p.sub
	}
	p.negMu.Lock()
	// Before any remote description, or ahead of the one it belongs to (a
	// client's restarted ICE trickles before its answer arrives): kept
	// until that description is set.
	if d := pc.RemoteDescription(); d == nil || candidateUfrag(init) != "" && candidateUfrag(init) != iceUfrag(d.SDP) {
		const maxPending = 64
		if target == signal.TargetSubscriber && len(p.pendSub) < maxPending {
			p.pendSub = append(p.pendSub, init)
		} else if target == signal.TargetPublisher && len(p.pendPub) < maxPending {
			p.pendPub = append(p.pendPub, init)
		}
		p.negMu.Unlock()
		return nil
	}
	p.negMu.Unlock()
	if err := pc.AddICECandidate(init); err != nil {
		return fmt.Errorf("%w: %v", ErrBadCandidate, err)
	}
	return nil
}

// candidateUfrag is the ICE username fragment a candidate belongs to:
// its usernameFragment, or the candidate line's ufrag attribute (pion
// sends only the latter); "" if it names none.
func candidateUfrag(c webrtc.ICECandidateInit) string {
	if c.UsernameFragment != nil && *c.UsernameFragment != "" {
		return *c.UsernameFragment
	}
	f := strings.Fields(c.Candidate)
	for i := 8; i+1 < len(f); i += 2 { // attributes follow "typ <type>"
		if f[i] == "ufrag" {
			return f[i+1]
		}
	}
	return ""
}

// iceUfrag is the first ICE username fragment an SDP names.
func iceUfrag(sdp string) string {
	if _, rest, ok := strings.Cut(sdp, "a=ice-ufrag:"); ok {
		v, _, _ := strings.Cut(rest, "\n")
		return strings.TrimSpace(v)
	}
	return ""
}

func (p *Participant) addCandidates(pc *webrtc.PeerConnection, cs []webrtc.ICECandidateInit) {
	ufrag := ""
	if d := pc.RemoteDescription(); d != nil {
		ufrag = iceUfrag(d.SDP)
	}
	for _, c := range cs {
		if u := candidateUfrag(c); u != "" && u != ufrag {
			continue // of a generation the client has since replaced
		}
		if err := pc.AddICECandidate(c); err != nil {
			p.send(&signal.Error{Code: signal.CodeBadCandidate, Message: err.Error(), Ref: signal.TypeCandidate})
		}
	}
}

// negotiate sends a subscriber offer, or notes that one is needed once
// the outstanding offer is answered: offers go out one at a time.
func (p *Participant) negotiate() {
	p.negMu.Lock()
	defer p.negMu.Unlock()
	if p.isClosed() {
		return
	}
	if p.awaiting {
		p.again = true
		return
	}
	var opts *webrtc.OfferOptions
	if p.restart {
		opts = &webrtc.OfferOptions{ICERestart: true}
	}
	offer, err := p.sub.CreateOffer(opts)
	cq := p.candidates[signal.TargetSubscriber]
	cq.Hold()
	defer cq.Release(p.send)
	if err == nil {
		err = p.sub.SetLocalDescription(offer)
	}
	if err != nil {
		p.log.Warn("subscriber offer", "err", err)
		return
	}
	p.restart = false
	p.awaiting = true
	p.sendOfferLocked(offer.SDP)
}

// resendOffer sends the unanswered subscriber offer again (a new
// signalling connection may never have seen it), with the candidates
// gathered since.
func (p *Participant) resendOffer() {
	p.negMu.Lock()
	defer p.negMu.Unlock()
	if !p.awaiting || p.isClosed() {
		return
	}
	cq := p.candidates[signal.TargetSubscriber]
	cq.Hold()
	defer cq.Release(p.send)
	if d := p.sub.LocalDescription(); d != nil {
		p.sendOfferLocked(d.SDP)
	}
}

// sendOfferLocked sends a subscriber offer and waits for its answer; negMu
// held. A client that never answers would never receive another track:
// it ends instead, so that it can rejoin. A detached one gets the offer
// again when it resumes.
func (p *Participant) sendOfferLocked(sdp string) {
	p.offerSeq++
	seq := p.offerSeq
	p.send(&signal.Offer{Target: signal.TargetSubscriber, SDP: sdp})
	t := time.AfterFunc(p.m.cfg.ICETimeout, func() {
		p.negMu.Lock()
		stale := p.awaiting && p.offerSeq == seq
		p.negMu.Unlock()
		if stale && !p.Detached() {
			p.fail(fmt.Errorf("%w within %s", ErrNoAnswer, p.m.cfg.ICETimeout))
		}
	})
	go func() { <-p.closed; t.Stop() }()
}
