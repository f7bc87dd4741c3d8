// Package load drives a running SFU with real WebRTC participants (the
// sfu/client used by the tests) and measures it: forwarded packet rate,
// loss at subscribers, NACKs and PLIs, the SFU's CPU time per forwarded
// packet against a plain UDP send (the forwarding ratio), one-way latency,
// join to first video and first keyframe, and memory per participant.
// cmd/sfuload is its command line; docs/benchmarks.md its results.
package load

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jbcalling/platform/sfu/auth"
	"github.com/jbcalling/platform/sfu/client"
	"github.com/pion/ice/v4"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// Config describes one run.
type Config struct {
	URL        string // the SFU's signalling URL, ws://host:port/ws
	MetricsURL string // its /metrics; empty derives it from URL

	Rooms       int // rooms, each with:
	Publishers  int // participants who publish audio+video and receive the other publishers
	Subscribers int // participants who only receive, joining after the publishers

	Warmup   time.Duration // after everyone receives, before measuring
	Duration time.Duration // the measurement window

	Audio            bool          // publish Opus-sized audio at 50 packets/s
	AudioPayload     int           // bytes per audio packet payload
	VideoBitrate     int           // bits/s of VP8-shaped video; 0 publishes no video
	FPS              int           // video frames per second
	KeyframeInterval time.Duration // periodic keyframes (and one on every PLI)
	PacketSize       int           // largest RTP packet, header included
	// Simulcast publishes video as three layers (a tenth, a third and
	// all of VideoBitrate, rids q, h, f); each subscriber receives one.
	Simulcast bool

	// ICEAddr restricts the participants' ICE candidates to one local
	// address (e.g. the namespace's veth address); the UDP baseline is
	// measured on it too. Empty means pion's default interfaces and
	// 127.0.0.1 for the baseline.
	ICEAddr string
	// JWTSecret signs join tokens; nil joins anonymously.
	JWTSecret []byte
	// JoinConcurrency bounds simultaneous joins.
	JoinConcurrency int
	// Probes is how many single subscribers join one after another after
	// the window, to time one new subscriber's first keyframe under load.
	Probes int
	// ConnectTimeout bounds each phase: publishers connected, every track
	// flowing.
	ConnectTimeout time.Duration
	// FloorDuration is how long the fan-out floor is measured after the
	// run (MeasureFanOutFloor); 0 skips it.
	FloorDuration time.Duration
	RoomPrefix    string
	Logger        *slog.Logger
}

// Defaults are a 720p-class call: 1.5 Mbit/s video at 30 fps in
// 1200-byte packets, a keyframe every 3 s, 100-byte audio.
func Defaults() Config {
	return Config{
		Rooms: 1, Publishers: 2, Subscribers: 0,
		Warmup: 2 * time.Second, Duration: 10 * time.Second,
		Audio: true, AudioPayload: 100,
		VideoBitrate: 1_500_000, FPS: 30, KeyframeInterval: 3 * time.Second, PacketSize: 1200,
		JoinConcurrency: 4, Probes: 3, ConnectTimeout: 60 * time.Second, FloorDuration: 5 * time.Second, RoomPrefix: "load",
	}
}

func (c *Config) validate() error {
	switch {
	case c.URL == "":
		return errors.New("load: no SFU URL")
	case c.Rooms < 1 || c.Publishers < 1 || c.Subscribers < 0:
		return errors.New("load: need at least one room and one publisher per room")
	case !c.Audio && c.VideoBitrate <= 0:
		return errors.New("load: publish audio, video or both")
	case c.Duration <= 0:
		return errors.New("load: duration must be positive")
	case c.VideoBitrate > 0 && (c.FPS < 1 || c.PacketSize < 200 || c.PacketSize > 1400):
		return errors.New("load: fps ≥ 1 and 200 ≤ packet size ≤ 1400")
	case c.Audio && (c.AudioPayload < trailerSize || c.AudioPayload > 1000):
		return fmt.Errorf("load: audio payload must be %d..1000 bytes", trailerSize)
	case c.ICEAddr != "" && net.ParseIP(c.ICEAddr) == nil:
		return fmt.Errorf("load: ICE address %q is not an IP", c.ICEAddr)
	}
	if c.JoinConcurrency < 1 {
		c.JoinConcurrency = 1
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 60 * time.Second
	}
	if c.KeyframeInterval <= 0 {
		c.KeyframeInterval = 3 * time.Second
	}
	return nil
}

func (c *Config) tracksPerPublisher() int {
	n := 0
	if c.Audio {
		n++
	}
	if c.VideoBitrate > 0 {
		n++
	}
	return n
}

// runner is one run's shared state.
type runner struct {
	cfg Config
	log *slog.Logger
	se  *webrtc.SettingEngine

	measuring atomic.Bool
	flowing   atomic.Int64 // tracks that delivered their first packet

	sentPackets, sentBytes atomic.Uint64
	sendErrors             atomic.Uint64
	pubPLIs, pubNACKs      atomic.Uint64 // RTCP the SFU sent to publishers

	partsMu   sync.Mutex
	parts     []*participant
	closeOnce sync.Once

	mu         sync.Mutex
	readers    []*reader
	firstVideo []time.Duration // join → first video packet, per (subscriber, video track)
	firstKey   []time.Duration // join → first keyframe packet
	probeVideo []time.Duration // the same for probes: one new subscriber at a time, under load
	probeKey   []time.Duration
}

type participant struct {
	c      *client.Client
	joinAt time.Time
	late   bool // joined after the publishers: its join times are measured
	probe  bool // joined alone after the window
	keys   atomic.Int32
	pub    *publisher
}

// Run performs one load run and returns its report. ctx cancels it; the
// report then covers the part of the window that ran.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	mURL := cfg.MetricsURL
	if mURL == "" {
		var err error
		if mURL, err = metricsURL(cfg.URL); err != nil {
			return nil, err
		}
	}
	r := &runner{cfg: cfg, log: cfg.Logger}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	r.se = &webrtc.SettingEngine{}
	r.se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	r.se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	if cfg.ICEAddr != "" {
		ip := net.ParseIP(cfg.ICEAddr)
		r.se.SetIPFilter(func(a net.IP) bool { return a.Equal(ip) })
	}
	rep := &Report{Config: summaryOf(cfg), LoadAvgStart: loadAvg(), Started: time.Now().UTC()}

	base, err := scrape(ctx, mURL)
	if err != nil {
		return nil, err
	}
	defer r.closeAll()
	roomName := func(i int) string { return fmt.Sprintf("%s-%d", cfg.RoomPrefix, i) }

	// Publishers first; subscribers join once media flows, so their join
	// times are a late joiner's (keyframe requested on attach).
	if err := r.joinAll(ctx, cfg.Rooms*cfg.Publishers, func(i int) (string, string) {
		return roomName(i / cfg.Publishers), fmt.Sprintf("pub-%d", i%cfg.Publishers)
	}, false); err != nil {
		return nil, err
	}
	if err := r.waitConnected(ctx, r.parts); err != nil {
		return nil, err
	}
	ctl := r.control(ctx, rep)
	if ctl != nil {
		defer ctl.close()
	}
	if cfg.Subscribers > 0 {
		if err := r.joinAll(ctx, cfg.Rooms*cfg.Subscribers, func(i int) (string, string) {
			return roomName(i / cfg.Subscribers), fmt.Sprintf("sub-%d", i%cfg.Subscribers)
		}, true); err != nil {
			return nil, err
		}
	}
	k := cfg.tracksPerPublisher()
	want := int64(cfg.Rooms * k * (cfg.Publishers*(cfg.Publishers-1) + cfg.Subscribers*cfg.Publishers))
	rep.TracksExpected = int(want)
	if err := r.waitFlowing(ctx, want); err != nil {
		rep.Errors = append(rep.Errors, err.Error())
	}
	rep.Participants = len(r.parts)
	rep.TracksFlowing = int(r.flowing.Load())

	sleep(ctx, cfg.Warmup)
	if err := r.window(ctx, mURL, base, rep); err != nil {
		return nil, err
	}
	if ctl != nil {
		rep.compare(ctl)
	}
	r.probe(ctx, roomName(0), cfg.Probes, rep)
	r.closeAll()
	r.baselines(rep)
	return rep, nil
}

// closeAll stops sending and releases every client, once.
func (r *runner) closeAll() {
	r.closeOnce.Do(func() {
		var wg sync.WaitGroup
		sem := make(chan struct{}, 16)
		for _, p := range r.parts {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				if p.pub != nil {
					p.pub.stop()
				}
				p.c.Close()
			}()
		}
		wg.Wait()
	})
}

// joinAll joins n participants, cfg.JoinConcurrency at a time; name
// gives the i-th one's room and name.
func (r *runner) joinAll(ctx context.Context, n int, name func(i int) (room, who string), late bool) error {
	errs := make(chan error, n)
	sem := make(chan struct{}, r.cfg.JoinConcurrency)
	var wg sync.WaitGroup
	for i := range n {
		room, who := name(i)
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			p, err := r.join(ctx, room, who, late, false)
			if err != nil {
				errs <- err
				return
			}
			r.partsMu.Lock()
			r.parts = append(r.parts, p)
			r.partsMu.Unlock()
		}()
	}
	wg.Wait()
	close(errs)
	return errors.Join(collect(errs)...)
}

// control starts the same video without the SFU, for the latency it
// adds; nil when there is none (the control pair takes one stream, so not
// with simulcast).
func (r *runner) control(ctx context.Context, rep *Report) *control {
	if r.cfg.Simulcast {
		return nil
	}
	for _, p := range r.parts {
		if p.pub != nil && p.pub.video != nil {
			ctl, err := r.startControl(ctx, p.pub.video)
			if err != nil {
				rep.Errors = append(rep.Errors, err.Error())
				return nil
			}
			return ctl
		}
	}
	return nil
}

// compare puts the latency without the SFU beside the latency with it.
func (rep *Report) compare(ctl *control) {
	rep.LatencyWithoutSFU = ctl.latency()
	if rep.LatencyWithoutSFU.N > 0 && rep.VideoLatency.N > 0 {
		rep.AddedLatencyP50 = rep.VideoLatency.P50 - rep.LatencyWithoutSFU.P50
		rep.AddedLatencyP99 = rep.VideoLatency.P99 - rep.LatencyWithoutSFU.P99
	}
}

// window measures cfg.Duration of the run: the SFU's metrics before and
// after, the clients' packets and the kernel's drops.
func (r *runner) window(ctx context.Context, mURL string, base sample, rep *Report) error {
	a, err := scrape(ctx, mURL)
	if err != nil {
		return err
	}
	dropsA := udpDrops()
	r.snapshot(false)
	sentA, sentBytesA := r.sentPackets.Load(), r.sentBytes.Load()
	r.measuring.Store(true)
	sleep(ctx, r.cfg.Duration)
	r.measuring.Store(false)
	b, err := scrape(context.WithoutCancel(ctx), mURL)
	if err != nil {
		return err
	}
	r.snapshot(true)
	rep.UDPReceiveBufferDrops = udpDrops() - dropsA
	rep.LoadAvgEnd = loadAvg()
	window := b.at.Sub(a.at).Seconds()
	rep.fill(r, base, a, b, window, r.sentPackets.Load()-sentA, r.sentBytes.Load()-sentBytesA)
	return nil
}

// baselines measures, in the same run and at the mean size of the
// packets the SFU forwarded, the denominator of the ratio (one plain UDP
// send) and what the same fan-out costs a process that does nothing else.
func (r *runner) baselines(rep *Report) {
	cfg := r.cfg
	size := int(rep.ForwardedBytesPerSec / max(rep.ForwardedPacketsPerSec, 1))
	if size <= 0 {
		size = cfg.PacketSize
	}
	addr := cfg.ICEAddr
	if addr == "" {
		addr = "127.0.0.1"
	}
	if d, err := MeasureUDPSend(addr, size, 200_000); err != nil {
		rep.Errors = append(rep.Errors, err.Error())
	} else {
		rep.UDPSendPacketBytes = size
		rep.UDPSendMicros = float64(d.Nanoseconds()) / 1000
		if rep.UDPSendMicros > 0 && rep.CPUPerForwardedMicros > 0 {
			rep.ForwardingRatio = rep.CPUPerForwardedMicros / rep.UDPSendMicros
		}
	}
	if cfg.FloorDuration <= 0 || rep.SentPacketsPerSec <= 0 || rep.ForwardedPacketsPerSec <= 0 {
		return
	}
	spec := FloorSpec{
		Addr: addr, Size: size, Receivers: cfg.Rooms * (cfg.Publishers + cfg.Subscribers),
		Fanout: max(1, int(rep.ForwardedPacketsPerSec/rep.SentPacketsPerSec+0.5)), Rate: rep.SentPacketsPerSec,
		Duration: cfg.FloorDuration,
	}
	if d, err := MeasureFanOutFloor(spec); err != nil {
		rep.Errors = append(rep.Errors, err.Error())
	} else {
		rep.FloorMicros = float64(d.Nanoseconds()) / 1000
		if rep.UDPSendMicros > 0 {
			rep.FloorRatio = rep.FloorMicros / rep.UDPSendMicros
		}
	}
}

func collect(ch <-chan error) []error {
	var out []error
	for err := range ch {
		out = append(out, err)
	}
	return out
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func (r *runner) join(ctx context.Context, room, name string, late, probe bool) (*participant, error) {
	p := &participant{late: late, probe: probe}
	var token string
	if r.cfg.JWTSecret != nil {
		var err error
		if token, err = auth.Sign(r.cfg.JWTSecret, room, name, name, time.Hour); err != nil {
			return nil, err
		}
	}
	if !late {
		p.pub = newPublisher(r)
	}
	opts := client.Options{
		Room: room, Name: name, Token: token, SettingEngine: r.se, Logger: r.log,
		OnTrack: func(t *client.RemoteTrack) { r.read(p, t) },
		OnRTCP: func(id string, pkts []rtcp.Packet) {
			if p.pub != nil {
				p.pub.onRTCP(id, pkts)
			}
		},
	}
	jctx, cancel := context.WithTimeout(ctx, r.cfg.ConnectTimeout)
	defer cancel()
	p.joinAt = time.Now()
	c, err := client.Dial(jctx, r.cfg.URL, opts)
	if err != nil {
		return nil, fmt.Errorf("%s joining %s: %w", name, room, err)
	}
	p.c = c
	if p.pub != nil {
		if err := p.pub.publish(jctx, c); err != nil {
			c.Close()
			return nil, fmt.Errorf("%s publishing in %s: %w", name, room, err)
		}
	}
	return p, nil
}

// probe joins n subscribers to room one after another, each alone, under
// the running load, and records their join → first video and keyframe:
// the experience of one person joining a busy call, without the crowd of
// simultaneous joins the subscriber phase makes.
func (r *runner) probe(ctx context.Context, room string, n int, rep *Report) {
	video := r.cfg.VideoBitrate > 0
	for i := range n {
		if ctx.Err() != nil || !video {
			return
		}
		p, err := r.join(ctx, room, fmt.Sprintf("probe-%d", i), true, true)
		if err != nil {
			rep.Errors = append(rep.Errors, err.Error())
			return
		}
		deadline := time.Now().Add(10 * time.Second)
		for int(p.keys.Load()) < r.cfg.Publishers && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		p.c.Close()
	}
	r.mu.Lock()
	rep.ProbeJoinToFirstVideo, rep.ProbeJoinToFirstKeyframe = summarize(r.probeVideo), summarize(r.probeKey)
	r.mu.Unlock()
}

func (r *runner) waitConnected(ctx context.Context, parts []*participant) error {
	deadline := time.Now().Add(r.cfg.ConnectTimeout)
	for _, p := range parts {
		for p.c.Publisher().ConnectionState() != webrtc.PeerConnectionStateConnected {
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("load: publisher %s not connected after %s", p.c.ID(), r.cfg.ConnectTimeout)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

func (r *runner) waitFlowing(ctx context.Context, want int64) error {
	deadline := time.Now().Add(r.cfg.ConnectTimeout)
	for r.flowing.Load() < want {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("load: %d of %d subscribed tracks delivered media within %s", r.flowing.Load(), want, r.cfg.ConnectTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// reader is one received track's statistics.
type reader struct {
	video bool

	mu       sync.Mutex
	seq      seqTracker
	lat      histogram // while measuring
	bytes    int64
	start    seqSnap // at the window's start
	end      seqSnap // at its end
	gotFirst bool
	gotKey   bool
}

type seqSnap struct {
	started           bool
	received, highest int64
	bytes             int64
}

func (r *runner) snapshot(end bool) {
	r.mu.Lock()
	rs := append([]*reader(nil), r.readers...)
	r.mu.Unlock()
	for _, rd := range rs {
		rd.mu.Lock()
		s := seqSnap{started: rd.seq.started, received: rd.seq.received, highest: rd.seq.highest, bytes: rd.bytes}
		if end {
			rd.end = s
		} else {
			rd.start = s
		}
		rd.mu.Unlock()
	}
}

// read consumes one received track until it ends (OnTrack's goroutine).
func (r *runner) read(p *participant, t *client.RemoteTrack) {
	rd := &reader{video: t.Kind == webrtc.RTPCodecTypeVideo}
	r.mu.Lock()
	r.readers = append(r.readers, rd)
	r.mu.Unlock()
	buf := make([]byte, 1500)
	var pkt rtp.Packet
	for {
		n, _, err := t.Track.Read(buf)
		if err != nil {
			return
		}
		now := time.Now()
		if err := pkt.Unmarshal(buf[:n]); err != nil {
			continue
		}
		rd.mu.Lock()
		rd.seq.add(pkt.SequenceNumber)
		rd.bytes += int64(n)
		if r.measuring.Load() {
			if ts, ok := sentAt(pkt.Payload); ok {
				rd.lat.add(now.Sub(time.Unix(0, ts)))
			}
		}
		first := !rd.gotFirst
		rd.gotFirst = true
		key := rd.video && !rd.gotKey && isVP8Keyframe(pkt.Payload)
		if key {
			rd.gotKey = true
		}
		rd.mu.Unlock()
		if first {
			r.flowing.Add(1)
		}
		if key {
			p.keys.Add(1)
		}
		if p.late && rd.video && (first || key) {
			d := now.Sub(p.joinAt)
			fv, fk := &r.firstVideo, &r.firstKey
			if p.probe {
				fv, fk = &r.probeVideo, &r.probeKey
			}
			r.mu.Lock()
			if first {
				*fv = append(*fv, d)
			}
			if key {
				*fk = append(*fk, d)
			}
			r.mu.Unlock()
		}
	}
}
