package codecs

import "errors"

// ErrVP8Descriptor: the payload is too short for the VP8 payload
// descriptor its flags announce.
var ErrVP8Descriptor = errors.New("codecs: truncated VP8 payload descriptor")

// VP8Descriptor locates the fields of a VP8 payload descriptor (RFC 7741
// section 4.2) that a simulcast layer switch rewrites, so they can be
// changed in place.
type VP8Descriptor struct {
	Start    bool // S: the first packet of a frame (partition 0)
	Keyframe bool // the frame is a keyframe (only known on its first packet)
	PicAt    int  // offset of the picture ID, -1 if absent
	PicLong  bool // the picture ID has 15 bits (M), else 7
	TL0At    int  // offset of TL0PICIDX, -1 if absent
}

// ParseVP8 reads the descriptor at the start of a VP8 RTP payload.
func ParseVP8(p []byte) (VP8Descriptor, error) {
	d := VP8Descriptor{PicAt: -1, TL0At: -1}
	if len(p) < 1 {
		return d, ErrVP8Descriptor
	}
	d.Start = p[0]&0x10 != 0 && p[0]&0x07 == 0
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
			d.PicAt, d.PicLong = i, p[i]&0x80 != 0
			i++
			if d.PicLong {
				i++
			}
		}
		if x&0x40 != 0 { // L
			d.TL0At = i
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
	d.Keyframe = d.Start && p[i]&0x01 == 0
	return d, nil
}

// Picture is the picture ID in p.
func (d VP8Descriptor) Picture(p []byte) uint16 {
	if d.PicLong {
		return uint16(p[d.PicAt]&0x7f)<<8 | uint16(p[d.PicAt+1])
	}
	return uint16(p[d.PicAt] & 0x7f)
}

// SetPicture writes id as p's picture ID.
func (d VP8Descriptor) SetPicture(p []byte, id uint16) {
	if d.PicLong {
		p[d.PicAt] = 0x80 | byte(id>>8)&0x7f
		p[d.PicAt+1] = byte(id)
		return
	}
	p[d.PicAt] = byte(id) & 0x7f
}

// PictureMask is the wrap of the descriptor's picture IDs.
func (d VP8Descriptor) PictureMask() uint16 {
	if d.PicLong {
		return 0x7fff
	}
	return 0x7f
}
