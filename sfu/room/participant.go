package room

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jbcalling/platform/sfu/bwe"
	"github.com/jbcalling/platform/sfu/fastpath"
	"github.com/jbcalling/platform/sfu/feedback"
	"github.com/jbcalling/platform/sfu/forward"
	"github.com/jbcalling/platform/sfu/rtpindex"
	"github.com/jbcalling/platform/sfu/signal"
	"github.com/jbcalling/platform/sfu/simulcast"
	"github.com/pion/webrtc/v4"
)

// More sentinel errors, reported to the client by the server.
var (
	ErrBadSDP        = errors.New("room: bad SDP")
	ErrBadCandidate  = errors.New("room: bad ICE candidate")
	ErrUnknownTrack  = errors.New("room: unknown track")
	ErrTooManyTracks = errors.New("room: too many tracks")
	ErrNoOffer       = errors.New("room: no subscriber offer outstanding")
	ErrICETimeout    = errors.New("room: peer connection did not connect in time")
	ErrICEFailed     = errors.New("room: peer connection failed")
	ErrNoAnswer      = errors.New("room: no answer to the subscriber offer")
	ErrNotConnected  = errors.New("room: subscriber connection not connected")
	// ErrUnknownParticipant: data addressed to someone not in the room.
	ErrUnknownParticipant = errors.New("room: no such participant in the room")
)

// Participant is one member of a room with its two peer connections.
type Participant struct {
	id, name, identity string
	agent              bool
	// What the participant speaks and wants; under the room's lock.
	language, translateTo string
	joined                time.Time
	onClose               func(error)
	m                     *Manager
	room                  *Room
	log                   *slog.Logger

	pub, sub *webrtc.PeerConnection
	data     *webrtc.DataChannel // the room's, on sub

	// tracks is guarded by room.mu: publishing and joining both happen
	// under it, so each track reaches each participant exactly once.
	tracks map[string]*publishedTrack

	subMu sync.Mutex
	subs  map[subKey]*subscription
	// The subscriber connection's send path (direct or pion, decided once
	// connected) and the packet indices of its SSRCs, whichever path.
	subPath  *fastpath.Subscriber
	subIndex *rtpindex.Book
	// resends is its retransmission budget, across its tracks.
	resends *forward.ResendBudget
	// bwe estimates what its link carries, for the simulcast layers
	// (the reporter's goroutine alone uses it), from the loss its
	// receiver reports gave since the last allocation: losses, and
	// lastReport, the time of each SSRC's previous one.
	bwe *simulcast.Estimator
	// cc numbers every packet the subscriber connection sends and learns
	// from its transport-cc feedback; probe is the reporter's probing.
	cc         *bwe.Sender
	probe      prober
	lossMu     sync.Mutex
	losses     []simulcast.Report
	lastReport map[uint32]time.Time
	reported   atomic.Bool // the sender reports started

	// The publisher connection's receive path (fast or pion, decided with
	// its first track) and the feedback to the publisher.
	pubPath *fastpath.Publisher
	inMu    sync.Mutex
	fb      *feedback.Publisher

	// The signalling connection (resume.go): sink, its generation, how
	// to end it when another takes over; while detached, held keeps the
	// data messages for the next.
	sinkMu      sync.Mutex
	sink        Sink
	gen         uint64
	onReplaced  func()
	detached    bool
	held        []signal.Message
	resumeToken string
	expiry      *time.Timer

	// candidates, per target, sends each connection's candidates after
	// the description they belong to.
	candidates map[string]*signal.CandidateQueue

	negMu       sync.Mutex
	restart     bool                                    // the next subscriber offer restarts ICE
	restartedAt map[string]time.Time                    // by target, for the restarts' throttle
	sources     map[string]signal.TrackSource           // publisher mid → what it carries, from its offers
	byReceiver  map[*webrtc.RTPReceiver]*publishedTrack // simulcast tracks, whose layers come one by one
	awaiting    bool                                    // a subscriber offer waits for its answer
	offerSeq    uint64
	again       bool // something changed meanwhile
	pendPub     []webrtc.ICECandidateInit
	pendSub     []webrtc.ICECandidateInit
	pubTimerSet bool
	subTimerSet bool

	closeOnce sync.Once
	closed    chan struct{}
	wgMu      sync.Mutex // orders wg.Add before Close's wg.Wait
	wg        sync.WaitGroup
	nTracks   atomic.Int32
}

type publishedTrack struct {
	id     string
	mid    string // the publisher transceiver's
	source string // signal.Source*
	// Of a translation: whose words, in which language.
	translationOf, lang string
	owner               *Participant
	// fwd is the track's forwarder, or its first layer's when it is a
	// simulcast track (layers); nLayers is how many the publisher
	// declared, liveLayers how many still run (under owner.negMu).
	fwd                 *forward.Forwarder
	layers              *forward.Layers
	nLayers, liveLayers int
	meter               *levelMeter // audio with levels: for the active speakers
	muted               bool        // guarded by room.mu
	ended               atomic.Bool
}

type subKey struct{ publisher, track string }

type subscription struct {
	sender *webrtc.RTPSender
	down   *forward.DownTrack
	track  *publishedTrack
	// What the subscriber asked for (simulcast tracks), under subMu.
	maxLayer int
	paused   bool
	// For the allocation, which alone uses them: the layer last told
	// the subscriber, and the bytes sent at the last report.
	told   int
	octets uint32
	// counted: in Counters.PausedLayers (under subMu).
	counted bool
}

// ID is the participant's id.
func (p *Participant) ID() string { return p.id }

// Name is the display name.
func (p *Participant) Name() string { return p.name }

// RoomName is the joined room.
func (p *Participant) RoomName() string { return p.room.name }

func (p *Participant) setup() error {
	p.joined = time.Now()
	p.candidates = map[string]*signal.CandidateQueue{signal.TargetPublisher: {}, signal.TargetSubscriber: {}}
	cfg := webrtc.Configuration{ICEServers: p.m.cfg.ICEServers}
	var err error
	pubAPI, subAPI := p.m.cfg.API, p.m.cfg.API
	p.pubPath, p.subPath = (&fastpath.Port{}).NewPublisher(nil), (&fastpath.Port{}).NewSubscriber(nil)
	if f := p.m.cfg.PublisherAPI; f != nil {
		pubAPI, p.pubPath = f()
	}
	if f := p.m.cfg.SubscriberAPI; f != nil {
		subAPI, p.subPath = f()
	}
	p.subIndex = rtpindex.NewBook()
	p.resends = forward.NewResendBudget(resendRate, resendBurst)
	p.bwe = simulcast.NewEstimator()
	p.cc = bwe.NewSender()
	p.probe.done = make(chan bwe.Probe, 1)
	p.subPath.SetStamper(p.cc)
	if p.pub, err = pubAPI.NewPeerConnection(cfg); err != nil {
		return fmt.Errorf("room: publisher peer connection: %w", err)
	}
	if p.sub, err = subAPI.NewPeerConnection(cfg); err != nil {
		p.pub.Close()
		return fmt.Errorf("room: subscriber peer connection: %w", err)
	}
	for target, pc := range map[string]*webrtc.PeerConnection{signal.TargetPublisher: p.pub, signal.TargetSubscriber: p.sub} {
		pc.OnICECandidate(func(c *webrtc.ICECandidate) {
			msg := &signal.Candidate{Target: target}
			if c != nil {
				init := c.ToJSON()
				msg.Candidate = &signal.ICECandidate{Candidate: init.Candidate, SDPMid: init.SDPMid, SDPMLineIndex: init.SDPMLineIndex, UsernameFragment: init.UsernameFragment}
			}
			p.candidates[target].Send(msg, p.send)
		})
		pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
			p.log.Debug("peer connection state", "target", target, "state", s.String())
			// An ICE failure is restarted (onICEState); a DTLS one ends it.
			if s == webrtc.PeerConnectionStateFailed && pc.ICEConnectionState() != webrtc.ICEConnectionStateFailed {
				p.m.cfg.Counters.ICEFailures.Add(1)
				p.fail(fmt.Errorf("%w: %s", ErrICEFailed, target))
			}
			if s == webrtc.PeerConnectionStateConnected && target == signal.TargetSubscriber {
				p.choosePath()
			}
		})
		pc.OnICEConnectionStateChange(func(s webrtc.ICEConnectionState) { p.onICEState(target, pc, s) })
	}
	p.pub.OnTrack(p.onTrack)
	// The room's data channel, for chat and captions: it lets the server
	// offer the subscriber connection at join, before anyone publishes.
	if p.data, err = p.sub.CreateDataChannel(DataChannelLabel, nil); err != nil {
		p.closePeerConnections()
		return fmt.Errorf("room: data channel: %w", err)
	}
	return nil
}

// A subscriber's retransmissions a second, and at once: a fifth of a
// busy subscriber's ~1000 packets a second, and a keyframe's worth.
const resendRate, resendBurst = 200, 200

// DataChannelLabel is the label of the data channel the server opens on
// every subscriber connection.
const DataChannelLabel = "sfu"

// armJoinTimer ends the participant if its subscriber connection, offered
// at join, is not connected within the ICE timeout: a client that joins
// and never negotiates would otherwise hold its place for ever.
func (p *Participant) armJoinTimer() {
	p.negMu.Lock()
	p.subTimerSet = true
	p.negMu.Unlock()
	t := time.AfterFunc(p.m.cfg.ICETimeout, func() {
		if s := p.sub.ConnectionState(); s != webrtc.PeerConnectionStateConnected && s != webrtc.PeerConnectionStateClosed {
			p.m.cfg.Counters.ICEFailures.Add(1)
			p.fail(fmt.Errorf("%w within %s of joining", ErrNotConnected, p.m.cfg.ICETimeout))
		}
	})
	go func() { <-p.closed; t.Stop() }()
}

// choosePath decides the subscriber connection's send path once DTLS is
// up (the keys exist only then) and starts its sender reports.
func (p *Participant) choosePath() {
	if p.reported.Swap(true) {
		return // connected again after a disconnection: decided already
	}
	p.wgMu.Lock() // orders this with Close, which removes it
	if !p.isClosed() {
		p.m.reports.add(p)
	}
	p.wgMu.Unlock()
	direct, err := p.subPath.Start(p.sub, subscriberRTCP{p}, p.pathLost)
	if !direct {
		p.log.Debug("no direct send path, pion writes", "err", err)
		return
	}
	p.subMu.Lock()
	defer p.subMu.Unlock()
	for _, s := range p.subs {
		s.down.SetDirect(p.subPath.NewStream())
	}
}

// pathLost ends a participant whose fast connection moved to an ICE pair
// the fast paths cannot serve: handing its media to pion mid-stream would
// reuse SRTP state (package fastpath); the client reconnects instead.
func (p *Participant) pathLost(err error) { p.fail(err) }

// fail ends the participant for a reason the client did not choose.
func (p *Participant) fail(reason error) {
	go func() {
		if p.Close() && p.onClose != nil {
			p.onClose(reason)
		}
	}()
}

// goStart counts a goroutine about to start unless p is closing.
func (p *Participant) goStart() bool {
	p.wgMu.Lock()
	defer p.wgMu.Unlock()
	if p.isClosed() {
		return false
	}
	p.wg.Add(1)
	return true
}

func (p *Participant) isClosed() bool {
	select {
	case <-p.closed:
		return true
	default:
		return false
	}
}

// publishedLocked lists p's tracks; room.mu is held.
func (p *Participant) publishedLocked() []*publishedTrack {
	out := make([]*publishedTrack, 0, len(p.tracks))
	for _, t := range p.tracks {
		out = append(out, t)
	}
	return out
}

func (p *Participant) infoLocked() signal.Participant {
	info := signal.Participant{ID: p.id, Name: p.name, Tracks: []signal.Track{}, Agent: p.agent,
		Language: p.language, TranslateTo: p.translateTo}
	for _, t := range p.tracks {
		info.Tracks = append(info.Tracks, t.info())
	}
	return info
}

func (p *Participant) info() signal.Participant {
	p.room.mu.Lock()
	defer p.room.mu.Unlock()
	return p.infoLocked()
}

// Close removes the participant from its room, tells the others, stops
// its tracks everywhere and waits for its goroutines. It reports whether
// this call closed it.
func (p *Participant) Close() bool {
	first := false
	p.closeOnce.Do(func() {
		first = true
		p.wgMu.Lock()
		close(p.closed)
		p.wgMu.Unlock()
		m, r := p.m, p.room
		m.mu.Lock()
		r.mu.Lock()
		delete(r.participants, p.id)
		delete(m.byID, p.id)
		others := r.othersLocked(p)
		if len(r.participants) == 0 && m.rooms[r.name] == r {
			delete(m.rooms, r.name)
		}
		r.mu.Unlock()
		m.mu.Unlock()
		for _, o := range others {
			o.send(&signal.ParticipantLeft{ID: p.id})
		}
		// No more packets from the fast receive path; closing the
		// publisher ends the track readers, which unpublish their tracks
		// from everyone.
		p.pubPath.Close()
		p.subPath.Close()
		m.reports.remove(p)
		p.closePeerConnections()
		p.wg.Wait()
		p.inMu.Lock()
		if p.fb != nil {
			_ = p.fb.Close()
		}
		p.inMu.Unlock()
		p.subMu.Lock()
		for k, s := range p.subs {
			s.down.Close()
			p.countPaused(s, false)
			delete(p.subs, k)
		}
		p.subMu.Unlock()
		p.log.Info("participant left", "room", r.name)
		m.wg.Done()
	})
	return first
}

func (p *Participant) closePeerConnections() {
	if err := p.pub.Close(); err != nil {
		p.log.Debug("closing publisher", "err", err)
	}
	if err := p.sub.Close(); err != nil {
		p.log.Debug("closing subscriber", "err", err)
	}
}
