#!/usr/bin/env bash
# Instructions per request, counted by callgrind: what authentication adds to an `auth: none`
# request, in a figure that does not move with the VM's speed (req/s and CPU time on this
# machine drift by ±15% within a run and by 3× between sessions; instruction counts repeat).
#
#   benches/e2e/instructions.sh                 # ~3 min on 2 cores, after the release build
#   SKIP_BUILD=1 SECONDS_PER_TARGET=5 benches/e2e/instructions.sh
#
# It installs what is missing (apt: valgrind wrk nginx redis-server curl), builds
# `cargo build --release` (unless SKIP_BUILD=1), starts a private redis-server and an nginx
# upstream (200 "ok") on free 127.0.0.1 ports in a temp dir, seeds one PAT and one API key
# with the CLI, then for each target starts patgate (server.threads 1) under
# `valgrind --tool=callgrind --instr-atstart=no`, warms it up with wrk, counts the
# instructions of every patgate thread during one wrk run (`callgrind_control -i on/off`),
# and divides by the requests wrk completed. It stops everything it started on exit.
#
# Targets: (c) `auth: none`, (d) warm PAT strict, (e) warm API key strict, (f) warm PAT
# tracked, (k) warm PAT confirmed, (l) warm API key confirmed; the same routes and roles as
# run.sh.
#
# What the count is: user-space instructions of the patgate process (kernel work, such as
# the socket system calls, is not counted).
#
# Settings (environment): SECONDS_PER_TARGET=15 (wrk -d of the counted run), CONNS=8,
# WARMUP=3s, SKIP_BUILD=1, KEEP_TMP=1, PROXY_CPU=0, CLIENT_CPU=1.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"

SECONDS_PER_TARGET="${SECONDS_PER_TARGET:-15}"
CONNS="${CONNS:-8}"
WARMUP="${WARMUP:-3s}"
SKIP_BUILD="${SKIP_BUILD:-0}"
KEEP_TMP="${KEEP_TMP:-0}"
PROXY_CPU="${PROXY_CPU:-0}"
CLIENT_CPU="${CLIENT_CPU:-1}"
BIN="$ROOT/target/release/patgate"

BENCH_NAME=instructions
# shellcheck source=benches/e2e/common.sh
. "$HERE/common.sh"

[[ "$SECONDS_PER_TARGET" =~ ^[1-9][0-9]*$ ]] || die "SECONDS_PER_TARGET must be a positive integer"
[[ "$CONNS" =~ ^[1-9][0-9]*$ ]] || die "CONNS must be a positive integer"

install_missing valgrind wrk nginx redis-server curl taskset=util-linux
if [ "$SKIP_BUILD" != 1 ]; then
  log "cargo build --release"
  cargo build --release --quiet
fi
[ -x "$BIN" ] || die "$BIN is missing (run without SKIP_BUILD=1)"

PIN=1
[ "$(nproc)" -ge 2 ] || PIN=0
pinned() { if [ "$PIN" = 1 ]; then echo "taskset -c $1"; fi; }

TMP="$(mktemp -d /tmp/patgate-instructions.XXXXXX)"
PIDS=()
cleanup() {
  local rc=$? pid
  for pid in "${PIDS[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  if [ "$KEEP_TMP" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

wait_port() { # NAME PORT PID LOG
  local deadline=$((SECONDS + 120))
  until (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; do
    kill -0 "$3" 2>/dev/null || die "$1 exited before accepting connections" "$4"
    [ "$SECONDS" -lt "$deadline" ] || die "$1 does not accept connections on 127.0.0.1:$2" "$4"
    sleep 0.1
  done
}

read -r REDIS_PORT UP_PORT PG_PORT PGT_PORT PGK_PORT <<<"$(python3 -c '
import socket
s = [socket.socket() for _ in range(5)]
for x in s: x.bind(("127.0.0.1", 0))
print(" ".join(str(x.getsockname()[1]) for x in s))')"

mkdir -p "$TMP/redis" "$TMP/nginx-upstream"
# shellcheck disable=SC2046
$(pinned "$CLIENT_CPU") redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" \
  --appendonly no --dir "$TMP/redis" >"$TMP/redis.log" 2>&1 &
PIDS+=($!)
wait_port redis-server "$REDIS_PORT" "$!" "$TMP/redis.log"
sed -e "s|@TMP@|$TMP|g" -e "s|@PORT@|$UP_PORT|g" "$HERE/nginx-upstream.conf.in" >"$TMP/nginx-upstream.conf"
# shellcheck disable=SC2046
$(pinned "$CLIENT_CPU") nginx -p "$TMP/nginx-upstream/" -c "$TMP/nginx-upstream.conf" -e stderr \
  >"$TMP/nginx-upstream.log" 2>&1 &
PIDS+=($!)
wait_port "nginx upstream" "$UP_PORT" "$!" "$TMP/nginx-upstream.log"

write_conf() { # FILE PORT FRESHNESS-LINE
  cat >"$1" <<EOF
listen: 127.0.0.1:$2
redis:
  url: redis://127.0.0.1:$REDIS_PORT/0
  timeout_ms: 2000
$3
verify:
  bcrypt_cost: 4
  pool_threads: 1
server:
  threads: 1
  pid_file: $TMP/patgate-$2.pid
  upgrade_sock: $TMP/patgate-$2.sock
EOF
  sed "s|@UPSTREAM_PORT@|$UP_PORT|g" "$HERE/roles-and-routes.yaml.in" >>"$1"
}
write_conf "$TMP/strict.yaml" "$PG_PORT" ""
write_conf "$TMP/tracked.yaml" "$PGT_PORT" "  freshness: tracked"
write_conf "$TMP/confirmed.yaml" "$PGK_PORT" "  freshness: confirmed"
"$BIN" -c "$TMP/tracked.yaml" check >"$TMP/check.log" 2>&1 || die "patgate check refused the tracked conf" "$TMP/check.log"
"$BIN" -c "$TMP/confirmed.yaml" check >"$TMP/check.log" 2>&1 || die "patgate check refused the confirmed conf" "$TMP/check.log"

cli() { "$BIN" -c "$TMP/strict.yaml" "$@" 2>>"$TMP/seed.log" || die "patgate $* failed" "$TMP/seed.log"; }
cli user put bench --org acme --role member >/dev/null
PAT="$(cli token create --user bench --org acme --name w)"
cli user put root --org acme --role admin >/dev/null
KEY="$(cli apikey create --org acme --role viewer --created-by root --name k)"

# count ID CONF PORT PATH [HEADER]: writes "requests instructions" to
# $TMP/ID.result (run in this shell, not a subshell, so that cleanup sees its process).
count() {
  local id="$1" conf="$2" port="$3" path="$4" header="${5:-}"
  local out="$TMP/$id.callgrind" logf="$TMP/$id.log" pid requests
  # shellcheck disable=SC2046
  env RUST_LOG=warn $(pinned "$PROXY_CPU") valgrind --tool=callgrind --instr-atstart=no \
    --callgrind-out-file="$out" "$BIN" -c "$conf" serve >"$logf" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  wait_port "patgate ($id) under valgrind" "$port" "$pid" "$logf"
  local status
  status="$(curl -sS -o /dev/null -w '%{http_code}' --max-time 60 ${header:+-H "$header"} "http://127.0.0.1:$port$path")"
  [ "$status" = 200 ] || die "($id) answered $status, not 200" "$logf"
  local wrk=(wrk -t1 -c"$CONNS" --timeout 30s ${header:+-H "$header"} "http://127.0.0.1:$port$path")
  # shellcheck disable=SC2046
  $(pinned "$CLIENT_CPU") "${wrk[@]}" -d"$WARMUP" >/dev/null
  callgrind_control -i on "$pid" >/dev/null
  # shellcheck disable=SC2046
  $(pinned "$CLIENT_CPU") "${wrk[@]}" -d"${SECONDS_PER_TARGET}s" >"$TMP/$id.wrk"
  callgrind_control -i off "$pid" >/dev/null
  callgrind_control -d "$pid" >/dev/null
  kill -INT "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  grep -q 'Non-2xx' "$TMP/$id.wrk" && die "($id): wrk saw non-2xx answers" "$TMP/$id.wrk"
  requests="$(awk '/requests in/ {print $1}' "$TMP/$id.wrk")"
  local dump="$out.1"
  [ -s "$dump" ] || die "($id): no callgrind dump" "$logf"
  echo "$requests $(awk '/^totals:/ {print $2}' "$dump")" >"$TMP/$id.result"
}

log "counting (c) auth: none"
count c "$TMP/strict.yaml" "$PG_PORT" /open
read -r C_REQ C_INS <"$TMP/c.result"
log "counting (d) warm PAT, strict"
count d "$TMP/strict.yaml" "$PG_PORT" /api "Authorization: Bearer $PAT"
read -r D_REQ D_INS <"$TMP/d.result"
log "counting (e) warm API key, strict"
count e "$TMP/strict.yaml" "$PG_PORT" /api "X-API-Key: $KEY"
read -r E_REQ E_INS <"$TMP/e.result"
log "counting (f) warm PAT, tracked"
count f "$TMP/tracked.yaml" "$PGT_PORT" /api "Authorization: Bearer $PAT"
read -r F_REQ F_INS <"$TMP/f.result"
log "counting (k) warm PAT, confirmed"
count k "$TMP/confirmed.yaml" "$PGK_PORT" /api "Authorization: Bearer $PAT"
read -r K_REQ K_INS <"$TMP/k.result"
log "counting (l) warm API key, confirmed"
count l "$TMP/confirmed.yaml" "$PGK_PORT" /api "X-API-Key: $KEY"
read -r L_REQ L_INS <"$TMP/l.result"

echo "## Instructions per request (callgrind)"
echo
echo "- command: \`SECONDS_PER_TARGET=$SECONDS_PER_TARGET CONNS=$CONNS WARMUP=$WARMUP benches/e2e/instructions.sh\`"
echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "- machine: nproc=$(nproc), $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
echo "- git: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
echo "- $(valgrind --version); patgate release build, server.threads 1, one wrk -t1 -c$CONNS run per target"
echo
echo "| target | requests counted | instructions / request | above \`auth: none\` |"
echo "|---|---:|---:|---:|"
row() { # LABEL REQ INS
  awk -v l="$1" -v r="$2" -v i="$3" -v ci="$C_INS" -v cr="$C_REQ" 'BEGIN {
    per = i / r; base = ci / cr
    printf "| %s | %d | %.0f | %+.0f |\n", l, r, per, per - base
  }'
}
row "(c) patgate \`auth: none\`" "$C_REQ" "$C_INS"
row "(d) warm PAT, strict" "$D_REQ" "$D_INS"
row "(e) warm API key, strict" "$E_REQ" "$E_INS"
row "(f) warm PAT, tracked" "$F_REQ" "$F_INS"
row "(k) warm PAT, confirmed" "$K_REQ" "$K_INS"
row "(l) warm API key, confirmed" "$L_REQ" "$L_INS"
