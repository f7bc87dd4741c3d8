// Package codecs holds what the SFU knows of codecs: the ones it offers,
// how a subscriber's parameters are matched to a publisher's, and how a
// keyframe is recognised in each.
package codecs

import "github.com/pion/webrtc/v4"

// Register offers, in m, the codecs the SFU forwards. No RTX: the
// forwarder answers NACKs on the primary SSRC.
func Register(m *webrtc.MediaEngine) error {
	// transport-cc: the SFU sends publishers the feedback their bandwidth
	// estimate needs (package feedback).
	cc := webrtc.RTCPFeedback{Type: webrtc.TypeRTCPFBTransportCC}
	fb := []webrtc.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}, {Type: "ccm", Parameter: "fir"}, cc}
	video := func(pt webrtc.PayloadType, mime, fmtp string) webrtc.RTPCodecParameters {
		return webrtc.RTPCodecParameters{PayloadType: pt, RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: mime, ClockRate: 90000, SDPFmtpLine: fmtp, RTCPFeedback: fb}}
	}
	const h264 = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id="
	for _, c := range []webrtc.RTPCodecParameters{
		video(96, webrtc.MimeTypeVP8, ""),
		video(98, webrtc.MimeTypeVP9, "profile-id=0"),
		video(100, webrtc.MimeTypeVP9, "profile-id=2"),
		video(102, webrtc.MimeTypeH264, h264+"42001f"),
		video(104, webrtc.MimeTypeH264, h264+"42e01f"),
		video(106, webrtc.MimeTypeH264, h264+"4d001f"),
		video(108, webrtc.MimeTypeH264, h264+"640032"),
	} {
		if err := m.RegisterCodec(c, webrtc.RTPCodecTypeVideo); err != nil {
			return err
		}
	}
	opus := webrtc.RTPCodecParameters{PayloadType: 111, RTPCodecCapability: webrtc.RTPCodecCapability{
		MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1",
		RTCPFeedback: []webrtc.RTCPFeedback{cc}}}
	if err := m.RegisterCodec(opus, webrtc.RTPCodecTypeAudio); err != nil {
		return err
	}
	return nil
}
