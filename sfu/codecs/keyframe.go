package codecs

import "strings"

// KeyframeDetector returns a function that reports whether an RTP payload
// of the codec is the first packet of a keyframe, or nil where the codec
// has none (audio) or is not known.
func KeyframeDetector(mime string) func([]byte) bool {
	switch strings.ToLower(mime) {
	case "video/vp8":
		return isVP8Keyframe
	case "video/vp9":
		return isVP9Keyframe
	case "video/h264":
		return isH264Keyframe
	}
	return nil
}

// isVP8Keyframe: the descriptor says the first packet of a frame
// (partition 0), and the VP8 payload header's inverse key frame bit is
// clear.
func isVP8Keyframe(p []byte) bool {
	d, err := ParseVP8(p)
	return err == nil && d.Keyframe
}

// isVP9Keyframe: the payload descriptor (RFC 9628) says start of a frame
// (B) that is not inter-picture predicted (P clear), in spatial layer 0
// when layer indices are present.
func isVP9Keyframe(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	b0 := p[0]
	if b0&0x40 != 0 || b0&0x08 == 0 { // P set, or not the beginning of a frame
		return false
	}
	if b0&0x20 == 0 { // L: no layer indices, a single layer
		return true
	}
	i := 1
	if b0&0x80 != 0 { // I: picture id
		if len(p) <= i {
			return false
		}
		if p[i]&0x80 != 0 {
			i++
		}
		i++
	}
	return len(p) > i && p[i]&0x0e == 0 // SID 0
}

// isH264Keyframe: an IDR slice or an SPS, alone, in a STAP-A, or at the
// start of an FU-A (RFC 6184).
func isH264Keyframe(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	switch nal := p[0] & 0x1f; nal {
	case 5, 7:
		return true
	case 24: // STAP-A: 16-bit size, NAL unit, ...
		for i := 1; i+2 < len(p); {
			size := int(p[i])<<8 | int(p[i+1])
			if t := p[i+2] & 0x1f; t == 5 || t == 7 {
				return true
			}
			i += 2 + size
		}
	case 28: // FU-A: start bit and the fragmented NAL's type
		return len(p) > 1 && p[1]&0x80 != 0 && (p[1]&0x1f == 5 || p[1]&0x1f == 7)
	}
	return false
}
