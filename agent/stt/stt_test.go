package stt_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/jbcalling/platform/agent/audio"
	"github.com/jbcalling/platform/agent/stt"
	"github.com/jbcalling/platform/internal/enginetest"
)

// The real recogniser hears the real synthesiser's sentence well enough to
// translate: "the meeting starts at the ah you tomorrow morning".
func TestPocketsphinxHearsSpeech(t *testing.T) {
	enginetest.RequireSphinx(t)
	pcm := enginetest.English(t, enginetest.Sentence, stt.Rate)
	text, err := stt.Sphinx{}.Recognize(context.Background(), pcm, "en")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("said %q, heard %q", enginetest.Sentence, text)
	for _, w := range []string{"meeting", "tomorrow", "morning"} {
		if !strings.Contains(text, w) {
			t.Errorf("heard %q: no %q", text, w)
		}
	}
	silence, err := stt.Sphinx{}.Recognize(context.Background(), make([]int16, stt.Rate), "en")
	if err != nil || silence != "" {
		t.Errorf("a second of silence: %q, %v; want nothing heard", silence, err)
	}
	if _, err := (stt.Sphinx{}).Recognize(context.Background(), pcm, "fi"); !errors.Is(err, stt.ErrLanguage) {
		t.Errorf("Finnish: %v, want ErrLanguage", err)
	}
}

// The HTTP backend sends what its contract says and reads what it says.
func TestHTTPContract(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		pcm, rate, err := audio.DecodeWAV(body)
		switch {
		case r.Method != http.MethodPost || r.URL.Path != "/v1/recognize" || r.Header.Get("Content-Type") != "audio/wav":
			http.Error(w, "wrong request "+r.Method+" "+r.URL.Path, http.StatusBadRequest)
		case err != nil || rate != stt.Rate:
			http.Error(w, "not 16 kHz WAV", http.StatusBadRequest)
		case r.URL.Query().Get("lang") != "en":
			http.Error(w, "no model", http.StatusUnprocessableEntity)
		default:
			_ = json.NewEncoder(w).Encode(map[string]string{"text": strings.Repeat("a", len(pcm)/stt.Rate)})
		}
	}))
	defer srv.Close()
	h := stt.HTTP{URL: srv.URL}
	text, err := h.Recognize(context.Background(), make([]int16, 3*stt.Rate), "en")
	if err != nil || text != "aaa" {
		t.Fatalf("Recognize = %q, %v; want the service's text", text, err)
	}
	if _, err := h.Recognize(context.Background(), nil, "fi"); !errors.Is(err, stt.ErrLanguage) {
		t.Errorf("422: %v, want ErrLanguage", err)
	}
	if _, err := (stt.HTTP{URL: srv.URL + "/nowhere"}).Recognize(context.Background(), nil, "en"); err == nil {
		t.Error("a 404 gave no error")
	}
}

// The in-process decoder hears what the program hears, fed 20 ms at a
// time as the agent feeds it, utterance after utterance.
func TestSphinxStream(t *testing.T) {
	enginetest.RequireSphinx(t)
	pcm := enginetest.English(t, enginetest.Sentence, stt.Rate)
	st, err := stt.Sphinx{}.Stream("en")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for round := range 2 {
		var partial string
		for i := 0; i < len(pcm); i += 320 {
			if err := st.Write(pcm[i:min(i+320, len(pcm))]); err != nil {
				t.Fatal(err)
			}
			if i == len(pcm)/2/320*320 { // half the sentence spoken
				if partial, err = st.Partial(); err != nil {
					t.Fatal(err)
				}
			}
		}
		// Halfway through, the guess holds the sentence's first words.
		if !strings.Contains(partial, "meeting") || strings.Contains(partial, "morning") {
			t.Errorf("utterance %d: halfway guess %q, want the first half's words (meeting), not the end's", round+1, partial)
		}
		text, err := st.End()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("utterance %d: heard %q (halfway: %q)", round+1, text, partial)
		if p, err := st.Partial(); err != nil || p != "" {
			t.Errorf("after End: guess %q (%v), want none until the next utterance", p, err)
		}
		for _, w := range []string{"meeting", "tomorrow", "morning"} {
			if !strings.Contains(text, w) {
				t.Errorf("utterance %d: heard %q: no %q", round+1, text, w)
			}
		}
	}
	if _, err := (stt.Sphinx{}).Stream("fi"); !errors.Is(err, stt.ErrLanguage) {
		t.Errorf("Finnish: %v, want ErrLanguage", err)
	}
}
