package codecs

import (
	"testing"

	"github.com/pion/webrtc/v4"
)

func TestMatchCodec(t *testing.T) {
	h264 := func(pt webrtc.PayloadType, fmtp string) webrtc.RTPCodecParameters {
		return webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: "video/H264", ClockRate: 90000, SDPFmtpLine: fmtp}, PayloadType: pt}
	}
	offered := []webrtc.RTPCodecParameters{
		h264(102, "level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f"),
		h264(104, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f"),
		h264(106, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640032"),
	}
	tests := []struct {
		name   string
		src    webrtc.RTPCodecParameters
		wantPT webrtc.PayloadType
		ok     bool
	}{
		{"exact fmtp", h264(125, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640032"), 106, true},
		{"same mode and profile, other level", h264(125, "packetization-mode=1;profile-level-id=42e034"), 104, false},
		{"baseline mode 1", h264(125, "packetization-mode=1;profile-level-id=42001f"), 104, true},
		{"vp8 not offered", webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96}, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := Match(tc.src, offered)
			if ok != tc.ok || (ok && got.PayloadType != tc.wantPT) {
				t.Fatalf("Match = %d, %v; want %d, %v", got.PayloadType, ok, tc.wantPT, tc.ok)
			}
		})
	}
}
