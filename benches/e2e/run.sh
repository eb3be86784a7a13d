#!/usr/bin/env bash
# End-to-end benchmark of patgate against nginx, in one command:
#
#   benches/e2e/run.sh                                   # full run (~8 min on 2 cores)
#   DURATION=2s REPS=1 COLD_TOKENS=200 benches/e2e/run.sh   # smoke run (~1 min)
#
# It installs what is missing (apt: wrk nginx cmake redis-server curl), builds
# `cargo build --release`, then starts everything itself on free 127.0.0.1 ports in a temp
# dir, and stops all of it on exit: a private redis-server, an nginx upstream (200 "ok"), an
# nginx reverse proxy to it, and patgate instances (strict; tracked and confirmed if the conf
# keys exist; cold with bcrypt cost 6). It never touches anything it did not start. Then it
# runs wrk against every target, interleaved round-robin for REPS reps after a warm-up, and
# prints a markdown report on stdout (progress goes to stderr):
#
#   (a) direct to the nginx upstream      (e) patgate, warm API key, strict
#   (b) nginx proxy_pass                  (f) patgate, warm PAT, redis.freshness: tracked
#   (c) patgate `auth: none` route        (g) patgate, cold PATs: each presented once
#   (d) patgate, warm PAT, strict             (a bcrypt verification per request), the bcrypt
#                                             pool thread on the proxy's CPU
#   (h) patgate, warm PATs, strict, WARM_TOKENS distinct tokens and owners in rotation
#   (i) as (g), with the bcrypt pool thread moved to CLIENT_CPU (the client side is light then)
#   (k) patgate, warm PAT, redis.freshness: confirmed
#   (l) patgate, warm API key, redis.freshness: confirmed
#
# Cold PATs are compared with what one bcrypt thread does alone on the same CPU, measured in
# the same run: each rep also runs the criterion bench `bcrypt_verify/6` pinned to each of
# the two CPUs (so a VM whose vCPUs differ in speed is compared fairly).
#
# Settings (environment):
#   DURATION=10s     wrk -d of each measured run
#   REPS=3           interleaved repetitions; the table shows medians
#   WARMUP=2s        wrk -d of the warm-up of each target (0 to skip)
#   CONNS=32         wrk -c (always -t1)
#   TIMEOUT=10s      wrk --timeout (high, because warm PATs without a cache wait on bcrypt)
#   COLD_TOKENS=3000 distinct PATs created for (g) and (i), split evenly across them and the reps
#   COLD_JOBS=2      parallel CLI processes creating them
#   WARM_TOKENS=256  distinct PATs (one owner each) rotated through by (h)
#   CACHE_ENTRIES=   if set, `verify.cache_entries: N` in every patgate conf
#   PROXY_CPU=0      CPU of the proxy under test (patgate, nginx proxy)
#   CLIENT_CPU=1     CPU of wrk, the nginx upstream and redis-server (and of the pool thread in (i))
#   DIRECT_CLIENT_CPU=$PROXY_CPU   CPU of wrk for (a), where no proxy runs
#   SKIP_BUILD=1     use the existing target/release/patgate
#   KEEP_TMP=1       keep the temp dir (confs, logs, raw wrk outputs)
#   PAIR_REPS=$REPS  reps of the concurrent pairs (5b: (b), (c), (d), (e), (t), (f), (u), (k),
#                    (l) each at the same time as `auth: none` on a second patgate sharing the
#                    proxy's CPU; (t) and (u) are `auth: none` on the tracked and the confirmed
#                    instance, the controls of (f) and of (k), (l)); 0 to skip
#   REFERENCE_WORK_STEALING=1  the reference runs with `server.work_stealing: true` (Pingora's
#                    default runtime), so the pairs' "vs the reference" column compares the
#                    two runtimes; the per-core figures over each instance's control do not
#                    depend on it
#   START_TIMEOUT=30 seconds each server gets to accept connections
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"

# The command as typed, with the settings that came from the environment.
SETTINGS=(DURATION REPS WARMUP CONNS TIMEOUT COLD_TOKENS COLD_JOBS WARM_TOKENS CACHE_ENTRIES PROXY_CPU
  CLIENT_CPU DIRECT_CLIENT_CPU SKIP_BUILD KEEP_TMP START_TIMEOUT PAIR_REPS REFERENCE_WORK_STEALING)
CMD_LINE=""
for v in "${SETTINGS[@]}"; do
  if [ -n "${!v+x}" ]; then CMD_LINE+="$v=${!v} "; fi
done
CMD_LINE+="benches/e2e/run.sh"
for a in "$@"; do CMD_LINE+=" $a"; done

DURATION="${DURATION:-10s}"
REPS="${REPS:-3}"
WARMUP="${WARMUP:-2s}"
CONNS="${CONNS:-32}"
TIMEOUT="${TIMEOUT:-10s}"
COLD_TOKENS="${COLD_TOKENS:-3000}"
COLD_JOBS="${COLD_JOBS:-2}"
WARM_TOKENS="${WARM_TOKENS:-256}"
CACHE_ENTRIES="${CACHE_ENTRIES:-}"
PROXY_CPU="${PROXY_CPU:-0}"
CLIENT_CPU="${CLIENT_CPU:-1}"
DIRECT_CLIENT_CPU="${DIRECT_CLIENT_CPU:-$PROXY_CPU}"
SKIP_BUILD="${SKIP_BUILD:-0}"
KEEP_TMP="${KEEP_TMP:-0}"
START_TIMEOUT="${START_TIMEOUT:-30}"
PAIR_REPS="${PAIR_REPS:-$REPS}"
REFERENCE_WORK_STEALING="${REFERENCE_WORK_STEALING:-0}"

BIN="$ROOT/target/release/patgate"

BENCH_NAME=e2e
# shellcheck source=benches/e2e/common.sh
. "$HERE/common.sh"

[[ "$REPS" =~ ^[1-9][0-9]*$ ]] || die "REPS must be a positive integer (got '$REPS')"
[[ "$COLD_TOKENS" =~ ^[1-9][0-9]*$ ]] || die "COLD_TOKENS must be a positive integer (got '$COLD_TOKENS')"
[ "$COLD_TOKENS" -ge $((2 * REPS)) ] || die "COLD_TOKENS ($COLD_TOKENS) must be at least 2 × REPS ($((2 * REPS)))"
[[ "$WARM_TOKENS" =~ ^[1-9][0-9]*$ ]] || die "WARM_TOKENS must be a positive integer (got '$WARM_TOKENS')"
[[ "$CONNS" =~ ^[1-9][0-9]*$ ]] || die "CONNS must be a positive integer (got '$CONNS')"
[[ "$PAIR_REPS" =~ ^(0|[1-9][0-9]*)$ ]] || die "PAIR_REPS must be a number (got '$PAIR_REPS')"
[[ "$REFERENCE_WORK_STEALING" =~ ^[01]$ ]] || die "REFERENCE_WORK_STEALING must be 0 or 1 (got '$REFERENCE_WORK_STEALING')"
if [ -n "$CACHE_ENTRIES" ] && ! [[ "$CACHE_ENTRIES" =~ ^[0-9]+$ ]]; then
  die "CACHE_ENTRIES must be a number (got '$CACHE_ENTRIES')"
fi

# ---------------------------------------------------------------------------------------
# 1. Tools and build
# ---------------------------------------------------------------------------------------
install_missing wrk nginx cmake redis-server curl taskset=util-linux

if [ "$SKIP_BUILD" = 1 ]; then
  log "SKIP_BUILD=1: using the existing $BIN"
else
  log "cargo build --release"
  cargo build --release >&2 || die "cargo build --release failed"
fi
[ -x "$BIN" ] || die "$BIN not found (build it, or unset SKIP_BUILD)"
# The criterion bench that times bcrypt alone (its executable, run pinned below).
hasher_exe() { ls -t "$ROOT"/target/release/deps/hasher-* 2>/dev/null | grep -v '\.d$' | head -n 1 || true; }
if [ "$SKIP_BUILD" != 1 ] || [ -z "$(hasher_exe)" ]; then
  log "cargo bench --bench hasher --no-run (bcrypt alone, for the cold targets' capacity)"
  cargo bench --bench hasher --no-run >&2 || die "cargo bench --bench hasher --no-run failed"
fi
HASHER="$(hasher_exe)"
[ -x "$HASHER" ] || die "the hasher bench executable is not in target/release/deps"

NPROC="$(nproc)"
if [ "$NPROC" -ge 2 ]; then
  PIN=1
  for c in "$PROXY_CPU" "$CLIENT_CPU" "$DIRECT_CLIENT_CPU"; do
    [[ "$c" =~ ^[0-9]+$ ]] && [ "$c" -lt "$NPROC" ] || die "CPU '$c' is not one of 0..$((NPROC - 1))"
  done
else
  PIN=0
  log "only $NPROC CPU: no pinning"
fi
# pinned CPU: sets PINNED to the prefix that pins a command to CPU (empty without pinning).
# A prefix array rather than a wrapper function, so that `"${PINNED[@]}" cmd &` leaves $! the
# command's own pid (taskset execs it) and not that of a subshell.
pinned() {
  if [ "$PIN" = 1 ]; then PINNED=(taskset -c "$1"); else PINNED=(); fi
}

# ---------------------------------------------------------------------------------------
# 2. Temp dir, process bookkeeping, cleanup
# ---------------------------------------------------------------------------------------
TMP="$(mktemp -d /tmp/patgate-e2e.XXXXXX)"
PIDS=()  # every process this script started in the background
SIGS=()  # the signal that stops each one promptly
NAMES=()
WRK_PID=""

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  # shellcheck disable=SC2086 # one pid, or two in a concurrent pair
  if [ -n "$WRK_PID" ]; then kill $WRK_PID 2>/dev/null; fi
  local i pid kids=()
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    pid="${PIDS[i]}"
    if kill -0 "$pid" 2>/dev/null; then
      # nginx workers are children of the master we started; remember them in case the
      # master has to be killed hard.
      kids+=($(ps -o pid= --ppid "$pid" 2>/dev/null))
      kill -"${SIGS[i]}" "$pid" 2>/dev/null
    fi
  done
  local deadline=$((SECONDS + 5))
  for pid in "${PIDS[@]}" "${kids[@]}"; do
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.05; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  done
  wait 2>/dev/null
  if [ "$KEEP_TMP" = 1 ]; then
    log "kept $TMP"
  else
    rm -rf "$TMP"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME SIGNAL LOGFILE CPU CMD...: start CMD in the background, pinned, output to LOGFILE.
# Sets STARTED_PID.
start() {
  local name="$1" sig="$2" logf="$3" cpu="$4"
  shift 4
  pinned "$cpu"
  ${PINNED[@]+"${PINNED[@]}"} "$@" >"$logf" 2>&1 &
  STARTED_PID=$!
  PIDS+=("$STARTED_PID")
  SIGS+=("$sig")
  NAMES+=("$name")
}

# wait_port NAME PORT PID LOGFILE: poll until 127.0.0.1:PORT accepts, or fail with the log.
wait_port() {
  local name="$1" port="$2" pid="$3" logf="$4"
  local deadline=$((SECONDS + START_TIMEOUT))
  while :; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    kill -0 "$pid" 2>/dev/null || die "$name exited before accepting connections on 127.0.0.1:$port" "$logf"
    [ "$SECONDS" -lt "$deadline" ] || die "$name does not accept connections on 127.0.0.1:$port after ${START_TIMEOUT}s" "$logf"
    sleep 0.05
  done
}

# free_ports N: N distinct free loopback ports (bound all at once to port 0, then released).
free_ports() {
  if command -v python3 >/dev/null 2>&1; then
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
  else
    local out=() p
    while [ ${#out[@]} -lt "$1" ]; do
      p=$((20000 + RANDOM % 40000))
      [[ " ${out[*]} " == *" $p "* ]] && continue
      (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
      out+=("$p")
    done
    echo "${out[*]}"
  fi
}

read -r REDIS_PORT UP_PORT NGX_PORT PG_PORT PGT_PORT PGC_PORT PGR_PORT PGK_PORT <<<"$(free_ports 8)"
log "temp dir $TMP; ports: redis $REDIS_PORT, upstream $UP_PORT, nginx proxy $NGX_PORT, patgate $PG_PORT / tracked $PGT_PORT / confirmed $PGK_PORT / cold $PGC_PORT / reference $PGR_PORT"

# ---------------------------------------------------------------------------------------
# 3. Redis, nginx upstream, nginx proxy
# ---------------------------------------------------------------------------------------
mkdir -p "$TMP/redis"
start redis TERM "$TMP/redis.log" "$CLIENT_CPU" \
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
  --daemonize no --dir "$TMP/redis"
REDIS_PID=$STARTED_PID
wait_port redis-server "$REDIS_PORT" "$REDIS_PID" "$TMP/redis.log"

# render TEMPLATE OUT NAME PORT: fill an nginx conf template.
render() {
  sed -e "s|@TMP@|$TMP|g" -e "s|@PORT@|$4|g" -e "s|@UPSTREAM_PORT@|$UP_PORT|g" "$1" >"$2"
  mkdir -p "$TMP/$3"
}
render "$HERE/nginx-upstream.conf.in" "$TMP/nginx-upstream.conf" nginx-upstream "$UP_PORT"
render "$HERE/nginx-proxy.conf.in" "$TMP/nginx-proxy.conf" nginx-proxy "$NGX_PORT"

start nginx-upstream TERM "$TMP/nginx-upstream.log" "$CLIENT_CPU" \
  nginx -p "$TMP/nginx-upstream/" -c "$TMP/nginx-upstream.conf" -e stderr
UP_PID=$STARTED_PID
wait_port "nginx upstream" "$UP_PORT" "$UP_PID" "$TMP/nginx-upstream.log"

start nginx-proxy TERM "$TMP/nginx-proxy.log" "$PROXY_CPU" \
  nginx -p "$TMP/nginx-proxy/" -c "$TMP/nginx-proxy.conf" -e stderr
NGX_PID=$STARTED_PID
wait_port "nginx proxy" "$NGX_PORT" "$NGX_PID" "$TMP/nginx-proxy.log"

# ---------------------------------------------------------------------------------------
# 4. patgate confs, seed data, patgate instances
# ---------------------------------------------------------------------------------------
# write_conf FILE NAME PORT BCRYPT_COST FRESHNESS(empty = the default, strict) [WORK_STEALING]
write_conf() {
  local file="$1" name="$2" port="$3" cost="$4" freshness="$5" stealing="${6:-}"
  {
    echo "# generated by benches/e2e/run.sh ($name)"
    echo "listen: 127.0.0.1:$port"
    echo "redis:"
    echo "  url: redis://127.0.0.1:$REDIS_PORT/0"
    echo "  timeout_ms: 200"
    if [ -n "$freshness" ]; then echo "  freshness: $freshness"; fi
    echo "verify:"
    echo "  bcrypt_cost: $cost"
    echo "  pool_threads: 1"
    if [ -n "$CACHE_ENTRIES" ]; then echo "  cache_entries: $CACHE_ENTRIES"; fi
    cat <<EOF
server:
  threads: 1
${stealing:+  work_stealing: $stealing
}  pid_file: $TMP/patgate-$name.pid
  upgrade_sock: $TMP/patgate-$name.sock
EOF
    sed "s|@UPSTREAM_PORT@|$UP_PORT|g" "$HERE/roles-and-routes.yaml.in"
  } >"$file"
}
CONF="$TMP/patgate-strict.yaml"
CONF_T="$TMP/patgate-tracked.yaml"
CONF_K="$TMP/patgate-confirmed.yaml"
CONF_C="$TMP/patgate-cold.yaml"
write_conf "$CONF" strict "$PG_PORT" 10 ""
write_conf "$CONF_T" tracked "$PGT_PORT" 10 tracked
write_conf "$CONF_K" confirmed "$PGK_PORT" 10 confirmed
write_conf "$CONF_C" cold "$PGC_PORT" 6 ""
# The reference of the concurrent pairs (5b): the strict conf on its own port and process.
CONF_R="$TMP/patgate-reference.yaml"
write_conf "$CONF_R" reference "$PGR_PORT" 10 "" "$([ "$REFERENCE_WORK_STEALING" = 1 ] && echo true)"

"$BIN" -c "$CONF" check >"$TMP/check-strict.log" 2>&1 ||
  die "patgate check refused the strict conf $CONF" "$TMP/check-strict.log" "$CONF"
"$BIN" -c "$CONF_C" check >"$TMP/check-cold.log" 2>&1 ||
  die "patgate check refused the cold conf $CONF_C" "$TMP/check-cold.log" "$CONF_C"
# check_mode FRESHNESS CONF TARGETS: whether `patgate check` accepts CONF (1 or 0, in
# CHECKED); when it does not, its first lines go to CHECK_NOTE and the skip to the log.
check_mode() {
  CHECKED=1
  CHECK_NOTE=""
  if ! "$BIN" -c "$2" check >"$TMP/check-$1.log" 2>&1; then
    CHECKED=0
    CHECK_NOTE="$(grep -v '^[[:space:]]*$' "$TMP/check-$1.log" | head -n 3 | tr '\n' ' ')"
    log "NOTE: skipping $3 $1: \`patgate check\` refuses \`redis.freshness: $1\`: $CHECK_NOTE"
  fi
}
check_mode tracked "$CONF_T" "(f)"
TRACKED=$CHECKED TRACKED_NOTE=$CHECK_NOTE
check_mode confirmed "$CONF_K" "(k), (l)"
CONFIRMED=$CHECKED CONFIRMED_NOTE=$CHECK_NOTE

# cli CONF ARGS...: one CLI command; its stderr goes to the seed log.
cli() {
  local conf="$1"
  shift
  "$BIN" -c "$conf" "$@" 2>>"$TMP/seed.log" || die "patgate $* failed" "$TMP/seed.log"
}
log "seeding: user bench (member), PAT; user root (admin), API key (viewer)"
cli "$CONF" user put bench --org acme --role member >/dev/null
PAT="$(cli "$CONF" token create --user bench --org acme --name w)"
cli "$CONF" user put root --org acme --role admin >/dev/null
KEY="$(cli "$CONF" apikey create --org acme --role viewer --created-by root --name k)"
[[ "$PAT" == pat_* ]] || die "token create printed '$PAT', not a PAT" "$TMP/seed.log"
[[ "$KEY" == key_* ]] || die "apikey create printed '$KEY', not an API key" "$TMP/seed.log"

# Tokens for each cold run: (g) and (i) in every rep.
PER_REP=$((COLD_TOKENS / (2 * REPS)))
log "creating $((2 * PER_REP * REPS + 1)) cold PATs (bcrypt cost 6) with $COLD_JOBS parallel CLI processes"
cli "$CONF_C" user put cold --org acme --role member >/dev/null
COLD_SANITY="$(cli "$CONF_C" token create --user cold --org acme --name sanity)"
t0=$SECONDS
: >"$TMP/cold-tokens.txt"
seq 1 $((2 * PER_REP * REPS)) |
  xargs -P "$COLD_JOBS" -I{} "$BIN" -c "$CONF_C" token create --user cold --org acme --name "c{}" \
    >>"$TMP/cold-tokens.txt" 2>>"$TMP/seed.log" ||
  die "creating cold PATs failed" "$TMP/seed.log"
got="$(grep -c '^pat_' "$TMP/cold-tokens.txt" || true)"
uniq_got="$(sort -u "$TMP/cold-tokens.txt" | grep -c '^pat_' || true)"
[ "$got" -eq $((2 * PER_REP * REPS)) ] && [ "$uniq_got" -eq "$got" ] ||
  die "expected $((2 * PER_REP * REPS)) distinct cold PATs, got $got ($uniq_got distinct)" "$TMP/seed.log"
log "  $got cold PATs in $((SECONDS - t0))s"
chunk=0
for ((r = 1; r <= REPS; r++)); do
  for id in g i; do
    sed -n "$((chunk * PER_REP + 1)),$(((chunk + 1) * PER_REP))p" "$TMP/cold-tokens.txt" >"$TMP/cold-tokens-$id-$r.txt"
    chunk=$((chunk + 1))
  done
done

# (h): one owner per token, created at cost 6 through the cold conf (same Redis; the strict
# instance verifies each stored hash at the cost it was made with).
log "creating $WARM_TOKENS warm PATs for (h), one owner each"
seq 1 "$WARM_TOKENS" |
  xargs -P "$COLD_JOBS" -I{} sh -c '"$1" -c "$2" user put "w$3" --org acme --role member >/dev/null &&
    "$1" -c "$2" token create --user "w$3" --org acme --name "w$3"' _ "$BIN" "$CONF_C" {} \
    >"$TMP/warm-tokens.txt" 2>>"$TMP/seed.log" ||
  die "creating warm PATs failed" "$TMP/seed.log"
[ "$(sort -u "$TMP/warm-tokens.txt" | grep -c '^pat_')" -eq "$WARM_TOKENS" ] ||
  die "expected $WARM_TOKENS distinct warm PATs in $TMP/warm-tokens.txt" "$TMP/seed.log"

# start_patgate NAME CONF PORT: start an instance on PROXY_CPU; sets STARTED_PID.
start_patgate() {
  local name="$1" conf="$2" port="$3"
  start "patgate-$name" INT "$TMP/patgate-$name.log" "$PROXY_CPU" \
    env RUST_LOG=warn "$BIN" -c "$conf" serve
  wait_port "patgate ($name)" "$port" "$STARTED_PID" "$TMP/patgate-$name.log"
}
# Pingora: SIGINT is its fast shutdown (SIGTERM would wait out the grace period).
start_patgate strict "$CONF" "$PG_PORT"
PG_PID=$STARTED_PID
PGT_PID=""
if [ "$TRACKED" = 1 ]; then
  start_patgate tracked "$CONF_T" "$PGT_PORT"
  PGT_PID=$STARTED_PID
fi
PGK_PID=""
if [ "$CONFIRMED" = 1 ]; then
  start_patgate confirmed "$CONF_K" "$PGK_PORT"
  PGK_PID=$STARTED_PID
fi
start_patgate cold "$CONF_C" "$PGC_PORT"
PGC_PID=$STARTED_PID
PGR_PID=""
if [ "$PAIR_REPS" -gt 0 ] && [ "$PIN" = 1 ]; then
  start_patgate reference "$CONF_R" "$PGR_PORT"
  PGR_PID=$STARTED_PID
fi

# expect NAME STATUS LOGFILE CURL_ARGS...: one request must answer STATUS.
expect() {
  local name="$1" want="$2" logf="$3"
  shift 3
  local got
  got="$(curl -sS -o "$TMP/curl-body" -w '%{http_code}' --max-time 10 "$@" 2>"$TMP/curl-err")" || got="curl error: $(cat "$TMP/curl-err")"
  [ "$got" = "$want" ] || die "sanity check $name: expected $want, got $got; body: $(head -c 300 "$TMP/curl-body" 2>/dev/null)" "$logf"
}
expect "(a) direct" 200 "$TMP/nginx-upstream.log" "http://127.0.0.1:$UP_PORT/"
expect "(b) nginx proxy" 200 "$TMP/nginx-proxy.log" "http://127.0.0.1:$NGX_PORT/"
expect "(c) patgate /open" 200 "$TMP/patgate-strict.log" "http://127.0.0.1:$PG_PORT/open"
if [ -n "$PGR_PID" ]; then
  expect "reference /open" 200 "$TMP/patgate-reference.log" "http://127.0.0.1:$PGR_PORT/open"
fi
expect "patgate /api without credential" 401 "$TMP/patgate-strict.log" "http://127.0.0.1:$PG_PORT/api"
expect "(d) patgate PAT" 200 "$TMP/patgate-strict.log" -H "Authorization: Bearer $PAT" "http://127.0.0.1:$PG_PORT/api"
expect "(e) patgate API key" 200 "$TMP/patgate-strict.log" -H "X-API-Key: $KEY" "http://127.0.0.1:$PG_PORT/api"
if [ "$TRACKED" = 1 ]; then
  expect "(f) patgate tracked PAT" 200 "$TMP/patgate-tracked.log" -H "Authorization: Bearer $PAT" "http://127.0.0.1:$PGT_PORT/api"
fi
if [ "$CONFIRMED" = 1 ]; then
  expect "(u) patgate confirmed /open" 200 "$TMP/patgate-confirmed.log" "http://127.0.0.1:$PGK_PORT/open"
  expect "(k) patgate confirmed PAT" 200 "$TMP/patgate-confirmed.log" -H "Authorization: Bearer $PAT" "http://127.0.0.1:$PGK_PORT/api"
  expect "(l) patgate confirmed API key" 200 "$TMP/patgate-confirmed.log" -H "X-API-Key: $KEY" "http://127.0.0.1:$PGK_PORT/api"
fi
expect "(g) patgate cold PAT" 200 "$TMP/patgate-cold.log" -H "Authorization: Bearer $COLD_SANITY" "http://127.0.0.1:$PGC_PORT/api"
# The cold instance's bcrypt pool thread, started by that first PAT (the pool starts lazily).
POOL_TID="$(grep -l '^patgate-bcrypt' /proc/"$PGC_PID"/task/*/comm 2>/dev/null | head -n 1 | cut -d/ -f5)"
[ -n "$POOL_TID" ] || die "no patgate-bcrypt thread in the cold instance (pid $PGC_PID)" "$TMP/patgate-cold.log"

log "verifying each (h) token once on the strict instance (so that (h) is warm)"
xargs -P 4 -I{} curl -sS -o /dev/null -w '%{http_code}\n' --max-time 10 -H "Authorization: Bearer {}" \
  "http://127.0.0.1:$PG_PORT/api" <"$TMP/warm-tokens.txt" >"$TMP/warm-verify.txt" 2>&1 || true
[ "$(grep -c '^200$' "$TMP/warm-verify.txt")" -eq "$WARM_TOKENS" ] ||
  die "not every (h) token answered 200: $(sort "$TMP/warm-verify.txt" | uniq -c | tr '\n' ' ')" "$TMP/patgate-strict.log"

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo "?"; }
RSS0_STRICT="$(rss_kb "$PG_PID")"
RSS0_TRACKED="$([ -n "$PGT_PID" ] && rss_kb "$PGT_PID" || echo "not run")"
RSS0_CONFIRMED="$([ -n "$PGK_PID" ] && rss_kb "$PGK_PID" || echo "not run")"
RSS0_COLD="$(rss_kb "$PGC_PID")"

# ---------------------------------------------------------------------------------------
# 5. Measurements
# ---------------------------------------------------------------------------------------
TARGETS=(a b c d e)
[ "$TRACKED" = 1 ] && TARGETS+=(f)
[ "$CONFIRMED" = 1 ] && TARGETS+=(k l)
TARGETS+=(g)
[ "$PIN" = 1 ] && TARGETS+=(i)
TARGETS+=(h)
label() {
  case "$1" in
    a) echo "(a) direct to nginx upstream" ;;
    b) echo "(b) nginx proxy_pass" ;;
    c) echo "(c) patgate \`auth: none\` (/open)" ;;
    d) echo "(d) patgate warm PAT, strict" ;;
    e) echo "(e) patgate warm API key, strict" ;;
    f) echo "(f) patgate warm PAT, tracked" ;;
    g) echo "(g) patgate cold PATs, cost 6, bcrypt pool on the proxy's CPU (verifications/s)" ;;
    h) echo "(h) patgate warm PATs, strict, $WARM_TOKENS distinct in rotation" ;;
    i) echo "(i) patgate cold PATs, cost 6, bcrypt pool thread on CPU $CLIENT_CPU (verifications/s)" ;;
    k) echo "(k) patgate warm PAT, confirmed" ;;
    l) echo "(l) patgate warm API key, confirmed" ;;
    t) echo "(t) patgate \`auth: none\` on the tracked instance" ;;
    u) echo "(u) patgate \`auth: none\` on the confirmed instance" ;;
  esac
}

# proxy_pid ID: the process serving a target (none for (a)).
proxy_pid() {
  case "$1" in
    b) echo "$NGX_PID" ;;
    c | d | e | h) echo "$PG_PID" ;;
    f | t) echo "$PGT_PID" ;;
    k | l | u) echo "$PGK_PID" ;;
    g | i) echo "$PGC_PID" ;;
  esac
}
# pool_cpu ID: the CPU the cold instance's bcrypt pool thread runs on for a cold target.
pool_cpu() { if [ "$1" = i ]; then echo "$CLIENT_CPU"; else echo "$PROXY_CPU"; fi; }
# pool_ticks: user + system CPU ticks of the cold instance's bcrypt pool thread alone.
pool_ticks() { awk '{ print $14 + $15 }' "/proc/$PGC_PID/task/$POOL_TID/stat" 2>/dev/null || echo 0; }
# bcrypt_alone_ms CPU OUTFILE: bcrypt at cost 6 timed alone by criterion, pinned to CPU (the
# median of its estimate, in ms).
bcrypt_alone_ms() {
  local cpu="$1" out="$2"
  pinned "$cpu"
  ${PINNED[@]+"${PINNED[@]}"} "$HASHER" --bench 'bcrypt_verify/6$' --warm-up-time 0.5 --measurement-time 2 \
    >"$out" 2>&1 || die "the bcrypt bench failed on CPU $cpu" "$out"
  awk '/time:/ { for (i = 1; i <= NF; i++) if ($i ~ /^\[/) { v = $(i + 2); u = $(i + 3)
      if (u == "s") v *= 1000; else if (u == "µs" || u == "us") v /= 1000; printf "%.4f", v; exit } }' "$out"
}
CLK_TCK="$(getconf CLK_TCK 2>/dev/null || echo 100)"
# cpu_ticks PID: user + system CPU ticks of PID (all its threads) and of its child processes
# (nginx's workers), read from /proc.
cpu_ticks() {
  local pid="$1" total=0 p
  [ -n "$pid" ] || { echo 0; return; }
  for p in "$pid" $(ps -o pid= --ppid "$pid" 2>/dev/null); do
    total=$((total + $(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}

# cpu_stat CPU: "busy idle steal" ticks of one CPU since boot, from /proc/stat (busy: user,
# nice, system, irq, softirq; idle: idle, iowait; steal: taken by the hypervisor).
cpu_stat() {
  awk -v c="cpu$1" '$1 == c { print $2 + $3 + $4 + $7 + $8, $5 + $6, $9 }' /proc/stat
}

# core_use BEFORE AFTER: "busy% steal%" of one CPU between two cpu_stat readings.
core_use() {
  echo "$1 $2" | awk '{ b = $4 - $1; i = $5 - $2; s = $6 - $3; t = b + i + s
    if (t > 0) printf "%.1f %.1f", 100 * b / t, 100 * s / t; else print "0 0" }'
}

# request_of ID: sets REQ_URL and REQ_HEADERS (wrk -H arguments) of a one-request target (a–f,
# k, l, and t, u: the tracked and the confirmed instance's `auth: none` route, controls of the
# concurrent pairs).
request_of() {
  REQ_HEADERS=()
  case "$1" in
    a) REQ_URL="http://127.0.0.1:$UP_PORT/" ;;
    b) REQ_URL="http://127.0.0.1:$NGX_PORT/" ;;
    c) REQ_URL="http://127.0.0.1:$PG_PORT/open" ;;
    d) REQ_URL="http://127.0.0.1:$PG_PORT/api" REQ_HEADERS=(-H "Authorization: Bearer $PAT") ;;
    e) REQ_URL="http://127.0.0.1:$PG_PORT/api" REQ_HEADERS=(-H "X-API-Key: $KEY") ;;
    f) REQ_URL="http://127.0.0.1:$PGT_PORT/api" REQ_HEADERS=(-H "Authorization: Bearer $PAT") ;;
    k) REQ_URL="http://127.0.0.1:$PGK_PORT/api" REQ_HEADERS=(-H "Authorization: Bearer $PAT") ;;
    l) REQ_URL="http://127.0.0.1:$PGK_PORT/api" REQ_HEADERS=(-H "X-API-Key: $KEY") ;;
    t) REQ_URL="http://127.0.0.1:$PGT_PORT/open" ;;
    u) REQ_URL="http://127.0.0.1:$PGK_PORT/open" ;;
  esac
}

# run_target ID DURATION OUTFILE [REP]: one wrk run against a target.
# Sets RUN_TICKS: CPU ticks the target's proxy process used during the run; RUN_PROXY_CORE
# and RUN_CLIENT_CORE: "busy% steal%" of the proxy's and the client's CPU during the run.
run_target() {
  local id="$1" dur="$2" out="$3" rep="${4:-}"
  local cpu="$CLIENT_CPU" script="$HERE/report.lua" url extra=() args=()
  case "$id" in
    a | b | c | d | e | f | k | l)
      request_of "$id"
      url="$REQ_URL" extra=(${REQ_HEADERS[@]+"${REQ_HEADERS[@]}"})
      if [ "$id" = a ]; then cpu="$DIRECT_CLIENT_CPU"; fi
      ;;
    h) url="http://127.0.0.1:$PG_PORT/api" script="$HERE/rotate.lua" args=("$TMP/warm-tokens.txt") ;;
    g | i)
      taskset -p -c "$(pool_cpu "$id")" "$POOL_TID" >/dev/null ||
        die "could not pin the bcrypt pool thread $POOL_TID to CPU $(pool_cpu "$id")"
      if [ -n "$rep" ]; then
        url="http://127.0.0.1:$PGC_PORT/api" script="$HERE/cold.lua" args=("$TMP/cold-tokens-$id-$rep.txt")
      else
        # Warm-up of the cold instance: its auth-free route, so no token is spent.
        url="http://127.0.0.1:$PGC_PORT/open"
      fi
      ;;
  esac
  local pid ticks0 pool0
  pid="$(proxy_pid "$id")"
  ticks0="$(cpu_ticks "$pid")"
  pool0="$(pool_ticks)"
  local proxy_core0 client_core0
  proxy_core0="$(cpu_stat "$PROXY_CPU")" client_core0="$(cpu_stat "$CLIENT_CPU")"
  pinned "$cpu"
  ${PINNED[@]+"${PINNED[@]}"} wrk -t1 -c"$CONNS" -d"$dur" --latency --timeout "$TIMEOUT" -s "$script" \
    ${extra[@]+"${extra[@]}"} "$url" ${args[@]+"${args[@]}"} >"$out" 2>&1 &
  WRK_PID=$!
  local rc=0
  wait "$WRK_PID" || rc=$?
  WRK_PID=""
  RUN_TICKS=$(($(cpu_ticks "$pid") - ticks0))
  RUN_PROXY_CORE="$(core_use "$proxy_core0" "$(cpu_stat "$PROXY_CPU")")"
  RUN_CLIENT_CORE="$(core_use "$client_core0" "$(cpu_stat "$CLIENT_CPU")")"
  # A cold run's wrk idles once its tokens are spent (wrk always runs -d), so the process's
  # CPU would include that idle time: count the bcrypt pool thread alone instead.
  case "$id" in g | i) RUN_TICKS=$(($(pool_ticks) - pool0)) ;; esac
  [ "$rc" -eq 0 ] || die "wrk failed against $(label "$id") ($url)" "$out"
  grep -q '^E2E_RESULT ' "$out" || die "no result line from wrk against $(label "$id")" "$out"
}

# field NAME FILE: a key=value field of the E2E_RESULT / E2E_COLD line.
field() { grep -o "[[:space:]]$1=[^[:space:]]*" "$2" | head -n 1 | cut -d= -f2; }

if [ "$WARMUP" != 0 ] && [ "$WARMUP" != 0s ]; then
  for id in "${TARGETS[@]}"; do
    log "warm-up $WARMUP: $(label "$id")"
    run_target "$id" "$WARMUP" "$TMP/wrk-warmup-$id.txt"
  done
fi

: >"$TMP/results.tsv"
for ((r = 1; r <= REPS; r++)); do
  for id in "${TARGETS[@]}"; do
    out="$TMP/wrk-$id-rep$r.txt"
    run_target "$id" "$DURATION" "$out" "$r"
    req="$(field requests "$out")" dur_us="$(field duration_us "$out")"
    p50="$(field p50_us "$out")" p99="$(field p99_us "$out")" bad="$(field status_errors "$out")"
    sockerr=$(($(field connect "$out") + $(field read "$out") + $(field write "$out") + $(field timeout "$out")))
    rps="$(awk -v n="$req" -v d="$dur_us" 'BEGIN { if (d > 0) printf "%.1f", n * 1e6 / d; else print 0 }')"
    cpu_us="$(awk -v t="$RUN_TICKS" -v n="$req" -v hz="$CLK_TCK" 'BEGIN { if (n > 0) printf "%.2f", t * 1e6 / hz / n; else print 0 }')"
    read -r proxy_busy proxy_steal <<<"$RUN_PROXY_CORE"
    read -r client_busy client_steal <<<"$RUN_CLIENT_CORE"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$id" "$r" "$rps" "$p50" "$p99" "$bad" "$sockerr" "$cpu_us" \
      "$proxy_busy" "$proxy_steal" "$client_busy" "$client_steal" >>"$TMP/results.tsv"
    if [ "$id" = g ] || [ "$id" = i ]; then
      alone="$(bcrypt_alone_ms "$(pool_cpu "$id")" "$TMP/bcrypt-$id-rep$r.txt")"
      [ -n "$alone" ] || die "no time in the bcrypt bench's output" "$TMP/bcrypt-$id-rep$r.txt"
      printf '%s\t%s\t%s\t%s\n' "$id" "$r" "$alone" "$(grep '^E2E_COLD ' "$out")" >>"$TMP/cold.tsv"
    fi
    log "rep $r/$REPS $(label "$id"): $rps req/s, p50 $(awk -v u="$p50" 'BEGIN{printf "%.2f", u/1000}') ms, p99 $(awk -v u="$p99" 'BEGIN{printf "%.2f", u/1000}') ms, non-2xx $bad, socket errors $sockerr, proxy CPU $cpu_us µs/request; CPU $PROXY_CPU busy $proxy_busy% steal $proxy_steal%, CPU $CLIENT_CPU busy $client_busy% steal $client_steal%"
  done
done

# ---------------------------------------------------------------------------------------
# 5b. Concurrent pairs
# ---------------------------------------------------------------------------------------
# The VM under this bench changes speed by up to ±20% from one run to the next, which hides
# a few percent between two runs made seconds apart. Here each target runs at the same time
# as `auth: none` on a second patgate process (the reference: the strict conf on its own
# port, serving nothing else), both pinned to PROXY_CPU and sharing it, each driven by its
# own wrk (-c CONNS, on CLIENT_CPU). Whatever the VM does, it does to both at once. A
# process's cost per request is its threads' on-CPU time (/proc/PID/task/*/schedstat, ns)
# over the requests its wrk completed; a pair gives the target's requests per second of core
# over the reference's. The same is measured for the `auth: none` route of the target's own
# process ((c) on the strict instance, (t) on the tracked one, (u) on the confirmed one), in
# the same rep, because a process that has served other traffic can serve `auth: none` a
# little slower than the reference (it holds more in memory; not measured apart): a target's
# figure is the ratio of its pair to its own process's `auth: none` pair, so that both the VM
# and the process cancel.
# nginx `proxy_pass` (b) is paired with the same reference, so that every target also gets a
# per-core figure against nginx (its pair over nginx's, in the same rep).

# run_ns PID: nanoseconds on CPU of all of PID's threads and of its child processes (nginx's
# workers). (A thread that ends between the glob and the read is skipped, not fatal.)
run_ns() {
  local p
  for p in "$1" $(ps -o pid= --ppid "$1" 2>/dev/null); do
    cat /proc/"$p"/task/*/schedstat 2>/dev/null || :
  done | awk '{ s += $1 } END { printf "%.0f", s }'
}

# run_pair ID REP: target ID and the reference's `auth: none`, at once; one line of pairs.tsv.
run_pair() {
  local id="$1" rep="$2" pid out="$TMP/pair-$1-rep$2.txt" ref="$TMP/pair-$1-rep$2-reference.txt"
  pid="$(proxy_pid "$id")"
  request_of "$id"
  local x0 r0 rc=0 rc_ref=0 w w_ref core0
  x0="$(run_ns "$pid")" r0="$(run_ns "$PGR_PID")" core0="$(cpu_stat "$PROXY_CPU")"
  pinned "$CLIENT_CPU"
  ${PINNED[@]+"${PINNED[@]}"} wrk -t1 -c"$CONNS" -d"$DURATION" --latency --timeout "$TIMEOUT" -s "$HERE/report.lua" \
    ${REQ_HEADERS[@]+"${REQ_HEADERS[@]}"} "$REQ_URL" >"$out" 2>&1 &
  w=$!
  ${PINNED[@]+"${PINNED[@]}"} wrk -t1 -c"$CONNS" -d"$DURATION" --latency --timeout "$TIMEOUT" -s "$HERE/report.lua" \
    "http://127.0.0.1:$PGR_PORT/open" >"$ref" 2>&1 &
  w_ref=$!
  WRK_PID="$w $w_ref"
  wait "$w" || rc=$?
  wait "$w_ref" || rc_ref=$?
  WRK_PID=""
  local x_ns r_ns core
  x_ns=$(($(run_ns "$pid") - x0)) r_ns=$(($(run_ns "$PGR_PID") - r0))
  core="$(core_use "$core0" "$(cpu_stat "$PROXY_CPU")")"
  [ "$rc" -eq 0 ] && [ "$rc_ref" -eq 0 ] || die "wrk failed in the pair $(label "$id") + reference" "$out" "$ref"
  local f
  for f in "$out" "$ref"; do
    grep -q '^E2E_RESULT ' "$f" || die "no result line from wrk in the pair $(label "$id")" "$f"
    [ "$(field status_errors "$f")" = 0 ] || die "non-2xx answers in the pair $(label "$id")" "$f"
    [ $(($(field connect "$f") + $(field read "$f") + $(field write "$f") + $(field timeout "$f"))) = 0 ] ||
      die "socket errors in the pair $(label "$id")" "$f"
    [ "$(field requests "$f")" -gt 0 ] || die "no request completed in the pair $(label "$id")" "$f"
  done
  [ "$x_ns" -gt 0 ] && [ "$r_ns" -gt 0 ] || die "no CPU time read for the pair $(label "$id") (pids $pid, $PGR_PID)"
  local x_req r_req busy steal
  x_req="$(field requests "$out")" r_req="$(field requests "$ref")"
  read -r busy steal <<<"$core"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$id" "$rep" "$x_req" "$x_ns" "$r_req" "$r_ns" "$busy" "$steal" >>"$TMP/pairs.tsv"
  log "pair rep $rep/$PAIR_REPS $(label "$id") with the reference's \`auth: none\`: $(awk -v xr="$x_req" -v xn="$x_ns" -v rr="$r_req" -v rn="$r_ns" 'BEGIN {
    printf "%.2f µs/request against %.2f; per second of core %.3f of `auth: none`; %.0f%% of the core", xn / xr / 1000, rn / rr / 1000, (xr / xn) / (rr / rn), 100 * xn / (xn + rn) }'); CPU $PROXY_CPU busy $busy% steal $steal%"
}

: >"$TMP/pairs.tsv"
PAIR_TARGETS=()
if [ -n "$PGR_PID" ]; then
  # Each process's own `auth: none` just before its authenticated targets; nginx proxy_pass
  # first, against the same reference, for the per-core ratios to nginx.
  PAIR_TARGETS=(b c d e)
  [ "$TRACKED" = 1 ] && PAIR_TARGETS+=(t f)
  [ "$CONFIRMED" = 1 ] && PAIR_TARGETS+=(u k l)
  for ((r = 1; r <= PAIR_REPS; r++)); do
    for id in "${PAIR_TARGETS[@]}"; do run_pair "$id" "$r"; done
  done
fi

RSS1_STRICT="$(rss_kb "$PG_PID")"
RSS1_TRACKED="$([ -n "$PGT_PID" ] && rss_kb "$PGT_PID" || echo "not run")"
RSS1_CONFIRMED="$([ -n "$PGK_PID" ] && rss_kb "$PGK_PID" || echo "not run")"
RSS1_COLD="$(rss_kb "$PGC_PID")"
for p in "$PG_PID" $PGT_PID $PGK_PID "$PGC_PID" $PGR_PID; do
  kill -0 "$p" 2>/dev/null || die "a patgate instance (pid $p) died during the runs" "$TMP"/patgate-*.log
done

# ---------------------------------------------------------------------------------------
# 6. Report
# ---------------------------------------------------------------------------------------
# med ID COLUMN: median over the reps of a results.tsv column (3 rps, 4 p50, 5 p99); sum
# for the error columns (6, 7).
median() {
  sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) { print 0; exit }
    if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
# spread: "COUNT MEDIAN LOW HIGH" of the numbers on stdin, one per line (nothing for none).
spread() {
  sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) exit
    m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
    print NR, m, a[1], a[NR] }'
}
med() { awk -F'\t' -v id="$1" -v c="$2" '$1 == id { print $c }' "$TMP/results.tsv" | median; }
total() { awk -F'\t' -v id="$1" -v c="$2" '$1 == id { s += $c } END { print s + 0 }' "$TMP/results.tsv"; }
range() { awk -F'\t' -v id="$1" '$1 == id { v = $3 + 0; if (n == 0 || v < lo) lo = v; if (n == 0 || v > hi) hi = v; n++ }
  END { if (n < 2) print "–"; else printf(hi >= 100 ? "%.0f–%.0f" : "%.1f–%.1f", lo, hi) }' "$TMP/results.tsv"; }
fmt_rps() { awk -v v="$1" 'BEGIN { printf(v >= 100 ? "%.0f" : "%.1f", v) }'; }
fmt_ms() { awk -v v="$1" 'BEGIN { printf "%.2f", v / 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "–" }'; }
# paired ID BASE: ID's req/s over BASE's in the same rep (the two ran seconds apart, so a
# drift of the VM between reps cancels), as "median (lo–hi)" over the reps.
paired() {
  awk -F'\t' -v id="$1" -v base="$2" '$1 == base { b[$2] = $3 } $1 == id { v[$2] = $3 }
    END { for (r in v) if (b[r] > 0) print v[r] / b[r] }' "$TMP/results.tsv" | spread |
    awk 'END { if (NR == 0) print "–"; else if ($1 == 1) printf "%.3f", $2; else printf "%.3f (%.3f–%.3f)", $2, $3, $4 }'
}
# pair_over ID CONTROL: per rep, ID's pair figure over CONTROL's; "COUNT MEDIAN LOW HIGH".
pair_over() {
  awk -F'\t' -v id="$1" -v ctl="$2" '{ k = ($3 / $4) / ($5 / $6) }
    $1 == ctl { c[$2] = k } $1 == id { v[$2] = k }
    END { for (r in v) if (c[r] > 0) print v[r] / c[r] }' "$TMP/pairs.tsv" | spread
}
mib() { awk -v k="$1" 'BEGIN { if (k ~ /^[0-9]+$/) printf "%.1f MiB", k / 1024; else print k }'; }

GIT_REV="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
GIT_DIRTY=""
if [ -n "$(GIT_OPTIONAL_LOCKS=0 git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  GIT_DIRTY=" (working tree has uncommitted changes; the binary was built from it)"
fi
CPU_MODEL="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)"
if [ "$PIN" = 1 ]; then
  PINNING="taskset: proxy under test (nginx proxy, every patgate instance incl. its bcrypt pool) on CPU $PROXY_CPU; wrk, nginx upstream and redis-server on CPU $CLIENT_CPU; for (a), which has no proxy, wrk on CPU $DIRECT_CLIENT_CPU; for (i), the cold instance's bcrypt pool thread on CPU $CLIENT_CPU (\`taskset -p\` on its thread id)"
else
  PINNING="none (1 CPU)"
fi

C_RPS="$(med c 3)"
B_RPS="$(med b 3)"

echo "## patgate end-to-end benchmark"
echo
echo "- command: \`$CMD_LINE\`"
echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "- machine: nproc=$NPROC${CPU_MODEL:+, $CPU_MODEL}"
echo "- git: $GIT_REV$GIT_DIRTY"
echo "- tools: $(wrk -v 2>&1 | head -n 1 | awk '{print $1, $2}'), $(nginx -v 2>&1 | sed 's/^nginx version: //'), redis $(redis-server --version | grep -o 'v=[^ ]*' | cut -d= -f2)"
echo "- load: \`wrk -t1 -c$CONNS -d$DURATION --latency --timeout $TIMEOUT\` per target; warm-up ${WARMUP} per target; $REPS rep(s) interleaved round-robin (in the order ${TARGETS[*]}); medians shown"
echo "- pinning: $PINNING"
echo "- patgate: release build, server.threads 1, verify.pool_threads 1, redis.timeout_ms 200, bcrypt cost 10 (warm PAT) / 6 (cold PATs)${CACHE_ENTRIES:+, verify.cache_entries $CACHE_ENTRIES}; upstream: nginx \`return 200 \"ok\"\`"
echo
C_CPU="$(med c 8)"
echo "| target | req/s (median) | req/s range | p50 ms | p99 ms | non-2xx | socket errors | vs patgate \`auth: none\` | vs nginx proxy_pass | proxy CPU µs/req (median) | CPU above \`auth: none\` |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for id in a b c d e f k l g h i; do
  if [ "$id" = f ] && [ "$TRACKED" = 0 ]; then
    echo "| $(label f) | skipped | | | | | | | | | |"
    continue
  fi
  if { [ "$id" = k ] || [ "$id" = l ]; } && [ "$CONFIRMED" = 0 ]; then
    echo "| $(label "$id") | skipped | | | | | | | | | |"
    continue
  fi
  if [ "$id" = i ] && [ "$PIN" = 0 ]; then continue; fi
  rps="$(med "$id" 3)"
  cpu="$(med "$id" 8)"
  if [ "$id" = a ]; then cpu_cell="–" above="–"
  elif [ "$id" = g ] || [ "$id" = i ]; then
    cpu_cell="$(awk -v v="$cpu" 'BEGIN { printf "%.0f (pool thread)", v }')" above="–"
  else
    cpu_cell="$(awk -v v="$cpu" 'BEGIN { printf "%.1f", v }')"
    above="$(awk -v v="$cpu" -v c="$C_CPU" 'BEGIN { printf "%+.1f µs", v - c }')"
  fi
  echo "| $(label "$id") | $(fmt_rps "$rps") | $(range "$id") | $(fmt_ms "$(med "$id" 4)") | $(fmt_ms "$(med "$id" 5)") | $(total "$id" 6) | $(total "$id" 7) | $(ratio "$rps" "$C_RPS") | $(ratio "$rps" "$B_RPS") | $cpu_cell | $above |"
done
echo
echo "Ratios paired per rep (each rep's req/s over \`auth: none\`'s or nginx's in the same rep, median and range over the reps; less exposed to the VM drifting between reps than the ratios of medians above):"
echo
echo "| target | vs patgate \`auth: none\`, paired | vs nginx proxy_pass, paired |"
echo "|---|---:|---:|"
for id in d e f k l h; do
  if [ "$id" = f ] && [ "$TRACKED" = 0 ]; then continue; fi
  if { [ "$id" = k ] || [ "$id" = l ]; } && [ "$CONFIRMED" = 0 ]; then continue; fi
  echo "| $(label "$id") | $(paired "$id" c) | $(paired "$id" b) |"
done
echo "| $(label c) | 1.000 | $(paired c b) |"
echo
echo "Where the two cores went during each run (/proc/stat, median over the reps): is the proxy's core the one that limits?"
echo
echo "| target | CPU $PROXY_CPU (proxy) busy | CPU $PROXY_CPU steal | CPU $CLIENT_CPU (wrk, upstream, Redis) busy | CPU $CLIENT_CPU steal |"
echo "|---|---:|---:|---:|---:|"
for id in a b c d e f k l h; do
  if [ "$id" = f ] && [ "$TRACKED" = 0 ]; then continue; fi
  if { [ "$id" = k ] || [ "$id" = l ]; } && [ "$CONFIRMED" = 0 ]; then continue; fi
  echo "| $(label "$id") | $(med "$id" 9)% | $(med "$id" 10)% | $(med "$id" 11)% | $(med "$id" 12)% |"
done
echo
if [ "${#PAIR_TARGETS[@]}" -gt 0 ]; then
  echo "Concurrent pairs ($PAIR_REPS reps): each target at the same time as \`auth: none\` on a second patgate that serves nothing else (the reference, strict conf$([ "$REFERENCE_WORK_STEALING" = 1 ] && echo ", \`server.work_stealing: true\`")), both sharing CPU $PROXY_CPU, each with its own \`wrk -t1 -c$CONNS -d$DURATION\` on CPU $CLIENT_CPU, so the VM's speed changes both at once. A pair's figure: (target's requests / its on-CPU time) over (the reference's requests / its on-CPU time), on-CPU time from /proc/PID/task/*/schedstat. (c), (t) and (u) are the \`auth: none\` route of the strict, the tracked and the confirmed instance, run the same way in the same rep as the controls$([ "$REFERENCE_WORK_STEALING" = 1 ] && echo " (their pair figures compare the two runtimes here)" || echo ": a process that has served other traffic can serve \`auth: none\` a little slower than the reference, which serves nothing else"). **Per second of core vs \`auth: none\`** is, per rep, a target's pair figure over its own instance's control (c, t or u); **vs nginx** is its pair figure over nginx \`proxy_pass\`'s ((b), paired with the same reference in the same rep; nginx's CPU is its master's and workers'); medians over the reps (range):"
  echo
  echo "| target | **per second of core vs \`auth: none\`** (over its control) | **per second of core vs nginx** | pair figure (vs the reference) | µs of CPU per request: target | reference | the target's share of CPU $PROXY_CPU | CPU $PROXY_CPU busy; steal |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  for id in "${PAIR_TARGETS[@]}"; do
    col() { awk -F'\t' -v id="$id" '$1 == id { '"$1"' }' "$TMP/pairs.tsv" | spread; }
    cell() { awk -v fmt="$1" '{ printf fmt " (" fmt "–" fmt ")", $2, $3, $4 }'; }
    case "$id" in
      b) own="–" ;;
      c | t | u) own="control" ;;
      f) own="**$(pair_over f t | cell %.3f)**" ;;
      k | l) own="**$(pair_over "$id" u | cell %.3f)**" ;;
      *) own="**$(pair_over "$id" c | cell %.3f)**" ;;
    esac
    if [ "$id" = b ]; then vs_nginx="1.000"; else vs_nginx="$(pair_over "$id" b | cell %.3f)"; fi
    echo "| $(label "$id") | $own | $vs_nginx | $(col 'print ($3 / $4) / ($5 / $6)' | cell %.3f) | $(col 'print $4 / $3 / 1000' | cell %.2f) | $(col 'print $6 / $5 / 1000' | cell %.2f) | $(col 'print 100 * $4 / ($4 + $6)' | cell %.0f%%) | $(col 'print $7' | awk '{ printf "%.1f%%", $2 }'); $(col 'print $8' | awk '{ printf "%.1f%%", $2 }') |"
  done
  echo
fi
echo "- proxy CPU: user + system CPU time of the proxy process under test (all threads; nginx's master and workers) during each wrk run, from /proc/PID/stat, divided by the requests wrk completed; median over the reps. Where the proxy's core is busy near 100% (table above), this is what a request costs it, and it drifts less with the VM's speed than req/s; where it is not, something else (the client's core, a wait) limited the run. For (g) and (i) it is the bcrypt pool thread's CPU per verification (/proc/PID/task/TID/stat), since wrk idles there once the tokens are spent."
echo "- non-2xx: for (a)–(f), (k) and (l) wrk's count of responses with status ≥ 400, for (g), (h) and (i) the Lua script's count of non-200 statuses; both summed over the reps. Socket errors: wrk's connect + read + write + timeout, summed."
echo "- (h): request n presents token n mod $WARM_TOKENS (each verified once beforehand, each with its own owner), so requests batched together read different keys; its wrk runs a Lua request() per request, which costs the client (not the proxy) some CPU."
echo "- (g), (i): every request presents a PAT never presented before (a bcrypt cost-6 verification each); req/s there is verifications/s over the time from the first request to the last response, not wrk's figure (which divides by the whole -d). Capacity: 1000 / (bcrypt ms at cost 6 timed alone by criterion on the pool thread's CPU right after each run) verifications/s for the one pool thread; the goal is 0.9 × capacity."
for id in g i; do
  [ "$id" = i ] && [ "$PIN" = 0 ] && continue
  # Per rep: verifications/s over the capacity measured right after that run.
  ratios="$(awk -F'\t' -v id="$id" '$1 == id { ok = 0; span = 0; n = split($4, f, " ")
      for (k = 1; k <= n; k++) { split(f[k], kv, "="); if (kv[1] == "ok") ok = kv[2]; if (kv[1] == "span_us") span = kv[2] }
      if (span > 0 && $3 > 0) print (ok * 1e6 / span) / (1000 / $3) }' "$TMP/cold.tsv")"
  echo "- $(label "$id"), against capacity measured in the same rep: $(printf '%s\n' "$ratios" | { grep . || true; } | spread |
    awk 'END { if (NR == 0) print "–"; else printf "**%.3f** of capacity (median over %d reps, %.3f–%.3f)", $2, $1, $3, $4 }')"
done
while IFS=$'\t' read -r id r alone line; do
  ok="$(echo " $line" | grep -o ' ok=[0-9]*' | cut -d= -f2)"
  non="$(echo " $line" | grep -o ' non200=[0-9]*' | cut -d= -f2)"
  sent="$(echo " $line" | grep -o ' sent=[0-9]*' | cut -d= -f2)"
  ntok="$(echo " $line" | grep -o ' tokens=[0-9]*' | cut -d= -f2)"
  span="$(echo " $line" | grep -o ' span_us=[0-9]*' | cut -d= -f2)"
  sts="$(echo " $line" | grep -o ' statuses=[^ ]*' | cut -d= -f2)"
  if [ "$non" = 0 ] && [ "$ok" = "$sent" ]; then verdict="no request failed"; else verdict="FAILED: $non non-200 ($sts), $((sent - ok - non)) unanswered"; fi
  echo "  - ($id) rep $r: $sent of $ntok tokens presented, $ok answered 200 in $(awk -v u="$span" 'BEGIN{printf "%.2f", u/1e6}') s = $(awk -v n="$ok" -v u="$span" 'BEGIN{ if (u > 0) printf "%.1f", n*1e6/u; else print 0 }') verifications/s; $verdict; bcrypt alone on CPU $(pool_cpu "$id"): $alone ms = $(awk -v a="$alone" 'BEGIN { printf "%.1f", 1000 / a }')/s"
done <"$TMP/cold.tsv"
if [ "$TRACKED" = 0 ]; then
  echo "- (f) skipped: \`patgate -c CONF check\` refuses \`redis.freshness: tracked\`: $TRACKED_NOTE"
fi
if [ "$CONFIRMED" = 0 ]; then
  echo "- (k), (l) skipped: \`patgate -c CONF check\` refuses \`redis.freshness: confirmed\`: $CONFIRMED_NOTE"
fi
echo "- patgate RSS (VmRSS) before the runs → after the warm runs: strict $(mib "$RSS0_STRICT") → $(mib "$RSS1_STRICT"); tracked $([ -n "$PGT_PID" ] && echo "$(mib "$RSS0_TRACKED") → $(mib "$RSS1_TRACKED")" || echo "not run"); confirmed $([ -n "$PGK_PID" ] && echo "$(mib "$RSS0_CONFIRMED") → $(mib "$RSS1_CONFIRMED")" || echo "not run"); cold $(mib "$RSS0_COLD") → $(mib "$RSS1_COLD")"
# wrk ends each run by closing connections with requests in flight; Pingora logs each of
# those as "Downstream ConnectionClosed". Anything else patgate logged is shown.
closed_lines="$(cat "$TMP"/patgate-*.log 2>/dev/null | grep -c 'Downstream ConnectionClosed' || true)"
other_lines="$(cat "$TMP"/patgate-*.log 2>/dev/null | grep -v 'Downstream ConnectionClosed' | grep -c . || true)"
echo "- patgate log (RUST_LOG=warn): $closed_lines \"Downstream ConnectionClosed\" line(s) (wrk closing connections mid-request at the end of each run), $other_lines other line(s)"
if [ "$other_lines" -gt 0 ]; then
  for f in "$TMP"/patgate-*.log; do
    grep -v 'Downstream ConnectionClosed' "$f" | grep . | head -n 3 | sed "s|^|    $(basename "$f" .log): |" || true
  done
fi
