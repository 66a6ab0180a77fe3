package daemon

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestDemoCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := Demo(context.Background(), Streams{Stdout: &out, Stderr: &errOut}, false); err != nil {
		t.Fatalf("demo: %v\n%s", err, errOut.String())
	}
	for _, want := range []string{"Second pass done", "0 messages (0 bytes) copied", "before the cutover, on the old server",
		"after the cutover, on the target", "route now target"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("demo narrative lacks %q:\n%s", want, errOut.String())
		}
	}
	if !strings.Contains(out.String(), "TOTAL (3 mailboxes)") || strings.Contains(out.String()+errOut.String(), "password") {
		t.Errorf("summary:\n%s", out.String())
	}
}
