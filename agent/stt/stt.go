// Package stt turns speech into text: the Recognizer interface, a local
// engine (pocketsphinx, from Debian) and an HTTP backend for a speech
// service.
package stt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"

	"github.com/jbcalling/platform/agent/audio"
)

// Rate is the sample rate every Recognizer takes.
const Rate = 16000

// ErrLanguage means the engine has no model for the language.
var ErrLanguage = errors.New("stt: language not supported")

// Recognizer returns the words spoken in pcm (mono, Rate) in language lang
// (ISO 639-1, e.g. "en"); "" if it heard none.
type Recognizer interface {
	Recognize(ctx context.Context, pcm []int16, lang string) (string, error)
}

// Pocketsphinx runs pocketsphinx_continuous on each utterance.
type Pocketsphinx struct {
	// Bin is the program; empty means pocketsphinx_continuous on PATH.
	Bin string
	// Models gives, per language, the arguments that select its acoustic
	// model, dictionary and language model; nil means English with the
	// default model (Debian's pocketsphinx-en-us).
	Models map[string][]string
}

// Recognize writes pcm to a private temporary WAV file (the program reads
// only files) and returns the program's hypothesis.
func (p Pocketsphinx) Recognize(ctx context.Context, pcm []int16, lang string) (string, error) {
	models := p.Models
	if models == nil {
		models = map[string][]string{"en": nil}
	}
	args, ok := models[lang]
	if !ok {
		return "", fmt.Errorf("%w: %q (pocketsphinx has %v)", ErrLanguage, lang, keys(models))
	}
	f, err := os.CreateTemp("", "utterance-*.wav") // mode 0600: speech is private
	if err != nil {
		return "", fmt.Errorf("stt: %w", err)
	}
	defer os.Remove(f.Name())
	_, err = f.Write(audio.EncodeWAV(pcm, Rate))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("stt: %w", err)
	}
	bin := p.Bin
	if bin == "" {
		bin = "pocketsphinx_continuous"
	}
	cmd := exec.CommandContext(ctx, bin, append([]string{"-infile", f.Name(), "-logfn", os.DevNull}, args...)...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("stt: %s: %w: %.300s", bin, err, stderr.String())
	}
	return strings.Join(strings.Fields(out.String()), " "), nil
}

func keys(m map[string][]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// HTTP is a speech service with this contract:
//
//	POST {URL}/v1/recognize?lang=en
//	Content-Type: audio/wav        (mono 16-bit PCM, 16 kHz)
//	-> 200 {"text": "..."}         (422 for an unsupported language)
type HTTP struct {
	URL    string
	Client *http.Client // nil means http.DefaultClient
}

// Recognize posts the utterance to the service.
func (h HTTP) Recognize(ctx context.Context, pcm []int16, lang string) (string, error) {
	u := strings.TrimSuffix(h.URL, "/") + "/v1/recognize?lang=" + url.QueryEscape(lang)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(audio.EncodeWAV(pcm, Rate)))
	if err != nil {
		return "", fmt.Errorf("stt: %w", err)
	}
	req.Header.Set("Content-Type", "audio/wav")
	c := h.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", fmt.Errorf("stt: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch {
	case resp.StatusCode == http.StatusUnprocessableEntity:
		return "", fmt.Errorf("%w: %q: %.200s", ErrLanguage, lang, body)
	case resp.StatusCode != http.StatusOK:
		return "", fmt.Errorf("stt: %s: status %d: %.200s", u, resp.StatusCode, body)
	}
	var r struct {
		Text *string `json:"text"`
	}
	if err := json.Unmarshal(body, &r); err != nil || r.Text == nil {
		return "", fmt.Errorf("stt: %s: not a {\"text\"} document: %.200s", u, body)
	}
	return *r.Text, nil
}
