#!/usr/bin/env bash
# mailferry's whole test suite: installs what the tests need when it is
# missing (Dovecot, from the OS packages), then vets, checks formatting,
# cross-builds for Windows and runs every test with the race detector.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
if [ ! -x /usr/sbin/dovecot ]; then
	echo "test.sh: installing dovecot-imapd" >&2
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq dovecot-imapd >/dev/null
fi

if [ ! -x /usr/bin/chromium ]; then
	echo "test.sh: installing chromium (headless, for the status page test)" >&2
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi

if [ ! -x /usr/bin/mbsync ] || [ ! -x /usr/bin/fetchmail ] || [ ! -x /usr/bin/neomutt ] || [ ! -x /usr/bin/tmux ]; then
	echo "test.sh: installing isync, fetchmail, neomutt and tmux (IMAP clients for the proxy tests)" >&2
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq isync fetchmail neomutt tmux >/dev/null
fi

go vet ./...
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change: $unformatted" >&2
	exit 1
fi
GOOS=windows go build ./...
# The .deb installs, and the installed binary runs.
./scripts/package.sh --check
go test -race -count=1 -timeout 20m ./...
