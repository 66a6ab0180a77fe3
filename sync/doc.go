// Package sync is mailferry's migration engine: it copies every mail folder
// of a mailbox from a source IMAP server into the target (Office 365 or any
// IMAP server), and on every later pass only what changed.
//
// The engine keeps, in the store, which source message became which target
// message. A pass over a mailbox lists and maps folders, scans each changed
// folder's UIDs and flags (a constant number of commands for unchanged
// folders on CONDSTORE servers), pairs messages that disappeared from one
// place with identical ones that appeared in another (moves, UIDVALIDITY
// resets) so nothing is uploaded twice, applies deletions and flag changes
// to the messages it created, and streams new messages newest first from
// FETCH to APPEND.
//
// Crash safety rests on one rule: before a message is appended or moved on
// the target, it is recorded as pending together with a low watermark of the
// target folder's UIDs. A later pass that finds pending records looks at the
// target messages above the watermark and recognises the ones that arrived
// by their identity (Message-ID or header hash, size, INTERNALDATE); the
// rest are sent again. The same routine stands in for APPENDUID on targets
// without UIDPLUS.
//
// The package is named like rclone's fs/sync; import the standard library's
// sync under another name where both are needed.
package sync
