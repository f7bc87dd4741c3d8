package agent_test

import (
	"context"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/jbcalling/platform/agent/audio"
	"github.com/jbcalling/platform/agent/internal/enginetest"
	"github.com/jbcalling/platform/agent/mt"
	"github.com/jbcalling/platform/agent/stt"
	"github.com/jbcalling/platform/agent/tts"
)

// BenchmarkUtterance runs the reference engines on one 3 s utterance as
// the agent does after a speaker pauses: recognise, translate (caption
// ready), speak (translated audio ready). It reports the p50 and p95 of
// both, the CPU the engines' processes used, and how many speakers
// talking without pause one core keeps up with.
//
//	go test -run '^$' -bench Utterance -benchtime 20x ./agent/
func BenchmarkUtterance(b *testing.B) {
	enginetest.Require(b, "espeak-ng", "pocketsphinx_continuous", "apertium")
	pcm := enginetest.English(b, enginetest.Sentence, stt.Rate)
	speech := float64(len(pcm)) / stt.Rate
	ctx := context.Background()
	var caption, spoken []time.Duration
	cpu0 := childCPU()
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		text, err := stt.Pocketsphinx{}.Recognize(ctx, pcm, "en")
		if err != nil {
			b.Fatal(err)
		}
		es, err := mt.Apertium{}.Translate(ctx, text, "en", "es")
		if err != nil {
			b.Fatal(err)
		}
		caption = append(caption, time.Since(start))
		out, rate, err := tts.Espeak{}.Synthesize(ctx, es, "es")
		if err != nil {
			b.Fatal(err)
		}
		_ = audio.Resample(out, rate, audio.EncoderRate)
		spoken = append(spoken, time.Since(start))
	}
	b.StopTimer()
	cpu := (childCPU() - cpu0).Seconds() / float64(b.N)
	b.ReportMetric(pct(caption, 50), "s-caption-p50")
	b.ReportMetric(pct(caption, 95), "s-caption-p95")
	b.ReportMetric(pct(spoken, 50), "s-speech-p50")
	b.ReportMetric(pct(spoken, 95), "s-speech-p95")
	b.ReportMetric(cpu, "cpu-s/utterance")
	b.ReportMetric(speech/cpu, "speakers/core")
}

func pct(d []time.Duration, p int) float64 {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[(len(s)-1)*p/100].Seconds()
}

// childCPU is the user and system time of this process's finished
// children: the engines run as programs.
func childCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
