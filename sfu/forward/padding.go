package forward

import (
	"errors"
	"time"

	"github.com/jbcalling/platform/sfu/rtpindex"
	"github.com/pion/rtp"
)

// ErrNotSending: padding asked of a track that has sent nothing yet.
var ErrNotSending = errors.New("forward: the track has sent no packet to pad after")

// MaxPadding is the most padding one packet carries (RTP's padding count
// is one byte).
const MaxPadding = 255

// SendPadding sends one packet of padding alone, MaxPadding bytes, on
// d's SSRC: bytes a probe of the subscriber's link adds to the media.
// Its index comes after the newest sent (rtpindex.Outbound.Pad), its
// timestamp is the stream's clock now, and the subscriber drops it once
// counted.
func (d *DownTrack) SendPadding() error {
	b := d.bound.Load()
	if b == nil {
		return ErrNotSending
	}
	sr, ok := d.SenderReport(time.Now())
	if !ok {
		return ErrNotSending
	}
	s := d.direct.Load()
	via := rtpindex.ViaPion
	if s != nil {
		via = rtpindex.ViaDirect
	}
	d.padMu.Lock()
	defer d.padMu.Unlock()
	index, err := b.out.Pad(via)
	if err != nil {
		return err
	}
	h := &d.padHdr
	*h = rtp.Header{Version: 2, Padding: true, PaddingSize: MaxPadding, SSRC: b.ssrc, PayloadType: b.pt,
		SequenceNumber: uint16(index), Timestamp: sr.RTPTime}
	if id := b.shape.cc; id != 0 {
		d.padCC = [2]byte{}
		_ = h.SetExtension(id, d.padCC[:])
	}
	if s != nil {
		h.PaddingSize = 0 // the body below carries it
		n, err := h.MarshalTo(d.padHead[:])
		if err != nil {
			return err
		}
		d.padBody[MaxPadding-1] = MaxPadding
		return s.WriteRTP(d.padHead[:n], b.ssrc, b.pt, index, d.padBody[:])
	}
	d.stampPion(h, d.padCC[:], h.MarshalSize()+MaxPadding)
	_, err = b.ws.WriteRTP(h, nil)
	return err
}
