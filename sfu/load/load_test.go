package load

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jbcalling/platform/internal/netns"
	"github.com/jbcalling/platform/sfu/server/servertest"
)

func TestMain(m *testing.M) {
	if FloorChild() { // MeasureFanOutFloor re-runs this binary as its sender
		return
	}
	netns.Main(m)
}

// A short run against an in-process SFU: media flows to every
// subscriber, the report's figures are consistent and it survives JSON.
func TestRunAgainstSFU(t *testing.T) {
	netns.Require(t)
	sfu := servertest.Start(t, netns.Addr, nil)
	defer sfu.Close()

	c := Defaults()
	c.URL = sfu.WSURL()
	c.ICEAddr = netns.Addr
	c.Publishers, c.Subscribers = 2, 1
	c.VideoBitrate = 300_000
	// The SFU may throttle the keyframe request a late joiner's attach
	// sends; the next periodic keyframe then has to arrive in the run.
	c.KeyframeInterval = time.Second
	c.Warmup, c.Duration, c.FloorDuration = 500*time.Millisecond, 2*time.Second, time.Second
	c.ConnectTimeout = 30 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := Run(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Errors) > 0 {
		t.Fatalf("report errors: %v", rep.Errors)
	}
	// 2 publishers × 2 tracks, each to the other publisher and the subscriber.
	if rep.TracksExpected != 8 || rep.TracksFlowing != 8 || rep.Participants != 3 || rep.SFUParticipants != 3 {
		t.Errorf("tracks flowing %d/%d, participants %d (SFU %v); want 8/8, 3 (3)", rep.TracksFlowing, rep.TracksExpected, rep.Participants, rep.SFUParticipants)
	}
	if rep.ForwardedPacketsPerSec <= 0 || rep.ReceivedPacketsPerSec <= 0 || rep.SentPacketsPerSec <= 0 {
		t.Errorf("sent %.0f, forwarded %.0f, received %.0f packets/s; want all > 0", rep.SentPacketsPerSec, rep.ForwardedPacketsPerSec, rep.ReceivedPacketsPerSec)
	}
	// Every sent packet goes to two receivers; the forwarded rate is
	// about twice the sent rate (the window edges blur it).
	if r := rep.ForwardedPacketsPerSec / rep.SentPacketsPerSec; r < 1.5 || r > 2.5 {
		t.Errorf("forwarded/sent = %.2f, want about 2", r)
	}
	if rep.Loss > 0.05 || rep.ExpectedPackets == 0 {
		t.Errorf("loss %.3f of %d packets at a tiny load", rep.Loss, rep.ExpectedPackets)
	}
	if rep.Latency.N == 0 || rep.Latency.P50 <= 0 || rep.Latency.P99 < rep.Latency.P50 {
		t.Errorf("latency %+v", rep.Latency)
	}
	// The subscriber measured both publishers' video.
	if rep.JoinToFirstVideo.N != 2 || rep.JoinToFirstKeyframe.N != 2 || rep.JoinToFirstKeyframe.P50 < rep.JoinToFirstVideo.P50 {
		t.Errorf("join → first video %+v, → first keyframe %+v", rep.JoinToFirstVideo, rep.JoinToFirstKeyframe)
	}
	if rep.ProbeJoinToFirstKeyframe.N != 3*2 || rep.ProbeJoinToFirstKeyframe.P50 < rep.ProbeJoinToFirstVideo.P50 {
		t.Errorf("probes: join → first video %+v, → first keyframe %+v; want 3 probes × 2 publishers", rep.ProbeJoinToFirstVideo, rep.ProbeJoinToFirstKeyframe)
	}
	if rep.SFUCPUCores <= 0 || rep.CPUPerForwardedMicros <= 0 || rep.UDPSendMicros <= 0 || rep.ForwardingRatio <= 0 {
		t.Errorf("cpu %.3f cores, %.2f µs/packet, udp %.2f µs, ratio %.2f", rep.SFUCPUCores, rep.CPUPerForwardedMicros, rep.UDPSendMicros, rep.ForwardingRatio)
	}
	// Video latency through the SFU and without it, measured at once: the
	// SFU's hop cannot make video arrive sooner than the direct path.
	if rep.VideoLatency.N == 0 || rep.LatencyWithoutSFU.N == 0 || rep.LatencyWithoutSFU.P50 <= 0 {
		t.Errorf("video latency %+v, without the SFU %+v", rep.VideoLatency, rep.LatencyWithoutSFU)
	}
	if rep.AddedLatencyP50 != rep.VideoLatency.P50-rep.LatencyWithoutSFU.P50 || rep.AddedLatencyP50 < -0.5 {
		t.Errorf("added latency p50 %.3f ms from %.3f and %.3f", rep.AddedLatencyP50, rep.VideoLatency.P50, rep.LatencyWithoutSFU.P50)
	}
	// The floor is a real send's cost: more than nothing, less than a
	// millisecond, and its ratio consistent with the plain send.
	if rep.FloorMicros <= 0.1 || rep.FloorMicros > 1000 || rep.FloorRatio <= 0 || abs(rep.FloorRatio-rep.FloorMicros/rep.UDPSendMicros) > 1e-9 {
		t.Errorf("fan-out floor %.2f µs per datagram, ratio %.2f", rep.FloorMicros, rep.FloorRatio)
	}
	if rep.SFURSSBytes <= 0 {
		t.Errorf("no SFU memory figure")
	}
	// Whether a frame's packets are read as one burst depends on timing;
	// the share is a share either way.
	if rep.SegmentedShare < 0 || rep.SegmentedShare > 1 {
		t.Errorf("segmented share %.3f", rep.SegmentedShare)
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"forwardedPacketsPerSec", "loss", "forwardingRatio", "fanOutFloorCpuMicros", "latency", "latencyWithoutSfu", "addedLatencyP99Ms", "joinToFirstKeyframe", "sfuRssPerParticipantBytes", "sfuSegmentedDatagramShare"} {
		if _, ok := back[k]; !ok {
			t.Errorf("JSON report has no %q", k)
		}
	}
	var table strings.Builder
	if err := rep.WriteTable(&table); err != nil || !strings.Contains(table.String(), "forwarding ratio") {
		t.Errorf("table: %v\n%s", err, table.String())
	}
	t.Logf("\n%s", table.String())
}

func abs(x float64) float64 { return max(x, -x) }
