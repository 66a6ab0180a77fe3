package imapconn

import "testing"

func TestMUTF7(t *testing.T) {
	for in, want := range map[string]string{"M&APw-ller": "Müller", "a&-b": "a&b", "plain": "plain", "&Jjo-!": "☺!", "&2D3eAA-": "😀"} {
		if got := DecodeMUTF7(in); got != want {
			t.Errorf("%q → %q, want %q", in, got, want)
		}
		if got := EncodeMUTF7(want); got != in {
			t.Errorf("%q encoded %q, want %q", want, got, in)
		}
	}
	if got := DecodeMUTF7("bad&"); got != "bad&" {
		t.Errorf("bad& → %q", got)
	}
}
