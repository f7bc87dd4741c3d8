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

	rc := &markedReceiver{want: want, arrived: make(chan struct{})}
	_, _ = rand.Read(rc.marker[:])
	res := MediaResult{Room: "smoke-" + hex.EncodeToString(rc.marker[:4]), Pairs: map[string]Pair{}}
	what := fmt.Sprintf("media over ICE-%s via %s (room %s)", m.Network, m.URL, res.Room)
	b, err := m.join(ctx, &se, res.Room, "smoke-b", rc.onTrack)
	if err != nil {
		return res, fmt.Errorf("%s: %w", what, err)
	}
	defer b.Close()
	a, err := m.join(ctx, &se, res.Room, "smoke-a", nil)
	if err != nil {
		return res, fmt.Errorf("%s: %w", what, err)
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
	if err := rc.sendUntilArrived(ctx, track, timeout); err != nil {
		return res, fmt.Errorf("%s: %w; publisher ICE %s, subscriber ICE %s", what, err, iceState(a.Publisher()), iceState(b.Subscriber()))
	}
	rc.mu.Lock()
	res.Received = rc.got
	res.Pairs["subscriber"] = rc.pair
	rc.mu.Unlock()
	res.Pairs["publisher"] = describePair(senders[0].Transport())
	if err := m.checkPairs(res); err != nil {
		return res, fmt.Errorf("%s: %w", what, err)
	}
	_ = a.Leave(ctx)
	_ = b.Leave(ctx)
	return res, nil
}

// join dials the SFU as name.
func (m MediaCheck) join(ctx context.Context, se *webrtc.SettingEngine, room, name string, onTrack func(*client.RemoteTrack)) (*client.Client, error) {
	opts := client.Options{
		Room: room, Name: name, SettingEngine: se, OnTrack: onTrack,
		// No STUN/TURN: the only way in is the media node's own
		// address, which is what this check is about (a TURN relay
		// would hide a closed media port).
		ICEServers: []webrtc.ICEServer{},
	}
	if m.Token != nil {
		tok, err := m.Token(room, name)
		if err != nil {
			return nil, fmt.Errorf("token for %s: %w", name, err)
		}
		opts.Token = tok
	}
	c, err := client.Dial(ctx, m.URL, opts)
	if err != nil {
		return nil, fmt.Errorf("%s joining: %w", name, err)
	}
	return c, nil
}

// checkPairs: both connections used the one transport allowed and
// reached the SFU at the expected address.
func (m MediaCheck) checkPairs(res MediaResult) error {
	for _, role := range []string{"publisher", "subscriber"} {
		pair := res.Pairs[role]
		if pair.Protocol != m.Network {
			return fmt.Errorf("the %s connection used %s, want ICE-%s", role, pair, m.Network)
		}
		if m.ExpectIP != "" && pair.RemoteIP != m.ExpectIP {
			return fmt.Errorf("the %s connection reached the SFU at %s (%s), want the media node's public IP %s", role, pair.RemoteIP, pair, m.ExpectIP)
		}
	}
	return nil
}

// markedReceiver counts the packets that carry this run's marker.
type markedReceiver struct {
	marker  [8]byte
	want    int
	arrived chan struct{} // closed when want arrived

	mu       sync.Mutex
	got, bad int  // packets with the marker, and without
	pair     Pair // the subscriber connection's, once want arrived
}

func (rc *markedReceiver) onTrack(t *client.RemoteTrack) {
	for {
		p, _, err := t.Track.ReadRTP()
		if err != nil {
			return
		}
		rc.mu.Lock()
		if bytes.HasPrefix(p.Payload, rc.marker[:]) {
			rc.got++
			if rc.got == rc.want {
				rc.pair = describePair(t.Receiver.Transport())
				close(rc.arrived)
			}
		} else {
			rc.bad++
		}
		rc.mu.Unlock()
	}
}

// sendUntilArrived sends 20 ms Opus-sized frames with the marker until
// the receiver has enough, or ctx (with timeout) ends.
func (rc *markedReceiver) sendUntilArrived(ctx context.Context, track *webrtc.TrackLocalStaticRTP, timeout time.Duration) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for seq := uint16(1); ; seq++ {
		select {
		case <-rc.arrived:
			return nil
		case <-ctx.Done():
			rc.mu.Lock()
			defer rc.mu.Unlock()
			return fmt.Errorf("%d of %d packets arrived within %s (%d foreign packets)", rc.got, rc.want, timeout, rc.bad)
		case <-tick.C:
			payload := make([]byte, 80)
			copy(payload, rc.marker[:])
			binary.BigEndian.PutUint16(payload[8:], seq)
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(seq) * 960}, Payload: payload}
			if err := track.WriteRTP(pkt); err != nil && !errors.Is(err, context.Canceled) {
				return fmt.Errorf("writing RTP: %w", err)
			}
		}
	}
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
