// Package auth verifies the HS256 join tokens the api service issues and
// mints coturn REST-scheme TURN credentials.
//
// A join token is valid only for this service (audience "sfu") from its
// issuer, and only for a bounded time: it must expire, at most
// MaxLifetime from now. The secret is the SFU's own, not the api's
// session key, so that no other token of the api's can be replayed here.
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
	ErrTooLong    = errors.New("auth: token lives longer than allowed")
)

// Audience is the aud claim a join token must carry.
const Audience = "sfu"

// DefaultIssuer is the iss claim the SFU expects by default: the api
// service, which mints join tokens.
const DefaultIssuer = "jbcalling-api"

// MaxLifetime bounds how far in the future a join token may expire: a
// token is for joining, and a leaked one must not work for long.
const MaxLifetime = 24 * time.Hour

// AnyRoom as the room claim admits the bearer to every room.
const AnyRoom = "*"

// Claims are the join token's claims.
type Claims struct {
	Room string `json:"room"`
	Name string `json:"name,omitempty"`
	// Agent marks a service that joins rooms for the people in them (the
	// translation agent): only it may send captions.
	Agent bool `json:"agent,omitempty"`
	jwt.RegisteredClaims
}

// Verifier checks join tokens.
type Verifier struct {
	secret    []byte
	issuer    string
	anonymous bool
	now       func() time.Time
}

// NewVerifier returns a verifier for tokens signed with secret by issuer.
// With allowAnonymous, a join without a token is admitted; a token that
// is present is still verified.
func NewVerifier(secret []byte, issuer string, allowAnonymous bool) *Verifier {
	return &Verifier{secret: secret, issuer: issuer, anonymous: allowAnonymous, now: time.Now}
}

// Identity is who a join is.
type Identity struct {
	Subject string // empty for an anonymous join
	Name    string
	Agent   bool
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
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithLeeway(30*time.Second), jwt.WithExpirationRequired(),
		jwt.WithAudience(Audience), jwt.WithIssuer(v.issuer), jwt.WithTimeFunc(v.now))
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	if c.ExpiresAt.Sub(v.now()) > MaxLifetime {
		return Identity{}, fmt.Errorf("%w: it expires in %s, the limit is %s", ErrTooLong, c.ExpiresAt.Sub(v.now()).Round(time.Second), MaxLifetime)
	}
	if c.Room != room && c.Room != AnyRoom {
		return Identity{}, ErrWrongRoom
	}
	if c.Subject == "" {
		return Identity{}, ErrNoIdentity
	}
	return Identity{Subject: c.Subject, Name: c.Name, Agent: c.Agent}, nil
}

// Sign makes a join token from DefaultIssuer for the SFU (for tests and
// tools; the api service signs in production).
func Sign(secret []byte, room, subject, name string, ttl time.Duration) (string, error) {
	return sign(secret, Claims{Room: room, Name: name}, subject, ttl)
}

// SignAgent makes a join token for an agent (the agent holds the SFU's
// secret and signs its own).
func SignAgent(secret []byte, room, subject, name string, ttl time.Duration) (string, error) {
	return sign(secret, Claims{Room: room, Name: name, Agent: true}, subject, ttl)
}

func sign(secret []byte, c Claims, subject string, ttl time.Duration) (string, error) {
	now := time.Now()
	c.RegisteredClaims = jwt.RegisteredClaims{
		Subject: subject, Issuer: DefaultIssuer, Audience: jwt.ClaimStrings{Audience},
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}
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
