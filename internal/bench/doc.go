// Package bench holds mailferry's end-to-end benchmark (bench_test.go): a
// Dovecot source with about 8,000 realistic messages (~450 MB, 24 folders)
// migrated by the `mailferry` binary into empty Dovecot targets, on loopback
// and behind a 24 ms round-trip link, against a minimal pipelined APPEND
// client that gives the limit of each target. It runs only on demand, never
// in CI:
//
//	go test -run '^$' -bench Migration -benchtime 1x -timeout 60m ./internal/bench/
//
// MAILFERRY_BENCH_SCALE=0.1 (any factor in (0, 1]) shrinks the mailbox for a
// quick check. The package has no non-test code.
package bench
