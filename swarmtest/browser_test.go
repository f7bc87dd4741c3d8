package swarmtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// Headless Chromium runs in a network namespace of the test's own: WebRTC
// gathers candidates on every interface it sees, and it must see none of
// the host's. The namespace holds lo and one end of a veth pair; the host
// end carries browserHostIP, where the SFU's and Traefik's host-mode ports
// answer (they listen on every host address). The namespace has no default
// route: the browser can reach browserHostIP and nothing else.
const (
	browserNS     = "swtchrome"
	browserVethH  = "swc0" // host side
	browserVethNS = "swc1" // namespace side
	browserHostIP = "10.211.0.1"
	browserNSIP   = "10.211.0.2"
)

// chromiumBinary finds the browser.
func chromiumBinary() (string, error) {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no chromium binary installed (apt-get install chromium)")
}

// setupBrowserNetns creates the browser's namespace and veth pair, removed
// at cleanup (also on failure). Leftovers of a killed run, which carry the
// same names, are removed first.
func setupBrowserNetns(t testing.TB) error {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("iproute2's ip command is not installed: %v", err)
	}
	remove := func() {
		_ = exec.Command("ip", "netns", "del", browserNS).Run()
		_ = exec.Command("ip", "link", "del", browserVethH).Run() // gone with the namespace, unless a process keeps it
	}
	remove()
	steps := [][]string{
		{"netns", "add", browserNS},
		{"link", "add", browserVethH, "type", "veth", "peer", "name", browserVethNS, "netns", browserNS},
		{"addr", "add", browserHostIP + "/24", "dev", browserVethH},
		{"link", "set", browserVethH, "up"},
		{"-n", browserNS, "link", "set", "lo", "up"},
		{"-n", browserNS, "addr", "add", browserNSIP + "/24", "dev", browserVethNS},
		{"-n", browserNS, "link", "set", browserVethNS, "up"},
	}
	for i, args := range steps {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			if i > 0 {
				remove()
			}
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
		if i == 0 {
			t.Cleanup(remove)
		}
	}
	return nil
}

// browserPage is one Chromium (its own process and profile, in the
// browser namespace) with one tab.
type browserPage struct {
	t    *testing.T
	name string
	ctx  context.Context

	mu         sync.Mutex
	done       bool
	exceptions []string
}

func newBrowserPage(t *testing.T, execPath, name string) *browserPage {
	t.Helper()
	dir, err := os.MkdirTemp("", "swarmtest-chromium-")
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
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
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
		// Every host name is this machine, as seen from the namespace: a
		// user whose DNS points the stack's names at the nodes.
		chromedp.Flag("host-resolver-rules", "MAP * "+browserHostIP),
		// The SFU's certificate comes from the test CA that stands in for
		// the Cloudflare Origin CA.
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.WindowSize(1100, 800),
		// Start the browser inside the namespace (the DevTools pipe's
		// descriptors pass through `ip netns exec`).
		chromedp.ModifyCmdFunc(func(cmd *exec.Cmd) {
			ip, err := exec.LookPath("ip")
			if err != nil {
				ip = "ip"
			}
			cmd.Args = append([]string{"ip", "netns", "exec", browserNS, execPath}, cmd.Args[1:]...)
			cmd.Path = ip
			if cmd.SysProcAttr == nil {
				cmd.SysProcAttr = &syscall.SysProcAttr{}
			}
			cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
		}),
	)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	p := &browserPage{t: t, name: name, ctx: ctx}
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
			d := ev.ExceptionDetails
			text := d.Text
			if d.Exception != nil && d.Exception.Description != "" {
				text = d.Exception.Description
			}
			p.exceptions = append(p.exceptions, text)
		}
	}); err != nil {
		t.Fatalf("%s: starting chromium in namespace %s: %v", name, browserNS, err)
	}
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

func (p *browserPage) do(actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	if err := chromedp.Do(p.ctx, actions...); err != nil {
		p.t.Fatalf("%s: %v", p.name, err)
	}
}

func pageEval[T any](p *browserPage, expr string) T {
	p.t.Helper()
	v, err := chromedp.Run(p.ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("%s: evaluating %s: %v", p.name, expr, err)
	}
	return v
}

// browserWait bounds every wait: two browsers, the SFU and the whole stack
// share this machine's cores.
const browserWait = 90 * time.Second

// waitFor polls a JavaScript condition until it holds.
func (p *browserPage) waitFor(what, expr string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, browserWait)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(200*time.Millisecond), chromedp.WithPollingTimeout(browserWait))); err != nil {
		p.t.Fatalf("%s: waiting for %s: %v (status line: %q)", p.name, what, err, p.status())
	}
}

// status is the demo's status line, for failure messages.
func (p *browserPage) status() string {
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("#status")?.textContent || ""`))
	if err != nil {
		return err.Error()
	}
	return s
}

// joinURL opens the demo page at u, fills in the join form like a user,
// and returns the participant id.
func (p *browserPage) joinURL(u string) string {
	p.t.Helper()
	p.do(
		chromedp.Navigate(u),
		chromedp.SendKeys(chromedp.CSS(`#join input[name=name]`), p.name),
		chromedp.Click(chromedp.CSS(`#join button`)),
	)
	p.waitFor("the call controls (joined)", `!document.querySelector("#controls").hidden`)
	id := pageEval[string](p, `window.demo.session.id`)
	if id == "" {
		p.t.Fatalf("%s: joined without a participant id", p.name)
	}
	return id
}

// browserMedia are the inbound-rtp counters of the tracks on one
// participant's tile, read through the receivers of those very tracks.
type browserMedia struct {
	FramesDecoded float64 `json:"framesDecoded"`
	VideoWidth    float64 `json:"videoWidth"`
	AudioPackets  float64 `json:"audioPackets"`
	AudioSamples  float64 `json:"audioSamples"`
}

func (p *browserPage) mediaOf(participant string) browserMedia {
	p.t.Helper()
	return pageEval[browserMedia](p, fmt.Sprintf(`(async () => {
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
func (p *browserPage) receives(participant string) {
	p.t.Helper()
	var first browserMedia
	p.poll("video and audio from "+participant, func() (bool, string) {
		first = p.mediaOf(participant)
		return first.FramesDecoded > 0 && first.AudioSamples > 0 && first.VideoWidth > 0, fmt.Sprintf("%+v", first)
	})
	p.poll("more video and audio from "+participant, func() (bool, string) {
		s := p.mediaOf(participant)
		return s.FramesDecoded > first.FramesDecoded && s.AudioPackets > first.AudioPackets &&
			s.AudioSamples > first.AudioSamples, fmt.Sprintf("first %+v, now %+v", first, s)
	})
}

// selectedPair names the candidate pair each of the page's peer
// connections (publisher, subscriber) uses: remote address and protocol.
type selectedPair struct {
	Remote   string `json:"remote"`
	Protocol string `json:"protocol"`
}

func (p *browserPage) selectedPairs() map[string]selectedPair {
	p.t.Helper()
	return pageEval[map[string]selectedPair](p, `(async () => {
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

func (p *browserPage) poll(what string, cond func() (bool, string)) {
	p.t.Helper()
	deadline := time.Now().Add(browserWait)
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

func demoTile(id string) string {
	return fmt.Sprintf(`document.querySelector('#tiles [data-participant-id=%q]')`, id)
}
