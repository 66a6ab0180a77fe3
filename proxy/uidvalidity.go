package proxy

import "math"

// UIDValidityFloor returns the floor to store in store.Mailbox
// .UIDValidityFloor at a user's cutover, given sourceMax, the largest
// UIDVALIDITY the user may have seen before: the largest of the source's
// folders and, after an earlier cutover and rollback, of the values the proxy
// showed then (earlier floor + target UIDVALIDITY).
//
// The rule: after cutover the proxy shows the client every target
// UIDVALIDITY (SELECT/EXAMINE, STATUS, APPENDUID, COPYUID) plus the floor.
// Target values are at least 1, so with floor = sourceMax every value the
// client sees afterwards is above every value it saw before, and the client
// drops its cache once (RFC 9051 §2.3.1.1 wants UIDVALIDITY to grow). A sum
// that would pass 2³²−1 is shown as 2³²−1; pick target servers and floors
// so that this never happens (Office 365's values are small; Dovecot's are
// Unix times, so two Dovecots still fit until about 2038).
//
// Before cutover, and after a rollback, clients see the source's own values:
// a rollback does make them go down.
func UIDValidityFloor(sourceMax uint32) uint32 { return sourceMax }

// uidValidity is the UIDVALIDITY the client sees for an upstream value.
func (s *session) uidValidity(v uint32) uint32 {
	if v == 0 || s.floor == 0 {
		return v
	}
	if sum := uint64(v) + uint64(s.floor); sum <= math.MaxUint32 {
		return uint32(sum)
	}
	return math.MaxUint32
}
