package proxy

import (
	"errors"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"go.uber.org/zap"

	"github.com/mailferry/mailferry/store"
)

// copyBufSize is the chunk in which bodies move: the most of a message the
// proxy holds at once, per direction.
const copyBufSize = 32 << 10

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

var (
	_ imapserver.Session          = (*session)(nil)
	_ imapserver.SessionNamespace = (*session)(nil)
	_ imapserver.SessionMove      = (*session)(nil)
)

// Select selects or examines a mailbox upstream; the proxy keeps the
// mailbox's message count and a tracker for the updates to come.
func (s *session) Select(name string, options *imap.SelectOptions) (_ *imap.SelectData, err error) {
	defer s.guard("SELECT", &err)
	s.mu.Lock()
	// SELECT closes the previous mailbox upstream by itself.
	s.needUnselect = false
	s.mu.Unlock()
	up := s.upstream()
	// Poll does not follow SELECT: the next NOOP must reach the upstream.
	defer s.usedUpstream.Store(false)
	readOnly := options != nil && options.ReadOnly
	s.waitStart()
	data, err := up.Select(name, &imap.SelectOptions{ReadOnly: readOnly}).Wait()
	s.waitEnd()
	if err != nil {
		return nil, s.upErr(err)
	}
	mt := imapserver.NewMailboxTracker(data.NumMessages)
	sel := &selection{name: name, readOnly: readOnly, mt: mt, st: mt.NewSession(), count: data.NumMessages}
	s.mu.Lock()
	s.sel = sel
	s.mu.Unlock()
	out := &imap.SelectData{
		Flags:          data.Flags,
		PermanentFlags: data.PermanentFlags,
		NumMessages:    data.NumMessages,
		UIDNext:        data.UIDNext,
		UIDValidity:    s.uidValidity(data.UIDValidity),
		// NumRecent 0 and no UNSEEN: go-imap's client parses neither.
	}
	if out.Flags == nil {
		out.Flags = []imap.Flag{}
	}
	if out.PermanentFlags == nil {
		out.PermanentFlags = []imap.Flag{}
	}
	return out, nil
}

// Unselect forgets the selected mailbox. For UNSELECT, and for a SELECT that
// replaces a mailbox, the upstream's UNSELECT waits for the next command
// (and is dropped before a SELECT); CLOSE goes upstream at once.
func (s *session) Unselect() (err error) {
	defer s.guard("UNSELECT", &err)
	s.mu.Lock()
	if s.sel != nil {
		s.sel.st.Close()
		s.sel = nil
	}
	closing := s.closeOnUnselect
	s.closeOnUnselect = false
	if !closing {
		s.needUnselect = true
	}
	s.mu.Unlock()
	if !closing {
		return nil
	}
	up := s.upstream()
	s.waitStart()
	defer s.waitEnd()
	if err := up.UnselectAndExpunge().Wait(); err != nil {
		return s.upErr(err)
	}
	return nil
}

// Expunge runs EXPUNGE or UID EXPUNGE upstream; the expunged sequence
// numbers reach the client through the tracker. For CLOSE (imapserver calls
// Expunge, then Unselect) it only notes that Unselect must send CLOSE, which
// expunges silently and not at all in a read-only mailbox.
func (s *session) Expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) (err error) {
	defer s.guard("EXPUNGE", &err)
	if isSilentExpunge(w) {
		s.mu.Lock()
		s.closeOnUnselect = true
		s.mu.Unlock()
		return nil
	}
	sel := s.selected()
	if sel == nil {
		return errNoMailbox
	}
	up := s.upstream()
	var cmd *imapclient.ExpungeCommand
	if uids != nil {
		cmd = up.UIDExpunge(*uids)
	} else {
		cmd = up.Expunge()
	}
	s.waitStart()
	defer s.waitEnd()
	for seq := cmd.Next(); seq != 0; seq = cmd.Next() {
		s.mu.Lock()
		if s.sel == sel {
			s.queueExpungeLocked(sel, seq)
		}
		s.mu.Unlock()
	}
	if err := cmd.Close(); err != nil {
		return s.upErr(err)
	}
	return nil
}

// Create creates a mailbox upstream. CREATE's USE option goes along only
// when the upstream has CREATE-SPECIAL-USE.
func (s *session) Create(name string, options *imap.CreateOptions) (err error) {
	defer s.guard("CREATE", &err)
	up := s.upstream()
	var opts *imap.CreateOptions
	if options != nil && len(options.SpecialUse) > 0 && s.upCaps.Has(imap.CapCreateSpecialUse) {
		opts = options
	}
	return s.simple(up.Create(name, opts))
}

// Delete deletes a mailbox upstream.
func (s *session) Delete(name string) (err error) {
	defer s.guard("DELETE", &err)
	return s.simple(s.upstream().Delete(name))
}

// Rename renames a mailbox upstream.
func (s *session) Rename(name, newName string, options *imap.RenameOptions) (err error) {
	defer s.guard("RENAME", &err)
	return s.simple(s.upstream().Rename(name, newName, options))
}

// Subscribe subscribes to a mailbox upstream.
func (s *session) Subscribe(name string) (err error) {
	defer s.guard("SUBSCRIBE", &err)
	return s.simple(s.upstream().Subscribe(name))
}

// Unsubscribe unsubscribes from a mailbox upstream.
func (s *session) Unsubscribe(name string) (err error) {
	defer s.guard("UNSUBSCRIBE", &err)
	return s.simple(s.upstream().Unsubscribe(name))
}

func (s *session) simple(cmd *imapclient.Command) error {
	s.waitStart()
	defer s.waitEnd()
	if err := cmd.Wait(); err != nil {
		return s.upErr(err)
	}
	return nil
}

// Namespace returns the upstream's namespaces (or, for an upstream without
// NAMESPACE, one personal namespace with the hierarchy delimiter).
func (s *session) Namespace() (_ *imap.NamespaceData, err error) {
	defer s.guard("NAMESPACE", &err)
	up := s.upstream()
	s.waitStart()
	defer s.waitEnd()
	if s.upCaps.Has(imap.CapNamespace) {
		data, err := up.Namespace().Wait()
		if err != nil {
			return nil, s.upErr(err)
		}
		return data, nil
	}
	l, err := up.List("", "", nil).Collect()
	if err != nil {
		return nil, s.upErr(err)
	}
	var delim rune
	if len(l) > 0 {
		delim = l[0].Delim
	}
	return &imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Prefix: "", Delim: delim}}}, nil
}

// specialUseAttrs are the attributes of RFC 6154.
var specialUseAttrs = []imap.MailboxAttr{imap.MailboxAttrAll, imap.MailboxAttrArchive, imap.MailboxAttrDrafts,
	imap.MailboxAttrFlagged, imap.MailboxAttrJunk, imap.MailboxAttrSent, imap.MailboxAttrTrash}

// targetSpecialUse names Office 365's default folders, which are shown
// with their special-use attribute even when the server leaves it out.
var targetSpecialUse = map[string]imap.MailboxAttr{
	"sent items":    imap.MailboxAttrSent,
	"deleted items": imap.MailboxAttrTrash,
	"junk email":    imap.MailboxAttrJunk,
	"drafts":        imap.MailboxAttrDrafts,
	"archive":       imap.MailboxAttrArchive,
}

func hasSpecialUse(attrs []imap.MailboxAttr) bool {
	for _, a := range attrs {
		for _, su := range specialUseAttrs {
			if strings.EqualFold(string(a), string(su)) {
				return true
			}
		}
	}
	return false
}

func hasAttr(attrs []imap.MailboxAttr, attr imap.MailboxAttr) bool {
	return slices.ContainsFunc(attrs, func(a imap.MailboxAttr) bool { return strings.EqualFold(string(a), string(attr)) })
}

// List answers LIST and LSUB. go-imap's client has no LSUB, so the
// subscription list comes from LIST (SUBSCRIBED) when the upstream has
// LIST-EXTENDED, and is every mailbox otherwise. The SPECIAL-USE selection
// option and LIST-STATUS's RETURN (STATUS) are handled here, so they work
// whatever the upstream offers.
func (s *session) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) (err error) {
	defer s.guard("LIST", &err)
	up := s.upstream()
	if options == nil {
		options = &imap.ListOptions{}
	}
	if len(patterns) == 0 {
		patterns = []string{""} // LIST "" "": the hierarchy delimiter
	}
	lsub := isLSub(w)
	ext := s.upCaps.Has(imap.CapListExtended) || s.upCaps.Has(imap.CapIMAP4rev2)
	var upOpts *imap.ListOptions
	if ext {
		o := imap.ListOptions{
			SelectSubscribed:     options.SelectSubscribed,
			SelectRecursiveMatch: options.SelectRecursiveMatch && options.SelectSubscribed,
			ReturnSubscribed:     options.ReturnSubscribed,
			ReturnChildren:       options.ReturnChildren,
		}
		if o != (imap.ListOptions{}) {
			// Extended LIST returns only the attributes asked for.
			o.ReturnSpecialUse = true
			upOpts = &o
		}
	}

	var (
		out  []*imap.ListData
		seen = map[string]bool{}
	)
	s.waitStart()
	for _, pattern := range patterns {
		l, err := up.List(ref, pattern, upOpts).Collect()
		if err != nil {
			s.waitEnd()
			return s.upErr(err)
		}
		for _, d := range l {
			if seen[d.Mailbox] {
				continue
			}
			seen[d.Mailbox] = true
			out = append(out, d)
		}
	}
	s.waitEnd()

	filtered := out[:0]
	for _, d := range out {
		d.Attrs = slices.Clone(d.Attrs)
		if s.route == store.RouteTarget {
			if attr, ok := targetSpecialUse[strings.ToLower(d.Mailbox)]; ok && !hasSpecialUse(d.Attrs) {
				d.Attrs = append(d.Attrs, attr)
			}
		}
		if options.SelectSpecialUse && !hasSpecialUse(d.Attrs) {
			continue
		}
		if !ext && (options.ReturnSubscribed || options.SelectSubscribed && !lsub) && !hasAttr(d.Attrs, imap.MailboxAttrSubscribed) {
			d.Attrs = append(d.Attrs, imap.MailboxAttrSubscribed)
		}
		if lsub {
			attrs := d.Attrs[:0]
			for _, a := range d.Attrs {
				switch {
				case strings.EqualFold(string(a), string(imap.MailboxAttrSubscribed)):
				case strings.EqualFold(string(a), string(imap.MailboxAttrNonExistent)):
					if !hasAttr(attrs, imap.MailboxAttrNoSelect) {
						attrs = append(attrs, imap.MailboxAttrNoSelect)
					}
				default:
					attrs = append(attrs, a)
				}
			}
			d.Attrs = attrs
		}
		d.Status = nil
		filtered = append(filtered, d)
	}

	for _, d := range filtered {
		if options.ReturnStatus != nil && !hasAttr(d.Attrs, imap.MailboxAttrNoSelect) && !hasAttr(d.Attrs, imap.MailboxAttrNonExistent) {
			st, err := s.status(up, d.Mailbox, options.ReturnStatus)
			var ie *imap.Error
			switch {
			case errors.As(err, &ie):
				// The mailbox went away meanwhile: list it without status.
			case err != nil:
				return s.upErr(err)
			default:
				d.Status = st
			}
		}
		if err := w.WriteList(d); err != nil {
			return err
		}
	}
	return nil
}

// Status answers STATUS from the upstream's; RECENT is always 0 (go-imap's
// client cannot ask for it).
func (s *session) Status(name string, options *imap.StatusOptions) (_ *imap.StatusData, err error) {
	defer s.guard("STATUS", &err)
	data, err := s.status(s.upstream(), name, options)
	if err != nil {
		var ie *imap.Error
		if errors.As(err, &ie) {
			return nil, ie
		}
		return nil, s.upErr(err)
	}
	return data, nil
}

func (s *session) status(up *imapclient.Client, name string, options *imap.StatusOptions) (*imap.StatusData, error) {
	o := *options
	o.NumRecent = false
	o.HighestModSeq = false
	if o == (imap.StatusOptions{}) {
		o.NumMessages = true // STATUS x (RECENT): ask for something
	}
	s.waitStart()
	data, err := up.Status(name, &o).Wait()
	s.waitEnd()
	if err != nil {
		return nil, err
	}
	out := *data
	if out.Mailbox == "" {
		out.Mailbox = name
	}
	out.UIDValidity = s.uidValidity(data.UIDValidity)
	// imapserver writes every item asked for: never leave one nil.
	zero32 := func(p **uint32) {
		if *p == nil {
			*p = new(uint32)
		}
	}
	zero64 := func(p **int64) {
		if *p == nil {
			*p = new(int64)
		}
	}
	zero32(&out.NumMessages)
	zero32(&out.NumUnseen)
	zero32(&out.NumDeleted)
	zero64(&out.Size)
	zero64(&out.DeletedStorage)
	out.NumRecent = new(uint32)
	return &out, nil
}

// Append streams the client's literal to an upstream APPEND, a buffer at a
// time.
func (s *session) Append(name string, r imap.LiteralReader, options *imap.AppendOptions) (_ *imap.AppendData, err error) {
	defer s.guard("APPEND", &err)
	up := s.upstream()
	var opts *imap.AppendOptions
	if options != nil {
		opts = &imap.AppendOptions{Flags: options.Flags, Time: options.Time}
	}
	s.waitStart()
	cmd := up.Append(name, r.Size(), opts) // waits for the upstream's "+"
	s.waitEnd()

	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	var upErr error
	for upErr == nil {
		n, rerr := r.Read(buf)
		if n > 0 {
			s.waitStart()
			_, upErr = cmd.Write(buf[:n])
			s.waitEnd()
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			// The client is gone mid-literal: the upstream APPEND cannot
			// be completed.
			s.abandon()
			return nil, rerr
		}
	}
	// On an upstream error imapserver reads the rest of the literal itself.
	closeErr := cmd.Close()
	s.waitStart()
	data, err := cmd.Wait()
	s.waitEnd()
	if err == nil {
		err = closeErr
	}
	if err != nil {
		return nil, s.upErr(err)
	}
	if data.UIDValidity == 0 {
		return nil, nil // no APPENDUID
	}
	return &imap.AppendData{UID: data.UID, UIDValidity: s.uidValidity(data.UIDValidity)}, nil
}

// Search runs a plain SEARCH upstream (go-imap's imapserver turns the
// client's ESEARCH options into RETURN (ALL) even for a plain SEARCH, and
// Office 365 has no ESEARCH): MIN, MAX and COUNT are worked out here.
func (s *session) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (_ *imap.SearchData, err error) {
	defer s.guard("SEARCH", &err)
	sel := s.selected()
	if sel == nil {
		return nil, errNoMailbox
	}
	up := s.upstream()
	crit := *criteria
	if len(crit.SeqNum) > 0 {
		crit.SeqNum = slices.Clone(crit.SeqNum)
		for i, set := range crit.SeqNum {
			if mapped, ok := s.upstreamNumSet(sel, set); ok {
				crit.SeqNum[i] = mapped.(imap.SeqSet)
			}
		}
	}
	var cmd *imapclient.SearchCommand
	if kind == imapserver.NumKindUID {
		cmd = up.UIDSearch(&crit, nil)
	} else {
		cmd = up.Search(&crit, nil)
	}
	s.waitStart()
	data, err := cmd.Wait()
	s.waitEnd()
	if err != nil {
		return nil, s.upErr(err)
	}
	out := &imap.SearchData{}
	var nums []uint32
	switch all := data.All.(type) {
	case imap.UIDSet:
		out.All = all
		uids, _ := all.Nums()
		for _, u := range uids {
			nums = append(nums, uint32(u))
		}
	case imap.SeqSet:
		var set imap.SeqSet
		seqs, _ := all.Nums()
		for _, seq := range seqs {
			if cs := s.clientSeq(sel, seq); cs != 0 {
				set.AddNum(cs)
				nums = append(nums, cs)
			}
		}
		out.All = set
	default:
		if kind == imapserver.NumKindUID {
			out.All = imap.UIDSet{}
		} else {
			out.All = imap.SeqSet{}
		}
	}
	if out.All == nil {
		if kind == imapserver.NumKindUID {
			out.All = imap.UIDSet{}
		} else {
			out.All = imap.SeqSet{}
		}
	}
	if len(nums) > 0 {
		out.Min, out.Max = slices.Min(nums), slices.Max(nums)
	}
	out.Count = uint32(len(nums))
	return out, nil
}

// Copy copies messages upstream; COPYUID's UIDVALIDITY gets the floor.
func (s *session) Copy(numSet imap.NumSet, dest string) (_ *imap.CopyData, err error) {
	defer s.guard("COPY", &err)
	sel := s.selected()
	if sel == nil {
		return nil, errNoMailbox
	}
	up := s.upstream()
	set, ok := s.upstreamNumSet(sel, numSet)
	if !ok {
		return nil, nil
	}
	s.waitStart()
	data, err := up.Copy(set, dest).Wait()
	s.waitEnd()
	if err != nil {
		return nil, s.upErr(err)
	}
	if data.UIDValidity == 0 {
		return nil, nil
	}
	out := *data
	out.UIDValidity = s.uidValidity(data.UIDValidity)
	return &out, nil
}

// Move moves messages upstream. Its EXPUNGEs reach the client through the
// tracker, after the COPYUID written here.
func (s *session) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) (err error) {
	defer s.guard("MOVE", &err)
	sel := s.selected()
	if sel == nil {
		return errNoMailbox
	}
	if !s.upCaps.Has(imap.CapMove) && !s.upCaps.Has(imap.CapIMAP4rev2) {
		// go-imap's fallback (COPY, STORE, EXPUNGE) would swallow the
		// EXPUNGEs the client must see.
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "The mail server has no MOVE; use COPY"}
	}
	up := s.upstream()
	set, ok := s.upstreamNumSet(sel, numSet)
	if !ok {
		return nil
	}
	s.waitStart()
	data, err := up.Move(set, dest).Wait()
	s.waitEnd()
	if err != nil {
		return s.upErr(err)
	}
	if data.UIDValidity != 0 {
		uids := func(set imap.NumSet) imap.UIDSet {
			u, _ := set.(imap.UIDSet)
			return u
		}
		err := w.WriteCopyData(&imap.CopyData{
			UIDValidity: s.uidValidity(data.UIDValidity),
			SourceUIDs:  uids(data.SourceUIDs),
			DestUIDs:    uids(data.DestUIDs),
		})
		if err != nil {
			return err
		}
	}
	s.log.Debug("moved", zap.String("folder", sel.name), zap.String("to", dest))
	return nil
}
