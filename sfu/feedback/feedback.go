// Package feedback is what the SFU tells a publisher about the media it
// receives: NACKs for lost packets, RTCP receiver reports, and transport-
// wide congestion control feedback (transport-cc), from which the browser
// estimates its bandwidth. It is pion's NACK generator and receiver-report
// interceptors and pion's transport-cc recorder, driven by the goroutine
// that receives each packet rather than sitting in pion's receive path:
// the SFU's fast receive path (srtprecv) does not go through pion's, and a
// packet that does (ICE-TCP) gets the same feedback through the same
// calls.
package feedback

import (
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// ErrClosed is returned after Close.
var ErrClosed = errors.New("feedback: closed")

// Config configures one publisher connection's feedback.
type Config struct {
	// WriteRTCP sends RTCP to the publisher.
	WriteRTCP func([]rtcp.Packet) error
	// TransportCCInterval is how often transport-cc feedback is sent;
	// 0 means 100 ms (pion's default, and what browsers expect).
	TransportCCInterval time.Duration
	Logger              *slog.Logger
}

// Stream describes one received SSRC.
type Stream struct {
	SSRC        uint32
	PayloadType uint8
	MimeType    string
	ClockRate   uint32
	// Feedback is the codec's negotiated RTCP feedback; NACKs are sent
	// only for a stream that negotiated "nack".
	Feedback []interceptor.RTCPFeedback
	// TransportCCID is the negotiated transport-cc header extension ID;
	// 0 means the stream carries none.
	TransportCCID uint8
}

// Publisher is the feedback of one publisher connection. Its methods are
// safe for concurrent use.
type Publisher struct {
	cfg   Config
	log   *slog.Logger
	chain *interceptor.Chain
	start time.Time

	rtcpMu sync.Mutex // the chain's view of the publisher's RTCP
	rtcpIn interceptor.RTCPReader
	attrs  interceptor.Attributes

	ccMu sync.Mutex
	cc   *twcc.Recorder // shared by the connection's streams: one sequence space

	closeOnce sync.Once
	closed    chan struct{}
	wg        sync.WaitGroup
}

// New starts one connection's feedback: the NACK and receiver-report
// timers (pion's, 100 ms and 1 s) and the transport-cc timer.
func New(cfg Config) (*Publisher, error) {
	if cfg.TransportCCInterval == 0 {
		cfg.TransportCCInterval = 100 * time.Millisecond
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	gen, err := nack.NewGeneratorInterceptor()
	if err != nil {
		return nil, err
	}
	rr, err := report.NewReceiverInterceptor()
	if err != nil {
		return nil, err
	}
	var parts []interceptor.Interceptor
	for _, f := range []interceptor.Factory{gen, rr} {
		in, err := f.NewInterceptor("")
		if err != nil {
			return nil, err
		}
		parts = append(parts, in)
	}
	p := &Publisher{
		cfg: cfg, log: log, chain: interceptor.NewChain(parts), start: time.Now(),
		cc: twcc.NewRecorder(rand.Uint32()), closed: make(chan struct{}), attrs: interceptor.Attributes{},
	}
	p.chain.BindRTCPWriter(interceptor.RTCPWriterFunc(func(pkts []rtcp.Packet, _ interceptor.Attributes) (int, error) {
		return 0, cfg.WriteRTCP(pkts)
	}))
	p.rtcpIn = p.chain.BindRTCPReader(interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		return len(b), a, nil // the packet is already in b (ReceiveRTCP)
	}))
	p.wg.Add(1)
	go p.sendTransportCC()
	return p, nil
}

// Receiver is one stream's feedback.
type Receiver struct {
	p      *Publisher
	info   interceptor.StreamInfo
	ccID   uint8
	mu     sync.Mutex // the chain's readers are per stream
	reader interceptor.RTPReader
	attrs  interceptor.Attributes
	cc     rtp.TransportCCExtension
}

// Stream starts feedback for one SSRC.
func (p *Publisher) Stream(s Stream) *Receiver {
	r := &Receiver{p: p, ccID: s.TransportCCID, attrs: interceptor.Attributes{}}
	r.info = interceptor.StreamInfo{
		SSRC: s.SSRC, PayloadType: s.PayloadType, MimeType: s.MimeType, ClockRate: s.ClockRate, RTCPFeedback: s.Feedback,
	}
	// The packet is already in b (Received): nothing to copy.
	r.reader = p.chain.BindRemoteStream(&r.info, interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		return len(b), a, nil
	}))
	return r
}

// Received records one packet of the stream, which arrived at arrival
// (hdr is pkt's parsed header).
func (r *Receiver) Received(pkt []byte, hdr *rtp.Header, arrival time.Time) {
	r.mu.Lock()
	clear(r.attrs) // the header is parsed once per packet for both interceptors
	_, _, _ = r.reader.Read(pkt, r.attrs)
	r.mu.Unlock()
	if r.ccID == 0 {
		return
	}
	ext := hdr.GetExtension(r.ccID)
	if ext == nil {
		return
	}
	r.mu.Lock()
	err := r.cc.Unmarshal(ext)
	seq := r.cc.TransportSequence
	r.mu.Unlock()
	if err != nil {
		return
	}
	p := r.p
	p.ccMu.Lock()
	p.cc.Record(hdr.SSRC, seq, arrival.Sub(p.start).Microseconds())
	p.ccMu.Unlock()
}

// Close ends the stream's feedback.
func (r *Receiver) Close() { r.p.chain.UnbindRemoteStream(&r.info) }

// ReceiveRTCP passes the publisher's RTCP (compound, decrypted) to the
// receiver reports, which answer its sender reports (LSR, DLSR: the
// publisher's round-trip time).
func (p *Publisher) ReceiveRTCP(raw []byte) {
	p.rtcpMu.Lock()
	defer p.rtcpMu.Unlock()
	clear(p.attrs)
	_, _, _ = p.rtcpIn.Read(raw, p.attrs)
}

func (p *Publisher) sendTransportCC() {
	defer p.wg.Done()
	t := time.NewTicker(p.cfg.TransportCCInterval)
	defer t.Stop()
	for {
		select {
		case <-p.closed:
			return
		case <-t.C:
			p.ccMu.Lock()
			pkts := p.cc.BuildFeedbackPacket()
			p.ccMu.Unlock()
			if len(pkts) == 0 {
				continue
			}
			if err := p.cfg.WriteRTCP(pkts); err != nil {
				p.log.Debug("sending transport-cc feedback", "err", err)
			}
		}
	}
}

// Close stops the timers.
func (p *Publisher) Close() error {
	var err error
	p.closeOnce.Do(func() {
		close(p.closed)
		err = p.chain.Close()
		p.wg.Wait()
	})
	return err
}
