package browsertest

import (
	"fmt"
	"testing"
	"time"

	"github.com/jbcalling/platform/internal/demopage"
	"github.com/jbcalling/platform/internal/netns"
)

// received is what a page decodes of the one remote video it receives
// (getStats of its receiver) and the last layer event about it.
type received struct {
	FrameWidth    float64 `json:"frameWidth"`
	FramesDecoded float64 `json:"framesDecoded"`
	Freezes       float64 `json:"freezeCount"`
	AudioPackets  float64 `json:"audioPackets"`
	Layer         int     `json:"layer"`
	Paused        bool    `json:"paused"`
}

// subscribeWithModule joins room through sfu.js, publishing only a
// microphone, and keeps the remote tracks and layer events in window.
func subscribeWithModule(p *demopage.Page, base, room string) string {
	p.T.Helper()
	p.Navigate(base + "/client/")
	return demopage.Eval[string](p, fmt.Sprintf(`(async () => {
		const { join } = await import("/client/sfu.js");
		window.remote = {};
		window.layer = { layer: -1, paused: false };
		const s = await join("", { room: %q, name: %q, on: {
			trackadded: (e) => { window.remote[e.detail.kind] = e.detail; },
			layer: (e) => { window.layer = e.detail; },
		} });
		await s.publish(await navigator.mediaDevices.getUserMedia({ audio: true }));
		window.session = s;
		return s.id;
	})()`, room, p.Name))
}

func readReceived(p *demopage.Page) received {
	p.T.Helper()
	return demopage.Eval[received](p, `(async () => {
		const out = { frameWidth: 0, framesDecoded: 0, freezeCount: 0, audioPackets: 0, layer: window.layer.layer, paused: window.layer.paused };
		for (const kind of ["video", "audio"]) {
			const r = window.remote[kind];
			if (!r) continue;
			(await r.receiver.getStats()).forEach((s) => {
				if (s.type !== "inbound-rtp") return;
				if (kind === "video") Object.assign(out, { frameWidth: s.frameWidth || 0, framesDecoded: s.framesDecoded || 0, freezeCount: s.freezeCount || 0 });
				else out.audioPackets = s.packetsReceived || 0;
			});
		}
		return out;
	})()`)
}

// TestSimulcastInBrowsers: Chromium publishes a 720p camera as three
// simulcast layers (the client's default); of two Chromium subscribers,
// the one that asks for the lowest layer decodes a quarter of the width,
// the one that asks for nothing climbs to the full width; asking for the
// middle layer halves it, pausing stops the video and not the audio, and
// lifting the limits brings the full width back. Each change is what the
// browser decodes, and what the layer event says.
func TestSimulcastInBrowsers(t *testing.T) {
	b := chromium(t)
	netns.Require(t)
	_, base := startSFU(t, nil)
	const room = "simulcast"
	pub := newPage(t, b, "Pub")
	pub.Navigate(base + "/client/")
	pubID := demopage.Eval[string](pub, fmt.Sprintf(`(async () => {
		const { join } = await import("/client/sfu.js");
		const media = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 1280, height: 720 } });
		const s = await join("", { room: %q, name: "Pub" });
		await s.publish(media);
		window.session = s;
		return s.id;
	})()`, room))
	if n := demopage.Eval[int](pub, `window.session.publisher.getTransceivers().find((t) => t.sender.track && t.sender.track.kind === "video").sender.getParameters().encodings.length`); n != 3 {
		t.Fatalf("camera published with %d encodings, want 3", n)
	}
	low, high := newPage(t, b, "Low"), newPage(t, b, "High")
	subscribeWithModule(low, base, room)
	subscribeWithModule(high, base, room)
	for _, p := range []*demopage.Page{low, high} {
		p.WaitFor("the publisher's video", `window.remote.video && window.remote.audio`)
	}
	setSub := func(p *demopage.Page, want string) {
		p.T.Helper()
		demopage.Eval[bool](p, fmt.Sprintf(`(window.session.setSubscription(%q, window.remote.video.trackId, %s), true)`, pubID, want))
	}
	setSub(low, `{ maxLayer: 0 }`)

	// decodes waits until p decodes video width wide, its frames still
	// growing, and returns what it decodes then.
	decodes := func(p *demopage.Page, what string, ok func(received) bool) received {
		p.T.Helper()
		var first, last received
		p.Poll(what, func() (bool, string) {
			last = readReceived(p)
			if !ok(last) {
				first = received{}
				return false, fmt.Sprintf("%+v", last)
			}
			if first.FramesDecoded == 0 {
				first = last
				return false, fmt.Sprintf("%+v", last)
			}
			return last.FramesDecoded > first.FramesDecoded, fmt.Sprintf("first %+v, now %+v", first, last)
		})
		return last
	}
	lowGot := decodes(low, "the lowest layer", func(r received) bool { return r.Layer == 0 && r.FrameWidth > 0 && r.FrameWidth <= 320 })
	highGot := decodes(high, "the top layer", func(r received) bool { return r.Layer == 2 && r.FrameWidth > 2*lowGot.FrameWidth })
	t.Logf("low decodes %v px wide, high %v px", lowGot.FrameWidth, highGot.FrameWidth)

	setSub(high, `{ maxLayer: 1 }`)
	mid := decodes(high, "the middle layer", func(r received) bool {
		return r.Layer == 1 && r.FrameWidth < highGot.FrameWidth && r.FrameWidth > lowGot.FrameWidth
	})
	t.Logf("asked for the middle layer: %v px", mid.FrameWidth)

	setSub(high, `{ paused: true }`)
	high.Poll("the pause", func() (bool, string) { r := readReceived(high); return r.Paused, fmt.Sprintf("%+v", r) })
	time.Sleep(500 * time.Millisecond) // what was on its way
	before := readReceived(high)
	time.Sleep(2 * time.Second)
	after := readReceived(high)
	if after.FramesDecoded != before.FramesDecoded {
		t.Errorf("paused, yet %v frames decoded in 2 s", after.FramesDecoded-before.FramesDecoded)
	}
	if after.AudioPackets <= before.AudioPackets {
		t.Errorf("paused video stopped the audio: %v packets before, %v after", before.AudioPackets, after.AudioPackets)
	}

	setSub(high, `{}`)
	back := decodes(high, "the top layer again", func(r received) bool { return r.Layer == 2 && r.FrameWidth > mid.FrameWidth })
	t.Logf("limits lifted: %v px, %v freezes", back.FrameWidth, back.Freezes)
	// The low subscriber saw none of this.
	end := decodes(low, "the lowest layer still", func(r received) bool { return r.Layer == 0 && r.FrameWidth == lowGot.FrameWidth })
	if end.Freezes > lowGot.Freezes {
		t.Errorf("the low subscriber's video froze %v times meanwhile", end.Freezes-lowGot.Freezes)
	}
}
