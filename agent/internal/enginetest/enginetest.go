// Package enginetest gives the agent's tests real speech engines: it
// skips, saying which program is missing, where Debian's packages are not
// installed (.ci/run installs them), and makes spoken English the way the
// tests need it.
package enginetest

import (
	"context"
	"os"
	"os/exec"
	"testing"

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
