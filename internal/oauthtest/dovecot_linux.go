//go:build linux

package oauthtest

import "syscall"

// supported reports whether StartDovecot can run Dovecot here.
const supported = true

// sysProcAttr puts Dovecot's master in its own process group (Stop kills the
// group) and has the kernel kill it when the thread that started it dies, so
// a killed test binary leaves nothing behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

func signalGroup(pid int, sig syscall.Signal) { _ = syscall.Kill(-pid, sig) }
