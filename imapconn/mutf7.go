package imapconn

import (
	"encoding/base64"
	"strings"
	"unicode/utf16"
)

// DecodeMUTF7 decodes IMAP's modified UTF-7 mailbox names; a name that
// doesn't decode is returned as it is.
func DecodeMUTF7(s string) string {
	if !strings.Contains(s, "&") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '&' {
			b.WriteByte(s[i])
			continue
		}
		j := strings.IndexByte(s[i:], '-')
		if j < 0 {
			return s
		}
		enc := s[i+1 : i+j]
		i += j
		if enc == "" {
			b.WriteByte('&')
			continue
		}
		raw, err := base64.RawStdEncoding.DecodeString(strings.ReplaceAll(enc, ",", "/"))
		if err != nil || len(raw)%2 != 0 {
			return s
		}
		u := make([]uint16, len(raw)/2)
		for k := range u {
			u[k] = uint16(raw[2*k])<<8 | uint16(raw[2*k+1])
		}
		b.WriteString(string(utf16.Decode(u)))
	}
	return b.String()
}

// EncodeMUTF7 encodes a mailbox name in IMAP's modified UTF-7.
func EncodeMUTF7(s string) string {
	var b strings.Builder
	var run []rune
	flush := func() {
		if len(run) == 0 {
			return
		}
		var raw []byte
		for _, u := range utf16.Encode(run) {
			raw = append(raw, byte(u>>8), byte(u))
		}
		b.WriteString("&" + strings.ReplaceAll(base64.RawStdEncoding.EncodeToString(raw), "/", ",") + "-")
		run = run[:0]
	}
	for _, r := range s {
		if r < 0x20 || r > 0x7e {
			run = append(run, r)
			continue
		}
		flush()
		if r == '&' {
			b.WriteString("&-")
		} else {
			b.WriteRune(r)
		}
	}
	flush()
	return b.String()
}
