//go:build linux

package dovecottest

import (
	"syscall"
)

// supported reports whether Start can run Dovecot on this platform.
const supported = true

// sysProcAttr puts Dovecot's master in its own process group (so Stop can kill
// it and all its children at once) and asks the kernel to SIGKILL it when the
// thread that started it dies, so a killed test binary leaves nothing behind.
// Dovecot's children exit by themselves when their master is gone.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// signalGroup sends sig to the process group led by pid.
func signalGroup(pid int, sig syscall.Signal) {
	_ = syscall.Kill(-pid, sig)
}
