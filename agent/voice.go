package agent

import (
	"context"
	"sync"
	"time"

	"github.com/jbcalling/platform/agent/audio"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
)

// voice is the agent's track speaking one participant's words in one
// language. It sends 20 ms Opus frames in real time, silence between
// utterances, so the listener's jitter buffer never sees a jump.
type voice struct {
	track  *webrtc.TrackLocalStaticSample
	sender *webrtc.RTPSender
	stop   context.CancelFunc // ends run

	mu     sync.Mutex
	queued []int16 // 48 kHz samples still to speak
	// spoken is called once when the first samples of each queued
	// utterance go out.
	marks []mark
}

type mark struct {
	at     int // sample offset in queued
	spoken func()
}

const frameSamples = audio.EncoderRate / 1000 * audio.FrameDuration

// say queues pcm (48 kHz); spoken is called when it starts to play.
func (v *voice) say(pcm []int16, spoken func()) {
	v.mu.Lock()
	v.marks = append(v.marks, mark{at: len(v.queued), spoken: spoken})
	v.queued = append(v.queued, pcm...)
	v.mu.Unlock()
}

// run sends frames until ctx ends or the track cannot be written.
func (v *voice) run(ctx context.Context, enc *audio.Encoder) {
	silence := make([]int16, frameSamples)
	frame := make([]int16, frameSamples)
	tick := time.NewTicker(audio.FrameDuration * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		v.mu.Lock()
		out := silence
		var due []func()
		if len(v.queued) > 0 {
			n := copy(frame, v.queued)
			clear(frame[n:])
			v.queued = v.queued[n:]
			out = frame
			kept := v.marks[:0]
			for _, m := range v.marks {
				if m.at < n {
					due = append(due, m.spoken)
					continue
				}
				m.at -= n
				kept = append(kept, m)
			}
			v.marks = kept
		}
		v.mu.Unlock()
		for _, f := range due {
			if f != nil {
				f()
			}
		}
		pkt, err := enc.Encode(out)
		if err != nil {
			continue
		}
		if err := v.track.WriteSample(media.Sample{Data: pkt, Duration: audio.FrameDuration * time.Millisecond}); err != nil {
			return
		}
	}
}
