package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"

	"github.com/jbcalling/platform/sfu/fastpath/dtlskeys"
	"github.com/jbcalling/platform/sfu/room"
	"github.com/jbcalling/platform/sfu/fastpath/srtprecv"
	"github.com/jbcalling/platform/sfu/fastpath/srtpsend"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// codecs are what the SFU forwards. No RTX: the forwarder answers NACKs
// on the primary SSRC.
func registerCodecs(m *webrtc.MediaEngine) error {
	// transport-cc: the SFU sends publishers the feedback their bandwidth
	// estimate needs (package feedback).
	cc := webrtc.RTCPFeedback{Type: webrtc.TypeRTCPFBTransportCC}
	fb := []webrtc.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}, {Type: "ccm", Parameter: "fir"}, cc}
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
		MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1",
		RTCPFeedback: []webrtc.RTCPFeedback{cc}}}
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

// iceSockets are the listeners the ICE muxes own.
// iceSocketBuffer sizes the ICE UDP socket's kernel buffers (measured in
// docs/benchmarks.md).
const iceSocketBuffer = 4 << 20

type iceSockets struct {
	udp   *net.UDPConn
	tcp   net.Listener
	udpMx ice.UDPMux
	tcpMx ice.TCPMux
	// direct sends subscribers' media from udp (nil without a single
	// UDP socket: pion then writes every packet).
	direct *srtpsend.Socket
	// mux reads udp for the ICE mux and keeps publishers' media (nil
	// without a single UDP socket).
	mux *srtprecv.Mux
}

func (s *iceSockets) Close() {
	if s.udpMx != nil {
		s.udpMx.Close()
	}
	if s.direct != nil {
		_ = s.direct.Close()
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

// apis are the pion APIs: one per publisher and per subscriber connection
// with a single ICE UDP socket (NewPublisher, NewSubscriber), else one
// shared by all. None has interceptors: the SFU sends publishers their
// feedback (package feedback), and answers subscribers' NACKs and sends
// their sender reports itself (package forward).
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

// NewPublisher returns one publisher connection's API and, with a single
// ICE UDP socket, its fast receive path: the SFU answers as the DTLS
// server (a=setup:passive), so that the DTLS hooks yield the publisher's
// SRTP keys, and once media flows the connection's packets are decrypted
// by srtprecv on the socket's reading goroutine instead of pion's five.
func (a *apis) NewPublisher() (*webrtc.API, room.InboundFunc) {
	if a.socks.mux == nil {
		return a.shared, nil
	}
	se := a.se
	keys := dtlskeys.New()
	keys.Options(&se)
	if err := se.SetAnsweringDTLSRole(webrtc.DTLSRoleServer); err != nil {
		return a.shared, nil // cannot happen: a valid role
	}
	mux, port := a.socks.mux, a.socks.udp.LocalAddr().(*net.UDPAddr).Port
	return a.newAPI(se), func(pc *webrtc.PeerConnection) (*srtprecv.Peer, error) {
		k, ice, err := fastPathOf(keys, pc, port)
		if err != nil {
			return nil, err
		}
		peer, err := mux.NewPeer(k.Profile, k.RemoteKey, k.RemoteSalt)
		if err != nil {
			return nil, err
		}
		// A later pair that is not UDP on the mux (ICE-TCP after a
		// restart) gives the packets back to pion.
		followPair(ice, port, peer.SetAddr)
		return peer, nil
	}
}

// NewSubscriber returns one subscriber connection's API: the publishers'
// codecs and ICE muxes, no interceptors (the forwarder answers NACKs from
// one shared history per track and sends the sender reports, where pion's
// responder kept a copy of every packet per subscriber), and with a single
// ICE UDP socket the DTLS hooks that yield the connection's SRTP keys, so
// its media can leave through srtpsend instead of pion's write path. The
// hooks need an API per connection: they do not say which connection they
// belong to.
func (a *apis) NewSubscriber() (*webrtc.API, room.DirectFunc) {
	if a.socks.direct == nil {
		return a.shared, nil
	}
	se := a.se
	keys := dtlskeys.New()
	keys.Options(&se)
	api := a.newAPI(se)
	sock, mux, port := a.socks.direct, a.socks.mux, a.socks.udp.LocalAddr().(*net.UDPAddr).Port
	return api, func(pc *webrtc.PeerConnection) (*srtpsend.Conn, *srtprecv.Peer, error) {
		k, ice, err := fastPathOf(keys, pc, port) // ErrNotServer when the browser took the DTLS server role
		if err != nil {
			return nil, nil, err
		}
		conn, err := srtpsend.NewConn(sock, k.Profile, k.LocalKey, k.LocalSalt)
		if err != nil {
			return nil, nil, err
		}
		// The subscriber's RTCP (NACKs, PLIs) comes in on the fast path.
		peer, err := mux.NewPeer(k.Profile, k.RemoteKey, k.RemoteSalt)
		if err != nil {
			return nil, nil, err
		}
		// A later pair that is not UDP on the mux (ICE-TCP after a
		// restart) goes through pion again, packet by packet.
		followPair(ice, port, func(a netip.AddrPort) {
			conn.SetAddr(a)
			peer.SetAddr(a)
		})
		return conn, peer, nil
	}
}

// fastPathOf is what both fast paths need of a connected connection: its
// SRTP keys (the SFU being its DTLS server) and its ICE transport, whose
// selected pair must be UDP through the mux socket (local port port).
func fastPathOf(keys *dtlskeys.Capture, pc *webrtc.PeerConnection, port int) (dtlskeys.Keys, *webrtc.ICETransport, error) {
	k, err := keys.Keys()
	if err != nil {
		return dtlskeys.Keys{}, nil, err
	}
	ice := pc.SCTP().Transport().ICETransport()
	pair, err := ice.GetSelectedCandidatePair()
	if err != nil {
		return dtlskeys.Keys{}, nil, err
	}
	if !directAddr(pair, port).IsValid() {
		return dtlskeys.Keys{}, nil, errNotDirect
	}
	return k, ice, nil
}

// followPair calls set with the selected pair's remote address now and
// whenever ICE selects another (invalid for a pair the fast paths cannot
// serve).
func followPair(ice *webrtc.ICETransport, port int, set func(netip.AddrPort)) {
	ice.OnSelectedCandidatePairChange(func(p *webrtc.ICECandidatePair) { set(directAddr(p, port)) })
	if pair, err := ice.GetSelectedCandidatePair(); err == nil { // the newest, in case it changed meanwhile
		set(directAddr(pair, port))
	}
}

var errNotDirect = errors.New("selected ICE pair is not UDP through the mux socket")

// directAddr is the remote address of a selected pair the direct path can
// serve: UDP through the mux socket (local port port). Anything else
// (ICE-TCP) is invalid, and pion writes.
func directAddr(p *webrtc.ICECandidatePair, port int) netip.AddrPort {
	if p == nil || p.Local == nil || p.Remote == nil || p.Local.Protocol != webrtc.ICEProtocolUDP ||
		p.Remote.Protocol != webrtc.ICEProtocolUDP || int(p.Local.Port) != port {
		return netip.AddrPort{}
	}
	ip, err := netip.ParseAddr(p.Remote.Address)
	if err != nil {
		return netip.AddrPort{} // an unresolved mDNS name
	}
	return netip.AddrPortFrom(ip, p.Remote.Port)
}

// newAPIs builds the pion APIs and opens the ICE sockets.
func newAPIs(cfg *Config, log *slog.Logger) (*apis, error) {
	lf := pionLogs{log}
	m := &webrtc.MediaEngine{}
	if err := registerCodecs(m); err != nil {
		return nil, err
	}
	se := webrtc.SettingEngine{LoggerFactory: lf}
	socks := &iceSockets{}
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
	} else if bindIP != nil {
		// Every participant's media shares this one socket: the default
		// ~200 KiB buffers overflowed on keyframe bursts (docs/benchmarks.md).
		// The kernel caps the size at net.core.rmem_max / wmem_max.
		// Not pion/transport's BatchConn: its flusher ticks every 250 µs
		// even when idle and added ~1 ms at low load (docs/benchmarks.md);
		// srtpsend batches each fan-out and sends it at once, from a twin
		// socket on the same port that Go's netpoller does not watch.
		// One socket per core of the port, each read by its own
		// goroutine (srtprecv), so that tracks forward in parallel.
		port, err := srtpsend.Listen(&net.UDPAddr{IP: bindIP, Port: cfg.ICEUDPPort}, runtime.GOMAXPROCS(0), iceSocketBuffer)
		if err != nil {
			return fail(fmt.Errorf("ICE UDP mux: %w", err))
		}
		var out srtprecv.Writer // pion's writes: from the twin, else from the reader
		if port.Send != nil {
			out = port.Send
			if !port.Send.Segmenting() {
				log.Info("no segmented UDP sends (UDP_SEGMENT, Linux 4.18): a burst's copies leave one datagram per send")
			}
		} else {
			log.Warn("no direct send path: pion writes every packet", "err", port.Unshared)
		}
		mux, err := srtprecv.NewMux(port.Readers, out)
		if err != nil {
			_ = port.Close()
			return fail(err)
		}
		socks.udp, socks.direct, socks.mux = port.Readers[0], port.Send, mux
		socks.udpMx = webrtc.NewICEUDPMux(lf.NewLogger("udpmux"), mux)
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
