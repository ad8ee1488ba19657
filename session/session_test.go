package session

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hotswap/hotswap/clock"
)

func TestIssueCheckExpire(t *testing.T) {
	c := clock.NewFake(time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC))
	s, err := Open("", c)
	if err != nil {
		t.Fatal(err)
	}
	keys := []string{"admin-1", "admin-2"}
	tok, value := s.Issue("admin-2", time.Hour)
	if strings.Contains(value, "admin") {
		t.Errorf("the cookie %q holds the key", value)
	}
	got, key, ok := s.Check([]byte(value), keys)
	if !ok || key != "admin-2" || got != tok {
		t.Fatalf("Check = %v %q %v, want the token for admin-2", got, key, ok)
	}
	// The key it was issued for is gone: so is the session.
	if _, _, ok := s.Check([]byte(value), []string{"admin-1"}); ok {
		t.Error("a token is good after its key was removed")
	}
	c.Advance(59 * time.Minute)
	if _, _, ok := s.Check([]byte(value), keys); !ok {
		t.Error("a token expired before its time")
	}
	// Renewed, the same session lasts another hour from now.
	tok2, value2 := s.Renew(got, key, time.Hour)
	c.Advance(2 * time.Minute)
	if _, _, ok := s.Check([]byte(value), keys); ok {
		t.Error("a token is good after it expired")
	}
	if _, _, ok := s.Check([]byte(value2), keys); !ok {
		t.Error("the renewed token is not good")
	}
	if tok2.id != tok.id {
		t.Error("renewing made a new session")
	}
}

func TestForgedAndMalformed(t *testing.T) {
	s, _ := Open("", nil)
	_, value := s.Issue("admin", time.Hour)
	keys := []string{"admin"}
	raw, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil {
		t.Fatal(err)
	}
	// Any byte changed (the id, the expiry moved, the MAC) breaks it.
	for i := range raw {
		forged := append([]byte(nil), raw...)
		forged[i] ^= 0x40
		if _, _, ok := s.Check([]byte(base64.RawURLEncoding.EncodeToString(forged)), keys); ok {
			t.Errorf("a token with byte %d changed is good", i)
		}
	}
	for _, bad := range []string{"", "x", value + "A", value[:len(value)-1], strings.Repeat("A", len(value)), "!" + value[1:]} {
		if _, _, ok := s.Check([]byte(bad), keys); ok {
			t.Errorf("Check(%q) is good", bad)
		}
	}
	// The old design's cookie (the key's HMAC in hex) is not a token.
	if _, _, ok := s.Check([]byte(strings.Repeat("ab", 32)), keys); ok {
		t.Error("a 64-hex-digit value is good")
	}
}

func TestRevokeOutlivesRestart(t *testing.T) {
	c := clock.NewFake(time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC))
	path := filepath.Join(t.TempDir(), "state", "revoked-sessions.json")
	s, err := Open(path, c)
	if err != nil {
		t.Fatal(err)
	}
	keys := []string{"admin"}
	a, va := s.Issue("admin", time.Hour)
	_, vb := s.Issue("admin", time.Hour)
	if err := s.Revoke(a); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := s.Check([]byte(va), keys); ok {
		t.Error("a revoked token is good")
	}
	if _, _, ok := s.Check([]byte(vb), keys); !ok {
		t.Error("revoking one session ended another")
	}
	// A renewed copy of the revoked session is revoked too.
	if _, vr := s.Renew(a, "admin", time.Hour); func() bool { _, _, ok := s.Check([]byte(vr), keys); return ok }() {
		t.Error("a renewed copy of a revoked token is good")
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("revocations file: %v, mode %v", err, fi.Mode().Perm())
	}

	again, err := Open(path, c)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := again.Check([]byte(va), keys); ok {
		t.Error("a revoked token is good after a restart")
	}
	if _, _, ok := again.Check([]byte(vb), keys); !ok {
		t.Error("a live token is not good after a restart")
	}

	// Revocations are forgotten once the tokens would have expired anyway.
	c.Advance(2 * time.Hour)
	tok, _ := again.Issue("admin", time.Hour)
	if err := again.Revoke(tok); err != nil {
		t.Fatal(err)
	}
	if n := len(again.revoked); n != 1 {
		t.Errorf("%d revocations kept, want only the live one", n)
	}
}

func TestUnreadableFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "revoked.json")
	os.WriteFile(path, []byte("{not json"), 0o600)
	s, err := Open(path, nil)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("Open of a corrupt file: %v", err)
	}
	if s == nil {
		t.Fatal("no Store")
	}
	_, v := s.Issue("k", time.Minute)
	if _, _, ok := s.Check([]byte(v), []string{"k"}); !ok {
		t.Error("the Store does not work after a corrupt file")
	}
}
