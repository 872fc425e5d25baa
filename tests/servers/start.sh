#!/usr/bin/env bash
# Starts the throw-away servers the test suite talks to, on loopback and free
# ports, with their data under DIR:
#   - a PostgreSQL cluster (Debian's packages; as the `postgres` user when run
#     as root, since initdb refuses root);
#   - an S3-compatible server (moto, from PyPI, in a virtualenv under DIR).
# Prints `export NAME=VALUE` lines for the test suite; `stop.sh DIR` stops them.
#   eval "$(tests/servers/start.sh DIR [postgres] [s3])"     (both when none is named)
set -euo pipefail
dir=$(realpath -m "$1")
shift
want=("$@")
[ "${#want[@]}" -gt 0 ] || want=(postgres s3)
wanted() { [[ " ${want[*]} " == *" $1 "* ]]; }
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$dir"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for() { # what, command...
  local what=$1; shift
  for _ in $(seq 1 100); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "start.sh: $what did not start" >&2
  return 1
}

start_postgres() {
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -n "$pg_bin" ] || { echo "start.sh: PostgreSQL is not installed (Debian: postgresql)" >&2; exit 1; }
  pg_data="$dir/pg"
  pg_port=$(free_port)
  as_pg=()
  if [ "$(id -u)" = 0 ]; then
    as_pg=(runuser -u postgres --)
    mkdir -p "$pg_data"
    chown postgres: "$dir" "$pg_data"
  fi
  "${as_pg[@]}" "$pg_bin/initdb" -D "$pg_data" -A trust -U postgres -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
  # Throw-away data: durability settings off for speed.
  "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_data" -l "$dir/pg.log" -w -s \
    -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $pg_data -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
    start >&2 || { cat "$dir/pg.log" >&2; exit 1; }
  echo "export DISKETTE_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:$pg_port/postgres"
}

start_s3() {
  venv="${DISKETTE_TEST_S3_VENV:-$dir/moto-venv}"
  if [ ! -x "$venv/bin/moto_server" ]; then
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --disable-pip-version-check --no-input --quiet -r "$here/s3-requirements.txt" >&2
  fi
  s3_port=$(free_port)
  "$venv/bin/moto_server" -H 127.0.0.1 -p "$s3_port" >"$dir/s3.log" 2>&1 &
  echo $! >"$dir/s3.pid"
  wait_for "the S3 server" python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$s3_port/')"
  echo "export DISKETTE_TEST_S3_ENDPOINT=http://127.0.0.1:$s3_port"
}

for w in "${want[@]}"; do
  case $w in
    postgres | s3) ;;
    *) echo "start.sh: unknown server $w (known: postgres, s3)" >&2; exit 2 ;;
  esac
done
if wanted postgres; then start_postgres; fi
if wanted s3; then start_s3; fi
