#!/bin/sh
# Installs a hotswap release archive (hotswap-VERSION-OS-ARCH.tar.gz, from
# `make dist` or a release page) and, unless told not to, sets hotswap up as
# a systemd service.
#
#   sh install.sh [options] ARCHIVE|URL
#
#   --prefix DIR   where the programs go: DIR/bin (default /usr/local)
#   --root DIR     install under DIR as if it were / (for packaging and
#                  tests): nothing outside it is touched, no user is
#                  created and systemctl is not called
#   --no-service   the programs and documentation only: no unit, no
#                  /etc/hotswap, no user
#   --sums FILE    the SHA256SUMS to verify against (default: the one
#                  beside the archive, or at the URL's directory)
#
# The archive is verified against SHA256SUMS when one is found, and refused
# if it does not match or is not listed. Installed:
#
#   PREFIX/bin/hotswap, hotswap-bench, mockbackend
#   PREFIX/share/doc/hotswap/README.md (and LICENSE)
#   PREFIX/share/hotswap/config.example.yaml, hotswap.service
# and with the service:
#   /etc/systemd/system/hotswap.service  (ExecStart in PREFIX/bin)
#   /etc/hotswap/config.yaml             (only if absent: the example, whose
#                                         mock models run PREFIX/bin/mockbackend)
#   the system user hotswap, in the groups video and render where they exist
set -eu

prog=install.sh
prefix=/usr/local
root=
service=yes
sums=

die() {
	printf '%s: %s\n' "$prog" "$*" >&2
	exit 1
}
say() {
	printf '%s\n' "$*"
}
usage() {
	sed -n '2,/^set -eu/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
	exit 2
}

while [ $# -gt 0 ]; do
	case $1 in
	--prefix) [ $# -ge 2 ] || usage; prefix=$2; shift 2 ;;
	--prefix=*) prefix=${1#*=}; shift ;;
	--root) [ $# -ge 2 ] || usage; root=$2; shift 2 ;;
	--root=*) root=${1#*=}; shift ;;
	--no-service) service=no; shift ;;
	--sums) [ $# -ge 2 ] || usage; sums=$2; shift 2 ;;
	--sums=*) sums=${1#*=}; shift ;;
	-h | --help) usage ;;
	--) shift; break ;;
	-*) die "unknown option $1 (--help lists them)" ;;
	*) break ;;
	esac
done
[ $# -eq 1 ] || usage
archive=$1
case $prefix in
/*) ;;
*) die "--prefix must be an absolute path: $prefix" ;;
esac
if [ -n "$root" ]; then
	mkdir -p "$root" || die "cannot create --root $root"
	root=$(cd "$root" && pwd) || die "cannot enter --root $root"
	[ "$root" != / ] || root=
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/hotswap-install.XXXXXX") || die "cannot make a temporary directory"
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

fetch() { # URL FILE
	if command -v curl >/dev/null 2>&1; then
		curl -fsSL -o "$2" "$1"
	elif command -v wget >/dev/null 2>&1; then
		wget -q -O "$2" "$1"
	else
		die "neither curl nor wget is installed to download $1"
	fi
}

name=${archive##*/}
case $archive in
http://* | https://*)
	say "downloading $archive"
	fetch "$archive" "$tmp/$name" || die "cannot download $archive"
	if [ -z "$sums" ]; then
		if fetch "${archive%/*}/SHA256SUMS" "$tmp/SHA256SUMS" 2>/dev/null; then
			sums=$tmp/SHA256SUMS
		fi
	fi
	archive=$tmp/$name
	;;
*)
	[ -f "$archive" ] || die "no such archive: $archive"
	if [ -z "$sums" ] && [ -f "$(dirname "$archive")/SHA256SUMS" ]; then
		sums=$(dirname "$archive")/SHA256SUMS
	fi
	;;
esac
case $sums in
http://* | https://*)
	fetch "$sums" "$tmp/SHA256SUMS" || die "cannot download $sums"
	sums=$tmp/SHA256SUMS
	;;
esac

if [ -n "$sums" ]; then
	[ -f "$sums" ] || die "no such checksum file: $sums"
	want=$(awk -v n="$name" '{ f = $2; sub(/^\*/, "", f) } f == n { print $1; exit }' "$sums")
	[ -n "$want" ] || die "$name is not listed in $sums"
	if command -v sha256sum >/dev/null 2>&1; then
		got=$(sha256sum "$archive" | awk '{ print $1 }')
	elif command -v shasum >/dev/null 2>&1; then
		got=$(shasum -a 256 "$archive" | awk '{ print $1 }')
	else
		die "neither sha256sum nor shasum is installed to verify $name"
	fi
	[ "$got" = "$want" ] || die "$name does not match $sums: sha256 $got, listed $want"
	say "verified $name against $sums"
else
	say "NOT verified: no SHA256SUMS beside $name (--sums FILE names one)"
fi

mkdir "$tmp/x"
gzip -dc "$archive" | (cd "$tmp/x" && tar -xf -) || die "cannot unpack $name"
src=
for d in "$tmp"/x/hotswap-*; do
	[ -x "$d/bin/hotswap" ] && src=$d && break
done
[ -n "$src" ] || die "$name holds no hotswap-*/bin/hotswap: not a hotswap release archive"

dest=$root$prefix
mkdir -p "$dest/bin" "$dest/share/doc/hotswap" "$dest/share/hotswap" ||
	die "cannot write under $dest (run as root, or choose --prefix \$HOME/.local --no-service)"
for b in "$src"/bin/*; do
	# Beside, then renamed over: a running hotswap keeps its old file.
	cp "$b" "$dest/bin/.${b##*/}.new"
	chmod 0755 "$dest/bin/.${b##*/}.new"
	mv -f "$dest/bin/.${b##*/}.new" "$dest/bin/${b##*/}"
done
for f in README.md LICENSE; do
	[ ! -f "$src/$f" ] || cp "$src/$f" "$dest/share/doc/hotswap/$f"
done
# The example's mock models run bin/mockbackend from the unpacked archive;
# installed, that is PREFIX/bin/mockbackend.
sed "s#\([[:space:]]\)bin/mockbackend#\1$prefix/bin/mockbackend#" "$src/config.yaml" >"$dest/share/hotswap/config.example.yaml"
sed "s#^ExecStart=/usr/local/bin/hotswap#ExecStart=$prefix/bin/hotswap#" "$src/hotswap.service" >"$dest/share/hotswap/hotswap.service"
say "installed $("$dest/bin/hotswap" version 2>&1 || echo "${src##*/} (it does not run on this machine)")"
say "  into $dest/bin"

if [ "$service" = no ]; then
	exit 0
fi
if [ "$(uname -s)" != Linux ]; then
	say "no service set up: systemd is Linux's (run $prefix/bin/hotswap -config FILE yourself)"
	exit 0
fi

mkdir -p "$root/etc/systemd/system" "$root/etc/hotswap"
cp "$dest/share/hotswap/hotswap.service" "$root/etc/systemd/system/hotswap.service"
say "  unit $root/etc/systemd/system/hotswap.service"
if [ -e "$root/etc/hotswap/config.yaml" ]; then
	say "  kept $root/etc/hotswap/config.yaml (the new example is $dest/share/hotswap/config.example.yaml)"
else
	cp "$dest/share/hotswap/config.example.yaml" "$root/etc/hotswap/config.yaml"
	chmod 0644 "$root/etc/hotswap/config.yaml"
	say "  config $root/etc/hotswap/config.yaml (the example: mock backends)"
fi

if [ -n "$root" ]; then
	say "under --root: no user created, systemd not told. The package must create"
	say "the system user hotswap (groups video, render: the GPUs' device nodes)."
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	say "not root: no user created, systemd not told"
	exit 0
fi
if ! id hotswap >/dev/null 2>&1; then
	nologin=$(command -v nologin 2>/dev/null || echo /bin/false)
	if command -v useradd >/dev/null 2>&1; then
		useradd --system --user-group --home-dir /var/lib/hotswap --no-create-home \
			--shell "$nologin" --comment hotswap hotswap || die "cannot create the user hotswap"
	elif command -v adduser >/dev/null 2>&1; then # BusyBox (Alpine)
		if ! { addgroup -S hotswap && adduser -S -D -H -h /var/lib/hotswap -s "$nologin" -G hotswap hotswap; }; then
			die "cannot create the user hotswap"
		fi
	else
		die "neither useradd nor adduser is installed to create the user hotswap"
	fi
	say "  user hotswap"
fi
for g in video render; do
	if getent group "$g" >/dev/null 2>&1; then
		usermod -a -G "$g" hotswap 2>/dev/null || addgroup hotswap "$g" 2>/dev/null ||
			say "  could not add hotswap to the group $g"
	fi
done
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
	systemctl daemon-reload
	say ""
	say "Edit /etc/hotswap/config.yaml, then: systemctl enable --now hotswap"
	say "(after an upgrade: systemctl restart hotswap)"
else
	say "systemd is not running here: the unit is installed but not loaded"
fi
