package load

import (
	"testing"
	"time"
)

func TestVP8FramesAreKeyframesOnlyWhenAsked(t *testing.T) {
	for _, key := range []bool{true, false} {
		bufs := vp8Frame(nil, 6000, 1180, 0x1234, key)
		if len(bufs) != 6 {
			t.Fatalf("6000 bytes in ≤1180-byte payloads: %d packets, want 6", len(bufs))
		}
		total := 0
		for i, b := range bufs {
			total += len(b) - vp8DescriptorSize
			if len(b) > 1180 {
				t.Errorf("packet %d has %d bytes", i, len(b))
			}
			if got := isVP8Keyframe(b); got != (key && i == 0) {
				t.Errorf("key=%v packet %d: isVP8Keyframe = %v", key, i, got)
			}
		}
		if total != 6000 {
			t.Errorf("frame bytes %d, want 6000", total)
		}
	}
	// Buffers are reused for the next, smaller frame.
	a := vp8Frame(nil, 3000, 1180, 1, true)
	b := vp8Frame(a, 100, 1180, 2, false)
	if len(b) != 1 || &a[0][0] != &b[0][0] || isVP8Keyframe(b[0]) {
		t.Errorf("reused frame: %d packets, key %v", len(b), isVP8Keyframe(b[0]))
	}
}

func TestTrailerRoundTrip(t *testing.T) {
	p := make([]byte, 100)
	now := time.Now()
	putTrailer(p, now)
	if got, ok := sentAt(p); !ok || got != now.UnixNano() {
		t.Fatalf("sentAt = %d, %v", got, ok)
	}
	if _, ok := sentAt(make([]byte, 100)); ok {
		t.Fatal("a payload without a trailer has a send time")
	}
}

func TestFrameSizesKeepTheBitrate(t *testing.T) {
	delta, key := frameSizes(1_500_000, 30, 3*time.Second)
	perInterval := float64(key + 89*delta)
	if want := 1_500_000.0 / 8 * 3; perInterval < want*0.99 || perInterval > want*1.01 {
		t.Fatalf("bytes per 3 s = %.0f, want %.0f", perInterval, want)
	}
}

func TestSeqTrackerCountsLossAcrossWrap(t *testing.T) {
	var s seqTracker
	for _, seq := range []uint16{65530, 65531, 65533, 65531, 0, 1, 65534, 3} {
		s.add(seq)
	}
	// 65530..3 is 10 numbers; received 65530,65531,65533,0,1,65534,3 = 7
	// unique (65531 twice is a duplicate).
	if s.expected() != 10 || s.received != 7 {
		t.Fatalf("expected %d received %d, want 10 7", s.expected(), s.received)
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h histogram
	for i := range 100 {
		h.add(time.Duration(i+1) * 10 * time.Microsecond) // 10 µs .. 1 ms
	}
	if p50 := h.quantile(0.5); p50 != 500*time.Microsecond+time.Microsecond {
		t.Errorf("p50 %v", p50)
	}
	if p99 := h.quantile(0.99); p99 < 990*time.Microsecond || p99 > time.Millisecond {
		t.Errorf("p99 %v", p99)
	}
	h.add(2 * time.Second)
	if m := h.quantile(1); m != 2*time.Second {
		t.Errorf("max %v", m)
	}
}
