package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jbcalling/platform/agent"
	"github.com/jbcalling/platform/agent/audio"
	"github.com/jbcalling/platform/agent/mt"
	"github.com/jbcalling/platform/agent/stt"
	"github.com/jbcalling/platform/agent/tts"
	"github.com/jbcalling/platform/internal/enginetest"
	"github.com/jbcalling/platform/internal/netns"
	"github.com/jbcalling/platform/sfu/auth"
	"github.com/jbcalling/platform/sfu/client"
	"github.com/jbcalling/platform/sfu/server"
	"github.com/jbcalling/platform/sfu/server/servertest"
	"github.com/jbcalling/platform/sfu/signal"
	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
)

func TestMain(m *testing.M) { netns.Main(m) }

func settingEngine() *webrtc.SettingEngine {
	se := &webrtc.SettingEngine{}
	addr := net.ParseIP(netns.Addr)
	se.SetIPFilter(func(ip net.IP) bool { return ip.Equal(addr) })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	return se
}

// Ana speaks English into the room; Bo, who wants Spanish, reads what she
// said in Spanish and hears it: real speech (espeak-ng), Opus through the
// SFU, the agent's real recogniser (pocketsphinx), translator (apertium)
// and voice (espeak-ng again), decoded and measured at Bo.
func TestCaptionsThroughTheSFU(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	sfu, ana := speakingRoom(ctx, t)

	captions := make(chan agent.Caption, 16)
	spoken := make(chan string, 1) // the id of the first track Bo hears speech on
	bo, err := client.Dial(ctx, sfu.WSURL(), client.Options{Room: "babel", Name: "Bo", TranslateTo: "es", SettingEngine: settingEngine(),
		OnTrack: func(rt *client.RemoteTrack) { hearSpeech(t, rt, spoken) },
		OnEvent: func(m signal.Message) {
			if d, ok := m.(*signal.Data); ok && d.Topic == signal.TopicCaptions {
				var c agent.Caption
				if err := json.Unmarshal(d.Payload, &c); err != nil {
					t.Errorf("caption %s: %v", d.Payload, err)
				}
				captions <- c
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer bo.Close()

	// The agent is told no room: it finds Bo's wish in the SFU's listing.
	done := serveAgent(ctx, t, sfu, tts.Espeak{})

	// While Ana speaks, Bo sees her words so far (partial captions: as
	// spoken, untranslated), then the final caption of the same segment.
	var captioned time.Time
	var partials []agent.Caption
	for captioned.IsZero() {
		select {
		case c := <-captions:
			t.Logf("caption: %+v", c)
			if !c.Final {
				partials = append(partials, c)
				continue
			}
			if c.Speaker != ana.ID() || c.Lang != "en" || c.Segment != 1 {
				t.Errorf("caption %+v, want Ana's first, in English", c)
			}
			if !strings.Contains(c.Text, "meeting") || !strings.Contains(c.Text, "morning") {
				t.Errorf("text %q is not what Ana said (%q)", c.Text, enginetest.Sentence)
			}
			if es := c.Translations["es"]; !strings.Contains(es, "reunión") || !strings.Contains(es, "mañana") {
				t.Errorf("Spanish %q, want la reunión ... mañana", es)
			}
			if len(c.Translations) != 1 {
				t.Errorf("translations %v, want Spanish only (nobody else wants another language)", c.Translations)
			}
			captioned = time.Now()
		case err := <-done:
			t.Fatalf("the agent ended: %v", err)
		case <-ctx.Done():
			t.Fatal("no caption within 90 s")
		}
	}
	if len(partials) == 0 {
		t.Error("no partial caption while Ana spoke a 2.8 s sentence")
	}
	for i, p := range partials {
		if p.Speaker != ana.ID() || p.Segment != 1 || p.Lang != "en" || p.Text == "" || len(p.Translations) != 0 {
			t.Errorf("partial %+v, want Ana's words so far in segment 1, untranslated", p)
		}
		if i > 0 && p.Text == partials[i-1].Text {
			t.Errorf("partial %d repeats %q", i, p.Text)
		}
	}
	// Bo hears speech on the agent's Spanish track (Ana's own voice no
	// longer reaches him: the SFU sends the translation instead).
	select {
	case id := <-spoken:
		t.Logf("Bo hears the Spanish %s after the caption", time.Since(captioned).Round(time.Millisecond))
		if id != ana.ID()+".es" {
			t.Errorf("Bo heard speech on track %q, want the agent's %q", id, ana.ID()+".es")
		}
	case <-ctx.Done():
		t.Fatal("Bo heard no translated speech within 90 s")
	}
	// Once Bo leaves nobody wants a translation: the agent leaves too.
	if err := bo.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	for _, n := sfu.Server.Rooms().Stats(); n != 1; _, n = sfu.Server.Rooms().Stats() {
		select {
		case <-ctx.Done():
			t.Fatalf("%d participants in the room after Bo left, want Ana alone", n)
		case <-time.After(50 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve after its context ended: %v", err)
	}
}

// serveAgent runs agent.Serve against sfu's room listing, as the agent
// command does without --room, with the real recogniser and translator
// and voice (nil: captions only); Serve's result arrives on the channel.
func serveAgent(ctx context.Context, t *testing.T, sfu *servertest.SFU, voice tts.Synthesizer) <-chan error {
	token := func(room string) (string, error) {
		return auth.SignAgent(agentSecret, room, "translator", "Translator", time.Minute)
	}
	done := make(chan error, 1)
	go func() {
		done <- agent.Serve(ctx, agent.ServeConfig{
			Session: agent.Config{URL: sfu.WSURL(), SettingEngine: settingEngine(),
				Recognizer: stt.Sphinx{}, Translator: mt.Apertium{}, Synthesizer: voice, Logger: servertest.Logger(t, slog.LevelInfo)},
			Rooms: agent.SFURooms{URL: sfu.URL + signal.AgentRoomsPath, Token: func() (string, error) { return token(auth.AnyRoom) }},
			Token: token, Every: 200 * time.Millisecond,
		})
	}()
	return done
}

// agentSecret signs the agent's tokens in these tests.
var agentSecret = []byte("agent-test-secret")

// speakingRoom starts an SFU (with agentSecret) in the test's namespace
// and Ana in the room "babel", speaking English (the test sentence, again
// and again) until ctx ends.
func speakingRoom(ctx context.Context, t *testing.T) (*servertest.SFU, *client.Client) {
	t.Helper()
	netns.Require(t)
	enginetest.Require(t, "espeak-ng", "apertium")
	enginetest.RequireSphinx(t)
	sfu := startSFU(t, "127.0.0.1:0")
	return sfu, speakIn(ctx, t, sfu)
}

// startSFU starts an SFU whose signalling listens on listen.
func startSFU(t *testing.T, listen string) *servertest.SFU {
	return servertest.Start(t, netns.Addr, func(c *server.Config) {
		c.JWTSecret = agentSecret
		c.Listen = listen
		c.Logger = servertest.Logger(t, slog.LevelWarn)
	})
}

// speakIn has Ana join the room "babel" and say the test sentence in it
// again and again.
func speakIn(ctx context.Context, t *testing.T, sfu *servertest.SFU) *client.Client {
	t.Helper()
	ana, err := client.Dial(ctx, sfu.WSURL(), client.Options{Room: "babel", Name: "Ana", Language: "en", SettingEngine: settingEngine()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ana.Close() })
	voice, _ := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "voice", "ana")
	if _, err := ana.Publish(ctx, voice); err != nil {
		t.Fatal(err)
	}
	go enginetest.Speak(ctx, t, voice, enginetest.English(t, enginetest.Sentence, audio.EncoderRate))
	return ana
}

// hearSpeech decodes rt and, once half a second of its frames are as loud
// as speech (above -35 dBFS), reports its track id; Ana's own voice
// ("voice") is decoded too but never reported.
func hearSpeech(t *testing.T, rt *client.RemoteTrack, spoken chan<- string) {
	dec, err := audio.NewDecoder(48000)
	if err != nil || rt.Kind != webrtc.RTPCodecTypeAudio {
		drain(rt)
		return
	}
	loud := 0
	for {
		pkt, _, err := rt.Track.ReadRTP()
		if err != nil {
			return
		}
		pcm, err := dec.Decode(pkt.Payload)
		if err != nil {
			t.Errorf("track %s: undecodable Opus: %v", rt.TrackID, err)
			return
		}
		if audio.LevelDB(pcm) > -35 {
			loud++
		}
		if loud == 25 && rt.TrackID != "voice" {
			select {
			case spoken <- rt.TrackID:
			default:
			}
		}
	}
}

func drain(rt *client.RemoteTrack) {
	for {
		if _, _, err := rt.Track.ReadRTP(); err != nil {
			return
		}
	}
}

// A recogniser that hangs (ignoring its context) on its first utterance,
// fails on its second, and hears what the real one hears after that.
type unreliable struct {
	calls atomic.Int32
	real  stt.Recognizer
}

func (u *unreliable) Recognize(ctx context.Context, pcm []int16, lang string) (string, error) {
	switch u.calls.Add(1) {
	case 1:
		select {} // hung for good
	case 2:
		return "", errors.New("engine crashed")
	}
	return u.real.Recognize(ctx, pcm, lang)
}

// An engine that hangs or fails gives the listener an error caption and
// the agent goes on: the next utterance is captioned, segments in order.
// When the speaker leaves, the agent's voice for her goes too.
func TestEngineFailuresAndChurn(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	speakCtx, stopSpeaking := context.WithCancel(ctx)
	sfu, ana := speakingRoom(speakCtx, t)

	captions := make(chan agent.Caption, 16)
	unpublished := make(chan string, 4)
	dubbed := make(chan struct{}, 1)
	bo, err := client.Dial(ctx, sfu.WSURL(), client.Options{Room: "babel", Name: "Bo", TranslateTo: "es", SettingEngine: settingEngine(),
		OnTrack: func(rt *client.RemoteTrack) {
			if rt.ParticipantID != ana.ID() {
				select {
				case dubbed <- struct{}{}:
				default:
				}
			}
			drain(rt)
		},
		OnEvent: func(m signal.Message) {
			switch m := m.(type) {
			case *signal.Data:
				var c agent.Caption
				if err := json.Unmarshal(m.Payload, &c); err != nil {
					t.Errorf("caption %s: %v", m.Payload, err)
				}
				captions <- c
			case *signal.TrackUnpublished:
				unpublished <- m.TrackID
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer bo.Close()
	token, _ := auth.SignAgent(agentSecret, "babel", "translator", "Translator", time.Hour)
	done := make(chan error, 1)
	go func() {
		done <- agent.Run(ctx, agent.Config{URL: sfu.WSURL(), Room: "babel", Token: token, SettingEngine: settingEngine(),
			Recognizer: &unreliable{real: stt.Sphinx{}}, Translator: mt.Apertium{}, Synthesizer: tts.Espeak{},
			// Long enough for apertium on a loaded machine (3 s was not, with
			// builds running beside the test), short enough for the hang.
			EngineTimeout: 6 * time.Second, Logger: servertest.Logger(t, slog.LevelWarn)})
	}()

	next := func() agent.Caption {
		t.Helper()
		select {
		case c := <-captions:
			t.Logf("caption %+v", c)
			return c
		case err := <-done:
			t.Fatalf("the agent ended: %v", err)
		case <-ctx.Done():
			t.Fatal("no caption in time: the agent is stuck")
		}
		return agent.Caption{}
	}
	for i, want := range []string{"speech recognition failed", "speech recognition failed", ""} {
		c := next()
		if c.Segment != i+1 || c.Speaker != ana.ID() || c.Error != want {
			t.Errorf("caption %d: segment %d error %q, want segment %d error %q", i, c.Segment, c.Error, i+1, want)
		}
		if want == "" && (!strings.Contains(c.Text, "meeting") || c.Translations["es"] == "") {
			t.Errorf("after the failures: %+v, want Ana's words in English and Spanish", c)
		}
	}

	// Ana leaves once Bo gets her Spanish voice: it is unpublished.
	select {
	case <-dubbed:
	case <-ctx.Done():
		t.Fatal("Bo never got the agent's Spanish voice for Ana")
	}
	stopSpeaking()
	if err := ana.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case id := <-unpublished:
			if id == ana.ID()+".es" {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("Run: %v", err)
				}
				return
			}
		case <-ctx.Done():
			t.Fatal("the agent's voice for Ana outlived her")
		}
	}
}
