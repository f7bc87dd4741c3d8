// Package demopage drives the SFU's demo page (sfu/web) in headless
// Chromium for tests, the way a user would: one browser process per
// participant, the join form, the tiles, and the media statistics of the
// tracks each tile shows. The in-process browser tests (sfu/browsertest)
// and the local Swarm proof (swarmtest) share it.
package demopage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// Chromium finds the browser binary.
func Chromium() (string, error) {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no chromium binary installed (apt-get install chromium)")
}

// Options adapt a page to where it runs.
type Options struct {
	// Netns starts the browser with `ip netns exec <Netns>` (the DevTools
	// pipe's descriptors pass through it); empty runs it in the caller's
	// namespace.
	Netns string
	// Flags are extra Chromium flags, e.g. host-resolver-rules.
	Flags map[string]any
	// Wait bounds every wait and poll; default 45 s.
	Wait time.Duration
}

// Page is one Chromium (its own process and profile) with one tab.
type Page struct {
	T    *testing.T
	Name string
	Ctx  context.Context
	wait time.Duration

	mu         sync.Mutex
	done       bool     // the test is over: log nothing more
	exceptions []string // uncaught errors in the page
}

// New starts a browser for the participant name. Uncaught errors in the
// page fail the test (a user would see a broken page); its console goes
// to the test log.
func New(t *testing.T, execPath, name string, o Options) *Page {
	t.Helper()
	if o.Wait == 0 {
		o.Wait = 45 * time.Second
	}
	dir, err := os.MkdirTemp("", "demopage-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	// Registered first, so it runs after the browser is gone; Chromium's
	// helpers may still write for a moment after it exits.
	t.Cleanup(func() {
		for i := 0; i < 20; i++ {
			if os.RemoveAll(dir) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(execPath),
		chromedp.UserDataDir(dir),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		// Host candidates as IP addresses, not mDNS names.
		chromedp.Flag("disable-features", "WebRtcHideLocalIpsWithMdns"),
		chromedp.WindowSize(1100, 800),
	}
	for k, v := range o.Flags {
		opts = append(opts, chromedp.Flag(k, v))
	}
	if o.Netns != "" {
		opts = append(opts, chromedp.ModifyCmdFunc(func(cmd *exec.Cmd) {
			ip, err := exec.LookPath("ip")
			if err != nil {
				ip = "ip"
			}
			cmd.Args = append([]string{"ip", "netns", "exec", o.Netns, execPath}, cmd.Args[1:]...)
			cmd.Path = ip
			if cmd.SysProcAttr == nil {
				cmd.SysProcAttr = &syscall.SysProcAttr{}
			}
			cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
		}))
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	p := &Page{T: t, Name: name, Ctx: ctx, wait: o.Wait}
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
			d := ev.ExceptionDetails
			text := d.Text
			if d.Exception != nil && d.Exception.Description != "" {
				text = d.Exception.Description
			}
			p.exceptions = append(p.exceptions, text)
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

// Do runs chromedp actions; an error fails the test.
func (p *Page) Do(actions ...chromedp.Action[chromedp.Void]) {
	p.T.Helper()
	if err := chromedp.Do(p.Ctx, actions...); err != nil {
		p.T.Fatalf("%s: %v", p.Name, err)
	}
}

// Eval evaluates expr (awaiting a promise) in the page.
func Eval[T any](p *Page, expr string) T {
	p.T.Helper()
	v, err := chromedp.Run(p.Ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		p.T.Fatalf("%s: evaluating %s: %v", p.Name, expr, err)
	}
	return v
}

// WaitFor polls a JavaScript condition until it holds; the test fails,
// saying what it waited for and the demo's status line, if it never does.
func (p *Page) WaitFor(what, expr string) {
	p.T.Helper()
	ctx, cancel := context.WithTimeout(p.Ctx, p.wait)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(p.wait))); err != nil {
		p.T.Fatalf("%s: waiting for %s: %v (status line: %q)", p.Name, what, err, p.status())
	}
}

// status is the demo's status line, for failure messages.
func (p *Page) status() string {
	ctx, cancel := context.WithTimeout(p.Ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("#status")?.textContent || ""`))
	if err != nil {
		return err.Error()
	}
	return s
}

// JoinURL opens the demo page at u, fills in the join form like a user and
// returns the participant id.
func (p *Page) JoinURL(u string) string {
	p.T.Helper()
	p.Do(
		chromedp.Navigate(u),
		chromedp.SendKeys(chromedp.CSS(`#join input[name=name]`), p.Name),
		chromedp.Click(chromedp.CSS(`#join button`)),
	)
	p.WaitFor("the call controls (joined)", `!document.querySelector("#controls").hidden`)
	id := Eval[string](p, `window.demo.session.id`)
	if id == "" {
		p.T.Fatalf("%s: joined without a participant id", p.Name)
	}
	return id
}

// Media are the inbound-rtp counters of the tracks on one participant's
// tile, read through the receivers of those very tracks.
type Media struct {
	FramesDecoded float64 `json:"framesDecoded"`
	VideoWidth    float64 `json:"videoWidth"`
	AudioPackets  float64 `json:"audioPackets"`
	AudioSamples  float64 `json:"audioSamples"`
}

// MediaOf reads the counters of participant's tile.
func (p *Page) MediaOf(participant string) Media {
	p.T.Helper()
	return Eval[Media](p, fmt.Sprintf(`(async () => {
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

// Receives asserts that p decodes participant's video and receives its
// audio: every counter grows between two samples.
func (p *Page) Receives(participant string) {
	p.T.Helper()
	var first Media
	p.Poll("video and audio from "+participant, func() (bool, string) {
		first = p.MediaOf(participant)
		return first.FramesDecoded > 0 && first.AudioSamples > 0 && first.VideoWidth > 0, fmt.Sprintf("%+v", first)
	})
	p.Poll("more video and audio from "+participant, func() (bool, string) {
		s := p.MediaOf(participant)
		return s.FramesDecoded > first.FramesDecoded && s.AudioPackets > first.AudioPackets &&
			s.AudioSamples > first.AudioSamples, fmt.Sprintf("first %+v, now %+v", first, s)
	})
}

// Pair names the candidate pair a peer connection uses: the remote
// address and protocol.
type Pair struct {
	Remote   string `json:"remote"`
	Protocol string `json:"protocol"`
}

// SelectedPairs returns the selected pair of the session's publisher and
// subscriber peer connections.
func (p *Page) SelectedPairs() map[string]Pair {
	p.T.Helper()
	return Eval[map[string]Pair](p, `(async () => {
		const out = {};
		for (const role of ["publisher", "subscriber"]) {
			const pc = window.demo.session && window.demo.session[role];
			if (!pc) continue;
			const stats = await pc.getStats();
			let pairId = "";
			stats.forEach((s) => { if (s.type === "transport" && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId; });
			const pair = stats.get(pairId);
			const remote = pair && stats.get(pair.remoteCandidateId);
			out[role] = { remote: remote ? (remote.address || remote.ip || "") : "", protocol: remote ? remote.protocol : "" };
		}
		return out;
	})()`)
}

// Poll retries cond until it holds; the test fails with cond's last
// description if it never does.
func (p *Page) Poll(what string, cond func() (bool, string)) {
	p.T.Helper()
	deadline := time.Now().Add(p.wait)
	for {
		ok, desc := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			p.T.Fatalf("%s: never got %s (%s)", p.Name, what, desc)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// Tile is a JavaScript expression for participant id's tile (or null).
func Tile(id string) string {
	return fmt.Sprintf(`document.querySelector('#tiles [data-participant-id=%q]')`, id)
}

// Screenshot saves the page into the directory SFU_BROWSERTEST_SCREENSHOTS
// names, if any: a way to look at the demo, not part of any assertion.
func (p *Page) Screenshot(file string) {
	dir := os.Getenv("SFU_BROWSERTEST_SCREENSHOTS")
	if dir == "" {
		return
	}
	png, err := chromedp.Run(p.Ctx, chromedp.FullScreenshot(100))
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, file), png, 0o644)
	}
	if err != nil {
		p.T.Logf("%s: screenshot: %v", p.Name, err)
	}
}
