package codecs

import (
	"testing"
)

func TestKeyframeDetectors(t *testing.T) {
	tests := []struct {
		name    string
		mime    string
		payload []byte
		want    bool
	}{
		{"vp8 keyframe, 15-bit picture id", "video/VP8", []byte{0x90, 0x80, 0x81, 0x23, 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a}, true},
		{"vp8 delta frame", "video/VP8", []byte{0x90, 0x80, 0x81, 0x23, 0x11, 0x02, 0x00}, false},
		{"vp8 keyframe continuation", "video/VP8", []byte{0x80, 0x80, 0x81, 0x23, 0x00}, false},
		{"vp8 keyframe, no extension", "video/VP8", []byte{0x10, 0x50, 0x01}, true},
		{"vp8 keyframe, TL0PICIDX and TID", "video/VP8", []byte{0x90, 0xe0, 0x05, 0x07, 0x20, 0x00, 0x00}, true},
		{"vp8 truncated", "video/VP8", []byte{0x90, 0x80}, false},
		{"vp9 keyframe start", "video/VP9", []byte{0x88, 0x01, 0x00}, true},
		{"vp9 inter frame", "video/VP9", []byte{0xc8, 0x01}, false},
		{"vp9 keyframe middle", "video/VP9", []byte{0x80, 0x01}, false},
		{"vp9 keyframe spatial layer 1", "video/VP9", []byte{0xa8, 0x01, 0x02}, false},
		{"h264 IDR", "video/H264", []byte{0x65, 0x88}, true},
		{"h264 non-IDR slice", "video/H264", []byte{0x41, 0x9a}, false},
		{"h264 STAP-A with SPS", "video/H264", []byte{0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce}, true},
		{"h264 FU-A IDR start", "video/H264", []byte{0x7c, 0x85, 0x00}, true},
		{"h264 FU-A IDR middle", "video/H264", []byte{0x7c, 0x05, 0x00}, false},
		{"h264 empty", "video/H264", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := KeyframeDetector(tc.mime)(tc.payload); got != tc.want {
				t.Fatalf("keyframe = %v, want %v", got, tc.want)
			}
		})
	}
	if KeyframeDetector("audio/opus") != nil {
		t.Fatal("audio has a keyframe detector")
	}
}
