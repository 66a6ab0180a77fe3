// Package o365 logs mailferry in to Exchange Online (Office 365) as the
// migration target: app-only OAuth2 (the client-credentials flow of one
// Microsoft Entra app registration, with a client secret or a certificate)
// and the XOAUTH2 SASL mechanism.
//
// One TokenSource serves every mailbox: app-only tokens belong to the app,
// not to a mailbox, and the app's right to open a mailbox comes from
// Exchange (IMAP.AccessAsApp plus FullAccess on the mailbox). The source
// caches its token and fetches a new one ahead of expiry, so runs of many
// hours never log in with an expired token. Login is the sync engine's
// TargetLogin: AUTHENTICATE XOAUTH2 as the mailbox's address; a token the
// server refuses is replaced once and the login tried again; what the server
// said comes back as an AuthError.
//
// Neither tokens nor secrets appear in errors or logs.
package o365
