// Package stt turns speech into text: the Recognizer interface, a local
// engine (pocketsphinx's library with its English model, from Debian)
// and an HTTP backend for a speech service.
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

// Streamer is a Recognizer that can also take an utterance while it is
// spoken, so its words are ready as soon as it ends.
type Streamer interface {
	Recognizer
	Stream(lang string) (Stream, error)
}

// Stream decodes one speaker's utterances, one after another: Write
// their samples (mono, Rate) as they come, End each to get its words.
type Stream interface {
	Write(pcm []int16) error
	// Partial is the best guess at the words written so far in the
	// current utterance; the words End returns may differ.
	Partial() (string, error)
	End() (string, error)
	Close()
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
