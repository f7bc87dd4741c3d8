package server

import (
	"net/http"
	"sync/atomic"

	"github.com/jbcalling/platform/sfu/signal"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics live in a registry per Server, so tests can run several.
type metrics struct {
	reg          *prometheus.Registry
	connections  prometheus.Gauge
	joinLatency  prometheus.Histogram
	joinsRefused *prometheus.CounterVec
	rateLimited  prometheus.Counter
	// Connections refused by the listeners' limits, and signalling
	// sockets by theirs.
	connsRefused, socketsRefused prometheus.Counter
	dataMessages                 prometheus.Counter
	// Sessions whose WebSocket dropped, and those resumed by a new one.
	detached, resumed prometheus.Counter
	// Subscribers' bandwidth estimates, at each allocation of layers.
	estimates prometheus.Histogram
}

func newMetrics(s *Server) *metrics {
	reg := prometheus.NewRegistry()
	c := s.rooms.Counters()
	f := &c.Forward
	pc := &s.socks.port.Counters
	m := &metrics{
		reg: reg,
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sfu_signalling_connections", Help: "Open signalling WebSockets."}),
		joinLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "sfu_join_duration_seconds", Help: "Time from a join message to the joined reply.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		joinsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sfu_joins_refused_total", Help: "Joins refused, by error code."}, []string{"code"}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sfu_messages_rate_limited_total", Help: "Signalling messages refused by the rate limit."}),
		connsRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sfu_connections_refused_total", Help: "TCP connections closed at once for exceeding the per-address or total limit."}),
		socketsRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sfu_websockets_refused_total", Help: "Signalling WebSockets refused (429) for exceeding the per-address or total limit."}),
		dataMessages: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sfu_data_messages_total", Help: "Data (chat, app) messages relayed, counted once per sender's message."}),
		detached: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sfu_sessions_dropped_total", Help: "Participants whose WebSocket dropped without a leave: kept for the resume window."}),
		resumed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sfu_sessions_resumed_total", Help: "Participants taken over by a new WebSocket (resume)."}),
		estimates: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "sfu_subscriber_bandwidth_estimate_bits", Help: "Subscribers' bandwidth estimates (bits/s), observed each second for those receiving simulcast tracks.",
			Buckets: prometheus.ExponentialBuckets(50_000, 2, 8)}),
	}
	// Set before anyone joins: the rooms' goroutines read it after.
	c.ObserveEstimate = m.estimates.Observe
	gauge := func(name, help string, fn func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, fn)
	}
	counter := func(name, help string, fn func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, fn)
	}
	iceRestarts := func(by string, n *atomic.Uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sfu_ice_restarts_total", ConstLabels: prometheus.Labels{"by": by},
			Help: "ICE restarts, by who asked: the server (a connection's ICE failed or stayed disconnected) or the client."},
			func() float64 { return float64(n.Load()) })
	}
	// Refused joins show as 0 from the start, by every code that refuses one.
	for _, code := range []string{signal.CodeUnauthorized, signal.CodeVersion, signal.CodeRoomFull, signal.CodeIdentityLimit,
		signal.CodeTooManyRooms, signal.CodeDraining} {
		m.joinsRefused.WithLabelValues(code)
	}
	reg.MustRegister(
		iceRestarts("server", &c.ServerICERestarts), iceRestarts("client", &c.ClientICERestarts),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewGoCollector(),
		m.connections, m.joinLatency, m.joinsRefused, m.rateLimited, m.connsRefused, m.socketsRefused,
		m.dataMessages, m.detached, m.resumed, m.estimates,
		gauge("sfu_rooms", "Rooms with at least one participant.", func() float64 { r, _ := s.rooms.Stats(); return float64(r) }),
		gauge("sfu_participants", "Participants in all rooms.", func() float64 { _, p := s.rooms.Stats(); return float64(p) }),
		gauge("sfu_tracks", "Published tracks being forwarded.", func() float64 { return float64(c.TracksCurrent.Load()) }),
		counter("sfu_packets_received_total", "RTP packets received from publishers.", func() float64 { return float64(f.PacketsIn.Load()) }),
		counter("sfu_bytes_received_total", "RTP bytes received from publishers.", func() float64 { return float64(f.BytesIn.Load()) }),
		counter("sfu_packets_forwarded_total", "RTP packets written to subscribers.", func() float64 { return float64(f.PacketsOut.Load()) }),
		counter("sfu_bytes_forwarded_total", "RTP bytes written to subscribers.", func() float64 { return float64(f.BytesOut.Load()) }),
		counter("sfu_nacks_total", "NACK packets received from subscribers.", func() float64 { return float64(c.NACKs.Load()) }),
		counter("sfu_plis_total", "PLI and FIR packets received from subscribers.", func() float64 { return float64(c.PLIs.Load()) }),
		counter("sfu_keyframe_requests_total", "PLIs sent to publishers after throttling.", func() float64 { return float64(f.KeyframeRequests.Load()) }),
		counter("sfu_ice_failures_total", "Peer connections that failed or timed out.", func() float64 { return float64(c.ICEFailures.Load()) }),
		counter("sfu_retransmissions_total", "Packets sent again to subscribers in answer to NACKs.", func() float64 { return float64(f.Retransmissions.Load()) }),
		counter("sfu_packets_replayed_total", "RTP packets from publishers dropped as already forwarded, or too late to tell.", func() float64 { return float64(f.Replayed.Load()) }),
		counter("sfu_packets_oversize_total", "RTP packets from publishers dropped as larger than 1500 bytes.", func() float64 { return float64(f.Oversize.Load()) }),
		counter("sfu_index_refusals_total", "Copies to subscribers not sent because no SRTP packet index could be given them safely (a late packet whose index was used, a replaced track's packet).", func() float64 { return float64(f.IndexRefusals.Load()) }),
		counter("sfu_layer_switches_total", "Subscribers of simulcast tracks moved to another layer, at its keyframe.", func() float64 { return float64(f.LayerSwitches.Load()) }),
		counter("sfu_bandwidth_probes_total", "Padding probes of subscribers' links, sent when the bandwidth estimate stood below a layer they would receive.", func() float64 { return float64(c.Probes.Load()) }),
		counter("sfu_bandwidth_probes_passed_total", "Probes the subscriber's link carried: its estimate rose to what they showed.", func() float64 { return float64(c.ProbesPassed.Load()) }),
		counter("sfu_congestion_cuts_total", "Subscribers' bandwidth estimates cut because their transport-cc feedback showed a queue or loss on the link.", func() float64 { return float64(c.CongestionCuts.Load()) }),
		gauge("sfu_paused_layers", "Simulcast subscriptions receiving no layer: paused by the subscriber, or for too little bandwidth.", func() float64 { return float64(c.PausedLayers.Load()) }),
		counter("sfu_direct_unsent_total", "Copies to direct subscribers not sent because their connection had no UDP address.", func() float64 { return float64(f.Unsent.Load()) }),
		counter("sfu_subscribers_direct_total", "Subscriber connections whose media leaves through the batched direct path.", func() float64 { return float64(pc.DirectSubscribers.Load()) }),
		counter("sfu_subscribers_direct_aead_total", "Direct subscriber connections that negotiated AES-GCM SRTP, which the SFU seals itself (the others: AES-CM-HMAC, sealed by pion/srtp).", func() float64 { return float64(pc.DirectAEADSubscribers.Load()) }),
		counter("sfu_subscribers_pion_total", "Subscriber connections whose media pion writes (ICE-TCP, DTLS client role, no single ICE UDP socket, --fast-paths=false).", func() float64 { return float64(pc.PionSubscribers.Load()) }),
		counter("sfu_publishers_fast_total", "Publisher connections whose media the fast receive path reads.", func() float64 { return float64(pc.FastPublishers.Load()) }),
		counter("sfu_publishers_pion_total", "Publisher connections whose media pion reads (ICE-TCP, no single ICE UDP socket, --fast-paths=false).", func() float64 { return float64(pc.PionPublishers.Load()) }),
		counter("sfu_fast_paths_lost_total", "Fast-path connections whose ICE pair moved off the UDP port: their participants were ended.", func() float64 { return float64(pc.Lost.Load()) }),
	)
	if rc := s.socks.port.Receiving(); rc != nil {
		reg.MustRegister(
			counter("sfu_fast_received_total", "RTP packets the fast receive path decrypted and forwarded.", func() float64 { return float64(rc.Received.Load()) }),
			counter("sfu_fast_rtcp_received_total", "RTCP packets the fast receive path decrypted and handled (subscribers' NACKs and PLIs, publishers' sender reports).", func() float64 { return float64(rc.ReceivedRTCP.Load()) }),
			counter("sfu_fast_rejected_total", "Packets of a fast-path track or peer that did not decrypt there (forged or replayed) or were too large: dropped.", func() float64 { return float64(rc.Rejected.Load()) }),
		)
	}
	if d := s.socks.port.Sending(); d != nil {
		reg.MustRegister(
			counter("sfu_direct_datagrams_total", "Datagrams sent from the ICE port's send socket: subscribers' media, and pion's STUN, DTLS and RTCP.", func() float64 { return float64(d.Datagrams.Load()) }),
			counter("sfu_direct_send_calls_total", "sendmmsg/sendto calls on the ICE port's send socket.", func() float64 { return float64(d.Calls.Load()) }),
			counter("sfu_direct_segmented_datagrams_total", "Datagrams sent from the ICE port's send socket as segments of a larger send (UDP GSO): a burst's copies to one subscriber.", func() float64 { return float64(d.Segmented.Load()) }),
		)
	}
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}
