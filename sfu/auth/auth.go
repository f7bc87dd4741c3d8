// Package auth verifies the HS256 join tokens the api service issues and
// mints coturn REST-scheme TURN credentials.
package auth

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Sentinel errors.
var (
	ErrNoToken    = errors.New("auth: token required")
	ErrBadToken   = errors.New("auth: invalid token")
	ErrWrongRoom  = errors.New("auth: token is for another room")
	ErrNoIdentity = errors.New("auth: token has no sub claim")
)

// AnyRoom as the room claim admits the bearer to every room.
const AnyRoom = "*"

// Claims are the join token's claims.
type Claims struct {
	Room string `json:"room"`
	Name string `json:"name,omitempty"`
	jwt.RegisteredClaims
}

// Verifier checks join tokens.
type Verifier struct {
	secret    []byte
	anonymous bool
}

// NewVerifier returns a verifier for tokens signed with secret. With
// allowAnonymous, a join without a token is admitted; a token that is
// present is still verified.
func NewVerifier(secret []byte, allowAnonymous bool) *Verifier {
	return &Verifier{secret: secret, anonymous: allowAnonymous}
}

// Identity is who a join is.
type Identity struct {
	Subject string // empty for an anonymous join
	Name    string
}

// Verify checks token for room.
func (v *Verifier) Verify(token, room string) (Identity, error) {
	if token == "" {
		if v.anonymous {
			return Identity{}, nil
		}
		return Identity{}, ErrNoToken
	}
	if len(v.secret) == 0 {
		return Identity{}, fmt.Errorf("%w: the server has no JWT secret", ErrBadToken)
	}
	var c Claims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return v.secret, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithLeeway(30*time.Second))
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	if c.Room != room && c.Room != AnyRoom {
		return Identity{}, ErrWrongRoom
	}
	if c.Subject == "" {
		return Identity{}, ErrNoIdentity
	}
	return Identity{Subject: c.Subject, Name: c.Name}, nil
}

// Sign makes a token (for tests and tools; the api service signs in
// production).
func Sign(secret []byte, room, subject, name string, ttl time.Duration) (string, error) {
	now := time.Now()
	c := Claims{Room: room, Name: name, RegisteredClaims: jwt.RegisteredClaims{
		Subject: subject, IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
}

// TURNCredentials returns coturn REST API credentials (use-auth-secret):
// username "<unix expiry>:<user>", credential base64(HMAC-SHA1(secret, username)).
func TURNCredentials(secret []byte, user string, ttl time.Duration, now time.Time) (username, credential string) {
	username = strconv.FormatInt(now.Add(ttl).Unix(), 10) + ":" + user
	mac := hmac.New(sha1.New, secret)
	mac.Write([]byte(username))
	return username, base64.StdEncoding.EncodeToString(mac.Sum(nil))
}
