// Package session signs the status page's sign-in: a token that stands
// for an admin key for a while, without holding the key.
//
// A token is an id, its expiry and an HMAC of both keyed by the admin key
// it was issued for. So it needs no table of live sessions: it is good
// until it expires, while its key is configured, across restarts. Signing
// out revokes its id; revoked ids are kept (in a file, if given) until
// they would have expired anyway, so a copied token dies with the
// session it was copied from.
package session

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"time"

	"github.com/hotswap/hotswap/clock"
	"github.com/hotswap/hotswap/internal/atomicfile"
)

const (
	idLen    = 16
	macLen   = sha256.Size
	tokenLen = idLen + 8 + macLen
	// label keeps these MACs apart from any other use of the key.
	label = "hotswap status page session v2"
)

// Store issues and checks tokens, and remembers revoked ones.
type Store struct {
	path  string // "" keeps revocations in memory only
	clock clock.Clock

	mu      sync.Mutex
	revoked map[string]time.Time // id (hex) -> when its token expires
}

// Open returns a Store that keeps revocations in path ("" for none),
// reading those already there; c is the time tokens expire by (nil: the
// real clock). A file that cannot be read is reported,
// and the Store starts without it.
func Open(path string, c clock.Clock) (*Store, error) {
	s := &Store{path: path, clock: clock.Or(c), revoked: make(map[string]time.Time)}
	if path == "" {
		return s, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err == nil {
		err = json.Unmarshal(data, &s.revoked)
	}
	if err != nil {
		s.revoked = make(map[string]time.Time)
		return s, fmt.Errorf("revoked sessions %s: %w", path, err)
	}
	return s, nil
}

// Token is a signed session: what the cookie holds.
type Token struct {
	id      [idLen]byte
	expires time.Time
}

// Expires is when t stops being good.
func (t Token) Expires() time.Time { return t.expires }

// Issue returns a new token for key, good for ttl, and its cookie value.
func (s *Store) Issue(key string, ttl time.Duration) (Token, string) {
	var t Token
	if _, err := rand.Read(t.id[:]); err != nil {
		panic("session: no randomness: " + err.Error()) // crypto/rand never fails on supported systems
	}
	t.expires = time.Unix(s.clock.Now().Add(ttl).Unix(), 0)
	return t, s.encode(t, key)
}

// Renew returns t's cookie value with a new expiry, ttl from now: the same
// session, so revoking it revokes both.
func (s *Store) Renew(t Token, key string, ttl time.Duration) (Token, string) {
	t.expires = time.Unix(s.clock.Now().Add(ttl).Unix(), 0)
	return t, s.encode(t, key)
}

func (s *Store) encode(t Token, key string) string {
	var b [tokenLen]byte
	copy(b[:], t.id[:])
	binary.BigEndian.PutUint64(b[idLen:], uint64(t.expires.Unix()))
	copy(b[idLen+8:], sign(key, b[:idLen+8]))
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func sign(key string, msg []byte) []byte {
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write([]byte(label))
	mac.Write(msg)
	return mac.Sum(nil)
}

// Check reports the token value stands for, and the key among keys it was
// issued for, if it is good: well formed, signed by one of keys, not
// expired, not revoked.
func (s *Store) Check(value []byte, keys []string) (Token, string, bool) {
	var b [tokenLen]byte
	if base64.RawURLEncoding.EncodedLen(tokenLen) != len(value) {
		return Token{}, "", false
	}
	if n, err := base64.RawURLEncoding.Decode(b[:], value); err != nil || n != tokenLen {
		return Token{}, "", false
	}
	var t Token
	copy(t.id[:], b[:idLen])
	t.expires = time.Unix(int64(binary.BigEndian.Uint64(b[idLen:])), 0)
	var key string
	found := 0
	for _, k := range keys {
		// Every key is tried, so that the time taken does not say which.
		if subtle.ConstantTimeCompare(sign(k, b[:idLen+8]), b[idLen+8:]) == 1 && found == 0 {
			key, found = k, 1
		}
	}
	if found == 0 || !s.clock.Now().Before(t.expires) {
		return Token{}, "", false
	}
	s.mu.Lock()
	_, revoked := s.revoked[t.hex()]
	s.mu.Unlock()
	if revoked {
		return Token{}, "", false
	}
	return t, key, true
}

// Revoke ends t's session, for good: the revocation is written to the
// Store's file before Revoke returns, so it outlives a restart.
func (s *Store) Revoke(t Token) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	for id, exp := range s.revoked {
		if !now.Before(exp) {
			delete(s.revoked, id)
		}
	}
	s.revoked[t.hex()] = t.expires
	if s.path == "" {
		return nil
	}
	data, err := json.Marshal(s.revoked)
	if err != nil {
		return err
	}
	return atomicfile.Write(s.path, data)
}

func (t Token) hex() string { return fmt.Sprintf("%x", t.id) }
