#!/usr/bin/env bash
# Builds mailferry's release artifacts into dist/ (gitignored):
#   mailferry-VERSION-linux-amd64, mailferry-VERSION-windows-amd64.exe,
#   mailferry_PKGVERSION-1_amd64.deb, mailferry-PKGVERSION-1.x86_64.rpm
# VERSION is `git describe --tags --always --dirty` ("dev" outside git),
# embedded with -X main.version; the packages are described by
# packaging/nfpm.yaml and built with nfpm, run through `go run` (its build is
# cached in the Go build cache, so only the first run compiles it).
#
#   scripts/package.sh           build everything above
#   scripts/package.sh --check   build the .deb, install it with dpkg (as
#                                root), check /usr/bin/mailferry --version,
#                                the unit, the config and the user, and
#                                remove the package again
set -euo pipefail
cd "$(dirname "$0")/.."

# nfpm 2.46 and later need modules that the Go module proxy doesn't serve.
NFPM=github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2

check=no
case "${1:-}" in
"") ;;
--check) check=yes ;;
*)
	echo "usage: $0 [--check]" >&2
	exit 2
	;;
esac
start=$SECONDS

VERSION=$(git describe --tags --always --dirty 2>/dev/null || echo dev)

# pkg_version turns VERSION into a version dpkg and rpm both accept and
# order right: v1.2.3 -> 1.2.3, v1.2.3-4-gabc123-dirty -> 1.2.3+4.gabc123.dirty
# (after 1.2.3), v1.3.0-rc1 -> 1.3.0~rc1 (before 1.3.0), abc123-dirty ->
# 0.0.0+abc123.dirty, dev -> 0.0.0+dev. No "-": rpm forbids it.
pkg_version() {
	local v=${1#v}
	if ! [[ $v =~ ^[0-9]+(\.[0-9]+)+ ]]; then
		echo "0.0.0+${1//-/.}"
		return
	fi
	local base=${v%%-*}
	if [ "$base" = "$v" ]; then
		echo "$v"
		return
	fi
	local rest=${v#*-}
	if [[ $rest =~ ^[0-9]+-g[0-9a-f]+ ]]; then
		echo "$base+${rest//-/.}"
	else
		echo "$base~${rest//-/.}"
	fi
}
PKG_VERSION=$(pkg_version "$VERSION")
export PKG_VERSION

build=dist/build
rm -rf "$build"
mkdir -p "$build/linux-amd64"

gobuild() { # GOOS OUTPUT
	if [ "$check" = yes ]; then
		# Built as `go build` and `go vet` in scripts/test.sh build, so that
		# their cached packages serve: only the link is left.
		GOOS=$1 GOARCH=amd64 go build -ldflags "-X main.version=$VERSION" -o "$2" ./cmd/mailferry
	else
		# Release: static, without this machine's paths.
		CGO_ENABLED=0 GOOS=$1 GOARCH=amd64 go build -trimpath -ldflags "-X main.version=$VERSION" -o "$2" ./cmd/mailferry
	fi
}

nfpm() { # PACKAGER
	go run "$NFPM" package --config packaging/nfpm.yaml --packager "$1" --target dist/ >&2
}

made=()
gobuild linux "$build/linux-amd64/mailferry"

# The packaged config is config/sample.toml with the data directory that
# the unit lets the daemon write.
sed 's|^data = "data"$|data = "/var/lib/mailferry"|' config/sample.toml >"$build/mailferry.conf"
if ! grep -qx 'data = "/var/lib/mailferry"' "$build/mailferry.conf"; then
	echo 'package.sh: config/sample.toml has no line data = "data" to point at /var/lib/mailferry' >&2
	exit 1
fi

deb=dist/mailferry_${PKG_VERSION}-1_amd64.deb
rm -f "$deb"
nfpm deb
made+=("$deb")

if [ "$check" = no ]; then
	cp "$build/linux-amd64/mailferry" "dist/mailferry-$VERSION-linux-amd64"
	made+=("dist/mailferry-$VERSION-linux-amd64")
	gobuild windows "dist/mailferry-$VERSION-windows-amd64.exe"
	made+=("dist/mailferry-$VERSION-windows-amd64.exe")
	rpm=dist/mailferry-${PKG_VERSION}-1.x86_64.rpm
	rm -f "$rpm"
	nfpm rpm
	made+=("$rpm")
	echo "mailferry $VERSION (package version $PKG_VERSION):"
	ls -l "${made[@]}"
	echo "package.sh: done in $((SECONDS - start)) s"
	exit 0
fi

# --check: install the .deb here, look at it, remove it.
fail() {
	echo "package.sh --check: $*" >&2
	exit 1
}
[ "$(id -u)" = 0 ] || fail "needs root (dpkg -i)"
command -v dpkg >/dev/null || fail "needs dpkg"
if dpkg -s mailferry >/dev/null 2>&1; then
	fail "the mailferry package is installed on this machine already; the check would remove it"
fi
user_existed=no
getent passwd mailferry >/dev/null && user_existed=yes
cleanup() {
	dpkg --purge mailferry >/dev/null 2>&1 || true
	if [ "$user_existed" = no ] && getent passwd mailferry >/dev/null; then
		userdel mailferry >/dev/null 2>&1 || true
	fi
}
trap cleanup EXIT

dpkg -i "$deb" >/dev/null
got=$(/usr/bin/mailferry --version) || fail "/usr/bin/mailferry --version failed"
[ "$got" = "mailferry version $VERSION" ] || fail "/usr/bin/mailferry --version says \"$got\", want \"mailferry version $VERSION\""
cmp -s /usr/lib/systemd/system/mailferry.service packaging/mailferry.service || fail "the unit is not /usr/lib/systemd/system/mailferry.service"
grep -qx 'data = "/var/lib/mailferry"' /etc/mailferry/mailferry.conf || fail "/etc/mailferry/mailferry.conf lacks the packaged data directory"
[ "$(stat -c %G:%a /etc/mailferry/mailferry.conf)" = mailferry:640 ] || fail "/etc/mailferry/mailferry.conf is $(stat -c %U:%G:%a /etc/mailferry/mailferry.conf), want root:mailferry 640"
[ -f /etc/mailferry/users.csv.sample ] || fail "no /etc/mailferry/users.csv.sample"
getent passwd mailferry >/dev/null || fail "the user mailferry was not created"
[ "$(stat -c %U:%a /var/lib/mailferry)" = mailferry:750 ] || fail "/var/lib/mailferry is $(stat -c %U:%a /var/lib/mailferry), want mailferry:750"
[ "$(stat -c %U /var/log/mailferry)" = mailferry ] || fail "/var/log/mailferry is not owned by mailferry"

dpkg -r mailferry >/dev/null
[ ! -e /usr/bin/mailferry ] || fail "dpkg -r left /usr/bin/mailferry"
[ ! -e /usr/lib/systemd/system/mailferry.service ] || fail "dpkg -r left the unit"
dpkg --purge mailferry >/dev/null
trap - EXIT
cleanup
echo "package.sh --check: $deb installs, /usr/bin/mailferry --version says $VERSION, the unit, config and user are in place, and it removes cleanly ($((SECONDS - start)) s)"
