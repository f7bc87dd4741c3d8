package load

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jbcalling/platform/sfu/client"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// publisher sends one participant's audio and video like a browser would:
// 20 ms Opus packets, and VP8 frames at the frame rate split into packets
// and sent back to back, with a keyframe periodically and after every PLI.
type publisher struct {
	r            *runner
	audio, video *webrtc.TrackLocalStaticRTP
	// With Config.Simulcast, video is the top layer of sim.
	sim      *client.Simulcast
	forceKey [len(simulcastLayers)]atomic.Bool

	quit chan struct{}
	once sync.Once
	wg   sync.WaitGroup
}

func newPublisher(r *runner) *publisher { return &publisher{r: r, quit: make(chan struct{})} }

func (p *publisher) publish(ctx context.Context, c *client.Client) error {
	cfg := &p.r.cfg
	var tracks []webrtc.TrackLocal
	var err error
	if cfg.Audio {
		if p.audio, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", c.ID()); err != nil {
			return err
		}
		tracks = append(tracks, p.audio)
	}
	vp8 := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
	if cfg.VideoBitrate > 0 && !cfg.Simulcast {
		if p.video, err = webrtc.NewTrackLocalStaticRTP(vp8, "video", c.ID()); err != nil {
			return err
		}
		tracks = append(tracks, p.video)
	}
	if len(tracks) > 0 {
		if _, err := c.Publish(ctx, tracks...); err != nil {
			return err
		}
	}
	if cfg.VideoBitrate > 0 && cfg.Simulcast {
		var layers []*webrtc.TrackLocalStaticRTP
		for _, l := range simulcastLayers {
			t, err := webrtc.NewTrackLocalStaticRTP(vp8, "video", c.ID(), webrtc.WithRTPStreamID(l.rid))
			if err != nil {
				return err
			}
			layers = append(layers, t)
		}
		if p.sim, err = c.PublishSimulcast(ctx, layers...); err != nil {
			return err
		}
		p.video = layers[len(layers)-1]
	}
	if p.audio != nil {
		p.wg.Add(1)
		go p.sendAudio()
	}
	switch {
	case p.sim != nil:
		for i, l := range simulcastLayers {
			p.wg.Add(1)
			go p.sendVideo(i, int(float64(cfg.VideoBitrate)*l.share))
		}
	case p.video != nil:
		p.wg.Add(1)
		go p.sendVideo(0, cfg.VideoBitrate)
	}
	return nil
}

// simulcastLayers are the layers of Config.Simulcast, lowest first, with
// their share of the video bitrate.
var simulcastLayers = [...]struct {
	rid   string
	share float64
}{{"q", 0.1}, {"h", 1.0 / 3}, {"f", 1}}

func (p *publisher) stop() {
	p.once.Do(func() { close(p.quit) })
	p.wg.Wait()
}

func (p *publisher) onRTCP(trackID string, pkts []rtcp.Packet) {
	for _, pkt := range pkts {
		switch pkt.(type) {
		case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
			p.r.pubPLIs.Add(1)
			if p.video != nil && trackID == p.video.ID() {
				// The PLI names one layer's SSRC; every layer's next
				// frame is a keyframe, which is cheap here.
				for i := range p.forceKey {
					p.forceKey[i].Store(true)
				}
			}
		case *rtcp.TransportLayerNack:
			p.r.pubNACKs.Add(1)
		}
	}
}

// tick calls fn every period on an absolute schedule (so the rate does not
// drift), skipping ahead instead of bursting when it falls far behind.
func (p *publisher) tick(period time.Duration, fn func(now time.Time)) {
	defer p.wg.Done()
	// A random phase, so many publishers do not send in lockstep.
	next := time.Now().Add(time.Duration(rand.Int64N(int64(period))))
	t := time.NewTimer(time.Until(next))
	defer t.Stop()
	for {
		select {
		case <-p.quit:
			return
		case <-t.C:
		}
		now := time.Now()
		fn(now)
		next = next.Add(period)
		if now.Sub(next) > 5*period {
			next = now.Add(period)
		}
		t.Reset(time.Until(next))
	}
}

func (p *publisher) write(track *webrtc.TrackLocalStaticRTP, pkt *rtp.Packet) {
	p.count(pkt, track.WriteRTP(pkt))
}

// writeLayer writes pkt on a simulcast layer, or on video without one.
func (p *publisher) writeLayer(layer int, pkt *rtp.Packet) {
	if p.sim == nil {
		p.write(p.video, pkt)
		return
	}
	p.count(pkt, p.sim.WriteRTP(layer, pkt))
}

// count adds a write's outcome to the run's totals.
func (p *publisher) count(pkt *rtp.Packet, err error) {
	if err != nil {
		p.r.sendErrors.Add(1)
		return
	}
	p.r.sentPackets.Add(1)
	p.r.sentBytes.Add(uint64(pkt.MarshalSize()))
}

func (p *publisher) sendAudio() {
	payload := make([]byte, p.r.cfg.AudioPayload)
	pkt := rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(rand.Uint32()), Timestamp: rand.Uint32()}}
	p.tick(20*time.Millisecond, func(now time.Time) {
		putTrailer(payload, now)
		pkt.Payload = payload
		p.write(p.audio, &pkt)
		pkt.SequenceNumber++
		pkt.Timestamp += 960 // 20 ms at 48 kHz
	})
}

// sendVideo sends one video stream (a simulcast layer, or the one track)
// at bitrate.
func (p *publisher) sendVideo(layer, bitrate int) {
	cfg := &p.r.cfg
	delta, key := frameSizes(bitrate, cfg.FPS, cfg.KeyframeInterval)
	maxPayload := cfg.PacketSize - 12 - 8 // RTP header and room for extensions
	keyEvery := max(1, int(cfg.KeyframeInterval.Seconds()*float64(cfg.FPS)))
	var bufs [][]byte
	pkt := rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(rand.Uint32()), Timestamp: rand.Uint32()}}
	pictureID := uint16(rand.Uint32())
	frame := 0
	paused := false
	p.tick(time.Second/time.Duration(cfg.FPS), func(now time.Time) {
		if p.sim != nil && !p.sim.Active(layer) {
			paused = true // as a browser does, encode nothing the SFU does not want
			return
		}
		isKey := frame%keyEvery == 0 || p.forceKey[layer].Swap(false) || paused
		paused = false
		size := delta
		if isKey {
			size = key
			frame = 0 // the next periodic keyframe counts from this one
		}
		frame++
		bufs = vp8Frame(bufs, size, maxPayload, pictureID&0x7fff, isKey)
		for i, b := range bufs {
			putTrailer(b, now)
			pkt.Payload = b
			pkt.Marker = i == len(bufs)-1
			p.writeLayer(layer, &pkt)
			pkt.SequenceNumber++
		}
		pkt.Timestamp += uint32(90000 / cfg.FPS)
		pictureID++
	})
}
