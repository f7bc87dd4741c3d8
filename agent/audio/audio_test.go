package audio_test

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/jbcalling/platform/agent/audio"
)

func tone(n, rate int, hz, amp float64) []int16 {
	out := make([]int16, n)
	for i := range out {
		out[i] = int16(amp * 32767 * math.Sin(2*math.Pi*hz*float64(i)/float64(rate)))
	}
	return out
}

func TestWAVRoundTrip(t *testing.T) {
	pcm := tone(1234, 16000, 440, 0.5)
	got, rate, err := audio.DecodeWAV(audio.EncodeWAV(pcm, 16000))
	if err != nil || rate != 16000 || !slices.Equal(got, pcm) {
		t.Fatalf("round trip: %d samples at %d, %v", len(got), rate, err)
	}
	// espeak-ng --stdout writes a data size it cannot know: read to the end.
	b := audio.EncodeWAV(pcm, 22050)
	b[40], b[41], b[42], b[43] = 0xff, 0xff, 0xff, 0x7f
	if got, _, err := audio.DecodeWAV(b); err != nil || len(got) != len(pcm) {
		t.Fatalf("streamed WAV: %d samples, %v", len(got), err)
	}
	for _, bad := range [][]byte{nil, []byte("RIFF....WAVEfmt "), []byte("not a wav at all, not at all")} {
		if _, _, err := audio.DecodeWAV(bad); err == nil {
			t.Errorf("DecodeWAV(%q) gave no error", bad)
		}
	}
}

func TestResampleKeepsPitchAndLength(t *testing.T) {
	in := tone(22050, 22050, 300, 0.5) // one second
	out := audio.Resample(in, 22050, 48000)
	if len(out) != 48000 {
		t.Fatalf("%d samples, want 48000", len(out))
	}
	crossings := 0
	for i := 1; i < len(out); i++ {
		if (out[i-1] < 0) != (out[i] < 0) {
			crossings++
		}
	}
	if crossings < 590 || crossings > 610 { // 300 Hz: 600 a second
		t.Errorf("%d zero crossings in a second, want about 600", crossings)
	}
}

// Two sentences with a pause between are two utterances, each with its
// lead-in; silence and a cough-length blip under the threshold are none.
func TestSegmenter(t *testing.T) {
	const rate = 16000
	s := audio.Segmenter{Rate: rate}
	var stream []int16
	stream = append(stream, make([]int16, rate)...)
	stream = append(stream, tone(2*rate, rate, 200, 0.3)...)
	stream = append(stream, make([]int16, rate)...)
	stream = append(stream, tone(rate, rate, 200, 0.3)...)
	stream = append(stream, make([]int16, rate)...)
	stream = append(stream, tone(rate, rate, 200, 0.001)...) // -63 dBFS
	stream = append(stream, make([]int16, rate)...)
	var got [][]int16
	for i := 0; i+320 <= len(stream); i += 320 {
		if u := s.Write(stream[i : i+320]); u != nil {
			got = append(got, u)
		}
	}
	if len(got) != 2 {
		t.Fatalf("%d utterances, want 2", len(got))
	}
	for i, want := range []float64{2, 1} {
		secs := float64(len(got[i])) / rate
		if secs < want+0.6 || secs > want+0.9 { // + the preroll and the pause that ended it
			t.Errorf("utterance %d: %.2f s, want %.1f s of speech with its preroll and pause", i, secs, want)
		}
	}
	long := audio.Segmenter{Rate: rate, Max: rate}
	n := 0
	for i := 0; i < 3*rate; i += 320 {
		if long.Write(tone(320, rate, 200, 0.3)) != nil {
			n++
		}
	}
	if n != 3 {
		t.Errorf("3 s of speech with a 1 s limit: %d utterances cut, want 3", n)
	}
}

func TestOpusRoundTrip(t *testing.T) {
	enc, err := audio.NewEncoder()
	if err != nil {
		t.Fatal(err)
	}
	dec, err := audio.NewDecoder(16000)
	if err != nil {
		t.Fatal(err)
	}
	in := tone(audio.EncoderRate, audio.EncoderRate, 440, 0.3)
	var out []int16
	for i := 0; i+960 <= len(in); i += 960 {
		pkt, err := enc.Encode(in[i : i+960])
		if err != nil {
			t.Fatal(err)
		}
		pcm, err := dec.Decode(pkt)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, pcm...)
	}
	if len(out) != 16000 {
		t.Fatalf("decoded %d samples at 16 kHz, want 16000", len(out))
	}
	if in, got := audio.LevelDB(in), audio.LevelDB(out[1600:]); math.Abs(in-got) > 3 {
		t.Errorf("level %.1f dBFS after Opus, %.1f before", got, in)
	}
}

// Whatever a participant sends as Opus, the decoder gives samples or an
// error, never a crash, and stays usable.
func TestDecoderTakesGarbage(t *testing.T) {
	dec, err := audio.NewDecoder(16000)
	if err != nil {
		t.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		b := make([]byte, rnd.IntN(1500))
		for i := range b {
			b[i] = byte(rnd.UintN(256))
		}
		if pcm, err := dec.Decode(b); err == nil && len(pcm) > 16000*120/1000 {
			t.Fatalf("%d samples from one packet, more than 120 ms", len(pcm))
		}
	}
	enc, _ := audio.NewEncoder()
	pkt, err := enc.Encode(tone(960, audio.EncoderRate, 440, 0.3))
	if err != nil {
		t.Fatal(err)
	}
	if pcm, err := dec.Decode(pkt); err != nil || len(pcm) != 320 {
		t.Fatalf("after garbage, a real packet: %d samples, %v", len(pcm), err)
	}
}
