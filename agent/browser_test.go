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
	"github.com/jbcalling/platform/agent/mt"
	"github.com/jbcalling/platform/agent/stt"
	"github.com/jbcalling/platform/agent/tts"
	"github.com/jbcalling/platform/internal/demopage"
	"github.com/jbcalling/platform/internal/enginetest"
	"github.com/jbcalling/platform/internal/netns"
	"github.com/jbcalling/platform/sfu/auth"
	"github.com/jbcalling/platform/sfu/server"
	"github.com/jbcalling/platform/sfu/server/servertest"
)

// Ana speaks English into Chromium's microphone (a WAV of espeak-ng's
// voice as the fake capture device); Bo, in Chromium and then in
// Firefox, chose Spanish on the demo page: he reads what she said in
// Spanish under her tile, and hears it, from her tile, in the agent's
// voice. Then he turns captions off and they stop.
func TestCaptionsInTheDemoPage(t *testing.T) {
	netns.Require(t)
	enginetest.Require(t, "espeak-ng", "apertium")
	enginetest.RequireSphinx(t)
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
	for _, b := range []demopage.Browser{chromium, firefox} {
		t.Run("Bo in "+b.Name, func(t *testing.T) { captionsInTheDemoPage(t, chromium, b, wav) })
	}
}

func captionsInTheDemoPage(t *testing.T, anaBrowser, boBrowser demopage.Browser, wav string) {
	secret := []byte("captions-demo-secret")
	sfu := servertest.Start(t, netns.Addr, func(c *server.Config) {
		c.JWTSecret = secret
		c.ICETCPPort = 0
		c.Logger = servertest.Logger(t, slog.LevelWarn)
	})
	ana := demopage.New(t, anaBrowser, "Ana", demopage.Options{Flags: map[string]any{"use-file-for-fake-audio-capture": wav}})
	bo := demopage.New(t, boBrowser, "Bo", demopage.Options{Wait: 90 * time.Second})
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
			Recognizer: stt.Sphinx{}, Translator: mt.Apertium{}, Synthesizer: tts.Espeak{},
			Logger: servertest.Logger(t, slog.LevelInfo)})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
	}()

	// Recognition of synthetic speech through Chromium's capture
	// processing varies from one utterance to the next ("the meeting
	// starts at the ah you tomorrow morning", "the old are set on her
	// tomorrow hopefully"): wait for one with the key words.
	subtitle := demopage.Tile(anaID) + `.querySelector(".subtitle").textContent`
	bo.WaitFor("a caption of Ana's sentence with its key words, in Spanish under her tile",
		`window.demo.captions.some((c) => c.text.includes("meeting") && c.text.includes("tomorrow") && (c.translations.es || "").includes("reunión"))`)
	type caption struct {
		Speaker      string            `json:"speaker"`
		Final        bool              `json:"final"`
		Text         string            `json:"text"`
		Translations map[string]string `json:"translations"`
	}
	c := demopage.Eval[caption](bo, `window.demo.captions.findLast((c) => c.text.includes("meeting") && c.text.includes("tomorrow"))`)
	t.Logf("caption: %+v", c)
	if c.Speaker != anaID || !c.Final {
		t.Errorf("caption %+v: want Ana's, final", c)
	}
	// The Spanish is apertium's translation of exactly what was heard.
	if want, err := (mt.Apertium{}).Translate(context.Background(), c.Text, "en", "es"); err != nil || c.Translations["es"] != want {
		t.Errorf("Spanish %q, want apertium's translation of %q: %q (%v)", c.Translations["es"], c.Text, want, err)
	}
	// What the tile shows is the newest caption's Spanish, or while Ana
	// speaks her words so far (or nothing, once it faded); both read at
	// once, since a caption comes about every second.
	shown := demopage.Eval[[]string](bo, `(() => {
		const c = window.demo.captions.at(-1);
		return [`+subtitle+`, c.final ? c.translations.es || "" : c.text];
	})()`)
	if got, latest := shown[0], shown[1]; got != "" && got != latest {
		t.Errorf("Ana's tile shows %q, the newest caption says %q", got, latest)
	}
	partials := demopage.Eval[int](bo, `window.demo.captions.filter((c) => !c.final && c.text).length`)
	if partials == 0 {
		t.Error("Bo's page got no partial caption while Ana spoke")
	}
	bo.WaitFor("no tile for the agent, live captions in the status",
		`document.querySelectorAll("#tiles figure").length === 2 && document.querySelector("#status").textContent.includes("live captions")`)
	if got := demopage.Eval[string](ana, demopage.Tile(anaID)+`?.querySelector(".subtitle")?.textContent ?? ""`); got != "" {
		t.Errorf("Ana, who wants no captions, sees %q", got)
	}

	// The agent's Spanish voice plays from Ana's tile, with speech in it:
	// the energy the browser decoded keeps growing.
	energy := func() float64 {
		return demopage.Eval[float64](bo, fmt.Sprintf(`(async () => {
			const r = window.demo.dubs.get(%q);
			if (!r) return -1;
			let e = 0;
			(await r.getStats()).forEach((s) => { if (s.type === "inbound-rtp") e += s.totalAudioEnergy || 0; });
			return e;
		})()`, anaID))
	}
	var first float64
	bo.Poll("the Spanish voice on Ana's tile, with energy", func() (bool, string) {
		first = energy()
		return first > 0.01, fmt.Sprintf("total audio energy %g", first)
	})
	bo.Poll("more Spanish speech", func() (bool, string) {
		e := energy()
		return e > first*1.5, fmt.Sprintf("total audio energy %g, first %g", e, first)
	})
	if lang := demopage.Eval[string](bo, demopage.Tile(anaID)+`.dataset.dubbed || ""`); lang != "es" {
		t.Errorf("Ana's tile is dubbed %q, want es", lang)
	}
	bo.Screenshot("sfu-demo-captions-" + boBrowser.Name + ".png")

	// Captions off: the agent stops translating for Bo; what he reads
	// fades and Ana's own voice comes back in place of the Spanish.
	demopage.Eval[bool](bo, `(() => { const s = document.querySelector("#captions"); s.value = ""; s.dispatchEvent(new Event("change")); return true; })()`)
	bo.WaitFor("the caption to fade once captions are off", fmt.Sprintf(`%s === ""`, subtitle))
	bo.WaitFor("Ana's tile no longer dubbed", demopage.Tile(anaID)+`.dataset.dubbed === undefined`)
	bo.Receives(anaID)
}
