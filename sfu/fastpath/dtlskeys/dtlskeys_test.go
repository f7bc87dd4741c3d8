package dtlskeys

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/selfsign"
	"github.com/pion/dtls/v3/pkg/protocol/extension"
	"github.com/pion/dtls/v3/pkg/protocol/handshake"
	"github.com/pion/ice/v4"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"
)

// handshakeCase configures both ends of one real DTLS handshake.
type handshakeCase struct {
	name    string
	suite   dtls.CipherSuiteID
	profile dtls.SRTPProtectionProfile
	ems     dtls.ExtendedMasterSecretType
	rsa     bool // RSA certificate instead of ECDSA P-256
}

// recorder is an extra key log sink so a test can replay what the server
// logged; safe for concurrent use like Capture.
type recorder struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.Write(p)
}

func (r *recorder) Bytes() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.buf.Bytes())
}

type pair struct {
	server, client *dtls.Conn
}

func certificate(t *testing.T, useRSA bool) tls.Certificate {
	t.Helper()
	if !useRSA {
		cert, err := selfsign.GenerateSelfSigned()
		if err != nil {
			t.Fatal(err)
		}
		return cert
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := selfsign.SelfSign(key)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// runHandshake runs a real pion/dtls handshake between two UDP sockets on
// loopback, with the given extra options on each side.
func runHandshake(t *testing.T, tc handshakeCase, serverOpts []dtls.ServerOption, clientOpts []dtls.ClientOption) pair {
	t.Helper()
	sock := func() *net.UDPConn {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	sconn, cconn := sock(), sock()

	common := func(useRSA bool) []dtls.Option {
		return []dtls.Option{
			dtls.WithCertificates(certificate(t, useRSA)),
			dtls.WithCipherSuites(tc.suite),
			dtls.WithSRTPProtectionProfiles(tc.profile),
			dtls.WithExtendedMasterSecret(tc.ems),
			dtls.WithInsecureSkipVerify(true), // self-signed on both ends
		}
	}
	for _, o := range common(tc.rsa) {
		serverOpts = append(serverOpts, o)
	}
	// The client's certificate only authenticates the client; ECDSA keeps
	// it fast whatever the server uses.
	for _, o := range common(false) {
		clientOpts = append(clientOpts, o)
	}

	server, err := dtls.ServerWithOptions(sconn, cconn.LocalAddr(), serverOpts...)
	if err != nil {
		t.Fatal(err)
	}
	client, err := dtls.ClientWithOptions(cconn, sconn.LocalAddr(), clientOpts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close(); _ = server.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	errs := make(chan error, 2)
	go func() { errs <- server.HandshakeContext(ctx) }()
	go func() { errs <- client.HandshakeContext(ctx) }()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("handshake: %v", err)
		}
	}
	return pair{server: server, client: client}
}

// exported returns the SRTP keys pion itself derives on conn.
func exported(t *testing.T, conn *dtls.Conn, isClient bool) srtp.SessionKeys {
	t.Helper()
	profile, ok := conn.SelectedSRTPProtectionProfile()
	if !ok {
		t.Fatal("no SRTP profile negotiated")
	}
	state, ok := conn.ConnectionState()
	if !ok {
		t.Fatal("no connection state")
	}
	cfg := srtp.Config{Profile: srtp.ProtectionProfile(profile)}
	if err := cfg.ExtractSessionKeysFromDTLS(&state, isClient); err != nil {
		t.Fatal(err)
	}
	return cfg.Keys
}

func assertKeys(t *testing.T, got Keys, wantProfile dtls.SRTPProtectionProfile, want srtp.SessionKeys) {
	t.Helper()
	if got.Profile != srtp.ProtectionProfile(wantProfile) {
		t.Errorf("Profile = %#04x, want %#04x", uint16(got.Profile), uint16(wantProfile))
	}
	for _, f := range []struct {
		name      string
		got, want []byte
	}{
		{"LocalKey", got.LocalKey, want.LocalMasterKey},
		{"LocalSalt", got.LocalSalt, want.LocalMasterSalt},
		{"RemoteKey", got.RemoteKey, want.RemoteMasterKey},
		{"RemoteSalt", got.RemoteSalt, want.RemoteMasterSalt},
	} {
		if len(f.want) == 0 || !bytes.Equal(f.got, f.want) {
			t.Errorf("%s differs from pion's own export (lengths %d, %d)", f.name, len(f.got), len(f.want))
		}
	}
}

// roundTrip encrypts an RTP packet with the captured server keys and
// decrypts it with the keys the client's own DTLS connection exported.
func roundTrip(t *testing.T, keys Keys, client srtp.SessionKeys) {
	t.Helper()
	enc, err := srtp.CreateContext(keys.LocalKey, keys.LocalSalt, keys.Profile)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := srtp.CreateContext(client.RemoteMasterKey, client.RemoteMasterSalt, keys.Profile)
	if err != nil {
		t.Fatal(err)
	}
	payload := []byte("media forwarded by the SFU")
	pkt := rtp.Packet{
		Header:  rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: 4242, Timestamp: 90000, SSRC: 0xfeedbeef},
		Payload: payload,
	}
	plain, err := pkt.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	cipher, err := enc.EncryptRTP(nil, plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(cipher, payload) {
		t.Fatal("payload was not encrypted")
	}
	out, err := dec.DecryptRTP(nil, cipher, nil)
	if err != nil {
		t.Fatalf("client could not decrypt what the captured keys encrypted: %v", err)
	}
	var got rtp.Packet
	if err := got.Unmarshal(out); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Payload, payload) || got.SSRC != pkt.SSRC || got.SequenceNumber != pkt.SequenceNumber {
		t.Fatalf("decrypted packet differs: %+v", got.Header)
	}
}

// TestServerKeysMatchPion runs real handshakes with the Capture on the
// server and checks that it derives exactly the keys pion derives, on both
// ends, and that media encrypted with them reaches the client intact.
func TestServerKeysMatchPion(t *testing.T) {
	for _, tc := range []handshakeCase{
		{name: "AEAD_AES_128_GCM/ECDSA_AES_128_GCM_SHA256", suite: dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, profile: dtls.SRTP_AEAD_AES_128_GCM},
		{name: "AES128_CM_HMAC_SHA1_80", suite: dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, profile: dtls.SRTP_AES128_CM_HMAC_SHA1_80},
		{name: "AEAD_AES_256_GCM/ECDSA_AES_256_GCM_SHA384", suite: dtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, profile: dtls.SRTP_AEAD_AES_256_GCM},
		{name: "AES128_CM_HMAC_SHA1_32/RSA_AES_256_GCM_SHA384", suite: dtls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, profile: dtls.SRTP_AES128_CM_HMAC_SHA1_32, rsa: true},
		{name: "CBC_SHA suite uses the SHA-256 PRF", suite: dtls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, profile: dtls.SRTP_AES128_CM_HMAC_SHA1_80},
		{name: "CHACHA20_POLY1305", suite: dtls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, profile: dtls.SRTP_AEAD_AES_128_GCM},
		{name: "extended master secret required", suite: dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, profile: dtls.SRTP_AEAD_AES_128_GCM, ems: dtls.RequireExtendedMasterSecret},
		{name: "extended master secret disabled", suite: dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, profile: dtls.SRTP_AEAD_AES_128_GCM, ems: dtls.DisableExtendedMasterSecret},
	} {
		t.Run(tc.name, func(t *testing.T) {
			capture := New()
			var log recorder
			var hellosMu sync.Mutex
			var hellos []handshake.MessageServerHello

			// Keys is polled while the handshake runs, as the SFU may: -race
			// checks the locking, and early answers must be ErrIncomplete.
			stop := make(chan struct{})
			polled := make(chan error, 1)
			go func() {
				for {
					select {
					case <-stop:
						polled <- nil
						return
					default:
					}
					if _, err := capture.Keys(); err != nil && !errors.Is(err, ErrIncomplete) {
						polled <- err
						return
					}
				}
			}()

			p := runHandshake(t, tc, []dtls.ServerOption{
				dtls.WithKeyLogWriter(writers{capture, &log}),
				dtls.WithServerHelloMessageHook(func(m handshake.MessageServerHello) handshake.Message {
					hellosMu.Lock()
					hellos = append(hellos, m)
					hellosMu.Unlock()
					return capture.ServerHello(m)
				}),
			}, nil)
			close(stop)
			if err := <-polled; err != nil {
				t.Fatalf("Keys during handshake: %v", err)
			}

			keys, err := capture.Keys()
			if err != nil {
				t.Fatalf("Keys: %v", err)
			}
			if state, _ := p.server.ConnectionState(); state.CipherSuiteID != tc.suite {
				t.Fatalf("negotiated suite %s, want %s", dtls.CipherSuiteName(state.CipherSuiteID), dtls.CipherSuiteName(tc.suite))
			}
			assertKeys(t, keys, tc.profile, exported(t, p.server, false))

			// The client's view is the mirror image.
			client := exported(t, p.client, true)
			if !bytes.Equal(keys.LocalKey, client.RemoteMasterKey) || !bytes.Equal(keys.RemoteKey, client.LocalMasterKey) ||
				!bytes.Equal(keys.LocalSalt, client.RemoteMasterSalt) || !bytes.Equal(keys.RemoteSalt, client.LocalMasterSalt) {
				t.Error("keys are not the mirror image of the client's")
			}
			roundTrip(t, keys, client)

			// Replaying the same hooks, with the key log cut into 1-byte
			// writes among other labels and blank lines, gives the same keys.
			replay := New()
			hellosMu.Lock()
			for _, m := range hellos {
				replay.ServerHello(m)
			}
			hellosMu.Unlock()
			stream := append([]byte("SERVER_HANDSHAKE_TRAFFIC_SECRET 00 11\n\n"), log.Bytes()...)
			stream = append(stream, "CLIENT_TRAFFIC_SECRET_0 aa bb\n"...)
			for i := range stream {
				if n, err := replay.Write(stream[i : i+1]); n != 1 || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			again, err := replay.Keys()
			if err != nil {
				t.Fatalf("replayed Keys: %v", err)
			}
			assertKeys(t, again, tc.profile, exported(t, p.server, false))
		})
	}
}

// writers fans a key log out to several sinks.
type writers []interface{ Write([]byte) (int, error) }

func (ws writers) Write(p []byte) (int, error) {
	for _, w := range ws {
		if _, err := w.Write(p); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// TestClientSideIsNotServer: on a connection where we were the DTLS client
// the key log arrives but no ServerHello, so Keys must refuse.
func TestClientSideIsNotServer(t *testing.T) {
	capture := New()
	runHandshake(t, handshakeCase{suite: dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, profile: dtls.SRTP_AEAD_AES_128_GCM},
		nil, []dtls.ClientOption{dtls.WithKeyLogWriter(capture)})
	if _, err := capture.Keys(); !errors.Is(err, ErrNotServer) {
		t.Fatalf("Keys = %v, want ErrNotServer", err)
	}
}

// hello builds a ServerHello as pion sends it.
func hello(seed byte, suite dtls.CipherSuiteID, profiles ...dtls.SRTPProtectionProfile) handshake.MessageServerHello {
	id := uint16(suite)
	m := handshake.MessageServerHello{CipherSuiteID: &id}
	m.Random.GMTUnixTime = time.Unix(1700000000, 0)
	m.Random.RandomBytes[0] = seed
	if len(profiles) > 0 {
		m.Extensions = []extension.Extension{&extension.UseSRTP{ProtectionProfiles: profiles}}
	}
	return m
}

func keyLine(clientSeed, secretSeed byte) string {
	return "CLIENT_RANDOM " + strings.Repeat(hexByte(clientSeed), 32) + " " + strings.Repeat(hexByte(secretSeed), 48) + "\n"
}

func hexByte(b byte) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[b>>4], digits[b&15]})
}

// TestStates walks the Capture through hook sequences that a real
// handshake produces only rarely (re-handshakes, shared Captures,
// unsupported parameters) and checks the error Keys gives for each.
func TestStates(t *testing.T) {
	gcm := dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
	type step struct {
		hello *handshake.MessageServerHello
		log   string
	}
	h := func(m handshake.MessageServerHello) step { return step{hello: &m} }
	l := func(s string) step { return step{log: s} }

	for _, tc := range []struct {
		name  string
		steps []step
		want  error // nil: Keys succeeds
	}{
		{"nothing yet", nil, ErrIncomplete},
		{"ServerHello sent, no key yet", []step{h(hello(1, gcm, dtls.SRTP_AEAD_AES_128_GCM))}, ErrIncomplete},
		{"complete", []step{h(hello(1, gcm, dtls.SRTP_AEAD_AES_128_GCM)), l(keyLine(1, 1))}, nil},
		{"same ServerHello again after the key (regenerated flight)", []step{
			h(hello(1, gcm, dtls.SRTP_AEAD_AES_128_GCM)), l(keyLine(1, 1)), h(hello(1, gcm, dtls.SRTP_AEAD_AES_128_GCM)),
		}, nil},
		{"new handshake started", []step{
			h(hello(1, gcm, dtls.SRTP_AEAD_AES_128_GCM)), l(keyLine(1, 1)), h(hello(2, gcm, dtls.SRTP_AEAD_AES_128_GCM)),
		}, ErrIncomplete},
		{"new handshake finished", []step{
			h(hello(1, gcm, dtls.SRTP_AEAD_AES_128_GCM)), l(keyLine(1, 1)), h(hello(2, gcm, dtls.SRTP_AEAD_AES_128_GCM)), l(keyLine(2, 2)),
		}, nil},
		{"same key line twice", []step{h(hello(1, gcm, dtls.SRTP_AEAD_AES_128_GCM)), l(keyLine(1, 1) + keyLine(1, 1))}, nil},
		{"two handshakes' keys for one ServerHello", []step{
			h(hello(1, gcm, dtls.SRTP_AEAD_AES_128_GCM)), l(keyLine(1, 1)), l(keyLine(2, 2)),
		}, ErrMismatch},
		{"key log only", []step{l(keyLine(1, 1))}, ErrNotServer},
		{"unknown cipher suite", []step{h(hello(1, 0x1234, dtls.SRTP_AEAD_AES_128_GCM)), l(keyLine(1, 1))}, ErrUnsupported},
		{"unknown SRTP profile", []step{h(hello(1, gcm, 0x0099)), l(keyLine(1, 1))}, ErrUnsupported},
		{"no use_srtp", []step{h(hello(1, gcm)), l(keyLine(1, 1))}, ErrUnsupported},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c Capture // the zero value works
			for _, s := range tc.steps {
				if s.hello != nil {
					if got := c.ServerHello(*s.hello); got.(*handshake.MessageServerHello).Random != s.hello.Random {
						t.Fatal("ServerHello changed the message")
					}
				} else if n, err := c.Write([]byte(s.log)); n != len(s.log) || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			keys, err := c.Keys()
			if tc.want == nil {
				if err != nil || len(keys.LocalKey) != 16 || len(keys.RemoteSalt) != 12 {
					t.Fatalf("Keys = %v, %v; want 16-byte keys, 12-byte salts", keys, err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Keys error = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestBadKeyLog: malformed key log input never panics or fails the write
// (that would disturb the handshake), and Keys then names the problem
// without quoting any of the line.
func TestBadKeyLog(t *testing.T) {
	secret := strings.Repeat("5e", 48)
	random := strings.Repeat("c1", 32)
	for _, tc := range []struct {
		name, input, problem string
	}{
		{"too few fields", "CLIENT_RANDOM " + random + "\n", "has 2 fields, want 3"},
		{"too many fields", "CLIENT_RANDOM " + random + " " + secret + " extra\n", "has 4 fields, want 3"},
		{"short client random", "CLIENT_RANDOM c1c1 " + secret + "\n", "client random is 4 hex digits"},
		{"client random not hex", "CLIENT_RANDOM " + strings.Repeat("zz", 32) + " " + secret + "\n", "client random is not hex"},
		{"short master secret", "CLIENT_RANDOM " + random + " " + secret[:90] + "\n", "master secret is 90 hex digits, want 96"},
		{"master secret not hex", "CLIENT_RANDOM " + random + " " + secret[:94] + "x5\n", "master secret is not hex"},
		{"endless line", strings.Repeat(secret, 20) + "\n" + keyLine(1, 1), "line longer than"},
		{"binary garbage", "\x00\xff\xfe CLIENT_RANDOM\n" + "CLIENT_RANDOM \x00\n", "has 2 fields"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New()
			c.ServerHello(hello(1, dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, dtls.SRTP_AEAD_AES_128_GCM))
			if n, err := c.Write([]byte(tc.input)); n != len(tc.input) || err != nil {
				t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(tc.input))
			}
			// A good line later does not hide the earlier bad one.
			_, _ = c.Write([]byte(keyLine(1, 1)))
			_, err := c.Keys()
			if !errors.Is(err, ErrBadKeyLog) || !strings.Contains(err.Error(), tc.problem) {
				t.Fatalf("Keys error = %v, want ErrBadKeyLog naming %q", err, tc.problem)
			}
			if strings.Contains(err.Error(), "5e5e") || strings.Contains(err.Error(), "c1c1") {
				t.Fatalf("error quotes key material: %v", err)
			}
		})
	}
}

// TestKeysDoNotPrint: formatting Keys, as a careless log line would, does
// not reveal the key material.
func TestKeysDoNotPrint(t *testing.T) {
	k := Keys{Profile: srtp.ProtectionProfileAeadAes128Gcm, LocalKey: []byte("SECRETSECRETSECR"), RemoteSalt: []byte("SALTSALTSALT")}
	for _, s := range []string{k.String(), k.GoString()} {
		if strings.Contains(s, "SECRET") || strings.Contains(s, "SALT") || strings.Contains(s, "534543") {
			t.Fatalf("Keys printed its material: %s", s)
		}
	}
}

// TestOptionsOnPeerConnections wires Captures into two real pion/webrtc
// PeerConnections through Options. The offerer is the DTLS server (pion's
// answerer takes the client role), so its Capture yields keys, while the
// answerer's reports ErrNotServer; both saw the same handshake secret.
func TestOptionsOnPeerConnections(t *testing.T) {
	newPC := func(c *Capture) *webrtc.PeerConnection {
		var se webrtc.SettingEngine
		se.SetIncludeLoopbackCandidate(true)
		se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
		se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
		c.Options(&se)
		pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = pc.Close() })
		return pc
	}
	offerCapture, answerCapture := New(), New()
	offerer, answerer := newPC(offerCapture), newPC(answerCapture)

	connected := make(chan struct{}, 2)
	for _, pc := range []*webrtc.PeerConnection{offerer, answerer} {
		pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
			if s == webrtc.PeerConnectionStateConnected { // ICE and DTLS done
				connected <- struct{}{}
			}
		})
	}
	// Media needs SRTP; a video transceiver makes pion negotiate use_srtp.
	if _, err := offerer.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo); err != nil {
		t.Fatal(err)
	}

	signal := func(from, to *webrtc.PeerConnection, sdp func(*webrtc.PeerConnection) (webrtc.SessionDescription, error)) {
		t.Helper()
		desc, err := sdp(from)
		if err != nil {
			t.Fatal(err)
		}
		gathered := webrtc.GatheringCompletePromise(from)
		if err := from.SetLocalDescription(desc); err != nil {
			t.Fatal(err)
		}
		<-gathered
		if err := to.SetRemoteDescription(*from.LocalDescription()); err != nil {
			t.Fatal(err)
		}
	}
	signal(offerer, answerer, func(pc *webrtc.PeerConnection) (webrtc.SessionDescription, error) { return pc.CreateOffer(nil) })
	signal(answerer, offerer, func(pc *webrtc.PeerConnection) (webrtc.SessionDescription, error) { return pc.CreateAnswer(nil) })

	timeout := time.After(20 * time.Second)
	for range 2 {
		select {
		case <-connected:
		case <-timeout:
			t.Fatal("PeerConnections did not connect")
		}
	}

	keys, err := offerCapture.Keys()
	if err != nil {
		t.Fatalf("offerer (DTLS server) Keys: %v", err)
	}
	if len(keys.LocalKey) == 0 || bytes.Equal(keys.LocalKey, keys.RemoteKey) {
		t.Fatal("offerer keys are empty or not directional")
	}
	if _, err := answerCapture.Keys(); !errors.Is(err, ErrNotServer) {
		t.Fatalf("answerer (DTLS client) Keys = %v, want ErrNotServer", err)
	}
	offerCapture.mu.Lock()
	answerCapture.mu.Lock()
	same := offerCapture.clientRandom == answerCapture.clientRandom && bytes.Equal(offerCapture.masterSecret, answerCapture.masterSecret)
	answerCapture.mu.Unlock()
	offerCapture.mu.Unlock()
	if !same {
		t.Fatal("the two ends logged different handshakes")
	}
}
