#!/usr/bin/env bash
# Stops what start.sh started in DIR and removes its data.
set -uo pipefail
dir=$(realpath -m "$1")
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ -d "$dir/pg" ] && [ -n "$pg_bin" ]; then
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$pg_bin/pg_ctl" -D "$dir/pg" -m immediate -s stop 2>/dev/null
  else
    "$pg_bin/pg_ctl" -D "$dir/pg" -m immediate -s stop 2>/dev/null
  fi
fi
[ -f "$dir/s3.pid" ] && kill "$(cat "$dir/s3.pid")" 2>/dev/null
rm -rf "$dir/pg" "$dir/s3.pid"
exit 0
