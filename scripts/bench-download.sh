#!/usr/bin/env bash
# Download throughput: `outpost provision` vs `curl -o` + `sha256sum`, side by side in one run,
# on a 256 MiB file served over TLS by nginx on 127.0.0.1 (CA made here). Median of RUNS runs;
# the ratio is outpost's throughput over curl+sha256sum's (>= 0.9 is the goal).
#
#   scripts/bench-download.sh            (SIZE_MIB=256 RUNS=5 by default)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
size_mib=${SIZE_MIB:-256}
runs=${RUNS:-5}
bash "$here/scripts/setup-debian.sh"
command -v curl >/dev/null || { echo "needs curl" >&2; exit 1; }

(cd "$here" && cargo build --release --locked -q)
outpost="${CARGO_TARGET_DIR:-$here/target}/release/outpost"

work=$(mktemp -d "${TMPDIR:-/var/tmp}/outpost-bench.XXXXXX")
cleanup() { [ -f "$work/nginx/nginx.pid" ] && kill "$(cat "$work/nginx/nginx.pid")" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/www" "$work/nginx/tmp" "$work/pki"
head -c "$((size_mib * 1024 * 1024))" /dev/urandom > "$work/www/big.bin"
sha=$(sha256sum "$work/www/big.bin" | cut -d' ' -f1)
chmod 755 "$work" "$work/www"; chmod 644 "$work/www/big.bin"   # nginx workers run unprivileged

cd "$work/pki"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem -days 2 \
  -subj /CN=bench-ca -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key -out server.csr -subj /CN=localhost 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > ext.cnf
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile ext.cnf 2>/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/nginx/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events {}
http {
  access_log off;
  sendfile on;
  client_body_temp_path $work/nginx/tmp; proxy_temp_path $work/nginx/tmp; fastcgi_temp_path $work/nginx/tmp;
  uwsgi_temp_path $work/nginx/tmp; scgi_temp_path $work/nginx/tmp;
  server { listen 127.0.0.1:$port ssl; ssl_certificate $work/pki/server.pem; ssl_certificate_key $work/pki/server.key;
           location / { root $work/www; } }
}
CONF
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf"
sleep 0.5
url="https://127.0.0.1:$port/big.bin"
printf 'version = 1\n[[models]]\nid = "big"\nsource = "%s"\nsha256 = "%s"\nsize = %d\n' \
  "$url" "$sha" "$((size_mib * 1024 * 1024))" > "$work/models.toml"

now() { date +%s.%N; }
outpost_times=(); curl_times=(); curl_only=()
for i in $(seq "$runs"); do
  rm -rf "$work/cache" "$work/curl.bin"; sync
  t0=$(now)
  OUTPOST_CACHE_DIR="$work/cache" OUTPOST_DOWNLOAD_CA_FILE="$work/pki/ca.pem" OUTPOST_BOARD=x86_64-dev \
    OUTPOST_CONFIG=/dev/null "$outpost" -q provision --manifest "$work/models.toml" >/dev/null
  t1=$(now)
  curl -sS --cacert "$work/pki/ca.pem" -o "$work/curl.bin" "$url"
  tc=$(now)
  got=$(sha256sum "$work/curl.bin" | cut -d' ' -f1)
  t2=$(now)
  curl_only+=("$(echo "$tc - $t1" | bc -l)")
  [ "$got" = "$sha" ] || { echo "curl download corrupt" >&2; exit 1; }
  outpost_times+=("$(echo "$t1 - $t0" | bc -l)"); curl_times+=("$(echo "$t2 - $t1" | bc -l)")
  printf 'run %d: outpost %.2fs  curl+sha256sum %.2fs\n' "$i" "${outpost_times[-1]}" "${curl_times[-1]}"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mo=$(median "${outpost_times[@]}"); mc=$(median "${curl_times[@]}"); mco=$(median "${curl_only[@]}")
printf '\n%-28s %10s %12s\n' tool "median s" "MiB/s"
printf '%-28s %10.2f %12.1f\n' "outpost provision" "$mo" "$(echo "$size_mib / $mo" | bc -l)"
printf '%-28s %10.2f %12.1f\n' "curl -o + sha256sum" "$mc" "$(echo "$size_mib / $mc" | bc -l)"
printf '%-28s %10.2f %12.1f\n' "curl -o alone (no hash)" "$mco" "$(echo "$size_mib / $mco" | bc -l)"
printf 'throughput ratio outpost/(curl+sha256sum): %.2f (goal >= 0.9); outpost/curl alone: %.2f\n' \
  "$(echo "$mc / $mo" | bc -l)" "$(echo "$mco / $mo" | bc -l)"
