#!/bin/sh
# Generate protobuf-c sources for every proto listed in proto/files.txt into $3,
# plus registry.inc: one X(descriptor) line per message, enum and service, which
# src/registry.c turns into lookup tables (protobuf-c has no registry by name).
#   genproto.sh API_ROOT EXTRA_ROOT OUT
set -eu
mkdir -p "$3"
api=$(cd "$1" && pwd) extra=$(cd "$2" && pwd) out=$(cd "$3" && pwd)
list=$(dirname "$0")/../proto/files.txt
rm -rf "$out"; mkdir -p "$out"
api_files= extra_files= wkt_files= testsrv_files=
for line in $(grep -v '^#' "$list"); do
  case "$line" in
    wkt:*) wkt_files="$wkt_files ${line#wkt:}" ;;
    extra:*) extra_files="$extra_files ${line#extra:}" ;;
    testsrv:*) testsrv_files="$testsrv_files ${line#testsrv:}" ;;
    *'**') api_files="$api_files $(cd "$api" && find "${line%/\*\*}" -name '*.proto' | sort | tr '\n' ' ')" ;;
    *) api_files="$api_files $line" ;;
  esac
done
# -I/usr/include first so the well-known types match the installed protoc.
(cd /usr/include && protoc-c -I/usr/include --c_out="$out" $wkt_files)
(cd "$extra" && protoc-c -I/usr/include -I. --c_out="$out" $extra_files)
(cd "$api" && protoc-c -I/usr/include -I. --c_out="$out" $api_files)
# The test server's service (TestService) lives in its own tree of the package; an extra
# root without that tree builds without it (client.test_service then has no methods).
if [ -n "$testsrv_files" ]; then
  if [ -d "$extra/testsrv_upstream" ]; then
    (cd "$extra/testsrv_upstream" && protoc-c -I/usr/include -I. -I"$api" --c_out="$out" $testsrv_files)
  else
    echo "genproto: no testsrv_upstream/ under $extra: TestService left out" >&2
  fi
fi
find "$out" -name '*.pb-c.h' | sort | sed "s|^$out/||" | sed 's|.*|#include "&"|' > "$out/all.h"
find "$out" -name '*.pb-c.h' | sort | xargs grep -hoE 'extern const ProtobufC(Message|Enum|Service)Descriptor [a-z0-9_]+__descriptor' \
  | sed -E 's/extern const ProtobufC(Message|Enum|Service)Descriptor ([a-z0-9_]+)/X_\1(\2)/' > "$out/registry.inc"
echo "generated $(find "$out" -name '*.pb-c.c' | wc -l) protobuf-c sources, $(wc -l < "$out/registry.inc") descriptors"
