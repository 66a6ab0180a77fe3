package store

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

func backends(t *testing.T) map[string]func() Store {
	return map[string]func() Store{
		"memory": NewMemory,
		"badger": func() Store {
			s, err := Open(t.TempDir(), nil)
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		"badger opened async": func() Store {
			s, ready := Async(func() (Store, error) { return Open(t.TempDir(), nil) })
			t.Cleanup(func() {
				if err := ready(); err != nil {
					t.Error(err)
				}
			})
			return s
		},
	}
}

func TestStore(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			s := open()
			defer s.Close()

			if _, err := s.Mailbox("nobody@example.com"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("missing mailbox: got %v, want ErrNotFound", err)
			}
			date := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
			msgs := []Message{
				{UID: 300, TgtUID: 3, State: Copied, Flags: []string{`\Seen`, "$Work"}, Identity: 42, Size: 1234, Date: date},
				{UID: 7, State: Pending, Identity: 1 << 63, Size: 1},
				{UID: 70000, State: Skipped, Reason: "too big", Subject: "Grüße", Size: 40 << 20},
			}
			err := s.Update(func(tx Tx) error {
				for _, m := range []Mailbox{{Email: "b@x", Route: RouteTarget}, {Email: "a@x", Copied: 3}} {
					if err := tx.PutMailbox(m); err != nil {
						return err
					}
				}
				for _, f := range []string{"INBOX.Sent", "INBOX", "INBOX.Sent.2024"} {
					if err := tx.PutFolder(Folder{Mailbox: "a@x", Name: f, UIDValidity: 9}); err != nil {
						return err
					}
				}
				if err := tx.PutFolder(Folder{Mailbox: "a@xy", Name: "INBOX"}); err != nil {
					return err
				}
				for _, m := range msgs {
					if err := tx.PutMessage("a@x", "INBOX", 9, m); err != nil {
						return err
					}
				}
				// Another UIDVALIDITY and a folder whose name extends "INBOX".
				if err := tx.PutMessage("a@x", "INBOX", 10, Message{UID: 1, State: Copied}); err != nil {
					return err
				}
				return tx.PutMessage("a@x", "INBOXX", 9, Message{UID: 1, State: Copied})
			})
			if err != nil {
				t.Fatal(err)
			}

			mbs, err := s.Mailboxes()
			if err != nil || len(mbs) != 2 || mbs[0].Email != "a@x" || mbs[1].Route != RouteTarget {
				t.Fatalf("Mailboxes = %+v, %v", mbs, err)
			}
			fs, err := s.Folders("a@x")
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, f := range fs {
				names = append(names, f.Name)
			}
			if want := []string{"INBOX", "INBOX.Sent", "INBOX.Sent.2024"}; !reflect.DeepEqual(names, want) {
				t.Fatalf("Folders = %q, want %q", names, want)
			}

			var got []Message
			err = s.Messages("a@x", "INBOX", 9, func(m Message) error { got = append(got, m); return nil })
			if err != nil {
				t.Fatal(err)
			}
			want := []Message{msgs[1], msgs[0], msgs[2]}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("Messages =\n%+v\nwant\n%+v", got, want)
			}
			for _, m := range want {
				if one, err := s.Message("a@x", "INBOX", 9, m.UID); err != nil || !reflect.DeepEqual(one, m) {
					t.Fatalf("Message(%d) = %+v, %v; want %+v", m.UID, one, err, m)
				}
			}
			if _, err := s.Message("a@x", "INBOX", 9, 999); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Message of an unknown UID: %v, want ErrNotFound", err)
			}

			if err := s.Update(func(tx Tx) error { return tx.DeleteMessage("a@x", "INBOX", 9, 7) }); err != nil {
				t.Fatal(err)
			}
			if n := count(t, s, "a@x", "INBOX", 9); n != 2 {
				t.Fatalf("after delete: %d messages, want 2", n)
			}

			// A write that fails commits nothing.
			boom := errors.New("boom")
			err = s.Update(func(tx Tx) error {
				tx.PutMessage("a@x", "INBOX", 9, Message{UID: 8})
				return boom
			})
			if !errors.Is(err, boom) || count(t, s, "a@x", "INBOX", 9) != 2 {
				t.Fatalf("failed Update committed something (err %v)", err)
			}
			if v, err := s.Verifier("a@x"); v != "" || err != nil {
				t.Fatalf("no verifier yet: %q %v", v, err)
			}
			if err := s.SetVerifier("a@x", "$argon2id$v=19$m=1,t=1,p=1$c2FsdA$aGFzaA"); err != nil {
				t.Fatal(err)
			}
			if v, _ := s.Verifier("a@x"); v != "$argon2id$v=19$m=1,t=1,p=1$c2FsdA$aGFzaA" {
				t.Fatalf("verifier %q", v)
			}
			if err := s.Update(func(tx Tx) error { return tx.PutFolder(Folder{Mailbox: "a\x00b", Name: "x"}) }); err == nil {
				t.Fatal("NUL in a name was accepted")
			}
		})
	}
}

func count(t *testing.T, s Store, mailbox, folder string, uidv uint32) int {
	t.Helper()
	n := 0
	if err := s.Messages(mailbox, folder, uidv, func(Message) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestDeleteFolderInBatches(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			s := open()
			defer s.Close()
			const n = 2*deleteBatch + 17
			err := s.Update(func(tx Tx) error {
				tx.PutFolder(Folder{Mailbox: "a@x", Name: "Big"})
				tx.PutFolder(Folder{Mailbox: "a@x", Name: "Other"})
				tx.PutMessage("a@x", "Other", 1, Message{UID: 1})
				for uid := uint32(1); uid <= n; uid++ {
					if err := tx.PutMessage("a@x", "Big", uid%3, Message{UID: uid, State: Copied}); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.DeleteFolder("a@x", "Big"); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Folder("a@x", "Big"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("folder still there: %v", err)
			}
			for uidv := uint32(0); uidv < 3; uidv++ {
				if c := count(t, s, "a@x", "Big", uidv); c != 0 {
					t.Fatalf("%d messages left under uidvalidity %d", c, uidv)
				}
			}
			if count(t, s, "a@x", "Other", 1) != 1 {
				t.Fatal("DeleteFolder removed another folder's message")
			}
		})
	}
}

func TestBadgerReopenAndLock(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, nil); err == nil {
		t.Fatal("second Open of the same directory succeeded")
	}
	if err := s.Update(func(tx Tx) error { return tx.PutMailbox(Mailbox{Email: "a@x", Route: RouteTarget}) }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m, err := s.Mailbox("a@x")
	if err != nil || m.Route != RouteTarget {
		t.Fatalf("after reopen: %+v, %v", m, err)
	}
}

// TestAsyncOpenFailure: a store that could not open fails every call with
// the open's error, and has nothing to close.
func TestAsyncOpenFailure(t *testing.T) {
	dir := t.TempDir()
	held, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	s, ready := Async(func() (Store, error) { return Open(dir, nil) })
	openErr := ready()
	if openErr == nil {
		t.Fatal("second open of the same directory succeeded")
	}
	if _, err := s.Folder("a@x", "INBOX"); !errors.Is(err, openErr) {
		t.Errorf("Folder: %v, want the open's error", err)
	}
	if err := s.Update(func(Tx) error { return nil }); !errors.Is(err, openErr) {
		t.Errorf("Update: %v, want the open's error", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func FuzzDecodeMessage(f *testing.F) {
	f.Add(encodeMessage(&Message{State: Copied, Flags: []string{`\Seen`}, Subject: "x", Date: time.Unix(1e9, 0)}))
	f.Add([]byte{messageFormat, 1, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMessage(1, b)
		if err != nil {
			return
		}
		again, err := decodeMessage(1, encodeMessage(&m))
		if err != nil || !reflect.DeepEqual(m, again) {
			t.Fatalf("round trip: %+v vs %+v (%v)", m, again, err)
		}
	})
}
