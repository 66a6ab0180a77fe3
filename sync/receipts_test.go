package sync

import (
	"io"
	"strings"
	"testing"
)

func TestDisarmReceipts(t *testing.T) {
	in := "Subject: x\r\nDisposition-Notification-To: a@b\r\ndisposition-notification-to: c@d\r\n\r\nDisposition-Notification-To: in the body\r\n"
	want := "Subject: x\r\nX-MF-Receipt-Request-Disarm: a@b\r\nX-MF-Receipt-Request-Disarm: c@d\r\n\r\nDisposition-Notification-To: in the body\r\n"
	out, err := io.ReadAll(disarmReceipts(strings.NewReader(in)))
	if err != nil || string(out) != want {
		t.Fatalf("got %q, %v", out, err)
	}
	if len(disarmedHeader) != len(receiptHeader) {
		t.Fatal("the disarmed header changes the message size")
	}
	long := "X-Long: " + strings.Repeat("y", 100_000) + "\r\nDisposition-Notification-To: a@b\r\n\r\nbody"
	if out, _ := io.ReadAll(disarmReceipts(strings.NewReader(long))); string(out) != strings.Replace(long, "Disposition-Notification-To", "X-MF-Receipt-Request-Disarm", 1) {
		t.Fatal("a long header line was changed")
	}
}
