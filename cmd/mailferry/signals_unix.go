//go:build !windows

package main

import (
	"os"
	"os/signal"
	"syscall"
)

// reloadSignals delivers SIGHUP, the Unix way to say "re-read the list".
func reloadSignals() <-chan struct{} {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGHUP)
	out := make(chan struct{})
	go func() {
		for range sig {
			out <- struct{}{}
		}
	}()
	return out
}
