// Package store keeps mailferry's durable state: for every mailbox and
// folder, which source message (keyed by the folder's UIDVALIDITY and the
// message's UID) became which target message, the flags last synced, and what
// was skipped and why; each folder's sync watermarks; and each mailbox's
// route and status.
//
// Store is the one interface; Open gives the Badger implementation used in
// production and NewMemory a fast in-memory one for tests. Both share the
// same key and value encoding, so they behave alike.
package store

import (
	"errors"
	"time"
)

// ErrNotFound is returned by getters when nothing is stored under the key.
var ErrNotFound = errors.New("store: not found")

// Store is mailferry's durable state. Reads see committed data; Update
// applies a batch of writes atomically, so a crash keeps all or none of them.
type Store interface {
	// Mailbox returns one mailbox's state, or ErrNotFound.
	Mailbox(email string) (Mailbox, error)
	// Mailboxes returns every mailbox ever stored, sorted by email.
	Mailboxes() ([]Mailbox, error)
	// Folder returns the state of one source folder, or ErrNotFound.
	Folder(mailbox, folder string) (Folder, error)
	// Folders returns the states of a mailbox's folders, sorted by name.
	Folders(mailbox string) ([]Folder, error)
	// Messages calls fn for each message recorded for (mailbox, folder,
	// uidValidity) in ascending source UID order, without holding them all
	// in memory.
	Messages(mailbox, folder string, uidValidity uint32, fn func(Message) error) error
	// Message returns one recorded message, or ErrNotFound.
	Message(mailbox, folder string, uidValidity, uid uint32) (Message, error)
	// Update runs fn and commits its writes atomically.
	Update(fn func(Tx) error) error
	// DeleteFolder removes a folder and every message recorded under it, in
	// as many commits as needed.
	DeleteFolder(mailbox, folder string) error
	// Verifier returns the password verifier recorded for a mailbox (a
	// salted slow hash the proxy checks logins against after cutover), or
	// "" when there is none.
	Verifier(email string) (string, error)
	// SetVerifier records a mailbox's password verifier.
	SetVerifier(email, verifier string) error
	// Close flushes and releases the store.
	Close() error
}

// Tx collects writes for one atomic Update.
type Tx interface {
	PutMailbox(Mailbox) error
	PutFolder(Folder) error
	PutMessage(mailbox, folder string, uidValidity uint32, m Message) error
	DeleteMessage(mailbox, folder string, uidValidity, uid uint32) error
}

// Route says which server serves a mailbox's users through the proxy.
type Route uint8

const (
	// RouteSource sends logins to the old server (before cutover).
	RouteSource Route = iota
	// RouteTarget sends logins to Office 365 (after cutover).
	RouteTarget
)

func (r Route) String() string {
	if r == RouteTarget {
		return "target"
	}
	return "source"
}

// Mailbox is what is known about one mailbox as a whole.
type Mailbox struct {
	Email string `json:"email"`
	Route Route  `json:"route"`
	// UIDValidityFloor is added to target UIDVALIDITY values the proxy shows,
	// so that clients see them increase across a cutover.
	UIDValidityFloor uint32    `json:"uidvalidity_floor,omitempty"`
	LastSync         time.Time `json:"last_sync,omitzero"`
	LastAttempt      time.Time `json:"last_attempt,omitzero"`
	LastError        string    `json:"last_error,omitempty"`
	Copied           int64     `json:"copied"`
	Skipped          int64     `json:"skipped"`
	Bytes            int64     `json:"bytes"`
}

// Folder is the sync state of one source folder of a mailbox.
type Folder struct {
	Mailbox string `json:"mailbox"`
	// Name is the folder's full name on the source, as LIST returns it.
	Name string `json:"name"`
	// Target is the folder's name on the target.
	Target string `json:"target"`
	// Source watermarks of the last completed pass: unchanged values mean
	// nothing to do.
	UIDValidity   uint32 `json:"uidvalidity"`
	UIDNext       uint32 `json:"uidnext"`
	HighestModSeq uint64 `json:"highestmodseq,omitempty"`
	NumMessages   uint32 `json:"messages"`
	// TargetUIDValidity is the target folder's UIDVALIDITY the recorded
	// target UIDs belong to.
	TargetUIDValidity uint32 `json:"target_uidvalidity"`
	// TargetUIDNext is the target's UIDNEXT before the oldest APPEND that
	// may not have been recorded yet: recovery looks at UIDs from there on.
	TargetUIDNext uint32 `json:"target_uidnext"`
	// Complete is false while a pass over the folder is under way.
	Complete bool `json:"complete"`
}

// State is where a source message stands.
type State uint8

const (
	// Pending: an APPEND was (or is about to be) sent, its result not yet
	// recorded. Recovery finds it on the target by identity, or sends it again.
	Pending State = iota + 1
	// Copied: TgtUID holds the message's UID in the target folder.
	Copied
	// Skipped: not copied, for Reason; not fetched again.
	Skipped
)

// Message maps one source message to the target.
type Message struct {
	UID    uint32
	TgtUID uint32
	State  State
	// Flags are the source flags last applied to the target, sorted.
	Flags []string
	// Identity, Size and Date recognise the message again after a
	// UIDVALIDITY change, a move between folders, or a crash mid-APPEND.
	Identity uint64
	Size     int64
	Date     time.Time
	// Reason and Subject describe a skip for the report.
	Reason  string
	Subject string
}
