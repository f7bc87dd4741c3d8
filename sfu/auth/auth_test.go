package auth

import (
	"errors"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestVerify(t *testing.T) {
	secret := []byte("s3cret")
	sign := func(room, sub string, ttl time.Duration) string {
		tok, err := Sign(secret, room, sub, "Ana", ttl)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, Claims{Room: "r", RegisteredClaims: jwt.RegisteredClaims{Subject: "u"}}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	other, _ := Sign([]byte("other"), "r", "u", "", time.Hour)
	// claims signs a token with the right key and the given registered claims.
	claims := func(rc jwt.RegisteredClaims) string {
		rc.Subject = "u1"
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, Claims{Room: "r", Name: "Ana", RegisteredClaims: rc}).SignedString(secret)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	in := func(d time.Duration) *jwt.NumericDate { return jwt.NewNumericDate(time.Now().Add(d)) }
	aud := jwt.ClaimStrings{Audience}
	tests := []struct {
		name      string
		anonymous bool
		token     string
		room      string
		want      error
	}{
		{"valid", false, sign("r", "u1", time.Hour), "r", nil},
		{"any room", false, sign(AnyRoom, "u1", time.Hour), "elsewhere", nil},
		{"wrong room", false, sign("r", "u1", time.Hour), "x", ErrWrongRoom},
		{"expired", false, sign("r", "u1", -time.Hour), "r", ErrBadToken},
		{"no subject", false, sign("r", "", time.Hour), "r", ErrNoIdentity},
		{"alg none", false, none, "r", ErrBadToken},
		{"other secret", false, other, "r", ErrBadToken},
		{"garbage", false, "not.a.jwt", "r", ErrBadToken},
		{"missing, auth required", false, "", "r", ErrNoToken},
		{"missing, anonymous allowed", true, "", "r", nil},
		{"bad token even when anonymous allowed", true, "x.y.z", "r", ErrBadToken},
		{"well formed by hand", false, claims(jwt.RegisteredClaims{Issuer: DefaultIssuer, Audience: aud, ExpiresAt: in(time.Hour)}), "r", nil},
		{"no expiry", false, claims(jwt.RegisteredClaims{Issuer: DefaultIssuer, Audience: aud}), "r", ErrBadToken},
		{"expires in a week", false, claims(jwt.RegisteredClaims{Issuer: DefaultIssuer, Audience: aud, ExpiresAt: in(7 * 24 * time.Hour)}), "r", ErrTooLong},
		{"no audience", false, claims(jwt.RegisteredClaims{Issuer: DefaultIssuer, ExpiresAt: in(time.Hour)}), "r", ErrBadToken},
		{"another audience (an api session)", false, claims(jwt.RegisteredClaims{Issuer: DefaultIssuer, Audience: jwt.ClaimStrings{"api"}, ExpiresAt: in(time.Hour)}), "r", ErrBadToken},
		{"another issuer", false, claims(jwt.RegisteredClaims{Issuer: "someone", Audience: aud, ExpiresAt: in(time.Hour)}), "r", ErrBadToken},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, err := NewVerifier(secret, DefaultIssuer, tc.anonymous).Verify(tc.token, tc.room)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			if err == nil && tc.token != "" && (id.Subject != "u1" || id.Name != "Ana") {
				t.Fatalf("identity %+v", id)
			}
		})
	}
}

// The expected credential was computed independently with openssl:
// echo -n "1700000000:alice" | openssl dgst -sha1 -hmac secret -binary | base64.
func TestTURNCredentials(t *testing.T) {
	u, c := TURNCredentials([]byte("secret"), "alice", time.Hour, time.Unix(1700000000-3600, 0))
	if u != "1700000000:alice" {
		t.Fatalf("username %q", u)
	}
	if c != "d8soP47RbdIKLDUOpnJPVQyq5Ts=" {
		t.Fatalf("credential %q", c)
	}
}
