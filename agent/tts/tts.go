// Package tts turns text into speech: the Synthesizer interface, a local
// engine (espeak-ng, from Debian) and an HTTP backend for a speech
// service.
package tts

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"strings"

	"github.com/jbcalling/platform/agent/audio"
)

// ErrLanguage means the engine has no voice for the language.
var ErrLanguage = errors.New("tts: language not supported")

// Synthesizer speaks text in language lang (ISO 639-1): mono samples and
// their rate.
type Synthesizer interface {
	Synthesize(ctx context.Context, text, lang string) (pcm []int16, rate int, err error)
}

// Espeak runs espeak-ng.
type Espeak struct {
	Bin string // empty means espeak-ng on PATH
	// Voices maps a language to an espeak-ng voice; a language it does not
	// name is used as the voice's name.
	Voices map[string]string
	// WPM is the speaking rate; 0 means 160.
	WPM int
}

// Synthesize passes text on stdin, so no text is ever taken for an option.
func (e Espeak) Synthesize(ctx context.Context, text, lang string) ([]int16, int, error) {
	voice := e.Voices[lang]
	if voice == "" {
		voice = lang
	}
	if voice == "" || strings.HasPrefix(voice, "-") {
		return nil, 0, fmt.Errorf("%w: %q", ErrLanguage, lang)
	}
	wpm := e.WPM
	if wpm == 0 {
		wpm = 160
	}
	bin := e.Bin
	if bin == "" {
		bin = "espeak-ng"
	}
	cmd := exec.CommandContext(ctx, bin, "-v", voice, "-s", fmt.Sprint(wpm), "--stdout", "--stdin")
	cmd.Stdin = strings.NewReader(text)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err := cmd.Run()
	if strings.Contains(stderr.String(), "voice does not exist") {
		return nil, 0, fmt.Errorf("%w: %q: %s", ErrLanguage, lang, strings.TrimSpace(stderr.String()))
	}
	if err != nil {
		return nil, 0, fmt.Errorf("tts: %s: %w: %.300s", bin, err, stderr.String())
	}
	pcm, rate, err := audio.DecodeWAV(out.Bytes())
	if err != nil {
		return nil, 0, fmt.Errorf("tts: %s output: %w", bin, err)
	}
	return pcm, rate, nil
}

// HTTP is a speech service with this contract:
//
//	POST {URL}/v1/synthesize?lang=es
//	Content-Type: text/plain; charset=utf-8      (the text)
//	-> 200 audio/wav                             (16-bit PCM; 422 for an unsupported language)
type HTTP struct {
	URL    string
	Client *http.Client // nil means http.DefaultClient
}

// Synthesize posts the text to the service.
func (h HTTP) Synthesize(ctx context.Context, text, lang string) ([]int16, int, error) {
	u := strings.TrimSuffix(h.URL, "/") + "/v1/synthesize?lang=" + url.QueryEscape(lang)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(text))
	if err != nil {
		return nil, 0, fmt.Errorf("tts: %w", err)
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	c := h.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("tts: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	switch {
	case resp.StatusCode == http.StatusUnprocessableEntity:
		return nil, 0, fmt.Errorf("%w: %q: %.200s", ErrLanguage, lang, body)
	case resp.StatusCode != http.StatusOK:
		return nil, 0, fmt.Errorf("tts: %s: status %d: %.200s", u, resp.StatusCode, body)
	}
	pcm, rate, err := audio.DecodeWAV(body)
	if err != nil {
		return nil, 0, fmt.Errorf("tts: %s: %w", u, err)
	}
	return pcm, rate, nil
}
