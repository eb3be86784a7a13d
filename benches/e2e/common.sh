# Helpers shared by benches/e2e/run.sh and benches/e2e/instructions.sh (sourced, not run).
# The sourcing script sets BENCH_NAME (the prefix of its messages on stderr) first.

log() { printf '%s: %s\n' "$BENCH_NAME" "$*" >&2; }

# die MESSAGE [LOGFILE...]: the message, the tail of each log, then exit (the caller's trap
# cleans up).
die() {
  printf '\n%s: FAILED: %s\n' "$BENCH_NAME" "$1" >&2
  shift
  local f
  for f in "$@"; do
    if [ -s "$f" ]; then
      printf -- '--- last lines of %s ---\n' "$f" >&2
      tail -n 40 "$f" >&2
    fi
  done
  exit 1
}

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }

# install_missing PACKAGE-FOR-COMMAND...: each argument is COMMAND or COMMAND=PACKAGE; the
# packages of the commands not found are installed with apt (as root or through sudo).
# Debian may start its own nginx or redis service; the benches leave it alone and use
# private instances on free loopback ports.
install_missing() {
  local missing=() spec
  for spec in "$@"; do
    have "${spec%%=*}" || missing+=("${spec#*=}")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]} (apt)"
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
      command -v sudo >/dev/null 2>&1 || die "need root or sudo to install ${missing[*]}"
      sudo="sudo"
    fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  export PATH="$PATH:/usr/sbin:/sbin"
}
