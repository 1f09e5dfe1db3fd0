#!/usr/bin/env bash
# musl malloc vs mimalloc vs glibc malloc on the allocation pattern of per-frame inference
# (examples/alloc_churn.rs), x86_64 builds side by side in one run; median of 5 runs each.
# Needs musl-tools (musl-gcc) and the x86_64-unknown-linux-musl rustup target.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-400}
rustup target list --installed | grep -qx x86_64-unknown-linux-musl || rustup target add x86_64-unknown-linux-musl
command -v musl-gcc >/dev/null || { echo "needs musl-gcc (apt-get install musl-tools)" >&2; exit 1; }

build() { # name target [features]
  cargo build -q --release --example alloc_churn --target "$2" --target-dir "target/bench-alloc-$1" ${3:+--features "$3"}
  echo "target/bench-alloc-$1/$2/release/examples/alloc_churn"
}
glibc=$(build glibc x86_64-unknown-linux-gnu)
musl=$(build musl x86_64-unknown-linux-musl system-allocator)
mimalloc=$(build mimalloc x86_64-unknown-linux-musl)

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
time_of() { for _ in 1 2 3 4 5; do "$1" "$runs" | sed -E 's/.*seconds=([0-9.]+).*/\1/'; done | median; }
g=$(time_of "$glibc"); m=$(time_of "$musl"); mi=$(time_of "$mimalloc")
printf '%-24s %8s %10s\n' allocator seconds "vs glibc"
printf '%-24s %8s %10s\n' "glibc malloc (gnu)" "$g" 1.00
printf '%-24s %8s %10s\n' "musl malloc" "$m" "$(awk "BEGIN{printf \"%.2f\", $m/$g}")"
printf '%-24s %8s %10s\n' "mimalloc (musl, shipped)" "$mi" "$(awk "BEGIN{printf \"%.2f\", $mi/$g}")"
