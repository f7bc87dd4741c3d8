// Package audio holds what the agent does to sound between the SFU and
// the speech engines: WAV in and out, resampling, Opus, and cutting a
// speaker's audio into utterances.
package audio

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrNotWAV means the bytes are not a 16-bit PCM WAV file.
var ErrNotWAV = errors.New("audio: not a 16-bit PCM WAV")

// EncodeWAV returns mono 16-bit PCM samples at rate as a WAV file.
func EncodeWAV(pcm []int16, rate int) []byte {
	data := len(pcm) * 2
	b := make([]byte, 44+data)
	copy(b[0:], "RIFF")
	binary.LittleEndian.PutUint32(b[4:], uint32(36+data))
	copy(b[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(b[16:], 16)
	binary.LittleEndian.PutUint16(b[20:], 1) // PCM
	binary.LittleEndian.PutUint16(b[22:], 1) // mono
	binary.LittleEndian.PutUint32(b[24:], uint32(rate))
	binary.LittleEndian.PutUint32(b[28:], uint32(rate*2))
	binary.LittleEndian.PutUint16(b[32:], 2)
	binary.LittleEndian.PutUint16(b[34:], 16)
	copy(b[36:], "data")
	binary.LittleEndian.PutUint32(b[40:], uint32(data))
	for i, s := range pcm {
		binary.LittleEndian.PutUint16(b[44+2*i:], uint16(s))
	}
	return b
}

// DecodeWAV reads a 16-bit PCM WAV file; several channels are mixed to
// one. A data chunk whose size says more than there is (a WAV written to
// a pipe, as espeak-ng --stdout does) is read to the end.
func DecodeWAV(b []byte) (pcm []int16, rate int, err error) {
	if len(b) < 12 || string(b[0:4]) != "RIFF" || string(b[8:12]) != "WAVE" {
		return nil, 0, ErrNotWAV
	}
	channels := 0
	for off := 12; off+8 <= len(b); {
		id, size := string(b[off:off+4]), int(binary.LittleEndian.Uint32(b[off+4:]))
		body := b[off+8:]
		if size > len(body) || size < 0 {
			size = len(body)
		}
		switch id {
		case "fmt ":
			if size < 16 || binary.LittleEndian.Uint16(body[0:]) != 1 || binary.LittleEndian.Uint16(body[14:]) != 16 {
				return nil, 0, fmt.Errorf("%w: format is not 16-bit PCM", ErrNotWAV)
			}
			channels = int(binary.LittleEndian.Uint16(body[2:]))
			rate = int(binary.LittleEndian.Uint32(body[4:]))
		case "data":
			if channels == 0 || rate == 0 {
				return nil, 0, fmt.Errorf("%w: data before fmt", ErrNotWAV)
			}
			frames := size / (2 * channels)
			pcm = make([]int16, frames)
			for i := range frames {
				sum := 0
				for c := range channels {
					sum += int(int16(binary.LittleEndian.Uint16(body[2*(i*channels+c):])))
				}
				pcm[i] = int16(sum / channels)
			}
			return pcm, rate, nil
		}
		off += 8 + size + size%2
	}
	return nil, 0, fmt.Errorf("%w: no data chunk", ErrNotWAV)
}

// Resample converts mono samples from one rate to another by linear
// interpolation: enough for speech going to a recogniser or an encoder.
func Resample(pcm []int16, from, to int) []int16 {
	if from == to || len(pcm) == 0 {
		return pcm
	}
	n := int(int64(len(pcm)) * int64(to) / int64(from))
	out := make([]int16, n)
	for i := range out {
		pos := float64(i) * float64(from) / float64(to)
		j := int(pos)
		if j >= len(pcm)-1 {
			out[i] = pcm[len(pcm)-1]
			continue
		}
		f := pos - float64(j)
		out[i] = int16(float64(pcm[j])*(1-f) + float64(pcm[j+1])*f)
	}
	return out
}
