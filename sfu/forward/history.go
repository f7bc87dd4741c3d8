package forward

import (
	"sync"
)

// history keeps the last historySize packets of a track by SRTP index
// for retransmission: by the whole index, so that a resend always carries
// the bytes first sent under it, never those of a packet a sequence
// number cycle later.
type history struct {
	mu    sync.Mutex
	index [historySize]uint64
	size  [historySize]uint16 // 0: empty slot
	data  [historySize][MaxPacketSize]byte
}

// historySize covers ~2.7 s of a 1.5 Mbit/s track (190 packets/s): more
// than any NACK round trip worth answering.
const historySize = 512

func (h *history) add(index uint64, raw []byte) {
	i := index % historySize
	h.mu.Lock()
	h.index[i], h.size[i] = index, uint16(copy(h.data[i][:], raw))
	h.mu.Unlock()
}

func (h *history) get(index uint64, dst []byte) (int, bool) {
	i := index % historySize
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.size[i] == 0 || h.index[i] != index {
		return 0, false
	}
	return copy(dst, h.data[i][:h.size[i]]), true
}
