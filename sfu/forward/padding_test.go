package forward

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/jbcalling/platform/sfu/bwe"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// bindNumbered binds a DownTrack of f whose connection numbers its
// packets with cc (transport-cc at ID 3).
func bindNumbered(t testing.TB, f *Forwarder, ssrc webrtc.SSRC, cc *bwe.Sender) (*DownTrack, *recorder) {
	t.Helper()
	r := &recorder{keep: true}
	d := f.NewDownTrack("v", "p", nil)
	d.SetTransportCC(cc)
	c := &fakeContext{codecs: []webrtc.RTPCodecParameters{vp8}, ssrc: ssrc, w: r, exts: []webrtc.RTPHeaderExtensionParameter{
		{URI: audioLevelURI, ID: 5}, {URI: sdp.TransportCCURI, ID: 3},
	}}
	if _, err := d.Bind(c); err != nil {
		t.Fatal(err)
	}
	return d, r
}

// Every packet a subscriber's connection sends carries the next
// transport-wide number, media and padding alike, on either path; a
// probe's padding takes the next sequence numbers, the media after it
// follows on, and a NACK for padding resends nothing.
func TestTransportCCNumbersEveryPacketAndPadding(t *testing.T) {
	f := newForwarder(func() {})
	peer := newDirectPeer(t, newTestSocket(t))
	directCC, pionCC := bwe.NewSender(), bwe.NewSender()
	peer.conn.SetStamper(directCC)
	direct, _ := bindNumbered(t, f, 11, directCC)
	direct.SetDirect(peer.conn.NewStream())
	viaPion, rec := bindNumbered(t, f, 22, pionCC)

	forward := func(seqs ...uint16) {
		for _, seq := range seqs {
			f.Forward(sourcePacket(t, seq, []byte{0x90, byte(seq)}))
		}
	}
	pad := func() {
		for _, d := range []*DownTrack{direct, viaPion} {
			if err := d.SendPadding(); err != nil {
				t.Fatal(err)
			}
		}
	}
	forward(0, 1, 2)
	pad()
	pad()
	forward(3, 4)
	var got []*rtp.Packet
	for range 7 {
		got = append(got, peer.read(t))
	}
	for name, pkts := range map[string][]*rtp.Packet{"direct": got, "pion": ptrs(rec.got)} {
		if len(pkts) != 7 {
			t.Fatalf("%s: %d packets, want 7", name, len(pkts))
		}
		for i, p := range pkts {
			padding := i == 3 || i == 4
			if p.SequenceNumber != uint16(i) {
				t.Errorf("%s packet %d: sequence number %d", name, i, p.SequenceNumber)
			}
			if n := binary.BigEndian.Uint16(p.GetExtension(3)); n != uint16(i) {
				t.Errorf("%s packet %d: transport-cc number %d", name, i, n)
			}
			if padding != (p.Padding && len(p.Payload) == 0 && p.PaddingSize == MaxPadding) {
				t.Errorf("%s packet %d: padding %v, payload %x, %d bytes of padding", name, i, p.Padding, p.Payload, p.PaddingSize)
			}
			if !padding && !bytes.Equal(p.GetExtension(5), []byte{0x1f}) {
				t.Errorf("%s packet %d lost its audio level", name, i)
			}
		}
	}
	nack := func(seq uint16) *rtcp.TransportLayerNack {
		return &rtcp.TransportLayerNack{MediaSSRC: 11, Nacks: []rtcp.NackPair{{PacketID: seq}}}
	}
	if n := direct.Resend(nack(3), nil); n != 0 {
		t.Fatalf("a NACK for padding resent %d packets", n)
	}
	if n := direct.Resend(nack(6), nil); n != 1 {
		t.Fatalf("a NACK for media resent %d packets", n)
	}
	re := peer.read(t)
	if re.SequenceNumber != 6 || binary.BigEndian.Uint16(re.GetExtension(3)) != 7 || !bytes.Equal(re.Payload, []byte{0x90, 4}) {
		t.Fatalf("the retransmission: seq %d, number %d, payload %x; want 6, a new number 7, the packet's", re.SequenceNumber,
			binary.BigEndian.Uint16(re.GetExtension(3)), re.Payload)
	}
}

func ptrs(pkts []rtp.Packet) []*rtp.Packet {
	out := make([]*rtp.Packet, len(pkts))
	for i := range pkts {
		out[i] = &pkts[i]
	}
	return out
}
