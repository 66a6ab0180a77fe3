// Package config reads and checks what the admin gives mailferry:
//
//   - the mailbox list, a CSV file in the format of Exchange Online's IMAP
//     migration batches (EmailAddress, UserName, Password, and optionally
//     UserRoot, TargetUserName, TargetPassword), as Excel writes it;
//   - the options, from a TOML config file and command-line flags, where a
//     flag given on the command line wins over the file.
//
// Everything the admin wrote is checked before any mailbox is touched, and
// every problem is reported at once with its file, line and column or key,
// so one run of `mailferry config check` finds all mistakes rather than the
// first. Passwords are held as Secret and never appear in errors or logs.
package config
