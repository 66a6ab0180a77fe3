// Package proxy is mailferry's IMAP proxy: users keep their mail clients
// pointed at mailferry while their mailboxes migrate, and each user follows
// to Office 365 at their own cutover without changing account settings.
//
// It is a semantic proxy, not a byte relay: every client connection is an
// imapserver session (downstream) with its own imapclient connection to the
// real server (upstream), opened at login and chosen by the user's route in
// the store (the old server before cutover, the target after). Commands are
// parsed, forwarded one by one and their answers written back, so the proxy
// controls what the client sees: one fixed capability set before and after
// cutover, UIDVALIDITY values that only grow across the switch, and nothing
// the upstream offers that the other side could not keep (ID, CONDSTORE,
// QRESYNC, ESEARCH, LIST-EXTENDED, ...).
//
// # Authentication
//
// LOGIN and AUTHENTICATE PLAIN, only for users in the mailbox list (by
// user name or email, case-insensitive). Before cutover the source server
// checks the password (the proxy logs in with it); each success records a
// salted argon2id verifier of the password in the store (see Verifiers), so
// that after cutover, when the upstream login uses the target's own
// credentials, the proxy checks the password itself, or against the source
// while it exists.
// Failed logins are answered no sooner than Options.FailureDelay after they
// began, and too many failures per client IP or per user within
// Options.FailureWindow make further attempts fail at once with
// NO [UNAVAILABLE] until the window passes.
//
// # Mailbox updates
//
// The upstream's unilateral EXISTS, EXPUNGE and FETCH FLAGS responses go
// into an imapserver.MailboxTracker as they are parsed; they reach the
// client after its next command (the tracker holds EXPUNGE back during
// FETCH, STORE and SEARCH) or at once while it idles. Sequence numbers the
// client sends are translated through the tracker while it has EXPUNGEs the
// client has not seen yet.
//
// # Failures
//
// An upstream that closes, stops answering (Options.UpstreamTimeout of
// silence while a reply is due; TCP keepalive while idle) or sends
// something go-imap cannot parse ends the client's session with a BYE and a
// log line naming the mailbox. Panics in a session are recovered, logged
// and end that session alone. Message bodies are streamed both ways with
// fixed-size buffers.
package proxy
