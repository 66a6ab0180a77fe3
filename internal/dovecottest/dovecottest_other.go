//go:build !linux

package dovecottest

import "syscall"

// supported reports whether Start can run Dovecot on this platform.
const supported = false

func sysProcAttr() *syscall.SysProcAttr { return nil }

func signalGroup(pid int, sig syscall.Signal) {}
