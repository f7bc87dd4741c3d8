package smoke

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/jbcalling/platform/sfu/client"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// MediaCheck sends media through the SFU and back, the way two browsers in
// one room would: participant "smoke-a" publishes an Opus track, participant
// "smoke-b" must receive its packets intact, and both must have reached the
// SFU at ExpectIP over the one ICE transport allowed (Network).
type MediaCheck struct {
	URL      string // signalling WebSocket: wss://webrtc.<domain>:8443/ws
	Network  string // "udp" or "tcp": the only ICE transport the clients may use
	ExpectIP string // the address ICE must select: the media node's public IP

	// Token returns the join token for a participant; nil joins anonymously
	// (a local SFU with --allow-anonymous; the stack never allows it).
	Token func(room, name string) (string, error)
	// SettingEngine is the base pion configuration (tests restrict the
	// interfaces to their namespace); the network type is set on a copy.
	SettingEngine *webrtc.SettingEngine
	// Packets is how many packets must arrive (default 50, one second of
	// 20 ms audio frames).
	Packets int
	// Timeout bounds the whole check (default 30 s).
	Timeout time.Duration
}

// MediaResult is what a passing check saw.
type MediaResult struct {
	Room     string
	Received int
	// Pairs are the selected ICE candidate pairs of the "publisher" and
	// "subscriber" connections.
	Pairs map[string]Pair
}

// Pair is a selected ICE candidate pair.
type Pair struct {
	Protocol string // udp or tcp
	Local    string // host:port
	RemoteIP string // where the SFU was reached
	Remote   string // host:port
}

func (p Pair) String() string {
	if p.Protocol == "" {
		return "no selected candidate pair"
	}
	return fmt.Sprintf("%s %s -> %s", p.Protocol, p.Local, p.Remote)
}

func (m MediaCheck) Run(ctx context.Context) (MediaResult, error) {
	want := m.Packets
	if want <= 0 {
		want = 50
	}
	timeout := m.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	var netType webrtc.NetworkType
	switch m.Network {
	case "udp":
		netType = webrtc.NetworkTypeUDP4
	case "tcp":
		netType = webrtc.NetworkTypeTCP4
	default:
		return MediaResult{}, fmt.Errorf("media check: network %q is neither udp nor tcp", m.Network)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	var se webrtc.SettingEngine
	if m.SettingEngine != nil {
		se = *m.SettingEngine
	}
	se.SetNetworkTypes([]webrtc.NetworkType{netType})

	var marker [8]byte
	_, _ = rand.Read(marker[:])
	res := MediaResult{Room: "smoke-" + hex.EncodeToString(marker[:4]), Pairs: map[string]Pair{}}
	what := fmt.Sprintf("media over ICE-%s via %s (room %s)", m.Network, m.URL, res.Room)

	join := func(name string, onTrack func(*client.RemoteTrack)) (*client.Client, error) {
		opts := client.Options{
			Room: res.Room, Name: name, SettingEngine: &se, OnTrack: onTrack,
			// No STUN/TURN: the only way in is the media node's own
			// address, which is what this check is about (a TURN relay
			// would hide a closed media port).
			ICEServers: []webrtc.ICEServer{},
		}
		if m.Token != nil {
			tok, err := m.Token(res.Room, name)
			if err != nil {
				return nil, fmt.Errorf("%s: token for %s: %w", what, name, err)
			}
			opts.Token = tok
		}
		c, err := client.Dial(ctx, m.URL, opts)
		if err != nil {
			return nil, fmt.Errorf("%s: %s joining: %w", what, name, err)
		}
		return c, nil
	}

	// The receiver counts packets that carry this run's marker in order.
	var (
		mu       sync.Mutex
		got      int
		badBytes int
		recvPair Pair
		arrived  = make(chan struct{})
	)
	b, err := join("smoke-b", func(t *client.RemoteTrack) {
		for {
			p, _, err := t.Track.ReadRTP()
			if err != nil {
				return
			}
			mu.Lock()
			if bytes.HasPrefix(p.Payload, marker[:]) {
				got++
				if got == want {
					recvPair = describePair(t.Receiver.Transport())
					close(arrived)
				}
			} else {
				badBytes++
			}
			mu.Unlock()
		}
	})
	if err != nil {
		return res, err
	}
	defer b.Close()
	a, err := join("smoke-a", nil)
	if err != nil {
		return res, err
	}
	defer a.Close()

	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "smoke-audio", "smoke-a")
	if err != nil {
		return res, err
	}
	senders, err := a.Publish(ctx, track)
	if err != nil {
		return res, fmt.Errorf("%s: publishing: %w", what, err)
	}

	// 20 ms Opus-sized frames until the receiver has enough.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var seq uint16
	for done := false; !done; {
		select {
		case <-arrived:
			done = true
		case <-ctx.Done():
			mu.Lock()
			n, bad := got, badBytes
			mu.Unlock()
			return res, fmt.Errorf("%s: %d of %d packets arrived within %s (%d foreign packets); publisher ICE %s, subscriber ICE %s",
				what, n, want, timeout, bad, iceState(a.Publisher()), iceState(b.Subscriber()))
		case <-tick.C:
			seq++
			payload := make([]byte, 80)
			copy(payload, marker[:])
			binary.BigEndian.PutUint16(payload[8:], seq)
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(seq) * 960}, Payload: payload}
			if err := track.WriteRTP(pkt); err != nil && !errors.Is(err, context.Canceled) {
				return res, fmt.Errorf("%s: writing RTP: %w", what, err)
			}
		}
	}
	mu.Lock()
	res.Received = got
	res.Pairs["subscriber"] = recvPair
	mu.Unlock()
	res.Pairs["publisher"] = describePair(senders[0].Transport())

	for _, role := range []string{"publisher", "subscriber"} {
		pair := res.Pairs[role]
		if pair.Protocol != m.Network {
			return res, fmt.Errorf("%s: the %s connection used %s, want ICE-%s", what, role, pair, m.Network)
		}
		if m.ExpectIP != "" && pair.RemoteIP != m.ExpectIP {
			return res, fmt.Errorf("%s: the %s connection reached the SFU at %s (%s), want the media node's public IP %s", what, role, pair.RemoteIP, pair, m.ExpectIP)
		}
	}
	_ = a.Leave(ctx)
	_ = b.Leave(ctx)
	return res, nil
}

func describePair(t *webrtc.DTLSTransport) Pair {
	if t == nil || t.ICETransport() == nil {
		return Pair{}
	}
	p, err := t.ICETransport().GetSelectedCandidatePair()
	if err != nil || p == nil {
		return Pair{}
	}
	return Pair{
		Protocol: p.Remote.Protocol.String(),
		Local:    net.JoinHostPort(p.Local.Address, strconv.Itoa(int(p.Local.Port))),
		RemoteIP: p.Remote.Address,
		Remote:   net.JoinHostPort(p.Remote.Address, strconv.Itoa(int(p.Remote.Port))),
	}
}

func iceState(pc *webrtc.PeerConnection) string {
	if pc == nil {
		return "none"
	}
	return pc.ICEConnectionState().String()
}
