// Package demopage drives the SFU's demo page (sfu/web) in headless
// Chromium or Firefox for tests, the way a user would: one browser process
// per participant, the join form, the tiles, and the media statistics of
// the tracks each tile shows. The in-process browser tests (sfu/browsertest)
// and the local Swarm proof (swarmtest) share it.
//
// Pages are driven by script only (no synthetic mouse or keys), so the
// same test runs in either browser: Chromium over the DevTools protocol,
// Firefox over WebDriver BiDi.
package demopage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Browser is an installed browser a Page can run.
type Browser struct {
	Name string // "chromium" or "firefox"
	Path string
}

// Chromium finds Chromium.
func Chromium() (Browser, error) {
	return find("chromium", "apt-get install chromium", "chromium", "chromium-browser")
}

// Firefox finds Firefox (Debian's ESR).
func Firefox() (Browser, error) {
	return find("firefox", "apt-get install firefox-esr", "firefox-esr", "firefox")
}

func find(name, install string, binaries ...string) (Browser, error) {
	for _, b := range binaries {
		if p, err := exec.LookPath(b); err == nil {
			return Browser{Name: name, Path: p}, nil
		}
	}
	return Browser{}, fmt.Errorf("no %s binary installed (%s)", name, install)
}

// Options adapt a page to where it runs.
type Options struct {
	// Netns starts the browser with `ip netns exec <Netns>` (Chromium
	// only: the DevTools pipe's descriptors pass through it); empty runs it
	// in the caller's namespace.
	Netns string
	// Flags are extra Chromium flags, e.g. host-resolver-rules.
	Flags map[string]any
	// Wait bounds every wait and poll; default 45 s.
	Wait time.Duration
}

// driver is what a page needs of a browser.
type driver interface {
	navigate(ctx context.Context, url string) error
	// evalJSON runs script, which evaluates to a JSON string, awaiting
	// a promise.
	evalJSON(ctx context.Context, script string) (string, error)
	screenshot(ctx context.Context) ([]byte, error)
}

// Page is one browser (its own process and profile) with one tab.
type Page struct {
	T       *testing.T
	Name    string
	Browser string
	wait    time.Duration
	drv     driver

	mu         sync.Mutex
	done       bool     // the test is over: log nothing more
	exceptions []string // uncaught errors in the page
}

// New starts a browser for the participant name. Uncaught errors in the
// page fail the test (a user would see a broken page); its console goes
// to the test log.
func New(t *testing.T, b Browser, name string, o Options) *Page {
	t.Helper()
	if o.Wait == 0 {
		o.Wait = 45 * time.Second
	}
	dir, err := os.MkdirTemp("", "demopage-"+b.Name+"-")
	if err != nil {
		t.Fatal(err)
	}
	// Registered first, so it runs after the browser is gone; a browser's
	// helpers may still write for a moment after it exits.
	t.Cleanup(func() {
		for i := 0; i < 20; i++ {
			if os.RemoveAll(dir) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	p := &Page{T: t, Name: name, Browser: b.Name, wait: o.Wait}
	switch b.Name {
	case "chromium":
		p.drv, err = startChromium(t, b.Path, dir, o, p)
	case "firefox":
		p.drv, err = startFirefox(t, b.Path, dir, o, p)
	default:
		err = fmt.Errorf("unknown browser %q", b.Name)
	}
	if err != nil {
		t.Fatalf("%s: starting %s: %v", name, b.Name, err)
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

func (p *Page) console(level, text string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.done {
		p.T.Logf("%s console.%s: %s", p.Name, level, text)
	}
}

func (p *Page) exception(text string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.done {
		p.exceptions = append(p.exceptions, text)
	}
}

// Navigate loads u.
func (p *Page) Navigate(u string) {
	p.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), p.wait)
	defer cancel()
	if err := p.drv.navigate(ctx, u); err != nil {
		p.T.Fatalf("%s: opening %s: %v", p.Name, u, err)
	}
}

// Click clicks the element selector names, as a user would (the element's
// click handlers run); a missing element fails the test.
func (p *Page) Click(selector string) {
	p.T.Helper()
	if !Eval[bool](p, fmt.Sprintf(`(() => { const el = document.querySelector(%q); if (!el) return false; el.click(); return true; })()`, selector)) {
		p.T.Fatalf("%s: nothing to click at %s (status line: %q)", p.Name, selector, p.status())
	}
}

// errNoValue is the result of an expression that gives undefined.
var errNoValue = errors.New("no value")

// eval evaluates expr (awaiting a promise) and decodes its JSON into v.
func (p *Page) eval(ctx context.Context, expr string, v any) error {
	s, err := p.drv.evalJSON(ctx, `(async () => { const v = await (`+expr+`); return v === undefined ? "" : JSON.stringify(v); })()`)
	if err != nil {
		return err
	}
	if s == "" {
		return errNoValue
	}
	return json.Unmarshal([]byte(s), v)
}

// Eval evaluates expr (awaiting a promise) in the page; its value comes
// back through JSON.
func Eval[T any](p *Page, expr string) T {
	p.T.Helper()
	var v T
	ctx, cancel := context.WithTimeout(context.Background(), p.wait)
	defer cancel()
	if err := p.eval(ctx, expr, &v); err != nil {
		p.T.Fatalf("%s: evaluating %s: %v", p.Name, expr, err)
	}
	return v
}

// WaitFor polls a JavaScript condition until it holds; the test fails,
// saying what it waited for and the demo's status line, if it never does.
func (p *Page) WaitFor(what, expr string) {
	p.T.Helper()
	deadline := time.Now().Add(p.wait)
	var last error
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var ok bool
		last = p.eval(ctx, `!!(`+expr+`)`, &ok)
		cancel()
		if last == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if last == nil {
		last = errors.New("never true")
	}
	p.T.Fatalf("%s: waiting for %s: %v (status line: %q)", p.Name, what, last, p.status())
}

// status is the demo's status line, for failure messages.
func (p *Page) status() string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var s string
	if err := p.eval(ctx, `document.querySelector("#status")?.textContent || ""`, &s); err != nil {
		return err.Error()
	}
	return s
}

// JoinURL opens the demo page at u, fills in the join form like a user and
// returns the participant id.
func (p *Page) JoinURL(u string) string {
	p.T.Helper()
	p.Navigate(u)
	p.WaitFor("the join form", `document.querySelector("#join input[name=name]")`)
	Eval[bool](p, fmt.Sprintf(`(() => { document.querySelector("#join input[name=name]").value = %q; return true; })()`, p.Name))
	p.Click(`#join button`)
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

// Pair names the candidate pair a peer connection uses: the remote and
// local addresses and the protocol.
type Pair struct {
	Remote   string `json:"remote"`
	Local    string `json:"local"`
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
			const local = pair && stats.get(pair.localCandidateId);
			out[role] = { remote: remote ? (remote.address || remote.ip || "") : "", local: local ? (local.address || local.ip || "") : "", protocol: remote ? remote.protocol : "" };
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
	ctx, cancel := context.WithTimeout(context.Background(), p.wait)
	defer cancel()
	png, err := p.drv.screenshot(ctx)
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, file), png, 0o644)
	}
	if err != nil {
		p.T.Logf("%s: screenshot: %v", p.Name, err)
	}
}
