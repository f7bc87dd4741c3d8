package browsertest

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jbcalling/platform/internal/demopage"
	"github.com/jbcalling/platform/internal/netns"
	"github.com/jbcalling/platform/sfu/auth"
	"github.com/jbcalling/platform/sfu/server"
	"github.com/jbcalling/platform/sfu/server/servertest"
)

func TestMain(m *testing.M) { netns.Main(m) }

// chromium finds the browser or skips: the only reason to skip.
func chromium(t *testing.T) demopage.Browser {
	t.Helper()
	b, err := demopage.Chromium()
	if err != nil {
		t.Skipf("%v; the browser end-to-end test needs one", err)
	}
	return b
}

// firefox finds Firefox or skips, saying why.
func firefox(t *testing.T) demopage.Browser {
	t.Helper()
	b, err := demopage.Firefox()
	if err != nil {
		t.Skipf("%v; the browser end-to-end test needs one", err)
	}
	return b
}

// startSFU runs the SFU in-process with ICE on the namespace's address;
// it returns the page URL (plain HTTP on loopback, a secure context for
// getUserMedia).
func startSFU(t *testing.T, mod func(*server.Config)) (*server.Server, string) {
	t.Helper()
	sfu := servertest.Start(t, netns.Addr, func(cfg *server.Config) {
		cfg.ICETCPPort = 0
		cfg.Logger = servertest.Logger(t, slog.LevelWarn)
		if mod != nil {
			mod(cfg)
		}
	})
	return sfu.Server, sfu.URL
}

// newPage starts one participant's browser in the test's namespace.
func newPage(t *testing.T, b demopage.Browser, name string) *demopage.Page {
	return demopage.New(t, b, name, demopage.Options{})
}

// join opens the demo served at base for room and joins like a user.
func join(p *demopage.Page, base, room string) string {
	p.T.Helper()
	return p.JoinURL(base + "/?room=" + url.QueryEscape(room))
}

// TestTwoBrowsers: two people with fake camera and microphone join one
// room through the demo page, in each pairing of Chromium and Firefox:
// each decodes the other's video and receives its audio, sees its mute and
// video off, the tile of the one who leaves goes away at the other, the
// one who left comes back, and a server shutdown ends the call.
func TestTwoBrowsers(t *testing.T) {
	for _, pair := range []struct {
		name    string
		ana, bo func(*testing.T) demopage.Browser
	}{
		{"chromium-chromium", chromium, chromium},
		{"chromium-firefox", chromium, firefox},
		{"firefox-chromium", firefox, chromium},
		{"firefox-firefox", firefox, firefox},
	} {
		t.Run(pair.name, func(t *testing.T) {
			ana, bo := pair.ana(t), pair.bo(t)
			t.Logf("Ana in %s, Bo in %s", ana.Name, bo.Name)
			twoBrowsers(t, ana, bo)
		})
	}
}

func twoBrowsers(t *testing.T, anaBrowser, boBrowser demopage.Browser) {
	netns.Require(t)
	srv, base := startSFU(t, nil)
	const room = "browsertest"

	ana := newPage(t, anaBrowser, "Ana")
	bo := newPage(t, boBrowser, "Bo")
	anaID := join(ana, base, room)
	boID := join(bo, base, room)

	ana.WaitFor("Bo's tile", demopage.Tile(boID)+`?.dataset.name === "Bo"`)
	bo.WaitFor("Ana's tile", demopage.Tile(anaID)+`?.dataset.name === "Ana"`)
	ana.Receives(boID)
	bo.Receives(anaID)
	// Each browser decodes what the SFU encrypted itself with the keys it
	// recovered from the DTLS handshake, sent on the direct path.
	if c := srv.Paths(); c.DirectSubscribers.Load() != 2 || c.PionSubscribers.Load() != 0 {
		t.Fatalf("subscriber connections: %d direct, %d through pion; want both browsers direct", c.DirectSubscribers.Load(), c.PionSubscribers.Load())
	}
	// Both browsers negotiate AES-GCM, so what they decode was sealed by
	// the SFU's own AES-GCM code (srtpsend/gcm.go), not pion/srtp's.
	if n := srv.Paths().DirectAEADSubscribers.Load(); n != 2 {
		t.Fatalf("%d of the 2 direct subscriber connections sealed with AES-GCM by the SFU itself", n)
	}
	// And what they send (answered with a=setup:passive, so the SFU is
	// the DTLS server and has their keys) was read by the fast receive
	// path, which decrypted it and sent them their feedback.
	if c := srv.Paths(); c.FastPublishers.Load() != 2 || c.PionPublishers.Load() != 0 {
		t.Fatalf("publisher connections: %d fast, %d through pion; want both browsers fast", c.FastPublishers.Load(), c.PionPublishers.Load())
	}
	// The fake microphones make sound: the audio level the SFU forwards
	// lights up the speaker's tile.
	bo.WaitFor("Ana's tile marked speaking", demopage.Tile(anaID)+`?.hasAttribute("data-speaking")`)
	ana.Screenshot("sfu-demo-ana-" + anaBrowser.Name + ".png")
	bo.Screenshot("sfu-demo-bo-" + boBrowser.Name + ".png")

	// Muting the microphone and stopping the video show at the other side
	// (a "muted" label, the initial instead of the picture), and the
	// server refuses neither; undoing both clears them.
	for _, p := range []*demopage.Page{ana, bo} {
		demopage.Eval[bool](p, `(window.sessionErrors = [], window.demo.session.addEventListener("error", (e) => window.sessionErrors.push(e.detail.error.message)), true)`)
	}
	ana.Click(`#mute-mic`)
	ana.Click(`#mute-cam`)
	bo.WaitFor("Ana's tile marked muted, video off", demopage.Tile(anaID)+`?.hasAttribute("data-audio-muted") && `+demopage.Tile(anaID)+`.hasAttribute("data-video-off")`)
	bo.Screenshot("sfu-demo-bo-ana-muted.png")
	ana.Click(`#mute-mic`)
	ana.Click(`#mute-cam`)
	bo.WaitFor("Ana's tile unmuted, video on", demopage.Tile(anaID)+` && !`+demopage.Tile(anaID)+`.hasAttribute("data-audio-muted") && !`+demopage.Tile(anaID)+`.hasAttribute("data-video-off")`)
	for _, p := range []*demopage.Page{ana, bo} {
		if errs := demopage.Eval[[]string](p, `window.sessionErrors`); len(errs) > 0 {
			t.Errorf("%s's session reported errors while muting: %q", p.Name, errs)
		}
	}

	bo.Click(`#leave`)
	ana.WaitFor("Bo's tile to go away", `!`+demopage.Tile(boID))
	bo.WaitFor("Bo back at the join form", `!document.querySelector("#join").hidden && document.querySelectorAll("#tiles .tile").length === 0`)
	ana.Poll("the server to drop Bo", func() (bool, string) {
		rooms, participants := srv.Rooms().Stats()
		return rooms == 1 && participants == 1, fmt.Sprintf("%d rooms, %d participants", rooms, participants)
	})

	// Bo comes back: the server reuses Ana's subscriber transceivers for
	// the new tracks, and she gets a new tile with live media.
	bo.Click(`#join button`)
	bo.WaitFor("the call controls (joined again)", `!document.querySelector("#controls").hidden`)
	boID = demopage.Eval[string](bo, `window.demo.session.id`)
	ana.WaitFor("Bo's new tile", demopage.Tile(boID)+`?.dataset.name === "Bo"`)
	ana.Receives(boID)
	bo.Receives(anaID)

	// A server shutdown tells the pages, then ends their sessions.
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		srv.Drain(ctx)
	}()
	ana.WaitFor("the shutdown notice", `document.querySelector("#status").textContent.includes("shutting down")`)
	<-drained
	for _, p := range []*demopage.Page{ana, bo} {
		p.WaitFor("the page back at the join form", `!document.querySelector("#join").hidden && document.querySelectorAll("#tiles .tile").length === 0`)
	}
}

// TestToken: on a server that requires tokens the demo says why a join
// without one is refused, and joins with the token from ?token=.
func TestToken(t *testing.T) {
	b := chromium(t)
	netns.Require(t)
	secret := []byte("browsertest-secret")
	_, base := startSFU(t, func(c *server.Config) { c.AllowAnonymous, c.JWTSecret = false, secret })
	p := newPage(t, b, "Ana")

	p.Navigate(base + "/?room=secret")
	p.Click(`#join button`)
	// In words, with the protocol's code for developers beside them.
	p.WaitFor("the refusal", `document.querySelector("#status").textContent.includes("needs a valid invitation link") && document.querySelector("#status details code").textContent.includes("unauthorized")`)
	p.Screenshot("sfu-demo-refused.png")
	if demopage.Eval[bool](p, `document.querySelector("#join").hidden || document.querySelectorAll("#tiles .tile").length > 0`) {
		t.Fatal("a refused join left the page in the call")
	}

	token, err := auth.Sign(secret, "secret", "user-1", "Ana", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	id := p.JoinURL(base + "/?room=secret&token=" + url.QueryEscape(token))
	p.WaitFor("her own tile", demopage.Tile(id)+`?.dataset.name === "Ana"`)
}

// TestClientModule uses sfu.js directly, as another frontend would (import
// from /client/sfu.js): the peer connections use the ICE servers of the
// join reply, a track published disabled shows as muted at the other side,
// and trackadded names the publisher and kind of each track.
func TestClientModule(t *testing.T) {
	b := chromium(t)
	netns.Require(t)
	// Nothing answers there; the namespace keeps the attempts local.
	stun, turn := "stun:"+netns.Addr+":3478", "turn:"+netns.Addr+":3478"
	_, base := startSFU(t, func(c *server.Config) {
		c.STUNURLs, c.TURNURLs, c.TURNSecret = []string{stun}, []string{turn}, []byte("turn-secret")
	})
	ana := newPage(t, b, "Ana")
	mod := newPage(t, b, "Mod")
	anaID := join(ana, base, "module")

	mod.Navigate(base + "/client/")
	modID := demopage.Eval[string](mod, `(async () => {
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
		if got := demopage.Eval[string](mod, fmt.Sprintf(`(async () => (await import("/client/sfu.js")).defaultURL(%q))()`, module)); got != want {
			t.Errorf("defaultURL(%s) = %q, want %q", module, got, want)
		}
	}
	type iceServer struct {
		URLs                 []string
		Username, Credential string
	}
	servers := demopage.Eval[[]iceServer](mod, `window.session.publisher.getConfiguration().iceServers`)
	if len(servers) != 2 || !slices.Equal(servers[0].URLs, []string{stun}) || !slices.Equal(servers[1].URLs, []string{turn}) ||
		!strings.HasSuffix(servers[1].Username, ":"+modID) || servers[1].Credential == "" {
		t.Errorf("publisher ICE servers = %+v, want the STUN server and the TURN server with credentials for %s from the join reply", servers, modID)
	}

	ana.WaitFor("Mod's tile marked muted", demopage.Tile(modID)+`?.hasAttribute("data-audio-muted")`)
	ana.Receives(modID)
	mod.WaitFor("Ana's audio and video", fmt.Sprintf(`["audio", "video"].every((k) => window.added.some((a) => a.participantId === %q && a.kind === k && a.live))`, anaID))

	// Another camera in the old one's place, without renegotiating: Ana's
	// video goes on.
	if !demopage.Eval[bool](mod, `(async () => {
		const s = window.session;
		const before = s.publisher.localDescription.sdp;
		const fresh = (await navigator.mediaDevices.getUserMedia({ video: true })).getVideoTracks()[0];
		const old = s.localTracks().find((t) => t.kind === "video");
		await s.replaceTrack(old, fresh);
		old.stop();
		return s.publisher.localDescription.sdp === before && s.localTracks().includes(fresh) && !s.localTracks().includes(old);
	})()`) {
		t.Fatal("replaceTrack renegotiated or did not take the new track")
	}
	ana.Receives(modID)
}

// TestChatAndScreen: in a Chromium-Firefox call, a chat message typed in
// one page shows in the other's chat panel with its sender's name, and a
// screen shared from one (a canvas stream: headless browsers capture no
// display) shows large at the other as that participant's screen, beside
// the camera, until sharing stops.
func TestChatAndScreen(t *testing.T) {
	anaBrowser, boBrowser := chromium(t), firefox(t)
	netns.Require(t)
	_, base := startSFU(t, nil)
	ana := newPage(t, anaBrowser, "Ana")
	bo := newPage(t, boBrowser, "Bo")
	join(ana, base, "chat")
	boID := join(bo, base, "chat")

	say := func(p *demopage.Page, text string) {
		demopage.Eval[bool](p, fmt.Sprintf(`(() => { document.querySelector("#say input").value = %q; return true; })()`, text))
		p.Click(`#say button`)
	}
	said := func(who, text string) string {
		return fmt.Sprintf(`[...document.querySelectorAll("#messages li")].some((li) => li.querySelector(".from").textContent === %q && li.querySelector(".text").textContent === %q)`, who, text)
	}
	say(ana, "¿Me oyes, Bo?")
	bo.WaitFor("Ana's message in Bo's chat", said("Ana", "¿Me oyes, Bo?"))
	ana.WaitFor("her own message in her chat", said("You", "¿Me oyes, Bo?"))
	say(bo, "Loud and clear")
	ana.WaitFor("Bo's answer in Ana's chat", said("Bo", "Loud and clear"))

	demopage.Eval[bool](bo, `(async () => {
		const c = document.createElement("canvas");
		c.width = 640; c.height = 360;
		const g = c.getContext("2d");
		let n = 0;
		window.painter = setInterval(() => { g.fillStyle = "hsl(" + (n++ * 7 % 360) + ",80%,50%)"; g.fillRect(0, 0, 640, 360); }, 40);
		await window.demo.shareScreen(c.captureStream(15));
		return true;
	})()`)
	screen := boID + "/screen"
	ana.WaitFor("Bo's screen tile, large", demopage.Tile(screen)+`?.hasAttribute("data-screen") && `+demopage.Tile(boID)+` !== null`)
	ana.Poll("Bo's screen decoded at its size", func() (bool, string) {
		m := ana.MediaOf(screen)
		return m.FramesDecoded > 10 && m.VideoWidth == 640, fmt.Sprintf("%+v", m)
	})
	if !demopage.Eval[bool](ana, fmt.Sprintf(`window.demo.session.participants.get(%q).tracks.some((t) => t.source === "screen")`, boID)) {
		t.Fatal("Bo's screen track is not announced as a screen")
	}
	ana.Screenshot("sfu-demo-ana-bo-screen.png")
	bo.Click(`#share`) // stop sharing
	ana.WaitFor("Bo's screen tile to go away", `!`+demopage.Tile(screen))
	ana.Receives(boID) // his camera and microphone go on
}
