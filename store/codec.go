package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Keys are a kind byte, then NUL-separated names (IMAP names and addresses
// never contain NUL), then big-endian numbers so that messages sort by UID.
const (
	kindMailbox  = 'b'
	kindFolder   = 'f'
	kindMessage  = 'm'
	kindVerifier = 'v'
)

func checkName(names ...string) error {
	for _, n := range names {
		if strings.IndexByte(n, 0) >= 0 {
			return fmt.Errorf("store: name %q contains NUL", n)
		}
	}
	return nil
}

func key(kind byte, names ...string) []byte {
	k := []byte{kind}
	for _, n := range names {
		k = append(k, 0)
		k = append(k, n...)
	}
	return k
}

func mailboxKey(email string) []byte          { return key(kindMailbox, email) }
func folderKey(mailbox, folder string) []byte { return key(kindFolder, mailbox, folder) }

func folderPrefix(mailbox string) []byte { return append(key(kindFolder, mailbox), 0) }

// messagePrefix covers every UIDVALIDITY of a folder.
func messagePrefix(mailbox, folder string) []byte {
	return append(key(kindMessage, mailbox, folder), 0)
}

func messageUIDVPrefix(mailbox, folder string, uidValidity uint32) []byte {
	return binary.BigEndian.AppendUint32(messagePrefix(mailbox, folder), uidValidity)
}

func messageKey(mailbox, folder string, uidValidity, uid uint32) []byte {
	return binary.BigEndian.AppendUint32(messageUIDVPrefix(mailbox, folder, uidValidity), uid)
}

const messageFormat = 1

var errCorrupt = errors.New("store: corrupt message record")

func encodeMessage(m *Message) []byte {
	b := make([]byte, 0, 48+len(m.Reason)+len(m.Subject))
	b = append(b, messageFormat, byte(m.State))
	b = binary.AppendUvarint(b, uint64(m.TgtUID))
	b = binary.AppendUvarint(b, uint64(m.Size))
	var date int64
	if !m.Date.IsZero() {
		date = m.Date.Unix()
	}
	b = binary.AppendVarint(b, date)
	b = binary.BigEndian.AppendUint64(b, m.Identity)
	b = binary.AppendUvarint(b, uint64(len(m.Flags)))
	for _, f := range m.Flags {
		b = appendString(b, f)
	}
	b = appendString(b, m.Reason)
	return appendString(b, m.Subject)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errCorrupt
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errCorrupt
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.err = errCorrupt
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func decodeMessage(uid uint32, val []byte) (Message, error) {
	if len(val) < 2 || val[0] != messageFormat {
		return Message{}, errCorrupt
	}
	m := Message{UID: uid, State: State(val[1])}
	d := decoder{b: val[2:]}
	m.TgtUID = uint32(d.uvarint())
	m.Size = int64(d.uvarint())
	if date := d.varint(); date != 0 {
		m.Date = time.Unix(date, 0).UTC()
	}
	if len(d.b) < 8 {
		return Message{}, errCorrupt
	}
	m.Identity = binary.BigEndian.Uint64(d.b)
	d.b = d.b[8:]
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		return Message{}, errCorrupt
	}
	if n > 0 {
		m.Flags = make([]string, n)
		for i := range m.Flags {
			m.Flags[i] = d.string()
		}
	}
	m.Reason = d.string()
	m.Subject = d.string()
	if d.err != nil {
		return Message{}, d.err
	}
	return m, nil
}

func encodeJSON(v any) ([]byte, error) { return json.Marshal(v) }

func decodeJSON(val []byte, v any) error {
	if err := json.Unmarshal(val, v); err != nil {
		return fmt.Errorf("store: corrupt record: %w", err)
	}
	return nil
}
