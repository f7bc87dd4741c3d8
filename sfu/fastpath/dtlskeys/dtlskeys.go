// Package dtlskeys recovers the SRTP master keys of one pion/webrtc
// PeerConnection in which the SFU is the DTLS server.
//
// The SFU wants to encrypt media for subscribers itself instead of going
// through pion's per-packet write path, and for that it needs the SRTP keys
// that DTLS-SRTP (RFC 5764) derived. pion/webrtc does not export them, but
// its SettingEngine has two public hooks that together carry everything the
// RFC 5705 exporter needs:
//
//   - SetDTLSKeyLogWriter receives "CLIENT_RANDOM <client random> <master
//     secret>" once the handshake has derived its master secret;
//   - SetDTLSServerHelloMessageHook sees the ServerHello we send: the server
//     random, the chosen cipher suite (whose hash the TLS 1.2 PRF uses) and
//     the chosen SRTP protection profile.
//
// Capture implements both hooks and recomputes the keys exactly as pion/dtls
// and pion/srtp do. Should pion ever export the SRTP keys (or the DTLS
// connection state) of a PeerConnection, that accessor should replace this
// package.
//
// Key material is secret: it lives only in memory, in the Capture and in the
// Keys handed out. Nothing here logs it, and errors never quote it.
package dtlskeys

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/prf"
	"github.com/pion/dtls/v3/pkg/protocol/extension"
	"github.com/pion/dtls/v3/pkg/protocol/handshake"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"
)

// Errors returned by Keys. Callers that get any of them keep using pion's
// own SRTP write path.
var (
	// ErrNotServer: a key log arrived but no ServerHello was sent, so we
	// were the DTLS client and never saw the server random.
	ErrNotServer = errors.New("dtlskeys: this side was not the DTLS server")
	// ErrIncomplete: the handshake has not derived its keys yet (or a new
	// handshake has started and not finished).
	ErrIncomplete = errors.New("dtlskeys: DTLS handshake not complete")
	// ErrMismatch: key log lines from more than one handshake arrived for
	// the same ServerHello, so it is unknown which belongs to it. A Capture
	// must serve exactly one connection.
	ErrMismatch = errors.New("dtlskeys: key log does not match the ServerHello")
	// ErrUnsupported: the cipher suite or SRTP profile is not one we know
	// how to derive keys for.
	ErrUnsupported = errors.New("dtlskeys: unsupported cipher suite or SRTP profile")
	// ErrBadKeyLog: the key log writer received a line it could not parse.
	ErrBadKeyLog = errors.New("dtlskeys: malformed key log")
)

const (
	keyLogLabel = "CLIENT_RANDOM" // pion/dtls's only label (TLS 1.2)
	// srtpExporterLabel is RFC 5764's exporter label, as used by pion/srtp.
	srtpExporterLabel = "EXTRACTOR-dtls_srtp"
	randomLen         = 32
	masterSecretLen   = 48 // TLS 1.2 master secret, RFC 5246 §8.1
	// maxLine bounds the buffered partial line; a CLIENT_RANDOM line is 176
	// bytes, so anything longer is not one.
	maxLine = 512
)

// Keys are the SRTP master keys and salts of one DTLS-SRTP association.
// Local is what the SFU (the DTLS server) encrypts with; Remote is what the
// peer encrypts with. The slices are fresh copies owned by the caller.
type Keys struct {
	Profile    srtp.ProtectionProfile
	LocalKey   []byte
	LocalSalt  []byte
	RemoteKey  []byte
	RemoteSalt []byte
}

// String redacts the key material so that printing Keys by accident (%v,
// %s, a log line) cannot leak it.
func (k Keys) String() string {
	return fmt.Sprintf("dtlskeys.Keys{Profile: %#04x, keys redacted}", uint16(k.Profile))
}

// GoString redacts like String, for %#v.
func (k Keys) GoString() string { return k.String() }

// Capture collects, for one connection, what the DTLS key log and
// ServerHello hooks see, and derives the SRTP keys from it. The zero value
// is ready to use. It is safe for concurrent use: pion calls the hooks on
// its handshake goroutines while the SFU calls Keys on its own.
type Capture struct {
	mu sync.Mutex

	// Key log line assembly. partial has a fixed capacity of maxLine so that
	// appends never reallocate and leave copies of secrets behind.
	partial []byte
	discard bool // dropping an over-long line up to its newline
	lineNo  int
	bad     error // first malformed line; sticky, so Keys reports it

	// Latest ServerHello we sent.
	haveHello    bool
	serverRandom [randomLen]byte
	suite        dtls.CipherSuiteID
	haveSuite    bool
	profile      extension.SRTPProtectionProfile // 0: no use_srtp extension

	// Latest CLIENT_RANDOM line.
	sawKeyLog    bool // any line ever: tells ErrNotServer from ErrIncomplete
	keyCurrent   bool // a line arrived since the latest new ServerHello
	mismatch     bool // two different client randoms for that ServerHello
	clientRandom [randomLen]byte
	masterSecret []byte
}

// New returns an empty Capture; it is the same as new(Capture).
func New() *Capture { return new(Capture) }

// Options installs both hooks on se. Use one SettingEngine (and so one
// webrtc.API) per PeerConnection, and one Capture per SettingEngine.
func (c *Capture) Options(se *webrtc.SettingEngine) {
	se.SetDTLSKeyLogWriter(c)
	se.SetDTLSServerHelloMessageHook(c.ServerHello)
}

// ServerHello is the DTLS ServerHello hook. It records the server random,
// cipher suite and SRTP profile, and returns the message unchanged.
func (c *Capture) ServerHello(msg handshake.MessageServerHello) handshake.Message {
	random := msg.Random.MarshalFixed()

	var profile extension.SRTPProtectionProfile
	for _, ext := range msg.Extensions {
		if u, ok := ext.(*extension.UseSRTP); ok && len(u.ProtectionProfiles) > 0 {
			profile = u.ProtectionProfiles[0] // a server selects exactly one
		}
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	// The same random again is the same handshake (a regenerated flight);
	// a different one starts a new handshake, so the keys we hold, if any,
	// belong to the previous one.
	if !c.haveHello || random != c.serverRandom {
		c.keyCurrent = false
		c.mismatch = false
		clear(c.masterSecret)
		c.masterSecret = nil
	}
	c.haveHello = true
	c.serverRandom = random
	c.haveSuite = msg.CipherSuiteID != nil
	if c.haveSuite {
		c.suite = dtls.CipherSuiteID(*msg.CipherSuiteID)
	}
	c.profile = profile

	return &msg
}

// Write is the DTLS key log writer. It accepts any split of the log into
// writes, keeps only the latest CLIENT_RANDOM line's values and ignores
// other labels. It never fails, so the handshake is never disturbed; a
// malformed line is dropped and reported later by Keys.
func (c *Capture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.partial == nil {
		c.partial = make([]byte, 0, maxLine)
	}
	for rest := p; len(rest) > 0; {
		chunk, after, complete := bytes.Cut(rest, []byte{'\n'})
		rest = after
		if !c.discard {
			if len(c.partial)+len(chunk) > maxLine {
				c.fail("line longer than %d bytes", maxLine)
				c.discard = true
				c.wipePartial()
			} else {
				c.partial = append(c.partial, chunk...)
			}
		}
		if complete {
			if !c.discard {
				c.parseLine(c.partial)
			}
			c.discard = false
			c.wipePartial()
		}
	}
	return len(p), nil
}

func (c *Capture) wipePartial() {
	clear(c.partial[:cap(c.partial)])
	c.partial = c.partial[:0]
}

// fail records a malformed line. The message names the problem but never
// quotes the line, which may hold a secret.
func (c *Capture) fail(format string, args ...any) {
	if c.bad == nil {
		c.bad = fmt.Errorf("%w: line %d: %s", ErrBadKeyLog, c.lineNo, fmt.Sprintf(format, args...))
	}
}

func (c *Capture) parseLine(line []byte) {
	c.lineNo++
	fields := bytes.Fields(line)
	if len(fields) == 0 || string(fields[0]) != keyLogLabel {
		return // blank line or a label pion/dtls does not use for TLS 1.2
	}
	if len(fields) != 3 {
		c.fail("%s line has %d fields, want 3", keyLogLabel, len(fields))
		return
	}
	var random [randomLen]byte
	if len(fields[1]) != 2*randomLen {
		c.fail("client random is %d hex digits, want %d", len(fields[1]), 2*randomLen)
		return
	}
	if _, err := hex.Decode(random[:], fields[1]); err != nil {
		c.fail("client random is not hex")
		return
	}
	if len(fields[2]) != 2*masterSecretLen {
		c.fail("master secret is %d hex digits, want %d", len(fields[2]), 2*masterSecretLen)
		return
	}
	secret := make([]byte, masterSecretLen)
	if _, err := hex.Decode(secret, fields[2]); err != nil {
		clear(secret)
		c.fail("master secret is not hex")
		return
	}

	// One handshake logs one client random (repeats are harmless); a second,
	// different one for the same ServerHello means the Capture is shared.
	if c.keyCurrent && random != c.clientRandom {
		c.mismatch = true
	}
	clear(c.masterSecret)
	c.sawKeyLog = true
	c.keyCurrent = true
	c.clientRandom = random
	c.masterSecret = secret
}

// prfHash is the TLS 1.2 PRF hash of each pion/dtls cipher suite. pion/dtls
// knows it (CipherSuite.HashFunc) but offers no exported way to get a
// CipherSuite from its ID, so the table mirrors
// pion/dtls/internal/ciphersuite: SHA-384 for the *_SHA384 suites, SHA-256
// for every other one, including the *_CBC_SHA suites (RFC 5246 §5).
func prfHash(id dtls.CipherSuiteID) (prf.HashFunc, bool) {
	switch id { //nolint:exhaustive // unknown suites are reported, not guessed
	case dtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		dtls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384:
		return sha512.New384, true
	case dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM,
		dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8,
		dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		dtls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		dtls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
		dtls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
		dtls.TLS_PSK_WITH_AES_128_CCM,
		dtls.TLS_PSK_WITH_AES_128_CCM_8,
		dtls.TLS_PSK_WITH_AES_256_CCM_8,
		dtls.TLS_PSK_WITH_AES_128_GCM_SHA256,
		dtls.TLS_PSK_WITH_AES_128_CBC_SHA256,
		dtls.TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256,
		dtls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
		dtls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		dtls.TLS_PSK_WITH_CHACHA20_POLY1305_SHA256:
		return sha256.New, true
	}
	return nil, false
}

// exporter is RFC 5705 keying material export for TLS 1.2 without context,
// the same computation as pion/dtls's State.ExportKeyingMaterial.
type exporter struct {
	masterSecret, clientRandom, serverRandom []byte
	hash                                     prf.HashFunc
}

func (e exporter) ExportKeyingMaterial(label string, context []byte, length int) ([]byte, error) {
	if len(context) != 0 {
		return nil, errors.New("dtlskeys: exporter context is not supported")
	}
	seed := make([]byte, 0, len(label)+2*randomLen)
	seed = append(seed, label...)
	seed = append(seed, e.clientRandom...)
	seed = append(seed, e.serverRandom...)
	return prf.PHash(e.masterSecret, seed, length, e.hash)
}

// Keys derives the SRTP keys of the latest completed handshake, matching
// the latest ServerHello sent. See the Err* variables for its errors.
func (c *Capture) Keys() (Keys, error) {
	c.mu.Lock()
	defer c.mu.Unlock()

	switch {
	case c.bad != nil:
		return Keys{}, c.bad
	case !c.haveHello && c.sawKeyLog:
		return Keys{}, ErrNotServer
	case !c.haveHello || !c.keyCurrent:
		return Keys{}, ErrIncomplete
	case c.mismatch:
		return Keys{}, ErrMismatch
	case !c.haveSuite:
		return Keys{}, fmt.Errorf("%w: ServerHello has no cipher suite", ErrUnsupported)
	case c.profile == 0:
		return Keys{}, fmt.Errorf("%w: ServerHello has no use_srtp extension", ErrUnsupported)
	}
	hash, ok := prfHash(c.suite)
	if !ok {
		return Keys{}, fmt.Errorf("%w: cipher suite %s", ErrUnsupported, dtls.CipherSuiteName(c.suite))
	}
	// Same numbering (IANA DTLS-SRTP profiles) on both sides; pion/srtp
	// decides which it supports.
	profile := srtp.ProtectionProfile(c.profile)
	if _, err := profile.KeyLen(); err != nil {
		return Keys{}, fmt.Errorf("%w: SRTP profile %#04x", ErrUnsupported, uint16(c.profile))
	}

	// Reuse pion/srtp's split of the exported material into keys and salts
	// so it cannot drift from what pion itself does. We are the server.
	cfg := srtp.Config{Profile: profile}
	err := cfg.ExtractSessionKeysFromDTLS(exporter{
		masterSecret: c.masterSecret,
		clientRandom: c.clientRandom[:],
		serverRandom: c.serverRandom[:],
		hash:         hash,
	}, false)
	if err != nil {
		return Keys{}, fmt.Errorf("dtlskeys: deriving SRTP keys: %w", err)
	}
	// pion/srtp slices key and salt from one array; clip so that an append
	// to a key cannot overwrite its salt.
	return Keys{
		Profile:    profile,
		LocalKey:   slices.Clip(cfg.Keys.LocalMasterKey),
		LocalSalt:  slices.Clip(cfg.Keys.LocalMasterSalt),
		RemoteKey:  slices.Clip(cfg.Keys.RemoteMasterKey),
		RemoteSalt: slices.Clip(cfg.Keys.RemoteMasterSalt),
	}, nil
}
