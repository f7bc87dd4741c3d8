package server

import (
	"fmt"
	"log/slog"
	"net"
	"runtime"

	"github.com/jbcalling/platform/sfu/codecs"

	"github.com/jbcalling/platform/sfu/fastpath"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// registerCodecs offers the codecs the SFU forwards (package codecs) and
// the header extensions it reads or forwards.
func registerCodecs(m *webrtc.MediaEngine) error {
	if err := codecs.Register(m); err != nil {
		return err
	}
	for _, e := range []struct {
		uri  string
		kind webrtc.RTPCodecType
	}{
		{sdp.SDESMidURI, webrtc.RTPCodecTypeAudio},
		{sdp.SDESMidURI, webrtc.RTPCodecTypeVideo},
		// Simulcast: each layer's packets name their rid.
		{sdp.SDESRTPStreamIDURI, webrtc.RTPCodecTypeVideo},
		{sdp.SDESRepairRTPStreamIDURI, webrtc.RTPCodecTypeVideo},
		{sdp.AudioLevelURI, webrtc.RTPCodecTypeAudio},
		{sdp.TransportCCURI, webrtc.RTPCodecTypeAudio},
		{sdp.TransportCCURI, webrtc.RTPCodecTypeVideo},
		{"urn:3gpp:video-orientation", webrtc.RTPCodecTypeVideo},
	} {
		if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: e.uri}, e.kind); err != nil {
			return err
		}
	}
	return nil
}

// iceSocketBuffer sizes the ICE UDP socket's kernel buffers (measured in
// docs/benchmarks.md).
const iceSocketBuffer = 4 << 20

// iceSockets are the listeners the ICE muxes own.
type iceSockets struct {
	udp   net.Addr // the UDP mux's address; nil in port-range mode
	tcp   net.Listener
	udpMx ice.UDPMux
	tcpMx ice.TCPMux
	// port is the ICE UDP port's fast paths; its zero value has none.
	port *fastpath.Port
}

func (s *iceSockets) Close() {
	if s.udpMx != nil {
		s.udpMx.Close()
	}
	_ = s.port.Close()
	if s.tcpMx != nil {
		s.tcpMx.Close()
	}
}

// UDPAddr is the mux's UDP address (nil in port-range mode).
func (s *iceSockets) UDPAddr() net.Addr { return s.udp }

// apis are the pion APIs: one per publisher and per subscriber connection
// that may take a fast path (NewPublisher, NewSubscriber), else one shared
// by all. None has interceptors: the SFU sends publishers their feedback
// (package feedback), and answers subscribers' NACKs and sends their
// sender reports itself (package forward).
type apis struct {
	shared *webrtc.API
	media  *webrtc.MediaEngine
	se     webrtc.SettingEngine
	socks  *iceSockets
}

func (a *apis) newAPI(se webrtc.SettingEngine) *webrtc.API {
	// An explicit empty registry: without one pion registers its default
	// interceptors, and their codecs and extensions into the shared
	// MediaEngine.
	return webrtc.NewAPI(webrtc.WithMediaEngine(a.media), webrtc.WithInterceptorRegistry(&interceptor.Registry{}), webrtc.WithSettingEngine(se))
}

// NewPublisher returns one publisher connection's API and its receive
// path. The path's DTLS hooks need an API per connection: they do not say
// which connection they belong to.
func (a *apis) NewPublisher() (*webrtc.API, *fastpath.Publisher) {
	se := a.se
	pp := a.socks.port.NewPublisher(&se)
	if !pp.Possible() {
		return a.shared, pp
	}
	return a.newAPI(se), pp
}

// NewSubscriber returns one subscriber connection's API and its send path
// (an API per connection, as NewPublisher).
func (a *apis) NewSubscriber() (*webrtc.API, *fastpath.Subscriber) {
	se := a.se
	sp := a.socks.port.NewSubscriber(&se)
	if !sp.Possible() {
		return a.shared, sp
	}
	return a.newAPI(se), sp
}

// newAPIs builds the pion APIs and opens the ICE sockets.
func newAPIs(cfg *Config, log *slog.Logger) (*apis, error) {
	lf := newPionLogs(log)
	m := &webrtc.MediaEngine{}
	if err := registerCodecs(m); err != nil {
		return nil, err
	}
	se := webrtc.SettingEngine{LoggerFactory: lf}
	socks := &iceSockets{port: &fastpath.Port{}}
	fail := func(err error) (*apis, error) {
		socks.Close()
		return nil, err
	}
	types := []webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6}
	var bindIP net.IP
	if cfg.ICEBind == ICEBindAuto {
		ip, err := defaultRouteIP()
		if err != nil {
			return fail(fmt.Errorf("--ice-bind auto: %w", err))
		}
		bindIP = ip
	} else if cfg.ICEBind != "" {
		bindIP = net.ParseIP(cfg.ICEBind)
	}
	if bindIP != nil {
		// Gather only on the bound address (tests, containers).
		se.SetIPFilter(func(ip net.IP) bool { return ip.Equal(bindIP) })
	}
	if cfg.ICEPortRange != "" {
		lo, hi, err := cfg.PortRange()
		if err != nil {
			return fail(err)
		}
		if err := se.SetEphemeralUDPPortRange(lo, hi); err != nil {
			return fail(err)
		}
	} else if bindIP != nil && cfg.FastPaths {
		// Every participant's media shares this one port, read by one
		// socket per core (srtprecv) so that tracks forward in parallel;
		// subscribers' media leaves from a twin socket that Go's netpoller
		// does not watch (srtpsend). Not pion/transport's BatchConn: its
		// flusher ticks every 250 µs even when idle and added ~1 ms at low
		// load (docs/benchmarks.md). The default ~200 KiB buffers
		// overflowed on keyframe bursts; the kernel caps the size at
		// net.core.rmem_max / wmem_max.
		port, err := fastpath.Listen(&net.UDPAddr{IP: bindIP, Port: cfg.ICEUDPPort}, runtime.GOMAXPROCS(0), iceSocketBuffer, log)
		if err != nil {
			return fail(fmt.Errorf("ICE UDP mux: %w", err))
		}
		socks.port, socks.udp = port, port.PacketConn().LocalAddr()
		socks.udpMx = webrtc.NewICEUDPMux(lf.NewLogger("udpmux"), port.PacketConn())
		se.SetICEUDPMux(socks.udpMx)
	} else if bindIP != nil {
		// --fast-paths=off: pion reads and writes every packet.
		conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: bindIP, Port: cfg.ICEUDPPort})
		if err != nil {
			return fail(fmt.Errorf("ICE UDP mux: %w", err))
		}
		_ = conn.SetReadBuffer(iceSocketBuffer)
		_ = conn.SetWriteBuffer(iceSocketBuffer)
		socks.udp = conn.LocalAddr()
		socks.udpMx = webrtc.NewICEUDPMux(lf.NewLogger("udpmux"), conn)
		se.SetICEUDPMux(socks.udpMx)
	} else {
		mux, err := ice.NewMultiUDPMuxFromPort(cfg.ICEUDPPort, ice.UDPMuxFromPortWithLoopback(), ice.UDPMuxFromPortWithLogger(lf.NewLogger("udpmux")),
			ice.UDPMuxFromPortWithReadBufferSize(iceSocketBuffer), ice.UDPMuxFromPortWithWriteBufferSize(iceSocketBuffer))
		if err != nil {
			return fail(fmt.Errorf("ICE UDP mux on port %d: %w", cfg.ICEUDPPort, err))
		}
		socks.udpMx = mux
		se.SetICEUDPMux(mux)
	}
	if cfg.ICETCPPort >= 0 {
		l, err := net.ListenTCP("tcp", &net.TCPAddr{IP: bindIP, Port: cfg.ICETCPPort})
		if err != nil {
			return fail(fmt.Errorf("ICE TCP mux: %w", err))
		}
		socks.tcp = l
		// A write buffer per TCP client: a subscriber on a slow TCP path
		// then loses packets instead of blocking the forwarder, which
		// writes to every subscriber of a track in turn.
		socks.tcpMx = ice.NewTCPMuxDefault(ice.TCPMuxParams{Listener: l, Logger: lf.NewLogger("tcpmux"), ReadBufferSize: 16, WriteBufferSize: 4 << 20})
		se.SetICETCPMux(socks.tcpMx)
		types = append(types, webrtc.NetworkTypeTCP4, webrtc.NetworkTypeTCP6)
	}
	se.SetNetworkTypes(types)
	if len(cfg.PublicIPs) > 0 {
		// Announce the public address instead of the VM's private one
		// (the v4 replacement for SetNAT1To1IPs).
		if err := se.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{
			External: cfg.PublicIPs, AsCandidateType: webrtc.ICECandidateTypeHost, Mode: webrtc.ICEAddressRewriteReplace,
		}); err != nil {
			return fail(fmt.Errorf("--public-ip: %w", err))
		}
	}
	// The SFU answers; it never needs mDNS names.
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	a := &apis{media: m, se: se, socks: socks}
	a.shared = a.newAPI(se)
	return a, nil
}
