package room

import (
	"fmt"
	"time"

	"github.com/jbcalling/platform/sfu/fastpath/srtprecv"
	"github.com/jbcalling/platform/sfu/feedback"
	"github.com/jbcalling/platform/sfu/forward"
	"github.com/jbcalling/platform/sfu/signal"
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
