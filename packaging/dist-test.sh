#!/bin/sh
# Checks what `make dist` made (`make dist-test` runs it after make dist):
#
#   sh packaging/dist-test.sh DISTDIR VERSION
#
# SHA256SUMS, each archive's contents and build (go version -m), the Linux
# programs' `hotswap version` (linux-arm64's under qemu-user when it is
# installed), then packaging/'s tests (install.sh into a temporary root,
# systemd-analyze verify, shellcheck) on the linux-amd64 archive.
set -eu
[ $# -eq 2 ] || { echo "usage: $0 DISTDIR VERSION" >&2; exit 2; }
dist=$(cd "$1" && pwd) version=$2
go=${GO:-go}
fail() {
	echo "dist-test: FAIL: $*" >&2
	exit 1
}

(cd "$dist" && sha256sum -c SHA256SUMS) || fail "SHA256SUMS"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/hotswap-dist-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
for target in linux-amd64 linux-arm64 darwin-amd64 darwin-arm64; do
	name=hotswap-$version-$target
	[ -f "$dist/$name.tar.gz" ] || fail "no $name.tar.gz"
	tar -xzf "$dist/$name.tar.gz" -C "$tmp" || fail "unpacking $name.tar.gz"
	for f in bin/hotswap bin/hotswap-bench bin/mockbackend config.yaml README.md hotswap.service install.sh; do
		[ -f "$tmp/$name/$f" ] || fail "$name.tar.gz has no $f"
	done
	goos=${target%-*} goarch=${target#*-}
	cgo=0
	[ "$goos" != linux ] || cgo=${ARM64_CGO:-1}
	[ "$target" != linux-amd64 ] || cgo=1
	for b in hotswap hotswap-bench mockbackend; do
		info=$("$go" version -m "$tmp/$name/bin/$b")
		for want in "GOOS=$goos" "GOARCH=$goarch" "CGO_ENABLED=$cgo"; do
			printf '%s\n' "$info" | grep -q -- "$want" || fail "$name bin/$b: built without $want"
		done
	done
	# -trimpath keeps -ldflags out of the build info: the stamp itself.
	grep -aq -- "$version" "$tmp/$name/bin/hotswap" || fail "$name bin/hotswap: not stamped $version"
	echo "$name: contents and builds (GOOS=$goos GOARCH=$goarch CGO_ENABLED=$cgo) ok"
done

run_version() { # NAME RUNNER...
	name=$1
	shift
	v=$("$@" "$tmp/$name/bin/hotswap" version 2>&1) || fail "$name: hotswap version: $v"
	echo "$name: $v"
	case $v in
	"hotswap $version, "*) ;;
	*) fail "$name: hotswap version does not say $version" ;;
	esac
	case $v in
	*"NVML (GPU memory) compiled in"*) ;;
	*) if [ "$name" != "hotswap-$version-linux-arm64" ] || [ "${ARM64_CGO:-1}" != 0 ]; then fail "$name: no NVML"; fi ;;
	esac
}
run_version "hotswap-$version-linux-amd64"
if command -v qemu-aarch64 >/dev/null 2>&1 && [ -d /usr/aarch64-linux-gnu ]; then
	run_version "hotswap-$version-linux-arm64" qemu-aarch64 -L /usr/aarch64-linux-gnu
else
	echo "hotswap-$version-linux-arm64: NOT run (apt-get install qemu-user libc6-arm64-cross to run it)"
fi

archive=$dist/hotswap-$version-linux-amd64.tar.gz
echo "go test -v ./packaging with HOTSWAP_DIST_ARCHIVE=$archive"
if HOTSWAP_DIST_ARCHIVE=$archive "$go" test -count=1 -v ./packaging >"$tmp/test.log" 2>&1; then ok=yes; else ok=no; fi
grep -E '^(--- |ok|FAIL|PASS)|packaging_test.go' "$tmp/test.log" || true
[ "$ok" = yes ] || { cat "$tmp/test.log"; fail "packaging tests on $archive"; }
echo "dist-test: ok"
