#!/bin/sh
# Builds one release archive from this checkout (`make dist` runs it once
# per target):
#
#   sh packaging/dist.sh OUTDIR VERSION COMMIT GOOS GOARCH
#
# OUTDIR/hotswap-VERSION-GOOS-GOARCH.tar.gz holds one directory of that
# name, laid out as the repository is, so that its config.yaml (whose mock
# models run bin/mockbackend) works from it as `make run` does:
#
#   bin/hotswap, bin/hotswap-bench, bin/mockbackend
#   config.yaml, README.md, LICENSE (if any), hotswap.service, install.sh
#
# CGO_ENABLED and CC come from the environment (cgo builds the NVIDIA
# probe in). GO names the go command (default go).
set -eu
[ $# -eq 5 ] || { echo "usage: $0 OUTDIR VERSION COMMIT GOOS GOARCH" >&2; exit 2; }
out=$1 version=$2 commit=$3 goos=$4 goarch=$5
go=${GO:-go}
name=hotswap-$version-$goos-$goarch
stage=$out/.stage/$name
rm -rf "$stage"
mkdir -p "$stage/bin"
ldflags="-s -w -X main.version=$version -X main.commit=$commit"
for c in hotswap hotswap-bench mockbackend; do
	GOOS=$goos GOARCH=$goarch "$go" build -trimpath -ldflags "$ldflags" -o "$stage/bin/$c" "./cmd/$c"
done
cp config.yaml README.md packaging/hotswap.service packaging/install.sh "$stage/"
[ ! -f LICENSE ] || cp LICENSE "$stage/"
chmod 0755 "$stage/install.sh"
# The same tree gives the same bytes: names sorted, owners and times fixed
# (the commit's time), gzip without a timestamp. GNU tar only; another tar
# gives an archive as good, only not byte-for-byte repeatable.
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
if tar --version 2>/dev/null | grep -q 'GNU tar'; then
	(cd "$out/.stage" && tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" -cf - "$name") | gzip -9n >"$out/$name.tar.gz"
else
	(cd "$out/.stage" && tar -cf - "$name") | gzip -9n >"$out/$name.tar.gz"
fi
rm -rf "$stage"
echo "$out/$name.tar.gz (CGO_ENABLED=${CGO_ENABLED:-default}${CC:+, CC=$CC})"
