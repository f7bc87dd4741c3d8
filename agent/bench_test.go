package agent_test

import (
	"context"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/jbcalling/platform/agent/audio"
	"github.com/jbcalling/platform/agent/mt"
	"github.com/jbcalling/platform/agent/stt"
	"github.com/jbcalling/platform/agent/tts"
	"github.com/jbcalling/platform/internal/enginetest"
)

// BenchmarkUtterance runs the reference engines on one utterance as the
// agent does: the recogniser takes the speech 20 ms at a time while it is
// spoken (here as fast as it can: the real-time factor says how much of
// a core that takes), then, once the speaker pauses, finishes the search
// and the translation (caption ready) and speaks it (translated audio
// ready). It reports the p50 and p95 of both, counted from the end of the
// utterance, the CPU used in all (the agent's and the engines'
// processes), and how many speakers talking without pause one core keeps
// up with.
//
//	go test -run '^$' -bench Utterance -benchtime 20x ./agent/
func BenchmarkUtterance(b *testing.B) {
	enginetest.Require(b, "espeak-ng", "apertium")
	enginetest.RequireSphinx(b)
	pcm := enginetest.English(b, enginetest.Sentence, stt.Rate)
	speech := float64(len(pcm)) / stt.Rate
	ctx := context.Background()
	st, err := stt.Sphinx{}.Stream("en")
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	var caption, spoken []time.Duration
	var feeding time.Duration
	cpu0 := cpuUsed()
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		for i := 0; i < len(pcm); i += 320 {
			if err := st.Write(pcm[i:min(i+320, len(pcm))]); err != nil {
				b.Fatal(err)
			}
		}
		end := time.Now()
		feeding += end.Sub(start)
		text, err := st.End()
		if err != nil {
			b.Fatal(err)
		}
		es, err := mt.Apertium{}.Translate(ctx, text, "en", "es")
		if err != nil {
			b.Fatal(err)
		}
		caption = append(caption, time.Since(end))
		out, rate, err := tts.Espeak{}.Synthesize(ctx, es, "es")
		if err != nil {
			b.Fatal(err)
		}
		_ = audio.Resample(out, rate, audio.EncoderRate)
		spoken = append(spoken, time.Since(end))
	}
	b.StopTimer()
	cpu := (cpuUsed() - cpu0).Seconds() / float64(b.N)
	b.ReportMetric(pct(caption, 50), "s-caption-p50")
	b.ReportMetric(pct(caption, 95), "s-caption-p95")
	b.ReportMetric(pct(spoken, 50), "s-speech-p50")
	b.ReportMetric(pct(spoken, 95), "s-speech-p95")
	b.ReportMetric(feeding.Seconds()/float64(b.N)/speech, "realtime-factor")
	b.ReportMetric(cpu, "cpu-s/utterance")
	b.ReportMetric(speech/cpu, "speakers/core")
}

func pct(d []time.Duration, p int) float64 {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[(len(s)-1)*p/100].Seconds()
}

// cpuUsed is the user and system time of this process and its finished
// children: translation and speech run as programs.
func cpuUsed() time.Duration {
	var self, children syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children)
	return time.Duration(self.Utime.Nano() + self.Stime.Nano() + children.Utime.Nano() + children.Stime.Nano())
}
