// Package demo runs mailferry against servers that need no installation:
// an in-memory source IMAP server laid out like an old Dovecot or Courier
// host (three users, nested folders, a few hundred realistic messages) and
// an in-memory target laid out like Office 365 (Exchange's default folders
// and flags), both on loopback. It backs `mailferry demo`.
//
// Start gives the running servers and the mailbox list that reaches them;
// Run starts them, migrates every mailbox with the sync engine, makes a
// second pass that copies nothing, and returns both summaries.
//
// The servers are go-imap's imapmemserver with a thin session wrapper that
// makes SELECT report the PERMANENTFLAGS a real server would (see
// session.go).
package demo
