#!/bin/sh
# Fetch the pinned Temporal API protos into $1 (default build/proto), verifying the
# package's sha512 integrity against proto/pin.txt. Nothing fetched is committed.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-build/proto}
set -- $(grep -v '^#' "$here/pin.txt")
pkg=$1 version=$2 integrity=$3
if [ -f "$out/.pin" ] && [ "$(cat "$out/.pin")" = "$pkg@$version $integrity" ]; then exit 0; fi
command -v npm >/dev/null || { echo "fetch.sh: npm is needed to fetch $pkg@$version (apt-get install npm), or set PROTO_DIR" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "$pkg@$version" >/dev/null)
tgz=$(ls "$tmp"/*.tgz)
got="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
if [ "$got" != "$integrity" ]; then
  echo "fetch.sh: integrity mismatch for $pkg@$version: got $got, want $integrity" >&2; exit 1
fi
mkdir -p "$tmp/x"
tar xzf "$tgz" -C "$tmp/x" package/sdk-core/crates/protos/protos
rm -rf "$out"; mkdir -p "$(dirname "$out")"
mv "$tmp/x/package/sdk-core/crates/protos/protos" "$out"
echo "$pkg@$version $integrity" > "$out/.pin"
echo "fetched $pkg@$version protos into $out"
