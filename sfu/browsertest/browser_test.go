package browsertest

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/jbcalling/platform/internal/netns"
	"github.com/jbcalling/platform/sfu/auth"
	"github.com/jbcalling/platform/sfu/server"
)

func TestMain(m *testing.M) { netns.Main(m) }

// chromiumPath finds the browser or skips: the only reason to skip.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no chromium binary installed (apt-get install chromium); the browser end-to-end test needs one")
	return ""
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// startSFU runs the SFU in-process with ICE on the namespace's address;
// it returns the page URL (plain HTTP on loopback, a secure context for
// getUserMedia).
func startSFU(t *testing.T, mod func(*server.Config)) (*server.Server, string) {
	t.Helper()
	cfg := server.Defaults()
	cfg.ICEBind = netns.Addr
	cfg.ICEUDPPort, cfg.ICETCPPort = 0, 0
	cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if mod != nil {
		mod(&cfg)
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Drain(ctx)
		hs.Close()
		srv.Close()
	})
	return srv, hs.URL
}

// page is one browser (its own process and profile) with one tab.
type page struct {
	t    *testing.T
	name string
	ctx  context.Context

	mu         sync.Mutex
	done       bool     // the test is over: log nothing more
	exceptions []string // uncaught errors in the page
}

func newPage(t *testing.T, execPath, name string) *page {
	t.Helper()
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(execPath),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		// Host candidates as IP addresses (10.203.0.1), not mDNS names.
		chromedp.Flag("disable-features", "WebRtcHideLocalIpsWithMdns"),
		chromedp.WindowSize(1100, 800),
	)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	p := &page{t: t, name: name, ctx: ctx}
	// The page's console goes to the test log; an uncaught error in the
	// page fails the test (a user would see a broken page).
	if err := chromedp.Listen(ctx, func(ev any) {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.done {
			return
		}
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			var args []string
			for _, a := range ev.Args {
				args = append(args, strings.Trim(string(a.Value), `"`))
			}
			t.Logf("%s console.%s: %s", name, ev.Type, strings.Join(args, " "))
		case *runtime.EventExceptionThrown:
			p.exceptions = append(p.exceptions, exceptionText(ev.ExceptionDetails))
		}
	}); err != nil {
		t.Fatalf("%s: starting chromium: %v", name, err)
	}
	// Registered after the browser's cleanup, so it runs before it.
	t.Cleanup(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.done = true
		for _, e := range p.exceptions {
			t.Errorf("%s: uncaught error in the page: %s", name, e)
		}
	})
	return p
}

func (p *page) do(actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	if err := chromedp.Do(p.ctx, actions...); err != nil {
		p.t.Fatalf("%s: %v", p.name, err)
	}
}

func eval[T any](p *page, expr string) T {
	p.t.Helper()
	v, err := chromedp.Run(p.ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("%s: evaluating %s: %v", p.name, expr, err)
	}
	return v
}

// waitFor polls a JavaScript condition until it holds; the test fails
// (saying what it waited for) if it never does.
func (p *page) waitFor(what, expr string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 45*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(45*time.Second))); err != nil {
		p.t.Fatalf("%s: waiting for %s: %v", p.name, what, err)
	}
}

// join fills in the demo's form like a user and returns the participant id.
func (p *page) join(base, room string) string {
	p.t.Helper()
	return p.joinURL(base + "/?room=" + url.QueryEscape(room))
}

func (p *page) joinURL(u string) string {
	p.t.Helper()
	p.do(
		chromedp.Navigate(u),
		chromedp.SendKeys(chromedp.CSS(`#join input[name=name]`), p.name),
		chromedp.Click(chromedp.CSS(`#join button`)),
		chromedp.WaitVisible(chromedp.CSS(`#controls`)),
	)
	id := eval[string](p, `window.demo.session.id`)
	if id == "" {
		p.t.Fatalf("%s: joined without a participant id", p.name)
	}
	return id
}

// mediaStats are the inbound-rtp counters of the tracks on one
// participant's tile, read through the receivers of those very tracks.
type mediaStats struct {
	FramesDecoded        float64 `json:"framesDecoded"`
	VideoWidth           float64 `json:"videoWidth"`
	AudioPackets         float64 `json:"audioPackets"`
	AudioSamplesReceived float64 `json:"audioSamples"`
}

func (p *page) statsOf(participant string) mediaStats {
	p.t.Helper()
	return eval[mediaStats](p, fmt.Sprintf(`(async () => {
		const out = { framesDecoded: 0, videoWidth: 0, audioPackets: 0, audioSamples: 0 };
		const tile = window.demo.tiles.get(%q);
		if (!tile) return out;
		out.videoWidth = tile.video.videoWidth;
		for (const track of tile.stream.getTracks()) {
			const r = window.demo.session.subscriber.getReceivers().find((r) => r.track === track);
			if (!r) continue;
			(await r.getStats()).forEach((s) => {
				if (s.type !== "inbound-rtp") return;
				if (s.kind === "video") out.framesDecoded += s.framesDecoded || 0;
				if (s.kind === "audio") { out.audioPackets += s.packetsReceived || 0; out.audioSamples += s.totalSamplesReceived || 0; }
			});
		}
		return out;
	})()`, participant))
}

// receives asserts that p decodes participant's video and receives its
// audio: every counter grows between two samples.
func (p *page) receives(participant string) {
	p.t.Helper()
	var first mediaStats
	p.poll(fmt.Sprintf("video and audio from %s", participant), func() (bool, string) {
		first = p.statsOf(participant)
		return first.FramesDecoded > 0 && first.AudioSamplesReceived > 0 && first.VideoWidth > 0, fmt.Sprintf("%+v", first)
	})
	p.poll(fmt.Sprintf("more video and audio from %s", participant), func() (bool, string) {
		s := p.statsOf(participant)
		return s.FramesDecoded > first.FramesDecoded && s.AudioPackets > first.AudioPackets &&
			s.AudioSamplesReceived > first.AudioSamplesReceived, fmt.Sprintf("first %+v, now %+v", first, s)
	})
}

// poll retries cond until it holds; the test fails with cond's last
// description if it never does.
func (p *page) poll(what string, cond func() (bool, string)) {
	p.t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for {
		ok, desc := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: never got %s (%s)", p.name, what, desc)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func tileSel(id string) string {
	return fmt.Sprintf(`document.querySelector('#tiles [data-participant-id=%q]')`, id)
}

// screenshot saves the page when SFU_BROWSERTEST_SCREENSHOTS names a
// directory: a way to look at the demo, not part of any assertion.
func (p *page) screenshot(file string) {
	dir := os.Getenv("SFU_BROWSERTEST_SCREENSHOTS")
	if dir == "" {
		return
	}
	png, err := chromedp.Run(p.ctx, chromedp.FullScreenshot(100))
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, file), png, 0o644)
	}
	if err != nil {
		p.t.Logf("%s: screenshot: %v", p.name, err)
	}
}

// TestTwoBrowsers: two Chromium pages with fake camera and microphone join
// one room through the demo page, each decodes the other's video and
// receives its audio, sees its mute, and the tile of the one who leaves
// goes away at the other.
func TestTwoBrowsers(t *testing.T) {
	execPath := chromiumPath(t)
	netns.Require(t)
	srv, base := startSFU(t, nil)
	const room = "browsertest"

	ana := newPage(t, execPath, "Ana")
	bo := newPage(t, execPath, "Bo")
	anaID := ana.join(base, room)
	boID := bo.join(base, room)

	ana.waitFor("Bo's tile", tileSel(boID)+`?.dataset.name === "Bo"`)
	bo.waitFor("Ana's tile", tileSel(anaID)+`?.dataset.name === "Ana"`)
	ana.receives(boID)
	bo.receives(anaID)
	// Chromium's fake microphone beeps: the audio level the SFU forwards
	// lights up the speaker's tile.
	bo.waitFor("Ana's tile marked speaking", tileSel(anaID)+`?.hasAttribute("data-speaking")`)
	ana.screenshot("sfu-demo-ana.png")
	bo.screenshot("sfu-demo-bo.png")

	// Muting the microphone and stopping the video show at the other side
	// (a "muted" label, the initial instead of the picture); undoing both
	// clears them.
	ana.do(chromedp.Click(chromedp.CSS(`#mute-mic`)), chromedp.Click(chromedp.CSS(`#mute-cam`)))
	bo.waitFor("Ana's tile marked muted, video off", tileSel(anaID)+`?.hasAttribute("data-audio-muted") && `+tileSel(anaID)+`.hasAttribute("data-video-off")`)
	bo.screenshot("sfu-demo-bo-ana-muted.png")
	ana.do(chromedp.Click(chromedp.CSS(`#mute-mic`)), chromedp.Click(chromedp.CSS(`#mute-cam`)))
	bo.waitFor("Ana's tile unmuted, video on", tileSel(anaID)+` && !`+tileSel(anaID)+`.hasAttribute("data-audio-muted") && !`+tileSel(anaID)+`.hasAttribute("data-video-off")`)

	bo.do(chromedp.Click(chromedp.CSS(`#leave`)))
	ana.waitFor("Bo's tile to go away", `!`+tileSel(boID))
	bo.waitFor("Bo back at the join form", `!document.querySelector("#join").hidden && document.querySelectorAll("#tiles .tile").length === 0`)
	ana.poll("the server to drop Bo", func() (bool, string) {
		rooms, participants := srv.Rooms().Stats()
		return rooms == 1 && participants == 1, fmt.Sprintf("%d rooms, %d participants", rooms, participants)
	})

	// Bo comes back: the server reuses Ana's subscriber transceivers for
	// the new tracks, and she gets a new tile with live media.
	bo.do(chromedp.Click(chromedp.CSS(`#join button`)), chromedp.WaitVisible(chromedp.CSS(`#controls`)))
	boID = eval[string](bo, `window.demo.session.id`)
	ana.waitFor("Bo's new tile", tileSel(boID)+`?.dataset.name === "Bo"`)
	ana.receives(boID)
	bo.receives(anaID)

	// A server shutdown tells the pages, then ends their sessions.
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		srv.Drain(ctx)
	}()
	ana.waitFor("the shutdown notice", `document.querySelector("#status").textContent.includes("shutting down")`)
	<-drained
	ana.waitFor("the page back at the join form", `!document.querySelector("#join").hidden && document.querySelectorAll("#tiles .tile").length === 0`)
}

func exceptionText(d *runtime.ExceptionDetails) string {
	if d.Exception != nil && d.Exception.Description != "" {
		return d.Exception.Description
	}
	return d.Text
}

// TestToken: on a server that requires tokens the demo says why a join
// without one is refused, and joins with the token from ?token=.
func TestToken(t *testing.T) {
	execPath := chromiumPath(t)
	netns.Require(t)
	secret := []byte("browsertest-secret")
	_, base := startSFU(t, func(c *server.Config) { c.AllowAnonymous, c.JWTSecret = false, secret })
	p := newPage(t, execPath, "Ana")

	p.do(
		chromedp.Navigate(base+"/?room=secret"),
		chromedp.Click(chromedp.CSS(`#join button`)),
	)
	p.waitFor("the refusal", `document.querySelector("#status").textContent.includes("unauthorized")`)
	p.screenshot("sfu-demo-refused.png")
	if eval[bool](p, `document.querySelector("#join").hidden || document.querySelectorAll("#tiles .tile").length > 0`) {
		t.Fatal("a refused join left the page in the call")
	}

	token, err := auth.Sign(secret, "secret", "user-1", "Ana", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	id := p.joinURL(base + "/?room=secret&token=" + url.QueryEscape(token))
	p.waitFor("her own tile", tileSel(id)+`?.dataset.name === "Ana"`)
}

// TestClientModule uses sfu.js directly, as another frontend would (import
// from /client/sfu.js): the peer connections use the ICE servers of the
// join reply, a track published disabled shows as muted at the other side,
// and trackadded names the publisher and kind of each track.
func TestClientModule(t *testing.T) {
	execPath := chromiumPath(t)
	netns.Require(t)
	// Nothing answers there; the namespace keeps the attempts local.
	stun, turn := "stun:"+netns.Addr+":3478", "turn:"+netns.Addr+":3478"
	_, base := startSFU(t, func(c *server.Config) {
		c.STUNURLs, c.TURNURLs, c.TURNSecret = []string{stun}, []string{turn}, []byte("turn-secret")
	})
	ana := newPage(t, execPath, "Ana")
	mod := newPage(t, execPath, "Mod")
	anaID := ana.join(base, "module")

	mod.do(chromedp.Navigate(base + "/client/"))
	modID := eval[string](mod, `(async () => {
		const { join } = await import("/client/sfu.js");
		const media = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
		media.getAudioTracks()[0].enabled = false;
		window.added = [];
		const s = await join("", { room: "module", name: "Mod", on: {
			trackadded: (e) => window.added.push({ participantId: e.detail.participantId, kind: e.detail.kind, live: e.detail.track.readyState === "live" }),
		} });
		await s.publish(media);
		window.session = s;
		return s.id;
	})()`)
	// The module finds the SFU that served it, also behind a proxy that
	// mounts the SFU under a path prefix (Traefik's /sfu).
	for module, want := range map[string]string{
		base + "/client/sfu.js":                  "ws" + strings.TrimPrefix(base, "http") + "/ws",
		"https://example.org/sfu/client/sfu.js":  "wss://example.org/sfu/ws",
		"https://example.org:8443/client/sfu.js": "wss://example.org:8443/ws",
	} {
		if got := eval[string](mod, fmt.Sprintf(`(async () => (await import("/client/sfu.js")).defaultURL(%q))()`, module)); got != want {
			t.Errorf("defaultURL(%s) = %q, want %q", module, got, want)
		}
	}
	type iceServer struct {
		URLs                 []string
		Username, Credential string
	}
	servers := eval[[]iceServer](mod, `window.session.publisher.getConfiguration().iceServers`)
	if len(servers) != 2 || !slices.Equal(servers[0].URLs, []string{stun}) || !slices.Equal(servers[1].URLs, []string{turn}) ||
		!strings.HasSuffix(servers[1].Username, ":"+modID) || servers[1].Credential == "" {
		t.Errorf("publisher ICE servers = %+v, want the STUN server and the TURN server with credentials for %s from the join reply", servers, modID)
	}

	ana.waitFor("Mod's tile marked muted", tileSel(modID)+`?.hasAttribute("data-audio-muted")`)
	ana.receives(modID)
	mod.waitFor("Ana's audio and video", fmt.Sprintf(`["audio", "video"].every((k) => window.added.some((a) => a.participantId === %q && a.kind === k && a.live))`, anaID))
}
