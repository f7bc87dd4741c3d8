package dtlskeys

import (
	"bytes"
	"regexp"
	"testing"

	"github.com/pion/dtls/v3"
)

var hexRun = regexp.MustCompile(`[0-9a-fA-F]{16,}`)

// FuzzKeyLog feeds the key-log writer arbitrary bytes, as pion's DTLS
// stack would hand them over, split into writes at an arbitrary point: it
// never panics or refuses a write, buffers no more than one line's worth,
// gives the same keys (or the same error) however the log was split, and
// its errors never quote the log's hex (key material).
func FuzzKeyLog(f *testing.F) {
	f.Add([]byte(keyLine(1, 2)), uint16(20))
	f.Add([]byte("SERVER_HANDSHAKE_TRAFFIC_SECRET x y\n"+keyLine(3, 4)), uint16(0))
	f.Add([]byte(keyLine(1, 2)+keyLine(5, 6)), uint16(180))
	f.Add([]byte("CLIENT_RANDOM \x00\n\n\n"), uint16(3))
	f.Fuzz(func(t *testing.T, log []byte, cut uint16) {
		run := func(writes ...[]byte) (Keys, *Capture, error) {
			c := New()
			c.ServerHello(hello(1, dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, dtls.SRTP_AEAD_AES_128_GCM))
			for _, w := range writes {
				if n, err := c.Write(w); n != len(w) || err != nil {
					t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(w))
				}
				if cap(c.partial) > maxLine {
					t.Fatalf("buffered %d bytes for a line, limit %d", cap(c.partial), maxLine)
				}
			}
			k, err := c.Keys()
			return k, c, err
		}
		at := int(cut) % (len(log) + 1)
		k1, _, err1 := run(log)
		k2, _, err2 := run(log[:at], log[at:])
		if (err1 == nil) != (err2 == nil) || err1 != nil && err1.Error() != err2.Error() {
			t.Fatalf("the log at once: %v; split at %d: %v", err1, at, err2)
		}
		if !bytes.Equal(k1.LocalKey, k2.LocalKey) || !bytes.Equal(k1.RemoteSalt, k2.RemoteSalt) {
			t.Fatalf("split at %d gave other keys", at)
		}
		if err1 != nil && hexRun.MatchString(err1.Error()) {
			t.Fatalf("error quotes hex from the log: %v", err1)
		}
	})
}
