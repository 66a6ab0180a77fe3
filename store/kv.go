package store

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// kv is the little a backend must do; kvStore builds Store on top of it.
type kv interface {
	get(key []byte) ([]byte, error)
	// scan calls fn for each key with prefix, in key order.
	scan(prefix []byte, fn func(key, val []byte) error) error
	update(fn func(w kvWriter) error) error
	close() error
}

type kvWriter interface {
	set(key, val []byte) error
	del(key []byte) error
}

type kvStore struct{ kv kv }

func (s *kvStore) Close() error { return s.kv.close() }

func (s *kvStore) Mailbox(email string) (Mailbox, error) {
	var m Mailbox
	val, err := s.kv.get(mailboxKey(email))
	if err != nil {
		return m, err
	}
	return m, decodeJSON(val, &m)
}

func (s *kvStore) Mailboxes() ([]Mailbox, error) {
	var out []Mailbox
	err := s.kv.scan([]byte{kindMailbox, 0}, func(_, val []byte) error {
		var m Mailbox
		if err := decodeJSON(val, &m); err != nil {
			return err
		}
		out = append(out, m)
		return nil
	})
	return out, err
}

func (s *kvStore) Folder(mailbox, folder string) (Folder, error) {
	var f Folder
	val, err := s.kv.get(folderKey(mailbox, folder))
	if err != nil {
		return f, err
	}
	return f, decodeJSON(val, &f)
}

func (s *kvStore) Folders(mailbox string) ([]Folder, error) {
	var out []Folder
	err := s.kv.scan(folderPrefix(mailbox), func(_, val []byte) error {
		var f Folder
		if err := decodeJSON(val, &f); err != nil {
			return err
		}
		out = append(out, f)
		return nil
	})
	return out, err
}

func (s *kvStore) Messages(mailbox, folder string, uidValidity uint32, fn func(Message) error) error {
	prefix := messageUIDVPrefix(mailbox, folder, uidValidity)
	return s.kv.scan(prefix, func(k, val []byte) error {
		if len(k) != len(prefix)+4 {
			return errCorrupt
		}
		m, err := decodeMessage(binary.BigEndian.Uint32(k[len(prefix):]), val)
		if err != nil {
			return fmt.Errorf("%s %q: %w", mailbox, folder, err)
		}
		return fn(m)
	})
}

func (s *kvStore) Message(mailbox, folder string, uidValidity, uid uint32) (Message, error) {
	val, err := s.kv.get(messageKey(mailbox, folder, uidValidity, uid))
	if err != nil {
		return Message{}, err
	}
	m, err := decodeMessage(uid, val)
	if err != nil {
		return m, fmt.Errorf("%s %q: %w", mailbox, folder, err)
	}
	return m, nil
}

func (s *kvStore) Update(fn func(Tx) error) error {
	return s.kv.update(func(w kvWriter) error { return fn(tx{w}) })
}

// deleteBatch bounds one commit when deleting a folder's messages.
const deleteBatch = 1000

func (s *kvStore) DeleteFolder(mailbox, folder string) error {
	prefix := messagePrefix(mailbox, folder)
	for {
		var keys [][]byte
		err := s.kv.scan(prefix, func(k, _ []byte) error {
			keys = append(keys, append([]byte(nil), k...))
			if len(keys) == deleteBatch {
				return errStopScan
			}
			return nil
		})
		if err != nil && err != errStopScan {
			return err
		}
		last := len(keys) < deleteBatch
		err = s.kv.update(func(w kvWriter) error {
			for _, k := range keys {
				if err := w.del(k); err != nil {
					return err
				}
			}
			if last {
				return w.del(folderKey(mailbox, folder))
			}
			return nil
		})
		if err != nil || last {
			return err
		}
	}
}

func (s *kvStore) Verifier(email string) (string, error) {
	val, err := s.kv.get(key(kindVerifier, email))
	if errors.Is(err, ErrNotFound) {
		return "", nil
	}
	return string(val), err
}

func (s *kvStore) SetVerifier(email, verifier string) error {
	if err := checkName(email); err != nil {
		return err
	}
	return s.kv.update(func(w kvWriter) error { return w.set(key(kindVerifier, email), []byte(verifier)) })
}

type stopScan struct{}

func (stopScan) Error() string { return "stop scan" }

var errStopScan error = stopScan{}

type tx struct{ w kvWriter }

func (t tx) PutMailbox(m Mailbox) error {
	if err := checkName(m.Email); err != nil {
		return err
	}
	val, err := encodeJSON(m)
	if err != nil {
		return err
	}
	return t.w.set(mailboxKey(m.Email), val)
}

func (t tx) PutFolder(f Folder) error {
	if err := checkName(f.Mailbox, f.Name); err != nil {
		return err
	}
	val, err := encodeJSON(f)
	if err != nil {
		return err
	}
	return t.w.set(folderKey(f.Mailbox, f.Name), val)
}

func (t tx) PutMessage(mailbox, folder string, uidValidity uint32, m Message) error {
	if err := checkName(mailbox, folder); err != nil {
		return err
	}
	return t.w.set(messageKey(mailbox, folder, uidValidity, m.UID), encodeMessage(&m))
}

func (t tx) DeleteMessage(mailbox, folder string, uidValidity, uid uint32) error {
	return t.w.del(messageKey(mailbox, folder, uidValidity, uid))
}
