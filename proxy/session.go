package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"go.uber.org/zap"

	"github.com/mailferry/mailferry/config"
	"github.com/mailferry/mailferry/imapconn"
	"github.com/mailferry/mailferry/store"
)

var (
	errUnavailable  = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable, Text: "Mail server unavailable, try again later"}
	errUpstreamLost = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable, Text: "Connection to the mail server lost"}
	errInternal     = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeServerBug, Text: "Internal proxy error"}
	errNoMailbox    = &imap.Error{Type: imap.StatusResponseTypeBad, Code: imap.ResponseCodeClientBug, Text: "No mailbox selected"}
)

// session is one client connection and, once logged in, its upstream
// connection. imapserver calls the Session methods one at a time from the
// connection's goroutine, except Idle, which runs in a goroutine of its own
// while the connection's goroutine waits for DONE. Kick, Close and the
// upstream's goroutines reach it concurrently: what they share is under mu
// or atomic.
type session struct {
	srv    *Server
	conn   *imapserver.Conn
	cid    string
	remote string
	ip     string
	cork   *corkConn // the client's connection; nil for a listener not ours
	ctx    context.Context
	cancel context.CancelFunc

	// Set by Login before the session is registered, then read-only.
	log    *zap.Logger
	mb     config.Mailbox
	key    string // lower-case email; "" until logged in
	route  store.Route
	floor  uint32
	upCaps imap.CapSet

	// activity is when upstream bytes last moved (unix nanoseconds);
	// waiting counts callers blocked on an upstream reply. The monitor gives
	// the upstream up when waiting > 0 and activity is older than
	// Options.UpstreamTimeout.
	activity atomic.Int64
	waiting  atomic.Int32
	// usedUpstream is set when a command talked to the upstream; Poll sends
	// a NOOP upstream when the client's command did not (NOOP, CHECK).
	usedUpstream atomic.Bool

	upOnce  sync.Once     // closes the upstream, once
	byeOnce sync.Once     // closes byeDone
	byeDone chan struct{} // closed once terminate's BYE is out, given up, or the client is gone

	mu              sync.Mutex
	up              *imapclient.Client
	ending          bool
	failure         error      // why the upstream was given up
	sel             *selection // selected mailbox, nil if none
	needUnselect    bool       // upstream still has the last mailbox selected
	closeOnUnselect bool       // CLOSE (not UNSELECT) is under way
}

// selection is the selected mailbox as the upstream reports it. The tracker
// queues the upstream's updates until the client may see them.
type selection struct {
	name     string
	readOnly bool
	mt       *imapserver.MailboxTracker
	st       *imapserver.SessionTracker
	// count is the upstream's number of messages; fresh of those are
	// announced upstream but not yet to the client (the last ones).
	count uint32
	fresh uint32
	// pendingExpunges counts EXPUNGEs queued since the last poll that
	// delivered them; epoch counts all EXPUNGEs.
	pendingExpunges int
	epoch           uint64
}

func newSession(srv *Server, conn *imapserver.Conn, cid string) *session {
	ctx, cancel := context.WithCancel(context.Background())
	s := &session{srv: srv, conn: conn, cid: cid, ctx: ctx, cancel: cancel, byeDone: make(chan struct{})}
	if nc := conn.NetConn(); nc != nil && nc.RemoteAddr() != nil {
		s.remote = nc.RemoteAddr().String()
		if host, _, err := net.SplitHostPort(s.remote); err == nil {
			s.ip = host
		} else {
			s.ip = s.remote
		}
	}
	s.cork = corkOf(conn.NetConn())
	s.log = srv.log.With(zap.String("cid", cid))
	return s
}

// guard recovers a panic in a Session method: it is logged, the client gets
// NO [SERVERBUG] and then BYE, and the process carries on. On an error no
// Poll follows the command, so usedUpstream is reset for the next one.
func (s *session) guard(cmd string, errp *error) {
	if v := recover(); v != nil {
		s.log.Error("panic in proxy session", zap.String("command", cmd), zap.Any("panic", v), zap.Stack("stack"))
		*errp = errInternal
		go s.terminate("Internal proxy error", nil)
	}
	if *errp != nil {
		s.usedUpstream.Store(false)
	}
}

// upstream returns the logged-in upstream client and marks the command as
// having used it. When the last mailbox was unselected lazily, an UNSELECT
// goes ahead of the caller's command (pipelined: nobody waits for it).
func (s *session) upstream() *imapclient.Client {
	s.usedUpstream.Store(true)
	s.mu.Lock()
	up := s.up
	unselect := s.needUnselect
	s.needUnselect = false
	s.mu.Unlock()
	if unselect && s.upCaps.Has(imap.CapUnselect) {
		up.Unselect()
	}
	return up
}

// selected returns the selected mailbox, or nil.
func (s *session) selected() *selection {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sel
}

// waitStart marks the session as waiting for an upstream reply, until the
// matching waitEnd.
func (s *session) waitStart() {
	s.activity.Store(time.Now().UnixNano())
	s.waiting.Add(1)
}

func (s *session) waitEnd() { s.waiting.Add(-1) }

// activityWriter is the upstream client's DebugWriter: it sees every byte
// either way and only notes the time.
type activityWriter struct{ s *session }

func (w activityWriter) Write(p []byte) (int, error) {
	w.s.activity.Store(time.Now().UnixNano())
	return len(p), nil
}

// upErr turns an upstream error into the client's answer. NO and BAD pass
// through as the upstream sent them. Anything else means the upstream
// connection is gone or unusable (go-imap closes it on a response it cannot
// parse): the session ends with BYE and a log line.
func (s *session) upErr(err error) error {
	var ie *imap.Error
	if errors.As(err, &ie) && (ie.Type == imap.StatusResponseTypeNo || ie.Type == imap.StatusResponseTypeBad) {
		return ie
	}
	go s.terminate("Connection to the mail server lost", err)
	return errUpstreamLost
}

// dial connects to ep with this session's update handler and watchdog.
func (s *session) dial(ep imapconn.Endpoint) (*imapclient.Client, error) {
	opts := &imapclient.Options{
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			Expunge: s.onExpunge,
			Mailbox: s.onMailbox,
			Fetch:   s.onFetch,
		},
		DebugWriter: activityWriter{s},
	}
	s.waitStart()
	defer s.waitEnd()
	up, err := imapconn.Dial(s.ctx, ep, s.log, opts)
	if err != nil {
		return nil, err
	}
	go s.monitor(up)
	return up, nil
}

// monitor watches one upstream connection until it closes or the session
// ends: it gives the upstream up when a reply is overdue, and ends the
// session when the upstream goes away by itself.
func (s *session) monitor(up *imapclient.Client) {
	defer func() {
		if v := recover(); v != nil {
			s.logger().Error("panic in upstream monitor", zap.Any("panic", v), zap.Stack("stack"))
		}
	}()
	timeout := s.srv.opts.UpstreamTimeout
	tick := max(timeout/4, 20*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-up.Closed():
			s.upstreamClosed(up)
			return
		case <-t.C:
			if s.waiting.Load() > 0 && time.Since(time.Unix(0, s.activity.Load())) > timeout {
				s.noteFailure(fmt.Errorf("no answer from the mail server for %v", timeout))
				up.Close()
			}
		}
	}
}

// noteFailure keeps the first reason the upstream was given up, for the log.
func (s *session) noteFailure(err error) {
	s.mu.Lock()
	if s.failure == nil {
		s.failure = err
	}
	s.mu.Unlock()
}

// protocolError gives the upstream up from go-imap's reader goroutine, which
// must not wait for itself: the close runs elsewhere.
func (s *session) protocolError(err error) {
	s.noteFailure(err)
	s.mu.Lock()
	up := s.up
	s.mu.Unlock()
	if up != nil {
		go up.Close()
	}
}

// upstreamClosed ends the session when its upstream went away on its own.
func (s *session) upstreamClosed(up *imapclient.Client) {
	s.mu.Lock()
	mine := s.up == up
	ending := s.ending
	failure := s.failure
	s.mu.Unlock()
	if !mine || ending {
		return
	}
	if failure == nil {
		// Close returns what go-imap could not parse, if that was it.
		if err := up.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			failure = err
		} else {
			failure = errors.New("the mail server closed the connection")
		}
	}
	s.terminate("Connection to the mail server lost", failure)
}

// terminate ends the session from outside its command loop: the upstream is
// closed (so nothing more reaches it) while the client gets BYE text and its
// connection is closed. cause, if not nil, is logged as the reason. Later
// calls return once the first one is done.
func (s *session) terminate(text string, cause error) {
	s.mu.Lock()
	first := !s.ending
	s.ending = true
	if cause != nil && s.failure == nil {
		s.failure = cause
	}
	failure := s.failure
	loggedIn := s.key != ""
	log := s.log
	folder := ""
	if s.sel != nil {
		folder = s.sel.name
	}
	s.mu.Unlock()
	if !first {
		s.closeUpstream(false)
		select {
		case <-s.byeDone:
		case <-time.After(2 * byeTimeout):
		}
		return
	}
	defer s.byeOnce.Do(func() { close(s.byeDone) })
	if loggedIn {
		s.srv.unregister(s)
	}
	if failure != nil && loggedIn {
		log.Warn("upstream failed, ending session", zap.String("folder", folder), zap.Error(failure))
	}
	// Closing the upstream waits for go-imap's reader, which may wait for
	// a FETCH literal that the session is still writing to the client:
	// close it alongside the BYE, not before.
	upDone := make(chan struct{})
	go func() {
		defer close(upDone)
		s.closeUpstream(false)
	}()
	bye := make(chan struct{})
	go func() {
		defer close(bye)
		if err := s.conn.Bye(text); err != nil {
			log.Debug("BYE", zap.Error(err))
		}
	}()
	timer := time.NewTimer(byeTimeout)
	defer timer.Stop()
	select {
	case <-bye:
	case <-timer.C:
		// A FETCH literal holds the connection: cut it.
		if nc := s.conn.NetConn(); nc != nil {
			nc.Close()
		}
	}
	select {
	case <-upDone:
	case <-time.After(byeTimeout):
		log.Warn("upstream connection slow to close")
	}
}

// abandon gives the upstream up from the command loop (the client is gone
// or a command cannot be completed): its socket is closed in the
// background, so that go-imap's reader, perhaps waiting for a literal the
// caller holds, can finish.
func (s *session) abandon() {
	s.mu.Lock()
	s.ending = true
	s.mu.Unlock()
	go s.closeUpstream(false)
}

// closeUpstream closes the upstream once, with a LOGOUT first if polite.
func (s *session) closeUpstream(polite bool) {
	s.upOnce.Do(func() {
		s.mu.Lock()
		up := s.up
		s.ending = true
		s.mu.Unlock()
		if up == nil {
			return
		}
		if polite {
			done := make(chan struct{})
			go func() {
				defer close(done)
				_ = up.Logout().Wait()
			}()
			select {
			case <-done:
			case <-time.After(logoutTimeout):
			}
		}
		up.Close()
	})
}

// Close is called by imapserver when the client connection is gone.
func (s *session) Close() error {
	s.mu.Lock()
	polite := !s.ending
	s.ending = true
	if s.sel != nil {
		s.sel.st.Close()
		s.sel = nil
	}
	s.mu.Unlock()
	s.closeUpstream(polite)
	s.byeOnce.Do(func() { close(s.byeDone) })
	s.cancel()
	s.srv.forget(s)
	if s.key != "" {
		s.log.Info("logged out")
	} else {
		s.log.Debug("disconnected")
	}
	return nil
}

// Login checks the user and password and connects the session upstream:
// the source before cutover (its login checks the password), the target
// after (the proxy checks the password; the target login uses the target
// credentials).
func (s *session) Login(username, password string) (err error) {
	defer s.guard("LOGIN", &err)
	start := time.Now()
	srv := s.srv
	mb, known := srv.opts.Mailboxes(username)
	key := strings.ToLower(mb.Email)
	if srv.ipLim.blocked(s.ip) || known && srv.usLim.blocked(key) {
		s.log.Warn("login refused: too many failed logins", zap.String("ip", s.ip), zap.String("mailbox", mb.Email))
		s.sleepUntil(start.Add(srv.opts.FailureDelay))
		return errTooManyFailures
	}
	if !known || mb.Email == "" {
		return s.loginFailed(start, "", "unknown user")
	}
	log := s.log.With(zap.String("mailbox", mb.Email))
	if srv.isHeld(key) {
		log.Info("login held during cutover")
		return errHeld
	}
	rec, err := srv.opts.Store.Mailbox(mb.Email)
	switch {
	case errors.Is(err, store.ErrNotFound):
		rec = store.Mailbox{Email: mb.Email, Route: store.RouteSource}
	case err != nil:
		log.Error("reading the mailbox's route", zap.Error(err))
		return errUnavailable
	}

	s.mu.Lock()
	s.log = log // before the session's goroutines start
	s.mu.Unlock()
	var up *imapclient.Client
	if rec.Route == store.RouteTarget {
		ok, err := s.checkPassword(mb, username, password)
		if err != nil {
			log.Warn("cannot check the password", zap.Error(err))
			return errUnavailable
		}
		if !ok {
			return s.loginFailed(start, key, "wrong password")
		}
		if up, err = s.dial(srv.opts.Target); err == nil {
			s.waitStart()
			err = srv.opts.TargetLogin(s.ctx, up, mb)
			s.waitEnd()
			if err != nil {
				up.Close()
			}
		}
		if err != nil {
			log.Error("target login failed", zap.Error(err))
			return errUnavailable
		}
	} else {
		if up, err = s.dial(srv.opts.Source); err == nil {
			s.waitStart()
			err = imapconn.Login(up, sourceLogin(username, mb), password)
			s.waitEnd()
			if err != nil {
				up.Close()
			}
		}
		switch {
		case err != nil && isLoginRefusal(err):
			return s.loginFailed(start, key, "source refused the password")
		case err != nil:
			log.Warn("source login failed", zap.Error(err))
			return errUnavailable
		}
		if err := srv.creds.record(mb.Email, password); err != nil {
			log.Warn("recording the password verifier", zap.Error(err))
		}
	}

	s.waitStart()
	caps := up.Caps()
	s.waitEnd()
	s.mu.Lock()
	if s.ending {
		s.mu.Unlock()
		up.Close()
		return errShuttingDown
	}
	s.up = up
	s.mb, s.key, s.route, s.upCaps = mb, key, rec.Route, caps
	s.floor = rec.UIDValidityFloor // for the current route: set at each cutover and rollback
	s.mu.Unlock()
	if err := srv.register(s, key); err != nil {
		s.closeUpstream(false)
		if err == errHeld {
			log.Info("login held during cutover")
		}
		return err
	}
	srv.usLim.reset(key)
	log.Info("logged in", zap.Stringer("route", rec.Route), zap.String("remote", s.remote))
	return nil
}

// sourceLogin is the name the proxy logs in to the source with, for a
// client that logged in as login: the mailbox list's UserName when the user
// typed it, or when it is a plain name (no admin form such as "user*admin"
// or "DOMAIN/admin/user"); the mailbox's email otherwise.
func sourceLogin(login string, mb config.Mailbox) string {
	if strings.EqualFold(login, mb.UserName) {
		return mb.UserName
	}
	if mb.UserName != "" && mb.UserRoot == "" && !strings.ContainsAny(mb.UserName, "*/\\#") {
		return mb.UserName
	}
	return mb.Email
}

// isLoginRefusal reports whether a failed upstream login means wrong
// credentials rather than a server in trouble: any NO or BAD that does not
// say "later" (servers without response codes just say NO).
func isLoginRefusal(err error) bool {
	var ie *imap.Error
	return errors.As(err, &ie) && !imapconn.IsTemporary(err)
}

// checkPassword checks a password after cutover: against the verifier
// recorded at an earlier login, else against the source.
func (s *session) checkPassword(mb config.Mailbox, login, password string) (bool, error) {
	ok, known, err := s.srv.creds.verify(mb.Email, password)
	if err != nil {
		s.log.Warn("reading the password verifier", zap.Error(err))
	}
	if ok {
		return true, nil
	}
	// No verifier, or one of an older password: ask the source.
	ctx, cancel := context.WithTimeout(s.ctx, s.srv.opts.UpstreamTimeout)
	defer cancel()
	c, err := imapconn.Dial(ctx, s.srv.opts.Source, s.log, nil)
	if err != nil {
		if known {
			// The verifier says no and nobody can say otherwise.
			return false, nil
		}
		return false, fmt.Errorf("no password verifier and the source is unreachable: %w", err)
	}
	defer c.Close()
	err = imapconn.Login(c, sourceLogin(login, mb), password)
	if err != nil {
		if isLoginRefusal(err) {
			return false, nil
		}
		return false, err
	}
	_ = c.Logout().Wait()
	if err := s.srv.creds.record(mb.Email, password); err != nil {
		s.log.Warn("recording the password verifier", zap.Error(err))
	}
	return true, nil
}

var errTooManyFailures = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable, Text: "Too many failed logins, try again later"}

var errAuthFailed = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAuthenticationFailed, Text: "Authentication failed"}

// loginFailed counts a failure against the client's IP and the user (key,
// if known) and answers no sooner than FailureDelay after start, so that
// unknown users and wrong passwords look alike.
func (s *session) loginFailed(start time.Time, key, why string) error {
	s.srv.ipLim.fail(s.ip)
	if key != "" {
		s.srv.usLim.fail(key)
	}
	s.log.Info("login failed", zap.String("reason", why), zap.String("ip", s.ip))
	s.sleepUntil(start.Add(s.srv.opts.FailureDelay))
	return errAuthFailed
}

func (s *session) sleepUntil(t time.Time) {
	d := time.Until(t)
	if d <= 0 {
		return
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-s.ctx.Done():
	}
}

// isSilentExpunge reports whether imapserver passes w for the silent
// expunge of CLOSE rather than for an EXPUNGE command: it has no
// connection then. (imapserver does not say which it is; if a newer
// go-imap renames the field, CLOSE is treated as EXPUNGE + UNSELECT.)
func isSilentExpunge(w *imapserver.ExpungeWriter) bool {
	if w == nil {
		return true
	}
	f := reflect.ValueOf(w).Elem().FieldByName("conn")
	return f.IsValid() && f.Kind() == reflect.Pointer && f.IsNil()
}

// isLSub reports whether w writes LSUB responses rather than LIST ones
// (imapserver calls List for both). Same caveat as isSilentExpunge.
func isLSub(w *imapserver.ListWriter) bool {
	if w == nil {
		return false
	}
	f := reflect.ValueOf(w).Elem().FieldByName("lsub")
	return f.IsValid() && f.Kind() == reflect.Bool && f.Bool()
}
