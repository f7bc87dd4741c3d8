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
	forceKey     atomic.Bool

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
	if cfg.VideoBitrate > 0 {
		if p.video, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", c.ID()); err != nil {
			return err
		}
		tracks = append(tracks, p.video)
	}
	if _, err := c.Publish(ctx, tracks...); err != nil {
		return err
	}
	if p.audio != nil {
		p.wg.Add(1)
		go p.sendAudio()
	}
	if p.video != nil {
		p.wg.Add(1)
		go p.sendVideo()
	}
	return nil
}

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
				p.forceKey.Store(true)
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
	if err := track.WriteRTP(pkt); err != nil {
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

func (p *publisher) sendVideo() {
	cfg := &p.r.cfg
	delta, key := frameSizes(cfg.VideoBitrate, cfg.FPS, cfg.KeyframeInterval)
	maxPayload := cfg.PacketSize - 12 - 8 // RTP header and room for extensions
	keyEvery := max(1, int(cfg.KeyframeInterval.Seconds()*float64(cfg.FPS)))
	var bufs [][]byte
	pkt := rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(rand.Uint32()), Timestamp: rand.Uint32()}}
	pictureID := uint16(rand.Uint32())
	frame := 0
	p.tick(time.Second/time.Duration(cfg.FPS), func(now time.Time) {
		isKey := frame%keyEvery == 0 || p.forceKey.Swap(false)
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
			p.write(p.video, &pkt)
			pkt.SequenceNumber++
		}
		pkt.Timestamp += uint32(90000 / cfg.FPS)
		pictureID++
	})
}
