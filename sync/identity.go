package sync

import (
	"bufio"
	"bytes"
	"fmt"
	"hash/fnv"
	"io"
	"mime"
	"net/textproto"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
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

// identityItem is a message as an identity FETCH returns it.
type identityItem struct {
	uid  uint32
	date time.Time
	size int64
	headerInfo
}

var identitySection = &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: identityFields, Peek: true}

// fetchIdentityItems streams the UID, INTERNALDATE, size and identity
// header fields of the messages in set of c's selected folder.
func fetchIdentityItems(c *conn, set imap.UIDSet, fn func(identityItem)) error {
	cmd := c.Fetch(set, &imap.FetchOptions{UID: true, InternalDate: true, RFC822Size: true,
		BodySection: []*imap.FetchItemBodySection{identitySection}})
	return eachFetched(cmd, func(buf *imapclient.FetchMessageBuffer) {
		fn(identityItem{uid: uint32(buf.UID), date: buf.InternalDate.UTC().Truncate(time.Second), size: buf.RFC822Size,
			headerInfo: parseIdentity(buf.FindBodySection(identitySection))})
	})
}

// eachFetched calls fn with every message of a small-item FETCH (metadata,
// header fields: never bodies), and closes the command.
func eachFetched(cmd *imapclient.FetchCommand, fn func(*imapclient.FetchMessageBuffer)) error {
	defer cmd.Close()
	for {
		msg := cmd.Next()
		if msg == nil {
			break
		}
		buf, err := msg.Collect()
		if err != nil {
			return fmt.Errorf("FETCH: %w", err)
		}
		if buf.UID != 0 {
			fn(buf)
		}
	}
	if err := cmd.Close(); err != nil {
		return fmt.Errorf("FETCH: %w", err)
	}
	return nil
}
