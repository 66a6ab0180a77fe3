// Package imapconn opens IMAP client connections for mailferry: it parses
// server URLs (imaps://, imap:// with mandatory STARTTLS, imap+plain:// for
// loopback), dials with TCP keepalive so a vanished peer is noticed, ties each
// connection's life to a context, logs in, and sorts IMAP errors into
// temporary ones (worth a retry with backoff) and permanent ones. Under
// go-imap's client it pipelines APPENDs (LITERAL+), tolerates responses
// go-imap cannot parse, and writes the one command mailferry needs that
// go-imap lacks, MULTIAPPEND.
//
// The sync engine and the proxy both reach their upstream servers through
// this package, so TLS policy and error classification live in one place.
package imapconn
