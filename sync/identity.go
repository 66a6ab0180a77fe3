package sync

import (
	"bufio"
	"bytes"
	"hash/fnv"
	"io"
	"mime"
	"net/textproto"
	"strings"
)

// identityFields are the header fields fetched to recognise a message again.
var identityFields = []string{"Message-ID", "Date", "From", "To", "Subject"}

// headerInfo is what the engine learns from a message's identity header
// fields.
type headerInfo struct {
	identity uint64
	subject  string
}

// parseIdentity hashes the Message-ID, or, for messages without one, the
// identity header fields as they are (so a header-only difference is a
// different message). Size and INTERNALDATE complete the identity elsewhere.
func parseIdentity(raw []byte) headerInfo {
	h, _ := textproto.NewReader(bufio.NewReader(io.MultiReader(bytes.NewReader(raw), strings.NewReader("\r\n\r\n")))).ReadMIMEHeader()
	sum := fnv.New64a()
	if id := strings.TrimSpace(h.Get("Message-Id")); id != "" {
		sum.Write([]byte("id:"))
		sum.Write([]byte(id))
	} else {
		sum.Write([]byte("hdr:"))
		sum.Write(bytes.TrimSpace(raw))
	}
	subject := h.Get("Subject")
	if dec, err := new(mime.WordDecoder).DecodeHeader(subject); err == nil {
		subject = dec
	}
	return headerInfo{identity: sum.Sum64(), subject: truncate(subject, 200)}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }
