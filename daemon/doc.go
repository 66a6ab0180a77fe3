// Package daemon wires mailferry's parts together for the commands: it turns
// the admin's options into a sync engine over a store, runs one-shot passes
// (sync, verify) with progress on stderr and results on stdout, and sets up
// logging. The service program (continuous sync, proxy, status) builds on
// the same wiring.
package daemon
