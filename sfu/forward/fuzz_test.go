package forward

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/jbcalling/platform/sfu/fastpath/srtpsend"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"
)

// FuzzForward feeds the forwarder arbitrary datagrams, as a publisher
// controls them: it never panics, drops what does not parse or is larger
// than MaxPacketSize, and every packet that does reaches each subscriber
// — through pion with two different header shapes, and on the direct path
// encrypted — with the publisher's sequence number, timestamp, marker,
// payload and padding under the subscriber's own SSRC and payload type.
func FuzzForward(f *testing.F) {
	seed := func(h rtp.Header, payload []byte) {
		raw, err := (&rtp.Packet{Header: h, Payload: payload}).Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	h := rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: 7, Timestamp: 9000, SSRC: 0xAABBCCDD, Marker: true}
	_ = h.SetExtension(3, []byte{0x1f})
	_ = h.SetExtension(4, []byte("mid"))
	seed(h, []byte{0x90, 1, 2, 3})
	h.CSRC = []uint32{1, 2, 3}
	h.Padding, h.PaddingSize = true, 9
	seed(h, nil)
	f.Add([]byte{0x80, 96, 0, 1})
	f.Add(bytes.Repeat([]byte{0xff}, 40))

	sock := newTestSocket(f)
	peer := newDirectPeer(f, sock)
	type sub struct {
		ssrc  uint32
		rec   *recorder
		extID uint8
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		// A fresh forwarder and subscribers for each datagram: each is
		// the first of its stream (the index invariants across a stream
		// have their own fuzz target, in package fastpath).
		fw := newForwarder(func() {})
		conn, err := srtpsend.NewConn(sock, srtp.ProtectionProfileAeadAes128Gcm, testKey, testSalt)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetAddr(peer.rx.LocalAddr().(*net.UDPAddr).AddrPort())
		if peer.dec, err = srtp.CreateContext(testKey, testSalt, srtp.ProtectionProfileAeadAes128Gcm); err != nil {
			t.Fatal(err)
		}
		direct, _ := bindRecorder(t, fw, 11)
		direct.SetDirect(conn.NewStream())
		var subs []sub
		for _, s := range []sub{{ssrc: 21, extID: 5}, {ssrc: 22, extID: 20}} {
			s.rec = &recorder{keep: true}
			c := &fakeContext{codecs: []webrtc.RTPCodecParameters{vp8}, ssrc: webrtc.SSRC(s.ssrc), w: s.rec,
				exts: []webrtc.RTPHeaderExtensionParameter{{URI: audioLevelURI, ID: int(s.extID)}}}
			if _, err := fw.NewDownTrack("v", "p", nil).Bind(c); err != nil {
				t.Fatal(err)
			}
			subs = append(subs, s)
		}
		var in rtp.Packet
		parses := in.Unmarshal(raw) == nil && len(raw) <= MaxPacketSize
		fw.Forward(raw)
		same := func(who string, got *rtp.Packet, ssrc uint32) {
			t.Helper()
			if got.SSRC != ssrc || got.PayloadType != 96 || got.SequenceNumber != in.SequenceNumber ||
				got.Timestamp != in.Timestamp || got.Marker != in.Marker ||
				!bytes.Equal(got.Payload, in.Payload) || got.PaddingSize != in.PaddingSize {
				t.Fatalf("%s got %+v (payload %x), sent %+v (payload %x)", who, got.Header, got.Payload, in.Header, in.Payload)
			}
		}
		for _, s := range subs {
			switch {
			case !parses && len(s.rec.got) != 0:
				t.Fatalf("subscriber %d got a packet the forwarder should have dropped", s.ssrc)
			case parses && len(s.rec.got) != 1:
				t.Fatalf("subscriber %d got %d packets for one", s.ssrc, len(s.rec.got))
			case parses:
				same("pion subscriber", &s.rec.got[0], s.ssrc)
			}
		}
		buf := make([]byte, 2048)
		if !parses {
			_ = peer.rx.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			if _, _, err := peer.rx.ReadFrom(buf); err == nil {
				t.Fatal("the direct subscriber got a packet the forwarder should have dropped")
			}
			return
		}
		same("direct subscriber", peer.read(t), 11)
	})
}
