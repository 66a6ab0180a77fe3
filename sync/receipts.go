package sync

import (
	"bufio"
	"bytes"
	"io"
)

// disarmedHeader replaces "Disposition-Notification-To" letter for letter
// in length, so the message size announced to APPEND stays right.
var (
	receiptHeader  = []byte("disposition-notification-to:")
	disarmedHeader = []byte("X-MF-Receipt-Request-Disarm:")
)

// disarmReceipts streams r, renaming the read-receipt request header in
// the message's header section; the body passes untouched.
func disarmReceipts(r io.Reader) io.Reader {
	return &receiptDisarmer{br: bufio.NewReaderSize(r, 16<<10), inHeader: true}
}

type receiptDisarmer struct {
	br       *bufio.Reader
	inHeader bool
	pending  []byte // the rest of the current header line
	midLine  bool   // the last read ended inside an over-long line
}

func (d *receiptDisarmer) Read(p []byte) (int, error) {
	if len(d.pending) == 0 {
		if !d.inHeader {
			return d.br.Read(p)
		}
		line, err := d.br.ReadSlice('\n')
		wasMid := d.midLine
		d.midLine = err == bufio.ErrBufferFull
		switch {
		case wasMid || d.midLine:
			// Inside an over-long line: no header name to look at.
		case len(line) >= len(receiptHeader) && bytes.EqualFold(line[:len(receiptHeader)], receiptHeader):
			copy(line, disarmedHeader)
		case len(bytes.TrimRight(line, "\r\n")) == 0:
			d.inHeader = false
		}
		if len(line) == 0 && err != nil && err != bufio.ErrBufferFull {
			return 0, err
		}
		d.pending = line
	}
	n := copy(p, d.pending)
	d.pending = d.pending[n:]
	return n, nil
}
