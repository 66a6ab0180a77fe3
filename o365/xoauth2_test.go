package o365

import (
	"fmt"
	"strings"
	"testing"
)

func TestXOAUTH2Start(t *testing.T) {
	x := NewXOAUTH2("alice@example.com", "tok.en-123")
	mech, ir, err := x.Start()
	if err != nil {
		t.Fatal(err)
	}
	if mech != "XOAUTH2" {
		t.Errorf("mech = %q", mech)
	}
	if want := "user=alice@example.com\x01auth=Bearer tok.en-123\x01\x01"; string(ir) != want {
		t.Errorf("initial response %q, want %q", ir, want)
	}
	if x.Challenge() != nil {
		t.Errorf("challenge before any: %v", x.Challenge())
	}
	for _, s := range []string{x.String(), x.GoString(), fmt.Sprintf("%v %+v %#v %s", x, x, x, x)} {
		if strings.Contains(s, "tok.en-123") {
			t.Errorf("token printed: %s", s)
		}
	}
}

func TestXOAUTH2StartRefusesBadInput(t *testing.T) {
	for _, tc := range []struct{ user, token string }{
		{"", "t"}, {"a\x01b", "t"}, {"a\r\nb", "t"}, {"alice", ""}, {"alice", "t\x01"}, {"alice", "a b"},
	} {
		if _, _, err := NewXOAUTH2(tc.user, tc.token).Start(); err == nil {
			t.Errorf("Start(%q, %q) succeeded", tc.user, tc.token)
		} else if tc.token != "" && tc.token != "t" && strings.Contains(err.Error(), tc.token) {
			t.Errorf("error has the token: %v", err)
		}
	}
}

func TestXOAUTH2Next(t *testing.T) {
	x := NewXOAUTH2("alice@example.com", "t")
	if _, _, err := x.Start(); err != nil {
		t.Fatal(err)
	}
	resp, err := x.Next([]byte(`{"status":"401","schemes":"bearer","scope":"https://outlook.office365.com/.default","n":3}`))
	if err != nil {
		t.Fatal(err)
	}
	if resp == nil || len(resp) != 0 {
		t.Errorf("response %q, want empty and non-nil", resp)
	}
	c := x.Challenge()
	if c == nil || c.Status != "401" || c.Schemes != "bearer" || c.Scope != "https://outlook.office365.com/.default" || c.Fields["n"] != "3" {
		t.Fatalf("challenge %+v", c)
	}
	if got, want := c.String(), `n=3 schemes=bearer scope=https://outlook.office365.com/.default status=401`; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	// A second challenge (there shouldn't be one) gets an empty answer too
	// and doesn't replace the first.
	if resp, err := x.Next([]byte("other")); err != nil || len(resp) != 0 {
		t.Errorf("second Next = %q, %v", resp, err)
	}
	if x.Challenge() != c {
		t.Error("second challenge replaced the first")
	}
	// A new Start forgets it.
	_, _, _ = x.Start()
	if x.Challenge() != nil {
		t.Error("challenge kept across Start")
	}
}

func TestChallengeNotJSON(t *testing.T) {
	c := parseChallenge([]byte("oops\r\n\x1b[31mred"))
	if c.Status != "" || c.Raw != "oops???[31mred" {
		t.Errorf("challenge %+v", c)
	}
	if got := c.String(); got != `"oops???[31mred"` {
		t.Errorf("String() = %q", got)
	}
	long := parseChallenge([]byte(`{"status":"` + strings.Repeat("x", 500) + `","k":"a b"}`))
	if len(long.Status) > 210 {
		t.Errorf("status not cut: %d bytes", len(long.Status))
	}
	if !strings.Contains(long.String(), `k="a b"`) {
		t.Errorf("String() = %q", long.String())
	}
}
