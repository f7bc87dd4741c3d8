// Package enginetest gives the tests of the agent (and of the stack that
// runs it) real speech engines: it skips, saying which program is missing,
// where Debian's packages are not installed (.ci/run installs them), and
// makes spoken English the way the tests need it and speaks it into a call.
package enginetest

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/jbcalling/platform/agent/audio"
	"github.com/jbcalling/platform/agent/tts"
)

// Require skips t unless every program is on PATH.
func Require(t testing.TB, programs ...string) {
	t.Helper()
	for _, p := range programs {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("%s is not installed (Debian: pocketsphinx-en-us apertium apertium-eng-spa apertium-apy espeak-ng): %v", p, err)
		}
	}
}

// SphinxModel is where Debian's pocketsphinx-en-us puts the English model.
const SphinxModel = "/usr/share/pocketsphinx/model/en-us/en-us"

// RequireSphinx skips t unless pocketsphinx's English model is installed.
func RequireSphinx(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(SphinxModel); err != nil {
		t.Skipf("pocketsphinx's English model is not installed (Debian: pocketsphinx-en-us): %v", err)
	}
}

// Sentence is what the tests say: of the sentences tried, the one
// pocketsphinx's default English model hears best in espeak-ng's voice.
const Sentence = "the meeting starts at nine tomorrow morning"

// English speaks text in espeak-ng's en-us+f2 voice at rate.
func English(t testing.TB, text string, rate int) []int16 {
	t.Helper()
	Require(t, "espeak-ng")
	pcm, from, err := tts.Espeak{Voices: map[string]string{"en": "en-us+f2"}}.Synthesize(context.Background(), text, "en")
	if err != nil {
		t.Fatal(err)
	}
	return audio.Resample(pcm, from, rate)
}

// Speak sends pcm (48 kHz) on track as 20 ms Opus packets in real time,
// then a second and a half of silence, again and again until ctx ends:
// whenever an agent joins, it hears a whole sentence.
func Speak(ctx context.Context, t testing.TB, track *webrtc.TrackLocalStaticSample, pcm []int16) {
	enc, err := audio.NewEncoder()
	if err != nil {
		t.Error(err)
		return
	}
	const frame = audio.EncoderRate / 50
	clip := append(append([]int16{}, pcm...), make([]int16, audio.EncoderRate*3/2)...)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i = (i + frame) % (len(clip) - frame) {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		pkt, err := enc.Encode(clip[i : i+frame])
		if err != nil {
			t.Error(err)
			return
		}
		if err := track.WriteSample(media.Sample{Data: pkt, Duration: 20 * time.Millisecond}); err != nil {
			return
		}
	}
}
