#!/usr/bin/env bash
# Fuzz the manifest parser and the archive reader for a bounded time each,
# seeded with the Diskette 0.6.0 reference archives of the test suite. Not
# run in CI.
#
#   bash bench/fuzz.sh [SECONDS_PER_TARGET]     (default 300)
#
# Needs a nightly toolchain (`rustup toolchain install nightly`) and cargo-fuzz
# (`cargo install cargo-fuzz`). A crash leaves its input under
# bench/fuzz/artifacts/<target>/: turn each one into a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-300}
fuzz_dir=bench/fuzz
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

mkdir -p "$corpus/archive" "$corpus/manifest"
cp tests/fixtures/diskette-0.6.0/*.tar.gz "$corpus/archive/"
for f in "$corpus"/archive/*.tar.gz; do
  tar xzOf "$f" manifest.json > "$corpus/manifest/$(basename "$f" .tar.gz).json" 2>/dev/null || true
done

for target in manifest archive; do
  echo "== $target: ${seconds}s"
  cargo +nightly fuzz run --fuzz-dir "$fuzz_dir" "$target" "$corpus/$target" -- \
    -max_total_time="$seconds" -max_len=1048576 -timeout=20 -rss_limit_mb=1024
done
