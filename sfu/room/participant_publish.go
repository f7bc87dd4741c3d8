package room

import (
	"fmt"
	"time"

	"github.com/jbcalling/platform/sfu/fastpath/srtprecv"
	"github.com/jbcalling/platform/sfu/feedback"
	"github.com/jbcalling/platform/sfu/forward"
	"github.com/jbcalling/platform/sfu/signal"
	"github.com/jbcalling/platform/sfu/simulcast"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

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

// onTrack starts forwarding a newly published track, or a layer of a
// simulcast one: pion calls it once per layer (RTP stream), each with
// its rid, all on the track's one receiver.
func (p *Participant) onTrack(remote *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	layer, layers := layerOf(remote, recv)
	if layer < 0 || layer >= simulcast.MaxLayers {
		p.log.Info("simulcast layer not forwarded", "rid", remote.RID(), "codec", remote.Codec().MimeType)
		if p.goStart() {
			defer p.wg.Done()
			p.drain(remote)
		}
		return
	}
	t, first := p.publishedFor(remote, recv, layers)
	if t == nil {
		if p.goStart() {
			defer p.wg.Done()
			p.drain(remote)
		}
		return
	}
	ssrc := uint32(remote.SSRC())
	fwd, closeFeedback := p.newForwarder(t, remote, recv, ssrc)
	defer closeFeedback()
	if t.layers != nil {
		t.layers.Set(layer, fwd)
	}
	if first {
		t.fwd = fwd
		p.announce(t, remote)
	}
	// pion calls OnTrack on its own goroutine: this is the stream's reader.
	if !p.goStart() {
		p.endLayer(t, fwd)
		return
	}
	defer p.wg.Done()
	if p.goStart() {
		go p.readPublisherRTCP(recv, remote.RID())
	}
	// From here on the fast receive path, if the connection took it,
	// takes the stream's packets; pion delivers those already in its
	// buffers, and all of them if it has none.
	kept := p.startPublisherPath() && p.pubPath.Keep(ssrc, fwd)
	if err := fwd.Run(remote); err != nil {
		p.log.Debug("track ended", "track", t.id, "rid", remote.RID(), "err", err)
	}
	if kept {
		p.pubPath.Release(ssrc) // before the subscribers go
	}
	p.endLayer(t, fwd)
}

// layerOf is a stream's simulcast layer, its rid's place among those the
// publisher declared (lowest first, as PROTOCOL.md asks), and how many
// there are; 0 and 0 for a track without simulcast. Layers are switched
// for the codecs simulcast.Switchable names: of another codec's layers
// the top one is forwarded as a track of one layer, and the others get
// -1 (not forwarded).
func layerOf(remote *webrtc.TrackRemote, recv *webrtc.RTPReceiver) (layer, layers int) {
	if remote.RID() == "" || remote.Kind() != webrtc.RTPCodecTypeVideo {
		return 0, 0
	}
	all := recv.Tracks()
	for i, tr := range all {
		if tr.RID() == remote.RID() {
			layer = i
		}
	}
	if !simulcast.Switchable(remote.Codec().MimeType) {
		if layer == min(len(all), simulcast.MaxLayers)-1 {
			return 0, 0
		}
		return -1, 0
	}
	return layer, min(len(all), simulcast.MaxLayers)
}

// publishedFor is the published track remote belongs to: a new one (first),
// or for a further simulcast layer the one its receiver's first layer
// made. nil when the publisher has too many tracks.
func (p *Participant) publishedFor(remote *webrtc.TrackRemote, recv *webrtc.RTPReceiver, layers int) (t *publishedTrack, first bool) {
	if layers > 0 {
		p.negMu.Lock()
		t := p.byReceiver[recv]
		if t != nil {
			t.liveLayers++
		}
		p.negMu.Unlock()
		if t != nil {
			return t, false
		}
	}
	max := p.m.cfg.MaxTracks
	if p.agent {
		max = maxAgentTracks
	}
	if max > 0 && int(p.nTracks.Add(1)) > max {
		p.nTracks.Add(-1)
		p.send(&signal.Error{Code: signal.CodeTooManyTracks, Message: fmt.Sprintf("at most %d tracks per participant; track %q is not forwarded", max, remote.ID())})
		return nil, false
	} else if max <= 0 {
		p.nTracks.Add(1)
	}
	t = &publishedTrack{id: remote.ID(), owner: p, nLayers: layers, liveLayers: 1}
	for _, tr := range p.pub.GetTransceivers() {
		if tr.Receiver() == recv {
			t.mid = tr.Mid()
		}
	}
	p.negMu.Lock()
	defer p.negMu.Unlock()
	if layers > 0 {
		if other := p.byReceiver[recv]; other != nil { // another layer came first meanwhile
			p.nTracks.Add(-1)
			other.liveLayers++
			return other, false
		}
		t.layers = forward.NewLayers()
		if p.byReceiver == nil {
			p.byReceiver = map[*webrtc.RTPReceiver]*publishedTrack{}
		}
		p.byReceiver[recv] = t
	}
	src := p.sources[t.mid]
	switch {
	case src.Source != "":
	case remote.Kind() == webrtc.RTPCodecTypeAudio:
		src = signal.TrackSource{Source: signal.SourceMicrophone}
	default:
		src = signal.TrackSource{Source: signal.SourceCamera}
	}
	t.source, t.translationOf, t.lang = src.Source, src.TranslationOf, src.Lang
	return t, true
}

// newForwarder makes the forwarder of one incoming stream of t, with the
// feedback to its publisher, and the function that ends that feedback.
func (p *Participant) newForwarder(t *publishedTrack, remote *webrtc.TrackRemote, recv *webrtc.RTPReceiver, ssrc uint32) (*forward.Forwarder, func()) {
	fb := p.feedbackFor(remote, recv)
	var observe func([]byte, *rtp.Header, time.Time)
	closeFeedback := func() {}
	if fb != nil {
		closeFeedback = fb.Close
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
	return forward.New(forward.Config{
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
	}), closeFeedback
}

// announce makes t one of p's tracks and offers it to the others.
func (p *Participant) announce(t *publishedTrack, remote *webrtc.TrackRemote) {
	r := p.room
	r.mu.Lock()
	if _, dup := p.tracks[t.id]; dup || t.id == "" {
		t.id = fmt.Sprintf("%s-%d", t.id, remote.SSRC()) // ids are unique per publisher
	}
	p.tracks[t.id] = t
	others := r.othersLocked(p)
	r.mu.Unlock()
	p.m.cfg.Counters.TracksCurrent.Add(1)
	p.log.Info("track published", "track", t.id, "codec", remote.Codec().MimeType, "layers", t.nLayers)

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
}

// endLayer takes an ended stream out of t, and unpublishes t with its
// last.
func (p *Participant) endLayer(t *publishedTrack, fwd *forward.Forwarder) {
	if t.layers != nil {
		t.layers.Remove(fwd)
	}
	p.negMu.Lock()
	t.liveLayers--
	last := t.liveLayers == 0
	if last {
		for recv, bt := range p.byReceiver {
			if bt == t {
				delete(p.byReceiver, recv)
			}
		}
	}
	p.negMu.Unlock()
	if last {
		p.unpublish(t)
	}
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

// readPublisherRTCP passes the publisher's RTCP for one track, or one
// layer (rid) of it, to the feedback: its sender reports time the
// receiver reports.
func (p *Participant) readPublisherRTCP(recv *webrtc.RTPReceiver, rid string) {
	defer p.wg.Done()
	buf := make([]byte, 1500)
	read := recv.Read
	if rid != "" {
		read = func(b []byte) (int, interceptor.Attributes, error) { return recv.ReadSimulcast(b, rid) }
	}
	for {
		n, _, err := read(buf)
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
		TranslationOf: t.translationOf, Lang: t.lang, Layers: t.nLayers}
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
