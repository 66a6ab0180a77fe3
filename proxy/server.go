package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"go.uber.org/zap"

	"github.com/mailferry/mailferry/config"
	"github.com/mailferry/mailferry/imapconn"
	"github.com/mailferry/mailferry/store"
	mfsync "github.com/mailferry/mailferry/sync"
)

// Defaults for the zero values of Options.
const (
	DefaultUpstreamTimeout    = 60 * time.Second
	DefaultFailureDelay       = 2 * time.Second
	DefaultFailureWindow      = 15 * time.Minute
	DefaultMaxFailuresPerIP   = 20
	DefaultMaxFailuresPerUser = 10
)

const (
	// byeTimeout bounds how long Kick and Close wait for a session's BYE to
	// be written (a FETCH literal in progress holds the connection) before
	// they cut the connection.
	byeTimeout = 3 * time.Second
	// logoutTimeout bounds the polite upstream LOGOUT at session end.
	logoutTimeout = 2 * time.Second
)

// capabilities is what the proxy advertises, before and after cutover: what
// the proxy, Dovecot and Office 365 all support. imapserver adds SASL-IR,
// LITERAL-, STARTTLS, AUTH=PLAIN or LOGINDISABLED before login, and UNSELECT,
// ENABLE, IDLE and UTF8=ACCEPT after it, all of which the proxy handles
// itself. Never ID (the server ends the connection on an unknown command
// before login), CONDSTORE, QRESYNC, ESEARCH, LIST-EXTENDED, LIST-STATUS,
// BINARY, STATUS=SIZE, APPENDLIMIT or IMAP4rev2: Office 365 lacks them.
var capabilities = imap.CapSet{
	imap.CapIMAP4rev1:   {},
	imap.CapNamespace:   {},
	imap.CapUIDPlus:     {},
	imap.CapMove:        {},
	imap.CapChildren:    {},
	imap.CapSpecialUse:  {},
	imap.CapLiteralPlus: {},
}

// Options configure a Server.
type Options struct {
	// Source is the old server, where users go before their cutover; Target
	// is Office 365 (or another target), where they go after it.
	Source, Target imapconn.Endpoint
	// TargetLogin logs an upstream target connection in as a user after
	// cutover; nil means sync.PasswordLogin (the mailbox list's target
	// columns).
	TargetLogin mfsync.TargetLogin
	// Mailboxes finds the mailbox a login name belongs to (by UserName or
	// Email, case-insensitive). Nobody else may log in: the proxy is never a
	// relay to arbitrary accounts. Required.
	Mailboxes func(login string) (config.Mailbox, bool)
	// Store holds each user's route (store.Mailbox.Route; no record means
	// RouteSource) and UIDVALIDITY floor. Required.
	Store store.Store
	// Verifiers keeps the password verifiers recorded at pre-cutover logins;
	// nil means Store (store.Store has the same two methods).
	Verifiers Verifiers
	// TLSConfig serves STARTTLS on Serve's listeners and implicit TLS on
	// ServeTLS's. Nil disables both.
	TLSConfig *tls.Config
	// AllowPlaintextAuth lets clients log in without TLS (for loopback
	// listeners); otherwise Serve's connections advertise LOGINDISABLED
	// until STARTTLS.
	AllowPlaintextAuth bool
	// UpstreamTimeout is how long the upstream may stay silent while a reply
	// is due before the session is given up (0: DefaultUpstreamTimeout).
	// Idle upstream connections are watched by TCP keepalive instead.
	UpstreamTimeout time.Duration
	// FailureDelay is the least time between a failed login's command and
	// its NO (0: DefaultFailureDelay; negative: none).
	FailureDelay time.Duration
	// MaxFailuresPerIP and MaxFailuresPerUser failed logins within
	// FailureWindow block further attempts from that IP, or for that user,
	// until the window has passed (0: the defaults; negative: no limit).
	MaxFailuresPerIP, MaxFailuresPerUser int
	FailureWindow                        time.Duration
	// Log receives the proxy's log; fields mailbox, cid (connection id) and
	// folder. Nil logs nothing.
	Log *zap.Logger
}

// Server is a running IMAP proxy. Its methods are safe for concurrent use.
type Server struct {
	opts  Options
	log   *zap.Logger
	imap  *imapserver.Server
	creds *credentials
	ipLim *limiter
	usLim *limiter

	nextID atomic.Uint64

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	sessions  map[*session]struct{}
	byUser    map[string]map[*session]struct{} // lower-case email → logged-in sessions
	held      map[string]bool
}

// New checks opts and makes a Server; Serve and ServeTLS then accept
// connections.
func New(opts Options) (*Server, error) {
	if opts.Mailboxes == nil {
		return nil, errors.New("proxy: Options.Mailboxes is required")
	}
	if opts.Store == nil {
		return nil, errors.New("proxy: Options.Store is required")
	}
	if opts.Source.Host == "" || opts.Target.Host == "" {
		return nil, errors.New("proxy: Options.Source and Options.Target are required")
	}
	if opts.TargetLogin == nil {
		opts.TargetLogin = mfsync.PasswordLogin
	}
	if opts.Verifiers == nil {
		opts.Verifiers = opts.Store
	}
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if opts.UpstreamTimeout <= 0 {
		opts.UpstreamTimeout = DefaultUpstreamTimeout
	}
	switch {
	case opts.FailureDelay == 0:
		opts.FailureDelay = DefaultFailureDelay
	case opts.FailureDelay < 0:
		opts.FailureDelay = 0
	}
	if opts.FailureWindow <= 0 {
		opts.FailureWindow = DefaultFailureWindow
	}
	if opts.MaxFailuresPerIP == 0 {
		opts.MaxFailuresPerIP = DefaultMaxFailuresPerIP
	}
	if opts.MaxFailuresPerUser == 0 {
		opts.MaxFailuresPerUser = DefaultMaxFailuresPerUser
	}
	s := &Server{
		opts:      opts,
		log:       opts.Log,
		creds:     newCredentials(opts.Verifiers),
		ipLim:     newLimiter(opts.MaxFailuresPerIP, opts.FailureWindow),
		usLim:     newLimiter(opts.MaxFailuresPerUser, opts.FailureWindow),
		listeners: map[net.Listener]struct{}{},
		sessions:  map[*session]struct{}{},
		byUser:    map[string]map[*session]struct{}{},
		held:      map[string]bool{},
	}
	s.imap = imapserver.New(&imapserver.Options{
		NewSession:   s.newSession,
		Caps:         capabilities,
		Logger:       libLogger{s.log},
		TLSConfig:    opts.TLSConfig,
		InsecureAuth: opts.AllowPlaintextAuth,
	})
	return s, nil
}

// Serve accepts plain connections on ln, which offer STARTTLS when
// Options.TLSConfig is set. It returns nil once Close has closed ln.
func (s *Server) Serve(ln net.Listener) error {
	if s.opts.TLSConfig == nil && !s.opts.AllowPlaintextAuth {
		return errors.New("proxy: a plain listener needs Options.TLSConfig (for STARTTLS) or Options.AllowPlaintextAuth")
	}
	return s.serve(corkListener{ln})
}

// ServeTLS accepts implicit-TLS connections on ln (a plain TCP listener; the
// handshake uses Options.TLSConfig). It returns nil once Close has closed ln.
func (s *Server) ServeTLS(ln net.Listener) error {
	if s.opts.TLSConfig == nil {
		return errors.New("proxy: ServeTLS needs Options.TLSConfig")
	}
	return s.serve(tls.NewListener(corkListener{ln}, s.opts.TLSConfig))
}

func (s *Server) serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errors.New("proxy: server closed")
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	err := s.imap.Serve(ln)
	s.mu.Lock()
	delete(s.listeners, ln)
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil
	}
	return err
}

// Close stops the listeners, sends BYE to every session, closes them and
// their upstream connections, and returns once they are all gone (or after
// a few seconds, when the connections have been cut).
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	var err error
	for ln := range s.listeners {
		if cerr := ln.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) && err == nil {
			err = cerr
		}
	}
	all := make([]*session, 0, len(s.sessions))
	for sess := range s.sessions {
		all = append(all, sess)
	}
	s.mu.Unlock()
	terminateAll(all, "Server shutting down")
	_ = s.imap.Close() // closes what is left; errors only "already closed"
	return err
}

// Kick sends BYE with text to every session of the user whose mailbox email
// is email, closes them and their upstream connections, and returns how many
// there were. It returns when the sessions can no longer send upstream
// commands (the cutover's final sync must not race the user's changes).
// Call Hold first: a login under way when Kick runs is not counted, and
// only Hold keeps it from completing.
func (s *Server) Kick(email, text string) int {
	key := strings.ToLower(email)
	s.mu.Lock()
	var victims []*session
	for sess := range s.byUser[key] {
		victims = append(victims, sess)
	}
	s.mu.Unlock()
	if text == "" {
		text = "Mailbox is being migrated, please reconnect"
	}
	terminateAll(victims, text)
	if len(victims) > 0 {
		s.log.Info("kicked sessions", zap.String("mailbox", email), zap.Int("sessions", len(victims)))
	}
	return len(victims)
}

// Hold makes new logins of the user with mailbox email fail with
// NO [UNAVAILABLE] until Release; sessions already open are not touched
// (Kick ends them). Holds are kept in memory only.
func (s *Server) Hold(email string) {
	s.mu.Lock()
	s.held[strings.ToLower(email)] = true
	s.mu.Unlock()
	s.log.Info("logins held", zap.String("mailbox", email))
}

// Release lets the user's logins through again after Hold.
func (s *Server) Release(email string) {
	s.mu.Lock()
	delete(s.held, strings.ToLower(email))
	s.mu.Unlock()
	s.log.Info("logins released", zap.String("mailbox", email))
}

func terminateAll(sessions []*session, text string) {
	var wg sync.WaitGroup
	for _, sess := range sessions {
		wg.Go(func() { sess.terminate(text, nil) })
	}
	wg.Wait()
}

// newSession is imapserver's NewSession hook: one session per connection.
func (s *Server) newSession(conn *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
	cid := "c" + strconv.FormatUint(s.nextID.Add(1), 10)
	sess := newSession(s, conn, cid)
	s.mu.Lock()
	closed := s.closed
	if !closed {
		s.sessions[sess] = struct{}{}
	}
	s.mu.Unlock()
	if closed {
		return nil, nil, &imap.Error{Type: imap.StatusResponseTypeBye, Code: imap.ResponseCodeUnavailable, Text: "Server shutting down"}
	}
	sess.log.Debug("connected", zap.String("remote", sess.remote))
	return sess, nil, nil
}

// register marks sess as logged in as the mailbox with key (lower-case
// email), unless the user is held or the server closed meanwhile.
func (s *Server) register(sess *session, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errShuttingDown
	}
	if s.held[key] {
		return errHeld
	}
	m := s.byUser[key]
	if m == nil {
		m = map[*session]struct{}{}
		s.byUser[key] = m
	}
	m[sess] = struct{}{}
	return nil
}

func (s *Server) isHeld(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held[key]
}

// forget removes a session that is closing.
func (s *Server) forget(sess *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sessions, sess)
	s.unregisterLocked(sess)
}

// unregister removes a session that is ending from its user's, so that Kick
// no longer counts it.
func (s *Server) unregister(sess *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unregisterLocked(sess)
}

func (s *Server) unregisterLocked(sess *session) {
	if m := s.byUser[sess.key]; m != nil {
		delete(m, sess)
		if len(m) == 0 {
			delete(s.byUser, sess.key)
		}
	}
}

var (
	errShuttingDown = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable, Text: "Server shutting down"}
	errHeld         = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable, Text: "Mailbox is being migrated, try again in a minute"}
)

// libLogger sends imapserver's own messages to zap: panics it recovered as
// errors, failed commands as warnings, the rest (clients hanging up) as
// debug.
type libLogger struct{ log *zap.Logger }

func (l libLogger) Printf(format string, args ...any) {
	msg := strings.TrimSpace(fmt.Sprintf(format, args...))
	switch {
	case strings.Contains(msg, "panic"):
		l.log.Error("imapserver: " + msg)
	case strings.HasPrefix(msg, "handling "):
		l.log.Warn("imapserver: " + msg)
	default:
		l.log.Debug("imapserver: " + msg)
	}
}
