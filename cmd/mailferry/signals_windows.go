package main

// reloadSignals: Windows has no SIGHUP; the daemon notices a changed list
// by itself, and `mailferry service restart` reloads everything.
func reloadSignals() <-chan struct{} { return nil }
