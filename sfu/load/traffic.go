package load

import (
	"encoding/binary"
	"time"
)

// Every packet the load tool sends ends in a trailer: a magic and the send
// time, so a subscriber can measure one-way latency through the SFU (the
// sender and the receiver are the same process: one clock).
const (
	trailerMagic = 0x53464c44 // "SFLD"
	trailerSize  = 12
)

func putTrailer(payload []byte, now time.Time) {
	t := payload[len(payload)-trailerSize:]
	binary.BigEndian.PutUint32(t, trailerMagic)
	binary.BigEndian.PutUint64(t[4:], uint64(now.UnixNano()))
}

// sentAt reads the trailer; ok is false for a payload without one.
func sentAt(payload []byte) (unixNano int64, ok bool) {
	if len(payload) < trailerSize {
		return 0, false
	}
	t := payload[len(payload)-trailerSize:]
	if binary.BigEndian.Uint32(t) != trailerMagic {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(t[4:])), true
}

// vp8DescriptorSize is the payload descriptor the tool writes: X=1 with
// a 15-bit picture id, as Chrome sends it.
const vp8DescriptorSize = 4

// vp8Frame splits one VP8 frame of size bytes into RTP payloads of at
// most maxPayload bytes, each with a payload descriptor; the first starts
// the partition and carries the VP8 frame tag (and, for a keyframe, the
// start code and 1280x720 dimensions), so an SFU or receiver that looks at
// the bitstream sees a real keyframe or delta frame. Payloads are written
// into bufs, whose buffers are reused and grown as needed, and returned.
func vp8Frame(bufs [][]byte, size, maxPayload int, pictureID uint16, key bool) [][]byte {
	room := maxPayload - vp8DescriptorSize
	n := (size + room - 1) / room
	if n < 1 {
		n = 1
	}
	per := (size + n - 1) / n // equal-sized packets, like libwebrtc
	bufs = bufs[:cap(bufs)]
	for len(bufs) < n {
		bufs = append(bufs, make([]byte, 0, maxPayload+trailerSize+16))
	}
	bufs = bufs[:n]
	for i := range n {
		body := per
		if rest := size - i*per; rest < body {
			body = rest
		}
		body = max(body, trailerSize+10) // room for the frame header and the trailer
		if cap(bufs[i]) < vp8DescriptorSize+body {
			bufs[i] = make([]byte, 0, vp8DescriptorSize+body)
		}
		bufs[i] = bufs[i][:vp8DescriptorSize+body]
		p := bufs[i]
		clear(p)
		p[0] = 0x80 // X
		if i == 0 {
			p[0] |= 0x10 // S: start of partition 0
		}
		p[1] = 0x80                           // I: picture id present
		p[2] = 0x80 | byte(pictureID>>8)&0x7f // M: 15-bit picture id
		p[3] = byte(pictureID)
		if i == 0 {
			h := p[vp8DescriptorSize:]
			// Frame tag: bit 0 is the inverse key frame flag, bit 4
			// show_frame, bits 5-23 the first partition size.
			tag := uint32(1<<4) | uint32(min(size, 1<<19-1))<<5
			if !key {
				tag |= 1
			}
			h[0], h[1], h[2] = byte(tag), byte(tag>>8), byte(tag>>16)
			if key {
				copy(h[3:], []byte{0x9d, 0x01, 0x2a, 0x00, 0x05, 0xd0, 0x02}) // start code, 1280, 720
			}
		}
	}
	return bufs
}

// isVP8Keyframe reports whether an RTP payload is the first packet of a
// VP8 keyframe (RFC 7741 payload descriptor, then the frame tag's P bit).
func isVP8Keyframe(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	i := 1
	if p[0]&0x80 != 0 { // X
		if len(p) < 2 {
			return false
		}
		x := p[1]
		i++
		if x&0x80 != 0 { // I
			if len(p) <= i {
				return false
			}
			if p[i]&0x80 != 0 {
				i++
			}
			i++
		}
		if x&0x40 != 0 { // L
			i++
		}
		if x&0x30 != 0 { // T or K
			i++
		}
	}
	s, pid := p[0]&0x10 != 0, p[0]&0x07
	return s && pid == 0 && len(p) > i && p[i]&0x01 == 0
}

// frameSizes returns the delta and keyframe sizes in bytes for a bitrate,
// frame rate and keyframe interval, keeping the average at the bitrate
// with keyframes keyRatio times the size of a delta frame.
func frameSizes(bitrate, fps int, keyEvery time.Duration) (delta, key int) {
	const keyRatio = 5
	avg := float64(bitrate) / 8 / float64(fps)
	n := keyEvery.Seconds() * float64(fps) // frames per keyframe interval
	if n < 1 {
		n = 1
	}
	d := avg * n / (keyRatio + n - 1)
	return int(d), int(d * keyRatio)
}
