package room

import (
	"fmt"
	"time"

	"github.com/jbcalling/platform/sfu/signal"
	"github.com/pion/webrtc/v4"
)

// iceRestartDelay is how long a connection may stay disconnected before
// ICE is restarted: a short outage recovers on the same pair by itself,
// a new address (another network) does not.
const iceRestartDelay = 2 * time.Second

func iceDown(s webrtc.ICEConnectionState) bool {
	return s == webrtc.ICEConnectionStateDisconnected || s == webrtc.ICEConnectionStateFailed
}

// RestartICE offers the subscriber connection again with new ICE
// credentials (the client asked, or it dropped).
func (p *Participant) RestartICE() {
	p.negMu.Lock()
	p.restart = true
	p.negMu.Unlock()
	p.negotiate()
}

// onICEState restarts ICE on a connection that stays down: the server
// offers the subscriber connection afresh; for the publisher connection,
// which the client offers, it asks the client to. A connection not
// connected again within the ICE timeout ends the participant.
func (p *Participant) onICEState(target string, pc *webrtc.PeerConnection, s webrtc.ICEConnectionState) {
	switch s {
	case webrtc.ICEConnectionStateDisconnected:
		time.AfterFunc(iceRestartDelay, func() {
			if iceDown(pc.ICEConnectionState()) {
				p.restartICE(target, pc)
			}
		})
	case webrtc.ICEConnectionStateFailed:
		p.restartICE(target, pc)
	}
}

func (p *Participant) restartICE(target string, pc *webrtc.PeerConnection) {
	if p.isClosed() {
		return
	}
	p.negMu.Lock()
	now := time.Now()
	if now.Sub(p.restartedAt[target]) < iceRestartDelay {
		p.negMu.Unlock()
		return
	}
	if p.restartedAt == nil {
		p.restartedAt = map[string]time.Time{}
	}
	p.restartedAt[target] = now
	p.negMu.Unlock()
	p.m.cfg.Counters.ServerICERestarts.Add(1)
	p.log.Info("restarting ICE", "target", target, "state", pc.ICEConnectionState().String())
	if target == signal.TargetSubscriber {
		p.RestartICE()
	} else {
		p.send(&signal.ICERestart{Target: signal.TargetPublisher})
	}
	t := time.AfterFunc(p.m.cfg.ICETimeout, func() {
		if s := pc.ConnectionState(); s != webrtc.PeerConnectionStateConnected && s != webrtc.PeerConnectionStateClosed && iceDown(pc.ICEConnectionState()) {
			p.m.cfg.Counters.ICEFailures.Add(1)
			p.fail(fmt.Errorf("%w: %s not connected again within %s of an ICE restart", ErrICEFailed, target, p.m.cfg.ICETimeout))
		}
	})
	go func() { <-p.closed; t.Stop() }()
}
