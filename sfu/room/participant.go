package room

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jbcalling/platform/sfu/fastpath"
	"github.com/jbcalling/platform/sfu/fastpath/srtprecv"
	"github.com/jbcalling/platform/sfu/feedback"
	"github.com/jbcalling/platform/sfu/forward"
	"github.com/jbcalling/platform/sfu/rtpindex"
	"github.com/jbcalling/platform/sfu/signal"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
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
	resends  *forward.ResendBudget
	reported atomic.Bool // the sender reports started

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
	restart     bool                          // the next subscriber offer restarts ICE
	restartedAt map[string]time.Time          // by target, for the restarts' throttle
	sources     map[string]signal.TrackSource // publisher mid → what it carries, from its offers
	awaiting    bool                          // a subscriber offer waits for its answer
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
	fwd                 *forward.Forwarder
	meter               *levelMeter // audio with levels: for the active speakers
	muted               bool        // guarded by room.mu
	ended               atomic.Bool
}

type subKey struct{ publisher, track string }

type subscription struct {
	sender *webrtc.RTPSender
	down   *forward.DownTrack
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

// sendSenderReports sends every subscribed track's RTCP sender report
// (the reporter calls it each SenderReportInterval); pkts is scratch.
func (p *Participant) sendSenderReports(now time.Time, pkts []rtcp.Packet) []rtcp.Packet {
	p.subMu.Lock()
	for _, s := range p.subs {
		if sr, ok := s.down.SenderReport(now); ok {
			pkts = append(pkts, &sr)
		}
	}
	p.subMu.Unlock()
	if len(pkts) == 0 || p.isClosed() {
		return pkts
	}
	if err := p.sub.WriteRTCP(pkts); err != nil {
		p.log.Debug("sending sender reports", "err", err)
	}
	return pkts
}

// fail ends the participant for a reason the client did not choose.
func (p *Participant) fail(reason error) {
	go func() {
		if p.Close() && p.onClose != nil {
			p.onClose(reason)
		}
	}()
}

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

// SetMute records a publisher's mute state and tells the others. The
// track is the one its publisher transceiver mid names, or, without a
// mid, the one with that id.
func (p *Participant) SetMute(mid, trackID string, muted bool) error {
	r := p.room
	r.mu.Lock()
	t := p.tracks[trackID]
	if mid != "" {
		t = nil
		for _, pt := range p.tracks {
			if pt.mid == mid {
				t = pt
			}
		}
	}
	if t == nil {
		r.mu.Unlock()
		if mid != "" {
			return fmt.Errorf("%w: no track on mid %q", ErrUnknownTrack, mid)
		}
		return fmt.Errorf("%w: %q", ErrUnknownTrack, trackID)
	}
	t.muted = muted
	others := r.othersLocked(p)
	r.mu.Unlock()
	for _, o := range others {
		o.send(&signal.Mute{ParticipantID: p.id, TrackID: t.id, Muted: muted})
	}
	return nil
}

// onTrack starts forwarding a newly published track.
func (p *Participant) onTrack(remote *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	max := p.m.cfg.MaxTracks
	if p.agent {
		max = maxAgentTracks
	}
	if max > 0 && int(p.nTracks.Add(1)) > max {
		p.nTracks.Add(-1)
		p.send(&signal.Error{Code: signal.CodeTooManyTracks, Message: fmt.Sprintf("at most %d tracks per participant; track %q is not forwarded", max, remote.ID())})
		if p.goStart() {
			defer p.wg.Done()
			p.drain(remote)
		}
		return
	} else if max <= 0 {
		p.nTracks.Add(1)
	}
	ssrc := uint32(remote.SSRC())
	t := &publishedTrack{id: remote.ID(), owner: p}
	for _, tr := range p.pub.GetTransceivers() {
		if tr.Receiver() == recv {
			t.mid = tr.Mid()
		}
	}
	src := p.sourceOf(t.mid, remote.Kind())
	t.source, t.translationOf, t.lang = src.Source, src.TranslationOf, src.Lang
	fb := p.feedbackFor(remote, recv)
	var observe func([]byte, *rtp.Header, time.Time)
	if fb != nil {
		defer fb.Close()
		observe = fb.Received
	}
	if remote.Kind() == webrtc.RTPCodecTypeAudio {
		for _, e := range recv.GetParameters().HeaderExtensions {
			if e.URI == sdp.AudioLevelURI && e.ID > 0 && e.ID < 15 {
				t.meter = &levelMeter{extID: uint8(e.ID)}
			}
		}
	}
	if m := t.meter; m != nil {
		inner := observe
		observe = func(raw []byte, hdr *rtp.Header, at time.Time) {
			m.observe(hdr)
			if inner != nil {
				inner(raw, hdr, at)
			}
		}
	}
	t.fwd = forward.New(forward.Config{
		Codec:            remote.Codec(),
		Extensions:       recv.GetParameters().HeaderExtensions,
		KeyframeInterval: p.m.cfg.KeyframeInterval,
		Counters:         &p.m.cfg.Counters.Forward,
		RequestKeyframe: func() {
			if err := p.pub.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}}); err != nil {
				p.log.Debug("sending PLI", "err", err)
			}
		},
		Observe: observe,
	})

	r := p.room
	r.mu.Lock()
	if _, dup := p.tracks[t.id]; dup || t.id == "" {
		t.id = fmt.Sprintf("%s-%d", t.id, ssrc) // ids are unique per publisher
	}
	p.tracks[t.id] = t
	others := r.othersLocked(p)
	r.mu.Unlock()
	p.m.cfg.Counters.TracksCurrent.Add(1)
	p.log.Info("track published", "track", t.id, "codec", remote.Codec().MimeType)

	info := t.info()
	for _, o := range others {
		o.send(&signal.TrackPublished{ParticipantID: p.id, Track: info})
		if t.source == signal.SourceTranslation {
			o.reconcile() // it may replace the speaker's own voice
		} else if r.wants(o, t) {
			o.subscribe(t)
		}
	}
	if t.meter != nil {
		p.m.speakers.add(t)
	}
	// pion calls OnTrack on its own goroutine: this is the track's reader.
	if !p.goStart() {
		p.unpublish(t)
		return
	}
	defer p.wg.Done()
	if p.goStart() {
		go p.readPublisherRTCP(recv)
	}
	// From here on the fast receive path, if the connection took it,
	// takes the track's packets; pion delivers those already in its
	// buffers, and all of them if it has none.
	kept := p.startPublisherPath() && p.pubPath.Keep(ssrc, t.fwd)
	if err := t.fwd.Run(remote); err != nil {
		p.log.Debug("track ended", "track", t.id, "err", err)
	}
	if kept {
		p.pubPath.Release(ssrc) // before the subscribers go
	}
	p.unpublish(t)
}

// feedbackFor starts the feedback to the publisher for one of its tracks,
// and the connection's feedback with its first; nil if it cannot.
func (p *Participant) feedbackFor(remote *webrtc.TrackRemote, recv *webrtc.RTPReceiver) *feedback.Receiver {
	p.inMu.Lock()
	defer p.inMu.Unlock()
	if p.fb == nil {
		fb, err := feedback.New(feedback.Config{WriteRTCP: p.pub.WriteRTCP, Logger: p.log})
		if err != nil {
			p.log.Warn("no feedback to the publisher", "err", err)
			return nil
		}
		p.fb = fb
	}
	c := remote.Codec()
	s := feedback.Stream{SSRC: uint32(remote.SSRC()), PayloadType: uint8(c.PayloadType), MimeType: c.MimeType, ClockRate: c.ClockRate}
	for _, f := range c.RTCPFeedback {
		s.Feedback = append(s.Feedback, interceptor.RTCPFeedback{Type: f.Type, Parameter: f.Parameter})
	}
	for _, e := range recv.GetParameters().HeaderExtensions {
		if e.URI == sdp.TransportCCURI && e.ID > 0 && e.ID < 256 {
			s.TransportCCID = uint8(e.ID)
		}
	}
	return p.fb.Stream(s)
}

// startPublisherPath decides the publisher connection's receive path with
// its first track (its keys and address exist only once media flows) and
// reports whether the fast path took it.
func (p *Participant) startPublisherPath() bool {
	p.inMu.Lock()
	fb := p.fb
	p.inMu.Unlock()
	var rtcp srtprecv.RTCPSink // its sender reports, for the receiver reports
	if fb != nil {
		rtcp = fb
	}
	fast, err := p.pubPath.Start(p.pub, rtcp, p.pathLost)
	if !fast && err != nil {
		p.log.Debug("no fast receive path, pion reads", "err", err)
	}
	return fast
}

// readPublisherRTCP passes the publisher's RTCP for one track to the
// feedback: its sender reports time the receiver reports.
func (p *Participant) readPublisherRTCP(recv *webrtc.RTPReceiver) {
	defer p.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, _, err := recv.Read(buf)
		if err != nil {
			return
		}
		p.inMu.Lock()
		fb := p.fb
		p.inMu.Unlock()
		if fb != nil {
			fb.ReceiveRTCP(buf[:n])
		}
	}
}

func (p *Participant) drain(remote *webrtc.TrackRemote) {
	buf := make([]byte, forward.MaxPacketSize)
	for {
		if _, _, err := remote.Read(buf); err != nil {
			return
		}
	}
}

func (t *publishedTrack) info() signal.Track {
	return signal.Track{ID: t.id, Kind: t.fwd.Kind().String(), Codec: t.fwd.Codec().MimeType, Muted: t.muted, Source: t.source,
		TranslationOf: t.translationOf, Lang: t.lang}
}

// sourceOf is what the publisher said the transceiver mid carries, else
// its kind's default.
func (p *Participant) sourceOf(mid string, kind webrtc.RTPCodecType) signal.TrackSource {
	p.negMu.Lock()
	s := p.sources[mid]
	p.negMu.Unlock()
	switch {
	case s.Source != "":
		return s
	case kind == webrtc.RTPCodecTypeAudio:
		return signal.TrackSource{Source: signal.SourceMicrophone}
	default:
		return signal.TrackSource{Source: signal.SourceCamera}
	}
}

// unpublish removes an ended track from every subscriber.
func (p *Participant) unpublish(t *publishedTrack) {
	t.ended.Store(true)
	if t.meter != nil {
		p.m.speakers.remove(t)
	}
	r := p.room
	r.mu.Lock()
	delete(p.tracks, t.id)
	others := r.othersLocked(p)
	r.mu.Unlock()
	p.nTracks.Add(-1)
	p.m.cfg.Counters.TracksCurrent.Add(-1)
	leaving := p.isClosed()
	for _, o := range others {
		if !leaving {
			o.send(&signal.TrackUnpublished{ParticipantID: p.id, TrackID: t.id})
		}
		o.unsubscribe(p.id, t.id)
		if t.source == signal.SourceTranslation {
			o.reconcile() // the speaker's own voice again
		}
	}
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

// subscribe adds t to p's subscriber connection and renegotiates.
func (p *Participant) subscribe(t *publishedTrack) {
	if p.addSubscription(t) {
		p.negotiate()
	}
}

// subscribeAll adds tracks without negotiating: a joiner gets all the
// existing tracks in its first offer.
func (p *Participant) subscribeAll(tracks []*publishedTrack) {
	for _, t := range tracks {
		p.addSubscription(t)
	}
}

// addSubscription adds t's DownTrack to the subscriber connection and
// reports whether it did.
func (p *Participant) addSubscription(t *publishedTrack) bool {
	key := subKey{t.owner.id, t.id}
	p.subMu.Lock()
	if p.isClosed() || t.ended.Load() || p.subs[key] != nil {
		p.subMu.Unlock()
		return false
	}
	down := t.fwd.NewDownTrack(t.id, t.owner.id, p.subIndex)
	sender, err := p.sub.AddTrack(down)
	if err != nil {
		p.subMu.Unlock()
		p.log.Warn("subscribing", "track", t.id, "err", err)
		return false
	}
	p.subs[key] = &subscription{sender: sender, down: down}
	if s := p.subPath.NewStream(); s != nil {
		down.SetDirect(s)
	}
	p.subMu.Unlock()

	if p.goStart() {
		go p.readSubscriberRTCP(sender, down)
	}
	return true
}

// readSubscriberRTCP reads the RTCP a subscriber sends about one track
// through pion (when the connection has no fast receive path).
func (p *Participant) readSubscriberRTCP(s *webrtc.RTPSender, down *forward.DownTrack) {
	defer p.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, _, err := s.Read(buf)
		if err != nil {
			return
		}
		if pkts, err := rtcp.Unmarshal(buf[:n]); err == nil {
			p.handleSubscriberRTCP(pkts, down)
		}
	}
}

// subscriberRTCP is the RTCP a subscriber sends on the fast receive path
// (srtprecv.RTCPSink), for any of its tracks.
type subscriberRTCP struct{ p *Participant }

func (s subscriberRTCP) ReceiveRTCP(pkt []byte) {
	if !hasFeedback(pkt) {
		return // receiver reports only: nothing to answer
	}
	if pkts, err := rtcp.Unmarshal(pkt); err == nil {
		s.p.handleSubscriberRTCP(pkts, nil)
	}
}

// hasFeedback reports whether a compound RTCP packet holds transport or
// payload-specific feedback (RFC 4585: NACK, PLI, FIR) or a receiver
// report block that echoes a sender report (the round trip), without
// parsing it.
func hasFeedback(pkt []byte) bool {
	for off := 0; off+4 <= len(pkt); off += (int(pkt[off+2])<<8 | int(pkt[off+3]) + 1) * 4 {
		switch pt := rtcp.PacketType(pkt[off+1]); pt {
		case rtcp.TypeTransportSpecificFeedback, rtcp.TypePayloadSpecificFeedback:
			return true
		case rtcp.TypeReceiverReport:
			// 8 header bytes, then 24-byte blocks with LSR at 16.
			for i, b := 0, off+8; i < int(pkt[off]&0x1f) && b+24 <= len(pkt); i, b = i+1, b+24 {
				if pkt[b+16]|pkt[b+17]|pkt[b+18]|pkt[b+19] != 0 {
					return true
				}
			}
		}
	}
	return false
}

// roundTrip is the round trip a receiver report block gives (RFC 3550
// §6.4.1: arrival - LSR - DLSR, in 1/65536 s), if it echoes a sender report.
func roundTrip(r rtcp.ReceptionReport, now time.Time) (time.Duration, bool) {
	if r.LastSenderReport == 0 {
		return 0, false
	}
	const unixToNTP = 2208988800
	secs := uint64(now.Unix() + unixToNTP)
	frac := uint64(now.Nanosecond()) << 32 / uint64(time.Second)
	mid := uint32((secs<<32 | frac) >> 16)
	d := mid - r.LastSenderReport - r.Delay
	if d > 10<<16 { // over 10 s: a clock jump or garbage
		return 0, false
	}
	return time.Duration(uint64(d) * uint64(time.Second) >> 16), true
}

// handleSubscriberRTCP answers a subscriber's feedback: NACKs from the
// track's history, PLI/FIR to the publisher. down is the track the packets
// are about, or nil: each names its track (its media SSRC).
func (p *Participant) handleSubscriberRTCP(pkts []rtcp.Packet, down *forward.DownTrack) {
	c := p.m.cfg.Counters
	for _, pkt := range pkts {
		switch pkt := pkt.(type) {
		case *rtcp.PictureLossIndication:
			if d := p.trackFor(down, pkt.MediaSSRC); d != nil {
				c.PLIs.Add(1)
				d.Forwarder().RequestKeyframe()
			}
		case *rtcp.FullIntraRequest:
			if d := p.trackFor(down, pkt.MediaSSRC); d != nil {
				c.PLIs.Add(1)
				d.Forwarder().RequestKeyframe()
			}
		case *rtcp.TransportLayerNack:
			if d := p.trackFor(down, pkt.MediaSSRC); d != nil {
				c.NACKs.Add(1)
				d.Resend(pkt, p.resends)
			}
		case *rtcp.ReceiverReport:
			for _, r := range pkt.Reports {
				if rtt, ok := roundTrip(r, time.Now()); ok {
					if d := p.trackFor(nil, r.SSRC); d != nil {
						d.SetRTT(rtt)
					}
				}
			}
		}
	}
}

// trackFor is down if set, else the subscription whose SSRC is ssrc.
func (p *Participant) trackFor(down *forward.DownTrack, ssrc uint32) *forward.DownTrack {
	if down != nil {
		return down
	}
	p.subMu.Lock()
	defer p.subMu.Unlock()
	for _, s := range p.subs {
		if got, ok := s.down.SSRC(); ok && got == ssrc {
			return s.down
		}
	}
	return nil
}

func (p *Participant) unsubscribe(publisher, track string) {
	key := subKey{publisher, track}
	p.subMu.Lock()
	s := p.subs[key]
	delete(p.subs, key)
	p.subMu.Unlock()
	if s == nil {
		return
	}
	s.down.Close()
	if p.isClosed() {
		return
	}
	if err := p.sub.RemoveTrack(s.sender); err != nil {
		p.log.Debug("removing track", "err", err)
	}
	p.negotiate()
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
