package daemon

import (
	"errors"
	"slices"
	"time"

	"github.com/mailferry/mailferry/store"
)

// StatusVersion is the version of the status and report JSON; fields are
// only ever added within a version.
const StatusVersion = 1

// MailboxStatus is one mailbox's line in `mailferry status`.
type MailboxStatus struct {
	Email     string     `json:"email"`
	State     State      `json:"state"`
	Route     string     `json:"route"`
	Folders   int        `json:"folders"`
	Copied    int64      `json:"copied"`
	Skipped   int64      `json:"skipped"`
	Failed    int        `json:"failed"`
	Bytes     int64      `json:"bytes"`
	LastSync  *time.Time `json:"last_sync,omitempty"`
	NextSync  *time.Time `json:"next_sync,omitempty"`
	LastError string     `json:"last_error,omitempty"`
	// Watched says an IDLE watcher waits for new mail in the source INBOX:
	// new mail there is synced at once rather than at NextSync.
	Watched bool `json:"watched,omitempty"`
}

// FleetStatus is where every mailbox stands, plus totals.
type FleetStatus struct {
	Version int `json:"version"`
	// Running is false when the status was read from the store because no
	// daemon runs: there are no next-sync times then.
	Running   bool            `json:"running"`
	Started   *time.Time      `json:"started,omitempty"`
	Mailboxes []MailboxStatus `json:"mailboxes"`
	Totals    Totals          `json:"totals"`
}

// Totals sum the fleet.
type Totals struct {
	Mailboxes int           `json:"mailboxes"`
	ByState   map[State]int `json:"by_state"`
	Copied    int64         `json:"copied"`
	Skipped   int64         `json:"skipped"`
	Failed    int           `json:"failed"`
	Bytes     int64         `json:"bytes"`
	// BytesPerSecond is the average copy rate since the daemon started.
	BytesPerSecond float64 `json:"bytes_per_second,omitempty"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// storeStatus builds a mailbox's status from what the store knows.
func storeStatus(st store.Store, email string) (MailboxStatus, error) {
	ms := MailboxStatus{Email: email, State: StateQueued, Route: store.RouteSource.String()}
	m, err := st.Mailbox(email)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return ms, err
	}
	folders, err := st.Folders(email)
	if err != nil {
		return ms, err
	}
	ms.Folders = len(folders)
	ms.Route = m.Route.String()
	ms.Copied, ms.Skipped, ms.Bytes = m.Copied, m.Skipped, m.Bytes
	ms.LastSync, ms.LastError = timePtr(m.LastSync), m.LastError
	switch {
	case m.Route == store.RouteTarget:
		ms.State = StateCutOver
	case m.LastError != "":
		ms.State = StateFailed
	case !m.LastSync.IsZero():
		ms.State = StateSynced
	}
	return ms, nil
}

func (f *FleetStatus) total() {
	f.Totals = Totals{Mailboxes: len(f.Mailboxes), ByState: map[State]int{}}
	for _, m := range f.Mailboxes {
		f.Totals.ByState[m.State]++
		f.Totals.Copied += m.Copied
		f.Totals.Skipped += m.Skipped
		f.Totals.Failed += m.Failed
		f.Totals.Bytes += m.Bytes
	}
	slices.SortFunc(f.Mailboxes, func(a, b MailboxStatus) int {
		switch {
		case a.Email < b.Email:
			return -1
		case a.Email > b.Email:
			return 1
		}
		return 0
	})
}

// Status is the fleet as the running daemon sees it; only selects one
// mailbox when not empty.
func (d *Daemon) Status(only string) (*FleetStatus, error) {
	d.mu.Lock()
	type snap struct {
		email string
		t     tracked
	}
	var snaps []snap
	for email, t := range d.mailboxes {
		if !t.removed && (only == "" || only == email) {
			snaps = append(snaps, snap{email, *t})
		}
	}
	d.mu.Unlock()
	f := &FleetStatus{Version: StatusVersion, Running: true, Started: timePtr(d.started)}
	for _, s := range snaps {
		ms, err := storeStatus(d.store, s.email)
		if err != nil {
			return nil, err
		}
		if ms.State != StateCutOver {
			ms.State = s.t.state
		}
		if !s.t.running && ms.State != StateCutOver {
			ms.NextSync = timePtr(s.t.next)
		}
		ms.Watched = s.t.watched
		if s.t.last != nil {
			ms.Failed = s.t.last.Failed
			ms.LastError = s.t.last.Error
		}
		f.Mailboxes = append(f.Mailboxes, ms)
	}
	f.total()
	if secs := time.Since(d.started).Seconds(); secs > 0 && !d.started.IsZero() {
		f.Totals.BytesPerSecond = float64(d.metrics.bytesCopied()) / secs
	}
	return f, nil
}

// OfflineStatus reads the status from the store when no daemon runs.
func OfflineStatus(st store.Store, only string) (*FleetStatus, error) {
	mbs, err := st.Mailboxes()
	if err != nil {
		return nil, err
	}
	f := &FleetStatus{Version: StatusVersion}
	for _, m := range mbs {
		if only != "" && m.Email != only {
			continue
		}
		ms, err := storeStatus(st, m.Email)
		if err != nil {
			return nil, err
		}
		f.Mailboxes = append(f.Mailboxes, ms)
	}
	f.total()
	return f, nil
}

// Report is per mailbox and folder, with every skipped message: what
// Exchange's migration user statistics show.
type Report struct {
	Version   int             `json:"version"`
	Mailboxes []MailboxReport `json:"mailboxes"`
}

// MailboxReport is one mailbox's part of the report.
type MailboxReport struct {
	MailboxStatus
	FolderReports []FolderReport `json:"folder_reports"`
}

// FolderReport is one folder's part of the report.
type FolderReport struct {
	Source  string        `json:"source"`
	Target  string        `json:"target"`
	Copied  int           `json:"copied"`
	Pending int           `json:"pending"`
	Skipped []SkippedItem `json:"skipped"`
}

// SkippedItem is a message that was not copied, and why.
type SkippedItem struct {
	UID     uint32    `json:"uid"`
	Date    time.Time `json:"date"`
	Subject string    `json:"subject"`
	Size    int64     `json:"size"`
	Reason  string    `json:"reason"`
}

// BuildReport reads the report from the store.
func BuildReport(st store.Store, status *FleetStatus) (*Report, error) {
	r := &Report{Version: StatusVersion}
	for _, ms := range status.Mailboxes {
		mr := MailboxReport{MailboxStatus: ms}
		folders, err := st.Folders(ms.Email)
		if err != nil {
			return nil, err
		}
		for _, f := range folders {
			fr := FolderReport{Source: f.Name, Target: f.Target, Skipped: []SkippedItem{}}
			err := st.Messages(ms.Email, f.Name, f.UIDValidity, func(m store.Message) error {
				switch m.State {
				case store.Copied:
					fr.Copied++
				case store.Pending:
					fr.Pending++
				case store.Skipped:
					fr.Skipped = append(fr.Skipped, SkippedItem{UID: m.UID, Date: m.Date, Subject: m.Subject, Size: m.Size, Reason: m.Reason})
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
			mr.FolderReports = append(mr.FolderReports, fr)
		}
		r.Mailboxes = append(r.Mailboxes, mr)
	}
	return r, nil
}
