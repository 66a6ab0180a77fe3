package sync

import (
	"slices"
	"time"
)

// Skip reasons, as reports show them.
const (
	ReasonTooBig      = "too big"
	ReasonItemLimit   = "over item limit"
	ReasonTargetLimit = "refused by target"
)

// SkippedItem is one message that was not copied, with what Exchange's
// migration statistics would show about it.
type SkippedItem struct {
	Folder  string    `json:"folder"`
	UID     uint32    `json:"uid"`
	Date    time.Time `json:"date"`
	Subject string    `json:"subject"`
	Size    int64     `json:"size"`
	Reason  string    `json:"reason"`
}

// FolderResult is what one pass did to one folder.
type FolderResult struct {
	Source string `json:"source"`
	Target string `json:"target,omitempty"`
	// SkipReason is set when the whole folder was not copied.
	SkipReason      string         `json:"skip_reason,omitempty"`
	Copied          int            `json:"copied"`
	Bytes           int64          `json:"bytes"`
	Skipped         map[string]int `json:"skipped,omitempty"`
	Failed          int            `json:"failed"`
	Moved           int            `json:"moved"`
	Deleted         int            `json:"deleted"`
	FlagsUpdated    int            `json:"flags_updated"`
	KeywordsDropped int            `json:"keywords_dropped"`
	Filtered        int            `json:"filtered"`
}

// MailboxResult is what one pass did to one mailbox.
type MailboxResult struct {
	Mailbox  string          `json:"mailbox"`
	Started  time.Time       `json:"started"`
	Duration time.Duration   `json:"duration_ns"`
	Folders  []*FolderResult `json:"folders"`
	Copied   int             `json:"copied"`
	Bytes    int64           `json:"bytes"`
	Failed   int             `json:"failed"`
	// FolderErrors counts folders that could not be processed completely.
	FolderErrors int `json:"folder_errors"`
	// Attempts counts the tries after the first (temporary errors).
	Attempts     int           `json:"retries,omitempty"`
	SkippedItems []SkippedItem `json:"skipped_items,omitempty"`
	// Error is Err as text, for JSON.
	Error string `json:"error,omitempty"`
	Err   error  `json:"-"`
}

// Skipped counts the messages skipped in this pass.
func (r *MailboxResult) Skipped() int { return len(r.SkippedItems) }

// SkippedBy counts skipped messages by reason.
func (r *MailboxResult) SkippedBy() map[string]int {
	out := map[string]int{}
	for _, s := range r.SkippedItems {
		out[s.Reason]++
	}
	return out
}

// OK reports whether everything of the mailbox was copied.
func (r *MailboxResult) OK() bool {
	return r.Err == nil && r.Failed == 0 && r.FolderErrors == 0 && len(r.SkippedItems) == 0
}

// then folds a retry's result into the earlier attempts' (r may be nil):
// what each attempt copied, skipped and failed adds up; the error, the
// folder targets and the skip reasons are the latest.
func (r *MailboxResult) then(next *MailboxResult) *MailboxResult {
	if r == nil {
		return next
	}
	next.Started = r.Started
	next.Copied += r.Copied
	next.Bytes += r.Bytes
	next.Failed += r.Failed
	next.SkippedItems = append(r.SkippedItems, next.SkippedItems...)
	next.Attempts = r.Attempts + 1
	for _, old := range r.Folders {
		f := next.folder(old.Source, old.Target)
		f.Copied += old.Copied
		f.Bytes += old.Bytes
		f.Failed += old.Failed
		f.Moved += old.Moved
		f.Deleted += old.Deleted
		f.FlagsUpdated += old.FlagsUpdated
		f.KeywordsDropped += old.KeywordsDropped
		for reason, n := range old.Skipped {
			if f.Skipped == nil {
				f.Skipped = map[string]int{}
			}
			f.Skipped[reason] += n
		}
	}
	return next
}

func (r *MailboxResult) folder(source, target string) *FolderResult {
	for _, f := range r.Folders {
		if f.Source == source {
			if target != "" {
				f.Target = target
			}
			return f
		}
	}
	f := &FolderResult{Source: source, Target: target}
	r.Folders = append(r.Folders, f)
	return f
}

// Summary is the result of one Run.
type Summary struct {
	Mailboxes []*MailboxResult `json:"mailboxes"`
	Duration  time.Duration    `json:"duration_ns"`
	Copied    int              `json:"copied"`
	Skipped   int              `json:"skipped"`
	Failed    int              `json:"failed"`
	// FailedMailboxes counts mailboxes whose pass ended in an error.
	FailedMailboxes int   `json:"failed_mailboxes"`
	Bytes           int64 `json:"bytes"`
}

func newSummary(results []*MailboxResult, d time.Duration) *Summary {
	s := &Summary{Mailboxes: results, Duration: d}
	for _, r := range results {
		slices.SortFunc(r.Folders, func(a, b *FolderResult) int {
			switch {
			case a.Source < b.Source:
				return -1
			case a.Source > b.Source:
				return 1
			}
			return 0
		})
		s.Copied += r.Copied
		s.Skipped += r.Skipped()
		s.Failed += r.Failed
		s.Bytes += r.Bytes
		if r.Err != nil {
			s.FailedMailboxes++
		}
	}
	return s
}

// Complete reports whether every mailbox was copied with nothing skipped or
// failed.
func (s *Summary) Complete() bool {
	for _, r := range s.Mailboxes {
		if !r.OK() {
			return false
		}
	}
	return true
}
