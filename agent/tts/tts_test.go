package tts_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/jbcalling/platform/agent/audio"
	"github.com/jbcalling/platform/agent/tts"
	"github.com/jbcalling/platform/internal/enginetest"
)

func TestEspeakSpeaks(t *testing.T) {
	enginetest.Require(t, "espeak-ng")
	pcm, rate, err := tts.Espeak{}.Synthesize(context.Background(), "la reunión empieza mañana por la mañana", "es")
	if err != nil {
		t.Fatal(err)
	}
	secs := float64(len(pcm)) / float64(rate)
	if secs < 1 || secs > 6 || audio.LevelDB(pcm) < -40 {
		t.Errorf("%.1f s at %.0f dBFS, want a sentence's worth of speech", secs, audio.LevelDB(pcm))
	}
	if _, _, err := (tts.Espeak{}).Synthesize(context.Background(), "hola", "xx"); !errors.Is(err, tts.ErrLanguage) {
		t.Errorf("unknown voice: %v, want ErrLanguage", err)
	}
	if _, _, err := (tts.Espeak{}).Synthesize(context.Background(), "hola", "--help"); !errors.Is(err, tts.ErrLanguage) {
		t.Errorf("a language that looks like an option: %v, want ErrLanguage", err)
	}
}

func TestHTTPContract(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		text, _ := io.ReadAll(r.Body)
		if r.URL.Query().Get("lang") != "es" {
			http.Error(w, "no voice", http.StatusUnprocessableEntity)
			return
		}
		w.Header().Set("Content-Type", "audio/wav")
		_, _ = w.Write(audio.EncodeWAV(make([]int16, 100*len(text)), 24000))
	}))
	defer srv.Close()
	pcm, rate, err := tts.HTTP{URL: srv.URL}.Synthesize(context.Background(), "hola", "es")
	if err != nil || rate != 24000 || len(pcm) != 400 {
		t.Fatalf("Synthesize = %d samples at %d, %v", len(pcm), rate, err)
	}
	if _, _, err := (tts.HTTP{URL: srv.URL}).Synthesize(context.Background(), "hi", "xx"); !errors.Is(err, tts.ErrLanguage) {
		t.Errorf("422: %v, want ErrLanguage", err)
	}
}
