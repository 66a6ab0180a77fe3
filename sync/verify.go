package sync

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/emersion/go-imap/v2"
	"go.uber.org/zap"

	"github.com/mailferry/mailferry/config"
	"github.com/mailferry/mailferry/store"
)

// VerifyItem is a message found on one side only.
type VerifyItem struct {
	UID     uint32    `json:"uid"`
	Date    time.Time `json:"date"`
	Size    int64     `json:"size"`
	Subject string    `json:"subject"`
}

// FolderCheck compares one source folder with its target folder.
type FolderCheck struct {
	Source        string `json:"source"`
	Target        string `json:"target"`
	SourceCount   int    `json:"source_count"`
	TargetCount   int    `json:"target_count"`
	KnownSkipped  int    `json:"known_skipped"`
	OutsideFilter int    `json:"outside_filter"`
	// Missing are source messages not on the target (skips excluded).
	Missing []VerifyItem `json:"missing"`
	// Unexpected are target messages with no source counterpart: mail that
	// reached the target another way, or duplicates.
	Unexpected []VerifyItem `json:"unexpected"`
}

// VerifyResult is what Verify found for one mailbox.
type VerifyResult struct {
	Mailbox string         `json:"mailbox"`
	Folders []*FolderCheck `json:"folders"`
	Error   string         `json:"error,omitempty"`
	Err     error          `json:"-"`
}

// Equal reports whether source and target hold the same messages.
func (r *VerifyResult) Equal() bool {
	if r.Err != nil {
		return false
	}
	for _, f := range r.Folders {
		if len(f.Missing) > 0 || len(f.Unexpected) > 0 {
			return false
		}
	}
	return true
}

// Verify compares every folder of mb on the source with its target folder
// by message identity and INTERNALDATE, changing nothing on either server.
// Messages the store records as skipped, and those outside the date
// filters, are counted apart rather than as missing.
func (e *Engine) Verify(ctx context.Context, mb config.Mailbox) (res *VerifyResult) {
	res = &VerifyResult{Mailbox: mb.Email}
	log := e.log.With(zap.String("mailbox", mb.Email))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p := &pass{e: e, mb: mb, log: log, res: &MailboxResult{Mailbox: mb.Email}, ctx: ctx}
	defer p.closeConns()
	defer func() {
		if res.Err != nil {
			res.Err = fmt.Errorf("verify %s: %w", mb.Email, res.Err)
			res.Error = res.Err.Error()
		}
	}()
	var err error
	if p.src, err = p.connectSource(p.ctx, true); err != nil {
		res.Err = err
		return res
	}
	if p.tgt, err = p.connectTarget(p.ctx, true); err != nil {
		res.Err = err
		return res
	}
	plans, err := p.planFolders(p.askPlan())
	if err != nil {
		res.Err = err
		return res
	}
	for _, pl := range plans {
		if pl.Skip != "" {
			continue
		}
		if prev, err := e.store.Folder(mb.Email, pl.Source); err == nil && prev.Target != "" {
			pl.Target = prev.Target
		}
		fc, err := p.checkFolder(pl)
		if err != nil {
			res.Err = fmt.Errorf("folder %q: %w", pl.Source, err)
			return res
		}
		res.Folders = append(res.Folders, fc)
	}
	return res
}

type sideMsg struct {
	VerifyItem
	key matchKey
}

func (p *pass) checkFolder(pl FolderPlan) (*FolderCheck, error) {
	fc := &FolderCheck{Source: pl.Source, Target: pl.Target}
	src, err := p.listIdentities(p.src, pl.Source)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	tgt, err := p.listIdentities(p.tgt, pl.Target)
	var ie *imap.Error
	if errors.As(err, &ie) && ie.Type == imap.StatusResponseTypeNo {
		tgt, err = nil, nil // the target folder doesn't exist (yet)
	}
	if err != nil {
		return nil, fmt.Errorf("target: %w", err)
	}
	fc.SourceCount, fc.TargetCount = len(src), len(tgt)

	skipped := map[uint32]bool{}
	if f, err := p.e.store.Folder(p.mb.Email, pl.Source); err == nil {
		err := p.e.store.Messages(p.mb.Email, pl.Source, f.UIDValidity, func(m store.Message) error {
			if m.State == store.Skipped {
				skipped[m.UID] = true
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	pool := map[matchKey][]sideMsg{}
	for _, m := range tgt {
		pool[m.key] = append(pool[m.key], m)
	}
	for _, m := range src {
		if ms := pool[m.key]; len(ms) > 0 {
			pool[m.key] = ms[1:]
			continue
		}
		switch {
		case skipped[m.UID]:
			fc.KnownSkipped++
		case !p.inDateRange(m.Date):
			fc.OutsideFilter++
		default:
			fc.Missing = append(fc.Missing, m.VerifyItem)
		}
	}
	for _, ms := range pool {
		for _, m := range ms {
			fc.Unexpected = append(fc.Unexpected, m.VerifyItem)
		}
	}
	return fc, nil
}

// listIdentities examines a folder and reads every message's identity.
func (p *pass) listIdentities(c *conn, folder string) ([]sideMsg, error) {
	sel, err := c.selectFolder(folder, true, false)
	if err != nil {
		return nil, err
	}
	if sel.NumMessages == 0 {
		return nil, nil
	}
	var out []sideMsg
	err = fetchIdentityItems(c, allUIDs, func(it identityItem) {
		out = append(out, sideMsg{
			VerifyItem: VerifyItem{UID: it.uid, Date: it.date, Size: it.size, Subject: it.subject},
			key:        matchKey{it.identity, 0, it.date.Unix()},
		})
	})
	return out, err
}
