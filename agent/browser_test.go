package agent_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jbcalling/platform/agent"
	"github.com/jbcalling/platform/agent/audio"
	"github.com/jbcalling/platform/agent/internal/enginetest"
	"github.com/jbcalling/platform/agent/mt"
	"github.com/jbcalling/platform/agent/stt"
	"github.com/jbcalling/platform/internal/demopage"
	"github.com/jbcalling/platform/internal/netns"
	"github.com/jbcalling/platform/sfu/auth"
	"github.com/jbcalling/platform/sfu/server"
	"github.com/jbcalling/platform/sfu/server/servertest"
)

// Ana speaks English into Chromium's microphone (a WAV of espeak-ng's
// voice as the fake capture device); Bo, in Firefox, chose Spanish
// captions on the demo page and reads what she said in Spanish under her
// tile. Then he turns captions off and they stop.
func TestCaptionsInTheDemoPage(t *testing.T) {
	netns.Require(t)
	enginetest.Require(t, "espeak-ng", "pocketsphinx_continuous", "apertium")
	chromium, err := demopage.Chromium()
	if err != nil {
		t.Skipf("%v; the captions end-to-end test needs it", err)
	}
	firefox, err := demopage.Firefox()
	if err != nil {
		t.Skipf("%v; the captions end-to-end test needs it", err)
	}
	speech := enginetest.English(t, enginetest.Sentence, 48000)
	speech = append(speech, make([]int16, 48000*2)...) // a pause, then it loops
	wav := filepath.Join(t.TempDir(), "ana.wav")
	if err := os.WriteFile(wav, audio.EncodeWAV(speech, 48000), 0o644); err != nil {
		t.Fatal(err)
	}
	secret := []byte("captions-demo-secret")
	sfu := servertest.Start(t, netns.Addr, func(c *server.Config) {
		c.JWTSecret = secret
		c.ICETCPPort = 0
		c.Logger = servertest.Logger(t, slog.LevelWarn)
	})

	ana := demopage.New(t, chromium, "Ana", demopage.Options{Flags: map[string]any{"use-file-for-fake-audio-capture": wav}})
	bo := demopage.New(t, firefox, "Bo", demopage.Options{})
	page := func(lang, captions string) string {
		return sfu.URL + "/?" + url.Values{"room": {"babel"}, "lang": {lang}, "captions": {captions}}.Encode()
	}
	anaID := ana.JoinURL(page("en", ""))
	bo.JoinURL(page("es", "es"))

	ctx, cancel := context.WithCancel(context.Background())
	token, err := auth.SignAgent(secret, "babel", "translator", "Translator", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- agent.Run(ctx, agent.Config{URL: sfu.WSURL(), Room: "babel", Token: token, SettingEngine: settingEngine(),
			Recognizer: stt.Pocketsphinx{}, Translator: mt.Apertium{}, Logger: servertest.Logger(t, slog.LevelInfo)})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
	}()

	subtitle := demopage.Tile(anaID) + `.querySelector(".subtitle").textContent`
	bo.WaitFor("Ana's words in Spanish under her tile", subtitle+`.includes("reunión") && `+subtitle+`.includes("mañana")`)
	t.Logf("Bo reads under Ana's tile: %q", demopage.Eval[string](bo, subtitle))
	bo.WaitFor("no tile for the agent, live captions in the status",
		`document.querySelectorAll("#tiles figure").length === 2 && document.querySelector("#status").textContent.includes("live captions")`)
	if got := demopage.Eval[string](ana, demopage.Tile(anaID)+`?.querySelector(".subtitle")?.textContent ?? ""`); got != "" {
		t.Errorf("Ana, who wants no captions, sees %q", got)
	}
	bo.Screenshot("sfu-demo-captions.png")

	// Captions off: the agent stops translating for Bo; what he reads fades.
	demopage.Eval[bool](bo, `(() => { const s = document.querySelector("#captions"); s.value = ""; s.dispatchEvent(new Event("change")); return true; })()`)
	bo.WaitFor("the caption to fade once captions are off", fmt.Sprintf(`%s === ""`, subtitle))
}
