package srtpsend

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"

	"github.com/pion/srtp/v3"
)

// gcmKeys seal a connection's SRTP with AEAD_AES_128_GCM or
// AEAD_AES_256_GCM (RFC 7714), what browsers and pion negotiate first.
// The session key and salt are derived once, as pion/srtp derives them,
// and each packet is sealed by the standard library's AES-GCM straight
// from the forwarder's payload into its batch slot. pion/srtp's
// EncryptRTP parses again the header it is handed, looks the SSRC up in a
// map and wants the payload copied in first: 30 % on top of AES-GCM itself
// per copy (BenchmarkSeal, docs/benchmarks.md). pion still seals the
// AES-CM-HMAC profiles, which need its HMAC and keystream code.
type gcmKeys struct {
	aead cipher.AEAD
	salt [12]byte
}

// newGCMKeys derives the SRTP session keys for an AEAD profile from the
// master key and salt, whose lengths pion has checked (NewConn); it
// returns nil for the other profiles.
func newGCMKeys(profile srtp.ProtectionProfile, masterKey, masterSalt []byte) (*gcmKeys, error) {
	if profile != srtp.ProtectionProfileAeadAes128Gcm && profile != srtp.ProtectionProfileAeadAes256Gcm {
		return nil, nil
	}
	key, err := deriveSessionKey(labelSRTPEncryption, masterKey, masterSalt, len(masterKey))
	if err != nil {
		return nil, err
	}
	salt, err := deriveSessionKey(labelSRTPSalt, masterKey, masterSalt, len(masterSalt))
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	g := &gcmKeys{aead: aead}
	copy(g.salt[:], salt)
	return g, nil
}

// RFC 3711 §4.3.1 key derivation labels.
const (
	labelSRTPEncryption = 0x00
	labelSRTPSalt       = 0x02
)

// deriveSessionKey is RFC 3711 §4.3's key derivation with the AES-CM PRF
// and a key derivation rate of 0 (RFC 7714 §12 keeps it for AES-GCM):
// the master salt, with the label XORed in at octet 7, as the counter
// block's top 112 bits.
func deriveSessionKey(label byte, masterKey, masterSalt []byte, n int) ([]byte, error) {
	block, err := aes.NewCipher(masterKey)
	if err != nil {
		return nil, err
	}
	var in [aes.BlockSize]byte
	copy(in[:], masterSalt)
	in[7] ^= label
	out := make([]byte, (n+aes.BlockSize-1)/aes.BlockSize*aes.BlockSize)
	for i := 0; i*aes.BlockSize < n; i++ {
		binary.BigEndian.PutUint16(in[14:], uint16(i))
		block.Encrypt(out[i*aes.BlockSize:], in[:])
	}
	return out[:n], nil
}

// seal encrypts plain, the payload of the RTP header already marshalled
// in buf[:hl], into buf[hl:] with the header as associated data (RFC 7714
// §9: IV = salt XOR (0, 0, SSRC, ROC, SEQ)), and returns the SRTP packet.
// iv is the caller's scratch: a local array passed to the AEAD's interface
// method would escape to the heap on every packet.
func (g *gcmKeys) seal(buf []byte, hl int, ssrc, roc uint32, seq uint16, plain []byte, iv *[12]byte) []byte {
	iv[0], iv[1] = g.salt[0], g.salt[1]
	binary.BigEndian.PutUint32(iv[2:], ssrc^binary.BigEndian.Uint32(g.salt[2:]))
	binary.BigEndian.PutUint32(iv[6:], roc^binary.BigEndian.Uint32(g.salt[6:]))
	binary.BigEndian.PutUint16(iv[10:], seq^binary.BigEndian.Uint16(g.salt[10:]))
	ct := g.aead.Seal(buf[hl:hl], iv[:], plain, buf[:hl])
	return buf[:hl+len(ct)]
}
