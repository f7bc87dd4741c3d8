package simulcast

import "errors"

// ErrVP8Descriptor: the payload is too short for the VP8 payload
// descriptor its flags announce.
var ErrVP8Descriptor = errors.New("simulcast: truncated VP8 payload descriptor")

// vp8 locates the fields of a VP8 payload descriptor (RFC 7741 section 4.2)
// that a layer switch rewrites, so they can be changed in place.
type vp8 struct {
	start    bool // S: the first packet of a frame (partition 0)
	keyframe bool // the frame is a keyframe (only known on its first packet)
	picAt    int  // offset of the picture ID, -1 if absent
	picLong  bool // the picture ID has 15 bits (M), else 7
	tl0At    int  // offset of TL0PICIDX, -1 if absent
}

func parseVP8(p []byte) (vp8, error) {
	d := vp8{picAt: -1, tl0At: -1}
	if len(p) < 1 {
		return d, ErrVP8Descriptor
	}
	d.start = p[0]&0x10 != 0 && p[0]&0x07 == 0
	i := 1
	if p[0]&0x80 != 0 { // X
		if len(p) < 2 {
			return d, ErrVP8Descriptor
		}
		x := p[1]
		i = 2
		if x&0x80 != 0 { // I
			if len(p) < i+1 {
				return d, ErrVP8Descriptor
			}
			d.picAt, d.picLong = i, p[i]&0x80 != 0
			i++
			if d.picLong {
				i++
			}
		}
		if x&0x40 != 0 { // L
			d.tl0At = i
			i++
		}
		if x&0x30 != 0 { // T or K
			i++
		}
	}
	if len(p) < i+1 {
		return d, ErrVP8Descriptor
	}
	// The VP8 payload header's P bit is 0 on keyframes.
	d.keyframe = d.start && p[i]&0x01 == 0
	return d, nil
}

func (d vp8) picture(p []byte) uint16 {
	if d.picLong {
		return uint16(p[d.picAt]&0x7f)<<8 | uint16(p[d.picAt+1])
	}
	return uint16(p[d.picAt] & 0x7f)
}

func (d vp8) setPicture(p []byte, id uint16) {
	if d.picLong {
		p[d.picAt] = 0x80 | byte(id>>8)&0x7f
		p[d.picAt+1] = byte(id)
		return
	}
	p[d.picAt] = byte(id) & 0x7f
}

// pictureMask is the wrap of the descriptor's picture IDs.
func (d vp8) pictureMask() uint16 {
	if d.picLong {
		return 0x7fff
	}
	return 0x7f
}
