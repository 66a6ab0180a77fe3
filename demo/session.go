package demo

import (
	"slices"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

// imapmemserver (go-imap v2.0.0-beta.8) reports in SELECT's FLAGS only the
// flags some message of the folder carries, and in PERMANENTFLAGS those
// plus \*: an empty folder says that \Seen, \Answered, \Flagged and \Draft
// can't be stored, and a client that believes it (mailferry does) drops
// them. session wraps its sessions to answer as real servers do.

// systemFlags are the flags every real server keeps.
var systemFlags = []imap.Flag{imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagSeen, imap.FlagDraft}

// Capabilities of the two servers: what imapmemserver implements and the
// imitated server advertises. imapserver adds UNSELECT, IDLE, ENABLE and
// the like by itself. Neither offers CONDSTORE (imapserver has none).
var (
	// Dovecot's list, minus what imapmemserver lacks (SPECIAL-USE: it can't
	// set the attributes; CHILDREN: it doesn't report them).
	sourceCaps = imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapNamespace: {}, imap.CapUIDPlus: {}, imap.CapMove: {},
		imap.CapESearch: {}, imap.CapSearchRes: {}, imap.CapListExtended: {}, imap.CapListStatus: {}, imap.CapLiteralPlus: {}}
	// What Exchange Online advertises after login (no LIST-EXTENDED, ESEARCH,
	// SPECIAL-USE, CONDSTORE).
	targetCaps = imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapNamespace: {}, imap.CapUIDPlus: {}, imap.CapMove: {},
		imap.CapLiteralPlus: {}}
)

// flagPolicy is what a server keeps of the flags it is given.
type flagPolicy struct {
	perm     []imap.Flag // PERMANENTFLAGS
	keywords bool        // \*: any keyword is kept
}

var (
	// Dovecot keeps every flag.
	dovecotFlags = flagPolicy{perm: append(slices.Clone(systemFlags), imap.FlagWildcard), keywords: true}
	// Exchange Online keeps the system flags and $MDNSent, and silently
	// drops other keywords.
	exchangeFlags = flagPolicy{perm: append(slices.Clone(systemFlags), imap.FlagMDNSent)}
)

func (p flagPolicy) keeps(f imap.Flag) bool {
	if p.keywords && !strings.HasPrefix(string(f), `\`) {
		return true
	}
	return slices.ContainsFunc(p.perm, func(q imap.Flag) bool { return strings.EqualFold(string(q), string(f)) })
}

func (p flagPolicy) filter(flags []imap.Flag) []imap.Flag {
	if p.keywords {
		return flags
	}
	return slices.DeleteFunc(slices.Clone(flags), func(f imap.Flag) bool { return !p.keeps(f) })
}

// session is an imapmemserver session with realistic flag answers.
type session struct {
	imapserver.SessionIMAP4rev2
	flags flagPolicy
}

func newSession(mem *imapmemserver.Server, flags flagPolicy) *session {
	// imapmemserver's sessions implement NAMESPACE and MOVE too.
	return &session{SessionIMAP4rev2: mem.NewSession().(imapserver.SessionIMAP4rev2), flags: flags}
}

func (s *session) Select(name string, options *imap.SelectOptions) (*imap.SelectData, error) {
	data, err := s.SessionIMAP4rev2.Select(name, options)
	if err != nil {
		return nil, err
	}
	flags := slices.Clone(systemFlags)
	for _, f := range data.Flags {
		if !slices.ContainsFunc(flags, func(q imap.Flag) bool { return strings.EqualFold(string(q), string(f)) }) && s.flags.keeps(f) {
			flags = append(flags, f)
		}
	}
	data.Flags = flags
	data.PermanentFlags = slices.Clone(s.flags.perm)
	return data, nil
}

func (s *session) Append(mailbox string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	o := *options
	o.Flags = s.flags.filter(o.Flags)
	return s.SessionIMAP4rev2.Append(mailbox, r, &o)
}

func (s *session) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, options *imap.StoreOptions) error {
	f := *flags
	f.Flags = s.flags.filter(f.Flags)
	return s.SessionIMAP4rev2.Store(w, numSet, &f, options)
}
