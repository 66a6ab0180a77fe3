//go:build !linux

package oauthtest

import "syscall"

// supported reports whether StartDovecot can run Dovecot here.
const supported = false

func sysProcAttr() *syscall.SysProcAttr { return nil }

func signalGroup(pid int, sig syscall.Signal) {}
