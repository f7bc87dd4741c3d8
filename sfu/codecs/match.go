package codecs

import (
	"strings"

	"github.com/pion/webrtc/v4"
)

// Match finds the subscriber's parameters for the source codec: the
// same MIME type, and for H264 the same packetization mode and profile.
func Match(src webrtc.RTPCodecParameters, offered []webrtc.RTPCodecParameters) (webrtc.RTPCodecParameters, bool) {
	var fallback *webrtc.RTPCodecParameters
	for i, c := range offered {
		if !strings.EqualFold(c.MimeType, src.MimeType) {
			continue
		}
		if c.SDPFmtpLine == src.SDPFmtpLine {
			return c, true
		}
		if fmtpCompatible(src, c) && fallback == nil {
			fallback = &offered[i]
		}
	}
	if fallback != nil {
		return *fallback, true
	}
	return webrtc.RTPCodecParameters{}, false
}

func fmtpCompatible(a, b webrtc.RTPCodecParameters) bool {
	switch strings.ToLower(a.MimeType) {
	case "video/h264":
		return fmtp(a.SDPFmtpLine, "packetization-mode", "0") == fmtp(b.SDPFmtpLine, "packetization-mode", "0") &&
			strings.EqualFold(prefix(fmtp(a.SDPFmtpLine, "profile-level-id", "42001f"), 4), prefix(fmtp(b.SDPFmtpLine, "profile-level-id", "42001f"), 4))
	case "video/vp9":
		return fmtp(a.SDPFmtpLine, "profile-id", "0") == fmtp(b.SDPFmtpLine, "profile-id", "0")
	}
	return true
}

func prefix(s string, n int) string {
	if len(s) < n {
		return s
	}
	return s[:n]
}

func fmtp(line, key, def string) string {
	for _, kv := range strings.Split(line, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if ok && strings.EqualFold(k, key) {
			return v
		}
	}
	return def
}
