package room

import (
	"time"

	"github.com/jbcalling/platform/sfu/bwe"
	"github.com/jbcalling/platform/sfu/forward"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// sendSenderReports sends every subscribed track's RTCP sender report
// (the reporter calls it each SenderReportInterval); pkts is scratch.
func (p *Participant) sendSenderReports(now time.Time, pkts []rtcp.Packet) []rtcp.Packet {
	p.subMu.Lock()
	for _, s := range p.subs {
		if sr, ok := s.down.SenderReport(now); ok {
			pkts = append(pkts, &sr)
		}
	}
	p.subMu.Unlock()
	if len(pkts) == 0 || p.isClosed() {
		return pkts
	}
	if err := p.sub.WriteRTCP(pkts); err != nil {
		p.log.Debug("sending sender reports", "err", err)
	}
	return pkts
}

// readSubscriberRTCP reads the RTCP a subscriber sends about one track
// through pion (when the connection has no fast receive path).
func (p *Participant) readSubscriberRTCP(s *webrtc.RTPSender, down *forward.DownTrack) {
	defer p.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, _, err := s.Read(buf)
		if err != nil {
			return
		}
		p.receiveRTCP(buf[:n], down)
	}
}

// subscriberRTCP is the RTCP a subscriber sends on the fast receive path
// (srtprecv.RTCPSink), for any of its tracks.
type subscriberRTCP struct{ p *Participant }

func (s subscriberRTCP) ReceiveRTCP(pkt []byte) { s.p.receiveRTCP(pkt, nil) }

// receiveRTCP takes a compound RTCP packet from the subscriber: its
// transport-cc feedback goes to the connection's bwe.Sender as it is,
// what else asks for an answer is parsed and answered (down as for
// handleSubscriberRTCP).
func (p *Participant) receiveRTCP(pkt []byte, down *forward.DownTrack) {
	for len(pkt) >= 4 {
		n := (int(pkt[2])<<8 | int(pkt[3]) + 1) * 4
		if n > len(pkt) {
			return
		}
		one := pkt[:n]
		pkt = pkt[n:]
		if bwe.IsFeedback(one) {
			p.cc.Feedback(one)
			continue
		}
		if !hasFeedback(one) {
			continue // nothing to answer
		}
		if pkts, err := rtcp.Unmarshal(one); err == nil {
			p.handleSubscriberRTCP(pkts, down)
		}
	}
}

// hasFeedback reports whether a compound RTCP packet holds transport or
// payload-specific feedback (RFC 4585: NACK, PLI, FIR) or a receiver
// report block (the round trip, and the loss the bandwidth estimate
// needs, none included), without parsing it: SDES alone is not.
func hasFeedback(pkt []byte) bool {
	for off := 0; off+4 <= len(pkt); off += (int(pkt[off+2])<<8 | int(pkt[off+3]) + 1) * 4 {
		switch pt := rtcp.PacketType(pkt[off+1]); pt {
		case rtcp.TypeTransportSpecificFeedback, rtcp.TypePayloadSpecificFeedback:
			return true
		case rtcp.TypeReceiverReport:
			// 8 header bytes, then the 24-byte blocks, counted in the first.
			if pkt[off]&0x1f > 0 && off+8+24 <= len(pkt) {
				return true
			}
		}
	}
	return false
}

// roundTrip is the round trip a receiver report block gives (RFC 3550
// §6.4.1: arrival - LSR - DLSR, in 1/65536 s), if it echoes a sender report.
func roundTrip(r rtcp.ReceptionReport, now time.Time) (time.Duration, bool) {
	if r.LastSenderReport == 0 {
		return 0, false
	}
	const unixToNTP = 2208988800
	secs := uint64(now.Unix() + unixToNTP)
	frac := uint64(now.Nanosecond()) << 32 / uint64(time.Second)
	mid := uint32((secs<<32 | frac) >> 16)
	d := mid - r.LastSenderReport - r.Delay
	if d > 10<<16 { // over 10 s: a clock jump or garbage
		return 0, false
	}
	return time.Duration(uint64(d) * uint64(time.Second) >> 16), true
}

// handleSubscriberRTCP answers a subscriber's feedback: NACKs from the
// track's history, PLI/FIR to the publisher. down is the track the packets
// are about, or nil: each names its track (its media SSRC).
func (p *Participant) handleSubscriberRTCP(pkts []rtcp.Packet, down *forward.DownTrack) {
	c := p.m.cfg.Counters
	for _, pkt := range pkts {
		switch pkt := pkt.(type) {
		case *rtcp.PictureLossIndication:
			if d := p.trackFor(down, pkt.MediaSSRC); d != nil {
				c.PLIs.Add(1)
				d.RequestKeyframe()
			}
		case *rtcp.FullIntraRequest:
			if d := p.trackFor(down, pkt.MediaSSRC); d != nil {
				c.PLIs.Add(1)
				d.RequestKeyframe()
			}
		case *rtcp.TransportLayerNack:
			if p.probe.busy.Load() {
				c.NACKs.Add(1)
				continue // see prober.busy
			}
			if d := p.trackFor(down, pkt.MediaSSRC); d != nil {
				c.NACKs.Add(1)
				d.Resend(pkt, p.resends)
			}
		case *rtcp.ReceiverReport:
			now := time.Now()
			for _, r := range pkt.Reports {
				p.noteLoss(r.SSRC, r.FractionLost, now)
				if rtt, ok := roundTrip(r, now); ok {
					if d := p.trackFor(nil, r.SSRC); d != nil {
						d.SetRTT(rtt)
					}
				}
			}
		}
	}
}
