package sync

import (
	"context"
	"fmt"
	gosync "sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailferry/mailferry/imapconn"
)

const logoutTimeout = 2 * time.Second

// conn is one upstream connection of a pass and the slot it holds under the
// engine's per-server cap.
type conn struct {
	*imapclient.Client
	release  func()
	selected string
	readOnly bool
	// sel is what the last SELECT/EXAMINE returned.
	sel *imap.SelectData
}

func acquire(ctx context.Context, sem chan struct{}, wait bool) bool {
	if !wait {
		select {
		case sem <- struct{}{}:
			return true
		default:
			return false
		}
	}
	select {
	case sem <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

// connectSource opens a logged-in source connection, which lives until
// ctx is done or the pass closes it. With wait false it returns nil, nil
// when the source's connection cap is reached.
func (p *pass) connectSource(ctx context.Context, wait bool) (*conn, error) {
	if !acquire(ctx, p.e.srcSem, wait) {
		return nil, ctx.Err()
	}
	c, err := imapconn.Dial(ctx, p.e.opts.Source, p.log, nil)
	if err == nil {
		if err = imapconn.Login(c, p.mb.UserName, p.mb.Password.Reveal()); err != nil && imapconn.IsAuthFailure(err) {
			err = imapconn.MakePermanent(err)
		}
	}
	return p.track(c, p.e.srcSem, "source", err)
}

// connectTarget opens a logged-in target connection, like connectSource.
func (p *pass) connectTarget(ctx context.Context, wait bool) (*conn, error) {
	if !acquire(ctx, p.e.tgtSem, wait) {
		return nil, ctx.Err()
	}
	c, err := imapconn.Dial(ctx, p.e.opts.Target, p.log, nil)
	if err == nil {
		if err = p.e.opts.TargetLogin(ctx, c, p.mb); err != nil && imapconn.IsAuthFailure(err) {
			err = imapconn.MakePermanent(err)
		}
	}
	return p.track(c, p.e.tgtSem, "target", err)
}

func (p *pass) track(c *imapclient.Client, sem chan struct{}, side string, err error) (*conn, error) {
	if err != nil {
		if c != nil {
			c.Close()
		}
		<-sem
		return nil, fmt.Errorf("%s: %w", side, err)
	}
	cn := &conn{Client: c, release: func() { <-sem }}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closing {
		// A spare pair that logged in after the pass ended.
		c.Close()
		cn.release()
		return nil, fmt.Errorf("%s: %w", side, context.Canceled)
	}
	p.conns = append(p.conns, cn)
	return cn, nil
}

// closeConns logs out of every connection of the pass, and stops the spare
// pairs still logging in.
func (p *pass) closeConns() {
	p.mu.Lock()
	p.closing = true
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	var wg gosync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			// A polite LOGOUT, but a dead server must not hold the pass.
			done := make(chan struct{})
			go func() { c.Logout().Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(logoutTimeout):
			}
			c.Close()
			c.release()
		})
	}
	wg.Wait()
	if p.stopSpares != nil {
		p.stopSpares()
		p.spareWG.Wait()
	}
}

// copyPair is a source connection and a target connection that copy together.
type copyPair struct {
	src, tgt *conn
	err      error
}

// connectSpares starts logging in, in the background, n more pairs for the
// copy phase, so that they are ready when it starts rather than joining
// late: on a delta of a few messages per folder, the first pair would
// otherwise have sent nearly everything before a second one could help.
func (p *pass) connectSpares(n int) {
	if n <= 0 || p.spares != nil {
		return
	}
	ctx, cancel := context.WithCancel(p.ctx)
	p.stopSpares = cancel
	p.spares = make(chan copyPair, n)
	p.sparesLeft = n
	for range n {
		p.spareWG.Go(func() {
			src, tgt, err := p.connectPair(ctx, false)
			p.spares <- copyPair{src, tgt, err}
		})
	}
}

// extraPair returns a spare pair, or logs one in now.
func (p *pass) extraPair() (src, tgt *conn, err error) {
	p.mu.Lock()
	spare := p.sparesLeft > 0
	if spare {
		p.sparesLeft--
	}
	p.mu.Unlock()
	if spare {
		pr := <-p.spares
		return pr.src, pr.tgt, pr.err
	}
	return p.connectPair(p.ctx, false)
}

// selectAsync sends SELECT (or EXAMINE) for name unless it is selected
// already, and returns how to wait for it: commands sent meanwhile follow
// it in the same round trip.
func (c *conn) selectAsync(name string, readOnly, condStore bool) func() (*imap.SelectData, error) {
	if c.selected == name && c.readOnly == readOnly && c.sel != nil {
		sel := c.sel
		return func() (*imap.SelectData, error) { return sel, nil }
	}
	c.selected = ""
	cmd := c.Select(name, &imap.SelectOptions{ReadOnly: readOnly, CondStore: condStore})
	return func() (*imap.SelectData, error) {
		sel, err := cmd.Wait()
		if err != nil {
			return nil, err
		}
		c.selected, c.readOnly, c.sel = name, readOnly, sel
		return sel, nil
	}
}

// unselect leaves the selected folder, if any, without waiting. A server
// that has a folder selected reports every APPEND into it to the session
// as well, and Dovecot re-reads the folder to do so: on a big folder that
// made each APPEND cost the target several times the CPU.
func (c *conn) unselect() {
	if c.selected == "" || !c.Caps().Has(imap.CapUnselect) {
		return
	}
	c.Unselect()
	c.selected, c.sel = "", nil
}

// selectFolder selects (or examines) name unless it already is.
func (c *conn) selectFolder(name string, readOnly, condStore bool) (*imap.SelectData, error) {
	return c.selectAsync(name, readOnly, condStore)()
}
