package sync

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/mailferry/mailferry/config"
	"github.com/mailferry/mailferry/store"
)

// Preflight verdicts.
const (
	VerdictOK       = "ok"
	VerdictWarnings = "ok with warnings"
	VerdictBlocked  = "cannot migrate"
)

// PreflightFolder is what preflight learned about one source folder.
type PreflightFolder struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	Messages int    `json:"messages"`
	Bytes    int64  `json:"bytes"`
	// Note says why the folder is renamed or not copied.
	Note string `json:"note,omitempty"`
}

// PreflightResult is one mailbox's verdict and the facts behind it.
type PreflightResult struct {
	Mailbox  string            `json:"mailbox"`
	Verdict  string            `json:"verdict"`
	Problems []string          `json:"problems,omitempty"`
	Warnings []string          `json:"warnings,omitempty"`
	Folders  []PreflightFolder `json:"folders"`
	Messages int               `json:"messages"`
	Bytes    int64             `json:"bytes"`
	// OverSize are the messages larger than the size limit: they will be
	// skipped.
	OverSize []SkippedItem `json:"over_size,omitempty"`
	// ToCopy estimates what the next pass copies: messages not yet recorded
	// in the store, within the limits.
	ToCopy      int   `json:"to_copy"`
	ToCopyBytes int64 `json:"to_copy_bytes"`
}

// Preflight checks that mb can be migrated without copying anything: both
// logins, the right to create folders on the target (a scratch folder is
// created and deleted), every folder's size, messages over the size limit,
// folder names the target will not take as they are, and the item limit.
func (e *Engine) Preflight(ctx context.Context, mb config.Mailbox) *PreflightResult {
	res := &PreflightResult{Mailbox: mb.Email}
	log := e.log.With(zap.String("mailbox", mb.Email))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p := &pass{e: e, mb: mb, log: log, res: &MailboxResult{Mailbox: mb.Email}, ctx: ctx}
	defer p.closeConns()
	defer res.decide(e.opts.MaxItems)

	var err error
	if p.src, err = p.connectSource(p.ctx, true); err != nil {
		res.Problems = append(res.Problems, err.Error())
	}
	if p.tgt, err = p.connectTarget(p.ctx, true); err != nil {
		res.Problems = append(res.Problems, err.Error())
	}
	if p.src == nil || p.tgt == nil {
		return res
	}
	if err := p.checkCreate(); err != nil {
		res.Problems = append(res.Problems, err.Error())
	}
	plans, err := p.planFolders(p.askPlan())
	if err != nil {
		res.Problems = append(res.Problems, err.Error())
		return res
	}
	for _, pl := range plans {
		pf := PreflightFolder{Source: pl.Source, Target: pl.Target, Note: pl.Renamed}
		if pl.Skip != "" {
			pf.Note = "not copied: " + pl.Skip
			res.Folders = append(res.Folders, pf)
			continue
		}
		if pl.Renamed != "" {
			res.Warnings = append(res.Warnings, fmt.Sprintf("folder %q becomes %q: %s", pl.Source, pl.Target, pl.Renamed))
		}
		if err := p.measureFolder(&pf, res); err != nil {
			res.Problems = append(res.Problems, fmt.Sprintf("folder %q: %v", pl.Source, err))
		}
		res.Folders = append(res.Folders, pf)
	}
	if len(res.OverSize) > 0 {
		res.Warnings = append(res.Warnings, fmt.Sprintf("%d messages over %d bytes will be skipped", len(res.OverSize), e.opts.MaxMessageSize))
	}
	return res
}

func (r *PreflightResult) decide(maxItems int) {
	if r.Messages > maxItems {
		r.Warnings = append(r.Warnings, fmt.Sprintf("%d messages: the oldest %d beyond the limit of %d will be skipped",
			r.Messages, r.Messages-maxItems, maxItems))
		r.ToCopy = min(r.ToCopy, maxItems)
	}
	switch {
	case len(r.Problems) > 0:
		r.Verdict = VerdictBlocked
	case len(r.Warnings) > 0:
		r.Verdict = VerdictWarnings
	default:
		r.Verdict = VerdictOK
	}
}

// checkCreate creates and deletes a scratch folder on the target.
func (p *pass) checkCreate() error {
	var b [4]byte
	rand.Read(b[:])
	name := "mailferry-preflight-" + hex.EncodeToString(b[:])
	if err := p.tgt.Create(name, nil).Wait(); err != nil {
		return fmt.Errorf("target refuses to create folders: %w", err)
	}
	if err := p.tgt.Delete(name).Wait(); err != nil {
		return fmt.Errorf("target: could not delete the scratch folder %q: %w", name, err)
	}
	return nil
}

// measureFolder counts a folder's messages and bytes, lists those over the
// size limit, and estimates what is left to copy.
func (p *pass) measureFolder(pf *PreflightFolder, res *PreflightResult) error {
	sel, err := p.src.selectFolder(pf.Source, true, false)
	if err != nil {
		return fmt.Errorf("source EXAMINE: %w", err)
	}
	recorded := map[uint32]bool{}
	if f, err := p.e.store.Folder(p.mb.Email, pf.Source); err == nil && f.UIDValidity == sel.UIDValidity {
		err := p.e.store.Messages(p.mb.Email, pf.Source, f.UIDValidity, func(m store.Message) error {
			recorded[m.UID] = true
			return nil
		})
		if err != nil {
			return err
		}
	}
	if sel.NumMessages == 0 {
		return nil
	}
	var big []*srcMsg
	err = p.fetchMeta(allUIDs, &metaItems, func(m *srcMsg) {
		pf.Messages++
		pf.Bytes += m.size
		switch {
		case m.size > p.e.opts.MaxMessageSize:
			big = append(big, m)
		case !recorded[m.uid] && p.inDateRange(m.date):
			res.ToCopy++
			res.ToCopyBytes += m.size
		}
	})
	if err != nil {
		return err
	}
	res.Messages += pf.Messages
	res.Bytes += pf.Bytes
	if len(big) > 0 {
		w := &folderWork{newMsgs: big}
		if err := p.fetchIdentities(w); err != nil {
			return err
		}
		for _, m := range big {
			res.OverSize = append(res.OverSize, SkippedItem{Folder: pf.Source, UID: m.uid, Date: m.date, Subject: m.subject,
				Size: m.size, Reason: ReasonTooBig})
		}
	}
	return nil
}

func (p *pass) inDateRange(t time.Time) bool {
	o := p.e.opts
	return (o.Since.IsZero() || !t.Before(o.Since)) && (o.Before.IsZero() || t.Before(o.Before))
}
