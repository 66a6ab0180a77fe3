package o365

import (
	"fmt"
	"os"
	"runtime"
)

// CheckSecretFilePermissions returns a warning (as an error) when the file
// at path, which holds a secret (a client secret in a config file, a private
// key), can be read by its group or by others. It returns nil when only the
// owner can read it, and always on Windows, whose ACLs file modes don't show.
// A file that can't be examined is reported too.
func CheckSecretFilePermissions(path string) error {
	if runtime.GOOS == "windows" || runtime.GOOS == "plan9" {
		return nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("checking permissions of %s: %w", path, err)
	}
	if perm := fi.Mode().Perm(); perm&0o044 != 0 {
		who := "its group and others"
		switch perm & 0o044 {
		case 0o040:
			who = "its group"
		case 0o004:
			who = "others"
		}
		return fmt.Errorf("%s holds a secret and is readable by %s (mode %04o): chmod 600 %s", path, who, perm, path)
	}
	return nil
}
