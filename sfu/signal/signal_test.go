package signal

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func ptr[T any](v T) *T { return &v }

// Every message survives Encode → Decode, and the wire form is flat with
// "type" first.
func TestRoundTrip(t *testing.T) {
	msgs := []Message{
		&Join{Version: 1, Room: "r", Name: "Ana", Token: "t"},
		&Joined{Version: 1, ID: "p-1", Room: "r", Participants: []Participant{{ID: "p-2", Name: "Bo", Tracks: []Track{{ID: "a", Kind: "audio", Codec: "audio/opus", Muted: true}}}}, ICEServers: []ICEServer{{URLs: []string{"turn:x"}, Username: "1:p-1", Credential: "c"}}},
		&Offer{Target: TargetPublisher, SDP: "v=0\r\n"},
		&Answer{Target: TargetSubscriber, SDP: "v=0\r\n"},
		&Candidate{Target: TargetPublisher, Candidate: &ICECandidate{Candidate: "candidate:1 1 udp 1 10.0.0.1 1 typ host", SDPMid: ptr("0"), SDPMLineIndex: ptr(uint16(0))}},
		&Candidate{Target: TargetSubscriber},
		&ParticipantJoined{Participant: Participant{ID: "p-2", Tracks: []Track{}}},
		&ParticipantLeft{ID: "p-2"},
		&TrackPublished{ParticipantID: "p-2", Track: Track{ID: "v", Kind: "video"}},
		&TrackUnpublished{ParticipantID: "p-2", TrackID: "v"},
		&Mute{ParticipantID: "p-2", TrackID: "v", Muted: true},
		&Leave{Room: "r"},
		&Error{Code: CodeBadSDP, Message: "m", Ref: TypeOffer},
		&Draining{DeadlineMS: 1000},
		&Ping{},
		&Pong{},
		&Offer{Target: TargetPublisher, SDP: "v=0\r\n", Tracks: []TrackSource{{MID: "2", Source: SourceScreen}}},
		&Data{Topic: "chat", Payload: json.RawMessage(`{"text":"hola"}`), To: []string{"p-2"}},
		&Data{From: "p-1", TS: 1765065600000, Topic: "chat", Payload: json.RawMessage(`"hola"`)},
		&ActiveSpeakers{Speakers: []Speaker{{ParticipantID: "p-2", Level: 0.5}}},
		&Resume{Version: 1, ParticipantID: "p-1", ResumeToken: "r"},
		&Resumed{Version: 1, ID: "p-1", Room: "r", Participants: []Participant{}, ICEServers: []ICEServer{}, ResumeToken: "r2", ResumeWindowMS: 20000},
		&ParticipantStatus{ID: "p-2", Status: StatusReconnecting},
		&ICERestart{Target: TargetSubscriber},
	}
	for _, m := range msgs {
		t.Run(m.MessageType(), func(t *testing.T) {
			data, err := Encode(m)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(data, []byte(`{"type":"`+m.MessageType()+`"`)) {
				t.Fatalf("wire form %s does not start with the type", data)
			}
			got, err := Decode(data)
			if err != nil {
				t.Fatalf("Decode(%s): %v", data, err)
			}
			if !reflect.DeepEqual(got, m) {
				t.Fatalf("round trip: got %#v, want %#v", got, m)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		in   string
		want error
	}{
		{`{`, ErrBadMessage},
		{`null`, ErrBadMessage},
		{`[]`, ErrBadMessage},
		{`{}`, ErrBadMessage},
		{`{"type":7}`, ErrBadMessage},
		{`{"type":"nope"}`, ErrUnknownType},
		{`{"type":"join"}`, ErrBadMessage},
		{`{"type":"join","room":"` + strings.Repeat("r", 129) + `"}`, ErrBadMessage},
		{`{"type":"offer","target":"publisher"}`, ErrBadMessage},
		{`{"type":"offer","target":"sideways","sdp":"v=0"}`, ErrBadMessage},
		{`{"type":"candidate","target":"x"}`, ErrBadMessage},
		{`{"type":"mute","muted":true}`, ErrBadMessage},
		{`{"type":"ping"} trailing`, ErrBadMessage},
		{`{"type":"offer","target":"publisher","sdp":"v=0","tracks":[{"mid":"1","source":"webcam"}]}`, ErrBadMessage},
		{`{"type":"data","payload":1}`, ErrBadMessage},
		{`{"type":"data","topic":"Chat","payload":1}`, ErrBadMessage},
		{`{"type":"data","topic":"chat"}`, ErrBadMessage},
		{`{"type":"data","topic":"chat","payload":null}`, ErrBadMessage},
		{`{"type":"data","topic":"chat","payload":"` + strings.Repeat("x", MaxDataPayload) + `"}`, ErrBadMessage},
		{`{"type":"resume","v":1,"participantId":"p-1"}`, ErrBadMessage},
		{`{"type":"ice_restart"}`, ErrBadMessage},
		{`{"type":"subscription","trackId":"t"}`, ErrBadMessage},
		{`{"type":"subscription","participantId":"p","trackId":"t","maxLayer":3}`, ErrBadMessage},
		{`{"type":"subscription","participantId":"p","trackId":"t","maxLayer":-1}`, ErrBadMessage},
		{`{"type":"ping","pad":"` + strings.Repeat("x", MaxMessageSize) + `"}`, ErrTooLarge},
	}
	for _, tc := range tests {
		name := tc.in
		if len(name) > 40 {
			name = name[:40]
		}
		t.Run(name, func(t *testing.T) {
			if _, err := Decode([]byte(tc.in)); !errors.Is(err, tc.want) {
				t.Fatalf("Decode = %v, want %v", err, tc.want)
			}
		})
	}
}

// The examples in PROTOCOL.md are valid messages.
func TestProtocolExamplesDecode(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "PROTOCOL.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := strings.Split(string(doc), "```json\n")[1:]
	if len(blocks) < 15 {
		t.Fatalf("found %d JSON examples, want one per message type", len(blocks))
	}
	seen := map[string]bool{}
	for _, b := range blocks {
		b = b[:strings.Index(b, "```")]
		dec := json.NewDecoder(strings.NewReader(b))
		for dec.More() {
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				t.Fatalf("example %q: %v", b, err)
			}
			m, err := Decode(raw)
			if err != nil {
				t.Fatalf("example %s: %v", raw, err)
			}
			seen[m.MessageType()] = true
		}
	}
	for _, typ := range []string{TypeJoin, TypeJoined, TypeOffer, TypeAnswer, TypeCandidate, TypeParticipantJoined, TypeParticipantLeft,
		TypeTrackPublished, TypeTrackUnpublished, TypeMute, TypeLeave, TypeError, TypeDraining, TypeICEServers, TypePing,
		TypeData, TypeActiveSpeakers, TypeResume, TypeResumed, TypeParticipantStatus, TypeICERestart, TypeLanguages,
		TypeSubscription, TypeLayer, TypeActiveLayers} {
		if !seen[typ] {
			t.Errorf("PROTOCOL.md has no example of %q", typ)
		}
	}
}

// FuzzDecode: any input decodes to a message or a wrapped sentinel error,
// never a panic, and decoded messages re-encode and decode to the same.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"type":"join","v":1,"room":"r","token":"x"}`))
	f.Add([]byte(`{"type":"candidate","target":"publisher","candidate":{"candidate":"c","sdpMLineIndex":0}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data)
		if err != nil {
			if !errors.Is(err, ErrBadMessage) && !errors.Is(err, ErrUnknownType) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("unwrapped error %v", err)
			}
			return
		}
		out, err := Encode(m)
		if err != nil {
			t.Fatalf("Encode(%#v): %v", m, err)
		}
		again, err := Decode(out)
		if err != nil {
			t.Fatalf("re-decode %s: %v", out, err)
		}
		if !reflect.DeepEqual(m, again) {
			t.Fatalf("unstable: %#v vs %#v", m, again)
		}
	})
}
