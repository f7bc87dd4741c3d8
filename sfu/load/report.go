package load

import (
	"fmt"
	"io"
	"runtime"
	"text/tabwriter"
	"time"
)

// ConfigSummary is the part of the Config a report repeats.
type ConfigSummary struct {
	URL              string  `json:"url"`
	Rooms            int     `json:"rooms"`
	Publishers       int     `json:"publishersPerRoom"`
	Subscribers      int     `json:"subscribersPerRoom"`
	Audio            bool    `json:"audio"`
	VideoBitrate     int     `json:"videoBitrate"`
	FPS              int     `json:"fps"`
	KeyframeInterval float64 `json:"keyframeIntervalSeconds"`
	PacketSize       int     `json:"packetSize"`
	Duration         float64 `json:"durationSeconds"`
}

func summaryOf(c Config) ConfigSummary {
	return ConfigSummary{URL: c.URL, Rooms: c.Rooms, Publishers: c.Publishers, Subscribers: c.Subscribers,
		Audio: c.Audio, VideoBitrate: c.VideoBitrate, FPS: c.FPS, KeyframeInterval: c.KeyframeInterval.Seconds(),
		PacketSize: c.PacketSize, Duration: c.Duration.Seconds()}
}

// Report is one run's result. Rates and the CPU figures cover the
// measurement window; SFU figures come from the SFU's /metrics.
type Report struct {
	Config  ConfigSummary `json:"config"`
	Started time.Time     `json:"started"`
	Machine string        `json:"machine"` // of the load tool: GOOS/GOARCH and CPUs
	// LoadAvg* is /proc/loadavg at the start and end: the machine may be
	// shared, and a busy machine inflates CPU and latency figures.
	LoadAvgStart string `json:"loadAvgStart"`
	LoadAvgEnd   string `json:"loadAvgEnd"`

	Participants   int     `json:"participants"`
	TracksExpected int     `json:"subscribedTracksExpected"`
	TracksFlowing  int     `json:"subscribedTracksFlowing"`
	WindowSeconds  float64 `json:"windowSeconds"`

	SentPacketsPerSec      float64 `json:"sentPacketsPerSec"` // by all publishers
	SentBitsPerSec         float64 `json:"sentBitsPerSec"`
	SFUReceivedPerSec      float64 `json:"sfuReceivedPacketsPerSec"`
	ForwardedPacketsPerSec float64 `json:"forwardedPacketsPerSec"`
	ForwardedBytesPerSec   float64 `json:"forwardedBytesPerSec"`
	// Of the datagrams the SFU's send socket sent in the window, the share
	// that left as segments of a larger send (a burst's copies to one
	// subscriber, UDP GSO).
	SegmentedShare        float64 `json:"sfuSegmentedDatagramShare"`
	ReceivedPacketsPerSec float64 `json:"receivedPacketsPerSec"` // at all subscribers

	// Loss at subscribers over the window: sequence numbers expected but
	// never received (after NACK retransmissions).
	ExpectedPackets int64   `json:"expectedPackets"`
	LostPackets     int64   `json:"lostPackets"`
	Loss            float64 `json:"loss"`

	NACKs                 float64 `json:"sfuNacksReceived"`       // from subscribers, in the window
	PLIs                  float64 `json:"sfuPlisReceived"`        // from subscribers, whole run
	KeyframeRequests      float64 `json:"sfuKeyframeRequests"`    // PLIs the SFU sent, whole run
	PublisherPLIs         uint64  `json:"publisherPlisReceived"`  // at the load tool's publishers, whole run
	PublisherNACKs        uint64  `json:"publisherNacksReceived"` // likewise
	SendErrors            uint64  `json:"publisherSendErrors"`    // WriteRTP failures
	SFUCPUCores           float64 `json:"sfuCpuCores"`            // SFU CPU seconds per second
	CPUPerForwarded       float64 `json:"-"`                      // seconds
	CPUPerForwardedMicros float64 `json:"sfuCpuPerForwardedPacketMicros"`

	UDPSendPacketBytes int     `json:"udpSendPacketBytes"`
	UDPSendMicros      float64 `json:"udpSendCpuMicros"`
	ForwardingRatio    float64 `json:"forwardingRatio"`
	// FloorMicros is the process CPU per datagram of a process doing only
	// the same fan-out (MeasureFanOutFloor); FloorRatio is it over the
	// plain send: the lowest forwarding ratio any SFU could show here.
	FloorMicros float64 `json:"fanOutFloorCpuMicros"`
	FloorRatio  float64 `json:"fanOutFloorRatio"`

	// Latency is publisher WriteRTP → subscriber Read through the SFU,
	// both pion stacks included.
	Latency Summary `json:"latency"`
	// VideoLatency is Latency for video packets only; LatencyWithoutSFU is
	// one publisher's video sent at the same time straight to a local
	// pion receiver (control.go). The Added figures are their difference:
	// what the SFU adds, at p50 and p99 (ms).
	VideoLatency      Summary `json:"videoLatency"`
	LatencyWithoutSFU Summary `json:"latencyWithoutSfu"`
	AddedLatencyP50   float64 `json:"addedLatencyP50Ms"`
	AddedLatencyP99   float64 `json:"addedLatencyP99Ms"`
	// Join → first video packet / first keyframe, per late subscriber and
	// video track.
	JoinToFirstVideo    Summary `json:"joinToFirstVideo"`
	JoinToFirstKeyframe Summary `json:"joinToFirstKeyframe"`
	// The same for probes: single subscribers joining after the window,
	// one at a time, while the load runs.
	ProbeJoinToFirstVideo    Summary `json:"probeJoinToFirstVideo"`
	ProbeJoinToFirstKeyframe Summary `json:"probeJoinToFirstKeyframe"`
	// UDPReceiveBufferDrops counts datagrams the kernel dropped in the
	// window because a socket's receive buffer was full (/proc/net/snmp
	// of the load tool's network namespace: the SFU's too when both run
	// in one namespace, as run-in-netns.sh does).
	UDPReceiveBufferDrops int64 `json:"udpReceiveBufferDrops"`

	SFURSSBytes          float64 `json:"sfuRssBytes"`
	SFURSSBaselineBytes  float64 `json:"sfuRssBaselineBytes"` // before the run
	SFUParticipants      float64 `json:"sfuParticipants"`
	SFURSSPerParticipant float64 `json:"sfuRssPerParticipantBytes"`

	Errors []string `json:"errors,omitempty"`
}

func (rep *Report) fill(r *runner, base, a, b sample, window float64, sent, sentBytes uint64) {
	rep.Machine = fmt.Sprintf("%s/%s"+machineCPUs, runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
	rep.WindowSeconds = window
	d := func(name string) float64 { return b.v[name] - a.v[name] }
	if window > 0 {
		rep.SentPacketsPerSec = float64(sent) / window
		rep.SentBitsPerSec = float64(sentBytes) * 8 / window
		rep.SFUReceivedPerSec = d(mReceived) / window
		rep.ForwardedPacketsPerSec = d(mForwarded) / window
		rep.ForwardedBytesPerSec = d(mFwdBytes) / window
		rep.SFUCPUCores = d(mCPU) / window
	}
	if dg := d(mDatagrams); dg > 0 {
		rep.SegmentedShare = d(mSegmented) / dg
	}
	if fwd := d(mForwarded); fwd > 0 {
		rep.CPUPerForwarded = d(mCPU) / fwd
		rep.CPUPerForwardedMicros = rep.CPUPerForwarded * 1e6
	}
	rep.NACKs = d(mNACKs)
	rep.PLIs = b.v[mPLIs] - base.v[mPLIs]
	rep.KeyframeRequests = b.v[mKeyframes] - base.v[mKeyframes]
	rep.PublisherPLIs, rep.PublisherNACKs, rep.SendErrors = r.pubPLIs.Load(), r.pubNACKs.Load(), r.sendErrors.Load()
	rep.SFURSSBytes, rep.SFURSSBaselineBytes = b.v[mRSS], base.v[mRSS]
	rep.SFUParticipants = b.v[mParticipnt] - base.v[mParticipnt]
	if rep.SFUParticipants > 0 {
		rep.SFURSSPerParticipant = (rep.SFURSSBytes - rep.SFURSSBaselineBytes) / rep.SFUParticipants
	}

	var lat, vlat histogram
	var received int64
	r.mu.Lock()
	readers := append([]*reader(nil), r.readers...)
	rep.JoinToFirstVideo, rep.JoinToFirstKeyframe = summarize(r.firstVideo), summarize(r.firstKey)
	r.mu.Unlock()
	for _, rd := range readers {
		rd.mu.Lock()
		lat.merge(&rd.lat)
		if rd.video {
			vlat.merge(&rd.lat)
		}
		s, e := rd.start, rd.end
		first := rd.seq.first
		rd.mu.Unlock()
		if !e.started {
			continue
		}
		var exp, got int64
		if s.started {
			exp, got = e.highest-s.highest, e.received-s.received
		} else {
			exp, got = e.highest-first+1, e.received
		}
		rep.ExpectedPackets += exp
		received += got
		if exp > got {
			rep.LostPackets += exp - got
		}
	}
	if window > 0 {
		rep.ReceivedPacketsPerSec = float64(received) / window
	}
	if rep.ExpectedPackets > 0 {
		rep.Loss = float64(rep.LostPackets) / float64(rep.ExpectedPackets)
	}
	rep.Latency, rep.VideoLatency = lat.summary(), vlat.summary()
}

// WriteTable prints the report for people.
func (rep *Report) WriteTable(w io.Writer) error {
	c := rep.Config
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, a ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, a...)...) }
	video := "off"
	if c.VideoBitrate > 0 {
		video = fmt.Sprintf("%.2f Mbit/s VP8, %d fps, keyframe every %gs, %d-byte packets", float64(c.VideoBitrate)/1e6, c.FPS, c.KeyframeInterval, c.PacketSize)
	}
	row("load", "%d room(s) × (%d publishers + %d subscribers); audio %v; video %s", c.Rooms, c.Publishers, c.Subscribers, c.Audio, video)
	row("machine", "%s; load average %s → %s", rep.Machine, rep.LoadAvgStart, rep.LoadAvgEnd)
	row("participants", "%d (SFU counts %.0f); subscribed tracks flowing %d/%d", rep.Participants, rep.SFUParticipants, rep.TracksFlowing, rep.TracksExpected)
	row("window", "%.1f s", rep.WindowSeconds)
	row("sent by publishers", "%.0f packets/s, %.2f Mbit/s", rep.SentPacketsPerSec, rep.SentBitsPerSec/1e6)
	row("forwarded by SFU", "%.0f packets/s, %.2f Mbit/s; %.0f %% of its datagrams in segmented sends", rep.ForwardedPacketsPerSec, rep.ForwardedBytesPerSec*8/1e6, rep.SegmentedShare*100)
	row("received by subscribers", "%.0f packets/s", rep.ReceivedPacketsPerSec)
	row("loss at subscribers", "%.3f%% (%d of %d)", rep.Loss*100, rep.LostPackets, rep.ExpectedPackets)
	row("NACKs / PLIs at SFU", "%.0f NACKs (window), %.0f PLIs from subscribers, %.0f keyframe requests to publishers (run)", rep.NACKs, rep.PLIs, rep.KeyframeRequests)
	row("SFU CPU", "%.3f cores; %.2f µs per forwarded packet", rep.SFUCPUCores, rep.CPUPerForwardedMicros)
	row("plain UDP send", "%.2f µs CPU per %d-byte send", rep.UDPSendMicros, rep.UDPSendPacketBytes)
	row("forwarding ratio", "%.2f", rep.ForwardingRatio)
	if rep.FloorMicros > 0 {
		row("fan-out floor", "%.2f µs CPU per datagram for a process doing only the same sends (ratio %.2f); the SFU adds %.2f µs", rep.FloorMicros, rep.FloorRatio, rep.CPUPerForwardedMicros-rep.FloorMicros)
	} else {
		row("fan-out floor", "not measured (--floor-duration 0, or nothing was forwarded)")
	}
	row("latency (one-way)", "p50 %.3f ms, p99 %.3f ms, max %.3f ms (%d packets)", rep.Latency.P50, rep.Latency.P99, rep.Latency.Max, rep.Latency.N)
	row("video latency", "through the SFU p50 %.3f ms, p99 %.3f ms; without it (one publisher's video straight to a local pion receiver) p50 %.3f ms, p99 %.3f ms", rep.VideoLatency.P50, rep.VideoLatency.P99, rep.LatencyWithoutSFU.P50, rep.LatencyWithoutSFU.P99)
	row("added by the SFU", "p50 %.3f ms, p99 %.3f ms", rep.AddedLatencyP50, rep.AddedLatencyP99)
	row("join → first video", "p50 %.0f ms, p95 %.0f ms, max %.0f ms (%d)", rep.JoinToFirstVideo.P50, rep.JoinToFirstVideo.P95, rep.JoinToFirstVideo.Max, rep.JoinToFirstVideo.N)
	row("join → first keyframe", "p50 %.0f ms, p95 %.0f ms, max %.0f ms (%d)", rep.JoinToFirstKeyframe.P50, rep.JoinToFirstKeyframe.P95, rep.JoinToFirstKeyframe.Max, rep.JoinToFirstKeyframe.N)
	row("one new subscriber", "join → first video p50 %.0f ms, → first keyframe p50 %.0f ms, max %.0f ms (%d probes)", rep.ProbeJoinToFirstVideo.P50, rep.ProbeJoinToFirstKeyframe.P50, rep.ProbeJoinToFirstKeyframe.Max, rep.ProbeJoinToFirstKeyframe.N)
	row("UDP receive-buffer drops", "%d (kernel, this network namespace, window)", rep.UDPReceiveBufferDrops)
	row("SFU memory", "%.1f MiB RSS (%.1f MiB before), %.0f KiB per participant", rep.SFURSSBytes/(1<<20), rep.SFURSSBaselineBytes/(1<<20), rep.SFURSSPerParticipant/1024)
	for _, e := range rep.Errors {
		row("error", "%s", e)
	}
	return tw.Flush()
}
