package forward

import (
	"runtime"

	"github.com/jbcalling/platform/sfu/fastpath/srtpsend"
	"github.com/pion/rtp"
)

// fanOutChunk is the fewest subscribers worth handing to a helper
// goroutine, and a list is split from twice that. Each incoming packet
// then costs two hand-offs; with the port's readers forwarding different
// tracks in parallel, splitting 200 subscribers cost 6-17 % more CPU per
// forwarded packet for no measurable latency gain (docs/benchmarks.md),
// so only a track whose fan-out alone takes several milliseconds per
// packet (≈ 7 µs a copy) is split.
const fanOutChunk = 256

type fanJob struct {
	downs []*DownTrack
	outs  []outPacket
}

type fanResult struct{ sent, bytes uint64 }

// outPacket is one incoming packet as the fan-out writes it.
type outPacket struct {
	gen     uint64      // which shapes' headers are this packet's
	i       int         // its place in the burst: its header in a shape's heads
	index   uint64      // its SRTP index at the publisher
	key     bool        // a keyframe's
	from    *Forwarder  // the track (layer) it arrived on
	size    int         // as received
	src     *rtp.Header // as received
	payload []byte      // without padding (pion's path)
	body    []byte      // payload and padding, as received (the direct path)
}

// set points o at raw, which p was parsed from.
func (o *outPacket) set(raw []byte, p *rtp.Packet) {
	o.size, o.src, o.payload = len(raw), &p.Header, p.Payload
	o.body = raw[len(raw)-len(p.Payload)-int(p.PaddingSize):]
}

// writeAll writes a burst to downs, subscriber by subscriber: into batch
// for subscribers with a direct path, sent as the batch fills and at the
// end, through pion for the others. It returns the copies and bytes sent.
func writeAll(downs []*DownTrack, outs []outPacket, batch *srtpsend.Batch) (sent, bytes uint64) {
	touch(downs, batch)
	for _, d := range downs {
		for i := range outs {
			if d.write(&outs[i], batch) {
				sent++
				bytes += uint64(outs[i].size)
			}
		}
	}
	if batch.Len() > 0 {
		_ = batch.Flush() // a failed send is a lost packet; NACKs recover video
	}
	return sent, bytes
}

// touch reads the state each direct copy needs, for every subscriber,
// before the copies are made: between packets the load on the machine
// evicts it, and in the copy loop each subscriber's chain of cache misses
// (track, binding, stream, connection, address, SRTP context) waits
// behind the previous subscriber's encryption, where here the misses of
// many subscribers overlap (docs/benchmarks.md).
func touch(downs []*DownTrack, batch *srtpsend.Batch) {
	for _, d := range downs {
		if b, s := d.bound.Load(), d.direct.Load(); b != nil && s != nil {
			batch.Touch(s, b.ssrc)
		}
	}
}

// fanOut splits a long subscriber list between this goroutine and up to
// GOMAXPROCS-1 helpers, and returns when every part is written: one
// track's fan-out is otherwise capped at one core, and the last subscriber
// waits for all the writes before it. Each DownTrack is written by one
// goroutine per packet, and the packet is not touched until all finish.
func (f *Forwarder) fanOut(downs []*DownTrack, outs []outPacket) (sent, bytes uint64) {
	if f.jobs == nil {
		f.startHelpers(runtime.GOMAXPROCS(0) - 1)
	}
	parts := min(f.helpers+1, len(downs)/fanOutChunk)
	size := (len(downs) + parts - 1) / parts
	for i := 1; i < parts; i++ {
		f.jobs <- fanJob{downs: downs[i*size : min(len(downs), (i+1)*size)], outs: outs}
	}
	sent, bytes = writeAll(downs[:size], outs, &f.batch)
	for i := 1; i < parts; i++ {
		r := <-f.results
		sent, bytes = sent+r.sent, bytes+r.bytes
	}
	return sent, bytes
}

func (f *Forwarder) startHelpers(n int) {
	f.jobs, f.results, f.helpers = make(chan fanJob), make(chan fanResult), n
	for range n {
		f.helperWG.Add(1)
		go func() {
			defer f.helperWG.Done()
			var batch srtpsend.Batch
			for j := range f.jobs {
				sent, bytes := writeAll(j.downs, j.outs, &batch)
				f.results <- fanResult{sent, bytes}
			}
		}()
	}
}

func (f *Forwarder) stopHelpers() {
	if f.jobs != nil {
		close(f.jobs)
		f.helperWG.Wait()
		f.jobs = nil
	}
}
