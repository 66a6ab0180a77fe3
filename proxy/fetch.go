package proxy

import (
	"errors"
	"fmt"
	"io"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
)

// downstreamError is a failed write to the client: the client is gone.
type downstreamError struct{ err error }

func (e downstreamError) Error() string { return "writing to the client: " + e.err.Error() }
func (e downstreamError) Unwrap() error { return e.err }

// Fetch forwards FETCH and writes each message's items as they arrive:
// bodies go from the upstream's literal to the client's a buffer at a time
// (the upstream's literal gives the size imapserver needs up front). Body
// sections are written back under the client's own section (MatchCommand),
// so Outlook's RFC822.* names come back as asked.
func (s *session) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) (err error) {
	defer s.guard("FETCH", &err)
	sel := s.selected()
	if sel == nil {
		return errNoMailbox
	}
	up := s.upstream()
	set, ok := s.upstreamNumSet(sel, numSet)
	if !ok {
		return nil
	}
	upOpts := *options
	upOpts.ModSeq = false
	upOpts.ChangedSince = 0

	if s.cork != nil {
		s.cork.cork()
		defer s.cork.uncork()
	}
	s.waitStart()
	cmd := up.Fetch(set, &upOpts)
	s.waitEnd()

	var (
		rw         *imapserver.FetchResponseWriter // open message, if any
		midLiteral bool
	)
	defer func() {
		if rw != nil {
			if midLiteral {
				// A body cut short must not pass for a whole one: the
				// client loses its connection instead.
				if nc := s.conn.NetConn(); nc != nil {
					nc.Close()
				}
			}
			_ = rw.Close() // releases imapserver's writer lock
		}
		if err != nil {
			var de downstreamError
			if errors.As(err, &de) {
				s.abandon()
			}
		}
		_ = cmd.Close() // drains what is left (quickly, once abandoned)
	}()

	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp

	for {
		s.waitStart()
		msg := cmd.Next()
		s.waitEnd()
		if msg == nil {
			break
		}
		cs := s.clientSeq(sel, msg.SeqNum)
		if cs == 0 {
			continue // a message the client does not know yet; Next discards it
		}
		rw = w.CreateMessage(cs)
		var used map[*imap.FetchItemBodySection]bool
		for {
			s.waitStart()
			item := msg.Next()
			s.waitEnd()
			if item == nil {
				break
			}
			switch item := item.(type) {
			case imapclient.FetchItemDataUID:
				rw.WriteUID(item.UID)
			case imapclient.FetchItemDataFlags:
				rw.WriteFlags(item.Flags)
			case imapclient.FetchItemDataRFC822Size:
				rw.WriteRFC822Size(item.Size)
			case imapclient.FetchItemDataInternalDate:
				rw.WriteInternalDate(item.Time)
			case imapclient.FetchItemDataEnvelope:
				rw.WriteEnvelope(item.Envelope)
			case imapclient.FetchItemDataBodyStructure:
				if options.BodyStructure != nil {
					rw.WriteBodyStructure(fixBodyStructure(item.BodyStructure, options.BodyStructure.Extended))
				}
			case imapclient.FetchItemDataBodySection:
				sec := matchBodySection(options.BodySection, &item, &used)
				midLiteral = true
				if err := s.copyLiteral(rw.WriteBodySection(sec, literalSize(item.Literal)), item.Literal, buf); err != nil {
					return err
				}
				midLiteral = false
			case imapclient.FetchItemDataBinarySection:
				sec := item.Section
				for _, want := range options.BinarySection {
					if item.MatchCommand(want) {
						sec = want
						break
					}
				}
				midLiteral = true
				if err := s.copyLiteral(rw.WriteBinarySection(sec, literalSize(item.Literal)), item.Literal, buf); err != nil {
					return err
				}
				midLiteral = false
			case imapclient.FetchItemDataBinarySectionSize:
				for _, want := range options.BinarySectionSize {
					if item.MatchCommand(want) {
						rw.WriteBinarySectionSize(want, item.Size)
						break
					}
				}
			}
		}
		err := rw.Close()
		rw = nil
		if err != nil {
			return downstreamError{err}
		}
	}
	s.waitStart()
	err = cmd.Close()
	s.waitEnd()
	if err != nil {
		return s.upErr(err)
	}
	return nil
}

func literalSize(l imap.LiteralReader) int64 {
	if l == nil {
		return 0
	}
	return l.Size()
}

// copyLiteral copies an upstream literal into the client's, buf at a time.
// Reading waits for the upstream (watched); writing waits for the client
// (not: imapserver's write deadlines cover it).
func (s *session) copyLiteral(dst io.WriteCloser, src imap.LiteralReader, buf []byte) error {
	if src != nil {
		for {
			s.waitStart()
			n, rerr := src.Read(buf)
			s.waitEnd()
			if n > 0 {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return downstreamError{werr}
				}
			}
			if rerr == io.EOF {
				break
			}
			if rerr != nil {
				return s.upErr(fmt.Errorf("reading a message body from the mail server: %w", rerr))
			}
		}
	}
	if err := dst.Close(); err != nil {
		return downstreamError{err}
	}
	return nil
}

// matchBodySection finds the section the client asked for that an upstream
// body section answers, preferring one not yet answered in this message.
func matchBodySection(wanted []*imap.FetchItemBodySection, item *imapclient.FetchItemDataBodySection, usedp *map[*imap.FetchItemBodySection]bool) *imap.FetchItemBodySection {
	used := *usedp
	var first *imap.FetchItemBodySection
	for _, want := range wanted {
		if !item.MatchCommand(want) {
			continue
		}
		if !used[want] {
			if *usedp == nil {
				*usedp = map[*imap.FetchItemBodySection]bool{}
			}
			(*usedp)[want] = true
			return want
		}
		if first == nil {
			first = want
		}
	}
	if first != nil {
		return first
	}
	return item.Section
}

// fixBodyStructure makes an upstream body structure safe for imapserver's
// writer, which panics on a multipart without parts, a message/rfc822 part
// without a body, or, for BODYSTRUCTURE, a part without extension data.
func fixBodyStructure(bs imap.BodyStructure, extended bool) imap.BodyStructure {
	switch bs := bs.(type) {
	case *imap.BodyStructureSinglePart:
		out := *bs
		if out.MessageRFC822 != nil {
			msg := *out.MessageRFC822
			msg.BodyStructure = fixBodyStructure(msg.BodyStructure, extended)
			out.MessageRFC822 = &msg
		}
		if extended && out.Extended == nil {
			out.Extended = &imap.BodyStructureSinglePartExt{}
		}
		return &out
	case *imap.BodyStructureMultiPart:
		if len(bs.Children) == 0 {
			return fixBodyStructure(nil, extended)
		}
		out := *bs
		out.Children = make([]imap.BodyStructure, len(bs.Children))
		for i, c := range bs.Children {
			out.Children[i] = fixBodyStructure(c, extended)
		}
		if extended && out.Extended == nil {
			out.Extended = &imap.BodyStructureMultiPartExt{}
		}
		return &out
	default:
		out := &imap.BodyStructureSinglePart{Type: "text", Subtype: "plain", Text: &imap.BodyStructureText{}}
		if extended {
			out.Extended = &imap.BodyStructureSinglePartExt{}
		}
		return out
	}
}

// Store forwards STORE and writes the upstream's FETCH answers (none for
// .SILENT) back.
func (s *session) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, options *imap.StoreOptions) (err error) {
	defer s.guard("STORE", &err)
	sel := s.selected()
	if sel == nil {
		return errNoMailbox
	}
	up := s.upstream()
	set, ok := s.upstreamNumSet(sel, numSet)
	if !ok {
		return nil
	}
	cmd := up.Store(set, flags, nil)
	defer cmd.Close()
	for {
		s.waitStart()
		msg := cmd.Next()
		uid, fl, haveFlags := storeResult(msg)
		s.waitEnd()
		if msg == nil {
			break
		}
		cs := s.clientSeq(sel, msg.SeqNum)
		if cs == 0 || !haveFlags {
			continue
		}
		rw := w.CreateMessage(cs)
		if uid != 0 {
			rw.WriteUID(uid)
		}
		rw.WriteFlags(fl)
		if err := rw.Close(); err != nil {
			s.abandon()
			return downstreamError{err}
		}
	}
	s.waitStart()
	err = cmd.Close()
	s.waitEnd()
	if err != nil {
		return s.upErr(err)
	}
	return nil
}

// storeResult reads the UID and flags of one of STORE's FETCH answers.
func storeResult(msg *imapclient.FetchMessageData) (uid imap.UID, flags []imap.Flag, haveFlags bool) {
	if msg == nil {
		return 0, nil, false
	}
	for item := msg.Next(); item != nil; item = msg.Next() {
		switch item := item.(type) {
		case imapclient.FetchItemDataUID:
			uid = item.UID
		case imapclient.FetchItemDataFlags:
			flags, haveFlags = item.Flags, true
		}
	}
	return uid, flags, haveFlags
}
