package server

import (
	"fmt"
	"log/slog"
	"net"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// codecs are what the SFU forwards. No RTX: the SFU's own NACK responder
// retransmits on the primary SSRC.
func registerCodecs(m *webrtc.MediaEngine) error {
	fb := []webrtc.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}, {Type: "ccm", Parameter: "fir"}}
	video := func(pt webrtc.PayloadType, mime, fmtp string) webrtc.RTPCodecParameters {
		return webrtc.RTPCodecParameters{PayloadType: pt, RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: mime, ClockRate: 90000, SDPFmtpLine: fmtp, RTCPFeedback: fb}}
	}
	const h264 = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id="
	for _, c := range []webrtc.RTPCodecParameters{
		video(96, webrtc.MimeTypeVP8, ""),
		video(98, webrtc.MimeTypeVP9, "profile-id=0"),
		video(100, webrtc.MimeTypeVP9, "profile-id=2"),
		video(102, webrtc.MimeTypeH264, h264+"42001f"),
		video(104, webrtc.MimeTypeH264, h264+"42e01f"),
		video(106, webrtc.MimeTypeH264, h264+"4d001f"),
		video(108, webrtc.MimeTypeH264, h264+"640032"),
	} {
		if err := m.RegisterCodec(c, webrtc.RTPCodecTypeVideo); err != nil {
			return err
		}
	}
	opus := webrtc.RTPCodecParameters{PayloadType: 111, RTPCodecCapability: webrtc.RTPCodecCapability{
		MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}}
	if err := m.RegisterCodec(opus, webrtc.RTPCodecTypeAudio); err != nil {
		return err
	}
	for _, e := range []struct {
		uri  string
		kind webrtc.RTPCodecType
	}{
		{sdp.SDESMidURI, webrtc.RTPCodecTypeAudio},
		{sdp.SDESMidURI, webrtc.RTPCodecTypeVideo},
		{sdp.AudioLevelURI, webrtc.RTPCodecTypeAudio},
		{"urn:3gpp:video-orientation", webrtc.RTPCodecTypeVideo},
	} {
		if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: e.uri}, e.kind); err != nil {
			return err
		}
	}
	return nil
}

// iceSockets are the listeners the ICE muxes own.
// iceSocketBuffer sizes the ICE UDP socket's kernel buffers (measured in
// docs/benchmarks.md).
const iceSocketBuffer = 4 << 20

type iceSockets struct {
	udp   net.PacketConn
	multi *ice.MultiUDPMuxDefault
	tcp   net.Listener
	udpMx ice.UDPMux
	tcpMx ice.TCPMux
}

func (s *iceSockets) Close() {
	if s.udpMx != nil {
		s.udpMx.Close()
	}
	if s.tcpMx != nil {
		s.tcpMx.Close()
	}
}

// UDPAddr is the mux's UDP address (nil in port-range mode).
func (s *iceSockets) UDPAddr() net.Addr {
	if s.udp != nil {
		return s.udp.LocalAddr()
	}
	return nil
}

// newAPI builds the pion API shared by every peer connection.
func newAPI(cfg *Config, log *slog.Logger) (*webrtc.API, *iceSockets, error) {
	lf := pionLogs{log}
	m := &webrtc.MediaEngine{}
	if err := registerCodecs(m); err != nil {
		return nil, nil, err
	}
	ir := &interceptor.Registry{}
	// NACK generator (toward publishers) and responder (toward subscribers),
	// sender/receiver reports, and transport-cc feedback to publishers.
	if err := webrtc.ConfigureNack(m, ir); err != nil {
		return nil, nil, err
	}
	if err := webrtc.ConfigureRTCPReports(ir); err != nil {
		return nil, nil, err
	}
	if err := webrtc.ConfigureTWCCSender(m, ir); err != nil {
		return nil, nil, err
	}

	se := webrtc.SettingEngine{LoggerFactory: lf}
	socks := &iceSockets{}
	fail := func(err error) (*webrtc.API, *iceSockets, error) {
		socks.Close()
		return nil, nil, err
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
	} else if bindIP != nil {
		conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: bindIP, Port: cfg.ICEUDPPort})
		if err != nil {
			return fail(fmt.Errorf("ICE UDP mux: %w", err))
		}
		// Every participant's media shares this one socket: the default
		// ~200 KiB buffer overflowed on keyframe bursts (docs/benchmarks.md).
		// The kernel caps the size at net.core.rmem_max / wmem_max.
		_ = conn.SetReadBuffer(iceSocketBuffer)
		_ = conn.SetWriteBuffer(iceSocketBuffer)
		// No sendmmsg batching (pion/transport's BatchConn): it cut CPU per
		// packet under load but its flusher ticks every 250 µs even when
		// idle and added ~1 ms at low load (docs/benchmarks.md).
		socks.udp = conn
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
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
	return api, socks, nil
}
