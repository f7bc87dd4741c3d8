package audio

import (
	"fmt"

	"gopkg.in/hraban/opus.v2"
)

// Opus frames are 20 ms here, as browsers send and expect them.
const FrameDuration = 20 // ms

// Decoder turns a speaker's Opus packets into mono PCM at its rate (Opus
// decodes to 8, 12, 16, 24 or 48 kHz itself: the recogniser's 16 kHz
// needs no resampling).
type Decoder struct {
	dec *opus.Decoder
	buf []int16
}

// NewDecoder decodes to mono at rate.
func NewDecoder(rate int) (*Decoder, error) {
	d, err := opus.NewDecoder(rate, 1)
	if err != nil {
		return nil, fmt.Errorf("audio: opus decoder: %w", err)
	}
	return &Decoder{dec: d, buf: make([]int16, rate*120/1000)}, nil // the longest Opus packet
}

// Decode returns the samples of one packet, valid until the next call.
func (d *Decoder) Decode(packet []byte) ([]int16, error) {
	n, err := d.dec.Decode(packet, d.buf)
	if err != nil {
		return nil, fmt.Errorf("audio: opus: %w", err)
	}
	return d.buf[:n], nil
}

// Encoder makes 20 ms Opus packets of mono speech at 48 kHz.
type Encoder struct {
	enc *opus.Encoder
	out []byte
}

// EncoderRate is the rate Encoder takes samples at.
const EncoderRate = 48000

// NewEncoder makes an encoder for speech.
func NewEncoder() (*Encoder, error) {
	e, err := opus.NewEncoder(EncoderRate, 1, opus.AppVoIP)
	if err != nil {
		return nil, fmt.Errorf("audio: opus encoder: %w", err)
	}
	return &Encoder{enc: e, out: make([]byte, 1500)}, nil
}

// Encode encodes one 20 ms frame (960 samples); the packet is valid until
// the next call.
func (e *Encoder) Encode(frame []int16) ([]byte, error) {
	n, err := e.enc.Encode(frame, e.out)
	if err != nil {
		return nil, fmt.Errorf("audio: opus: %w", err)
	}
	return e.out[:n], nil
}
