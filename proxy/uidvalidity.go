package proxy

import "math"

// UIDValidityFloor returns the floor to store in store.Mailbox
// .UIDValidityFloor when a user's route flips (cutover or rollback), given
// seenMax, the largest UIDVALIDITY the proxy may have shown the user on the
// old route (that route's largest value plus the floor in force).
//
// The rule: the proxy shows the client every upstream UIDVALIDITY
// (SELECT/EXAMINE, STATUS, APPENDUID, COPYUID) plus the current floor.
// Upstream values are at least 1, so with floor = seenMax every value the
// client sees after the flip is above every value it saw before, and the
// client drops its cache once (RFC 9051 §2.3.1.1 wants UIDVALIDITY to grow).
// A sum that would pass 2³²−1 is shown as 2³²−1; Office 365's values are
// small, and Dovecot's (Unix times) leave room for a cutover and a rollback.
func UIDValidityFloor(seenMax uint32) uint32 { return seenMax }

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
