package forward

import (
	"bytes"
	"testing"
)

// The history answers by the whole SRTP index: a resend carries the bytes
// first sent under that index, never those of the packet that took its
// slot a cycle later, and nothing for an index it never held.
func TestHistoryAnswersByWholeIndex(t *testing.T) {
	var h history
	pkt := func(i uint64) []byte { return bytes.Repeat([]byte{byte(i), byte(i >> 8)}, 50+int(i%7)) }
	for i := uint64(65530); i < 65530+historySize; i++ { // across a sequence number wrap
		h.add(i, pkt(i))
	}
	buf := make([]byte, MaxPacketSize)
	for i := uint64(65530); i < 65530+historySize; i++ {
		n, ok := h.get(i, buf)
		if !ok || !bytes.Equal(buf[:n], pkt(i)) {
			t.Fatalf("index %d: %v, %x; want the bytes sent under it", i, ok, buf[:n])
		}
	}
	// One more packet takes the oldest slot: the oldest index is gone, and
	// asking for it never returns the newer packet's bytes.
	newest := uint64(65530 + historySize)
	h.add(newest, pkt(newest))
	if _, ok := h.get(65530, buf); ok {
		t.Error("the overwritten index still answers")
	}
	if n, ok := h.get(newest, buf); !ok || !bytes.Equal(buf[:n], pkt(newest)) {
		t.Error("the newest packet does not answer")
	}
	// The same sequence number a 2^16 cycle later is another index.
	if _, ok := h.get(newest+1<<16, buf); ok {
		t.Error("an index a cycle later answers with an old packet")
	}
	if _, ok := h.get(7, buf); ok {
		t.Error("an index never held answers")
	}
}

// A packet is kept whole up to MaxPacketSize and copied out, so a later
// change to the caller's buffer does not change what is resent.
func TestHistoryCopies(t *testing.T) {
	var h history
	raw := bytes.Repeat([]byte{0xab}, MaxPacketSize)
	h.add(1, raw)
	raw[0] = 0
	buf := make([]byte, MaxPacketSize)
	if n, ok := h.get(1, buf); !ok || n != MaxPacketSize || buf[0] != 0xab {
		t.Fatalf("got %d bytes (ok %v) starting %x, want %d starting ab", n, ok, buf[0], MaxPacketSize)
	}
	small := make([]byte, 10)
	if n, ok := h.get(1, small); !ok || n != 10 {
		t.Fatalf("into a short buffer: %d, %v", n, ok)
	}
}
