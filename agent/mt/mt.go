// Package mt translates text: the Translator interface, a local engine
// (apertium, from Debian) and an HTTP backend that speaks apertium-apy's
// API, so the stack's translation service or any apy plugs in.
package mt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
)

// ErrPair means the engine cannot translate between the two languages.
var ErrPair = errors.New("mt: language pair not supported")

// Translator translates text from one language to another (ISO 639-1).
type Translator interface {
	Translate(ctx context.Context, text, from, to string) (string, error)
}

// apertiumCodes maps ISO 639-1 to the ISO 639-3 codes apertium names its
// pairs with.
var apertiumCodes = map[string]string{
	"en": "eng", "es": "spa", "ca": "cat", "fr": "fra", "pt": "por", "it": "ita", "de": "deu", "gl": "glg", "eo": "epo",
}

func apertiumPair(from, to string) (string, error) {
	f, t := apertiumCodes[from], apertiumCodes[to]
	if f == "" || t == "" {
		return "", fmt.Errorf("%w: %s to %s", ErrPair, from, to)
	}
	return f + "-" + t, nil
}

// Apertium runs the apertium program, one call per text.
type Apertium struct {
	Bin string // empty means apertium on PATH
}

// Translate passes text on stdin, so no text is ever taken for an option.
func (a Apertium) Translate(ctx context.Context, text, from, to string) (string, error) {
	pair, err := apertiumPair(from, to)
	if err != nil {
		return "", err
	}
	bin := a.Bin
	if bin == "" {
		bin = "apertium"
	}
	// -u: no marks on unknown words (a caption shows them as they are).
	cmd := exec.CommandContext(ctx, bin, "-u", pair)
	cmd.Stdin = strings.NewReader(text)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		if strings.Contains(stderr.String(), "Mode") {
			return "", fmt.Errorf("%w: %s (%s)", ErrPair, pair, strings.TrimSpace(stderr.String()))
		}
		return "", fmt.Errorf("mt: %s %s: %w: %.300s", bin, pair, err, stderr.String())
	}
	return strings.TrimSpace(out.String()), nil
}

// HTTP is an apertium-apy service (or one with its contract):
//
//	GET {URL}/translate?langpair=eng|spa&q=<text>
//	-> 200 {"responseData": {"translatedText": "..."}, "responseStatus": 200}
type HTTP struct {
	URL    string
	Client *http.Client // nil means http.DefaultClient
}

// Translate asks the service.
func (h HTTP) Translate(ctx context.Context, text, from, to string) (string, error) {
	pair, err := apertiumPair(from, to)
	if err != nil {
		return "", err
	}
	q := url.Values{"langpair": {strings.Replace(pair, "-", "|", 1)}, "q": {text}, "markUnknown": {"no"}}
	u := strings.TrimSuffix(h.URL, "/") + "/translate?" + q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", fmt.Errorf("mt: %w", err)
	}
	c := h.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", fmt.Errorf("mt: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var r struct {
		ResponseData struct {
			TranslatedText *string `json:"translatedText"`
		} `json:"responseData"`
		ResponseStatus int    `json:"responseStatus"`
		Explanation    string `json:"explanation"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return "", fmt.Errorf("mt: %s: status %d, not an apy document: %.200s", h.URL, resp.StatusCode, body)
	}
	switch {
	case resp.StatusCode == http.StatusBadRequest && strings.Contains(r.Explanation, "not installed"):
		return "", fmt.Errorf("%w: %s: %s", ErrPair, pair, r.Explanation)
	case resp.StatusCode != http.StatusOK || r.ResponseData.TranslatedText == nil:
		return "", fmt.Errorf("mt: %s: status %d: %.200s", h.URL, resp.StatusCode, body)
	}
	return strings.TrimSpace(*r.ResponseData.TranslatedText), nil
}
