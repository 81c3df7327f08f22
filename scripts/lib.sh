# Shared helpers for scripts/*.sh (sourced, not run). Expects LOG and STAMPS to be set.

step() {
    printf 'setup: %s\n' "$*"
    DID_SOMETHING=1
}
warn() { printf 'setup: warning: %s\n' "$*" >&2; }
die() {
    printf 'setup: ERROR: %s\n' "$*" >&2
    exit 1
}

# Run a command with its output in $LOG; on failure show the end of the log.
# The log is started afresh by the first command of a run, so a no-op run keeps the last one.
run_logged() {
    local t0=$SECONDS
    [[ -n "${_LOG_STARTED:-}" ]] || { : >"$LOG"; _LOG_STARTED=1; }
    printf '\n[%s] $ %s\n' "$(date +%T)" "$*" >>"$LOG"
    "$@" >>"$LOG" 2>&1 && { printf '[%s] ok after %d s\n' "$(date +%T)" $((SECONDS - t0)) >>"$LOG"; return 0; }
    local rc=$?
    printf '[%s] exit %d after %d s\n' "$(date +%T)" $rc $((SECONDS - t0)) >>"$LOG"
    echo "---- last lines of .cache/setup.log ----" >&2
    tail -n 25 "$LOG" >&2
    return $rc
}

# Short hash of the names and contents of the given files (missing ones count as absent).
hash_files() {
    local f
    for f in "$@"; do
        if [[ -f "$f" ]]; then
            printf '%s\n' "$f"
            cat "$f"
        fi
    done | sha256sum | cut -c1-16
}

stamp_ok() { [[ -f "$STAMPS/$1" && "$(<"$STAMPS/$1")" == "$2" ]]; }
stamp_set() {
    mkdir -p "$STAMPS"
    printf '%s\n' "$2" >"$STAMPS/$1"
}

check_free_space() { # dir min_gb what
    local avail_kb
    avail_kb="$(df -Pk "$1" | awk 'NR==2 {print $4}')"
    if [[ -n "$avail_kb" ]] && ((avail_kb < $2 * 1024 * 1024)); then
        die "only $((avail_kb / 1024 / 1024)) GB free on $(df -P "$1" | awk 'NR==2 {print $6}'), $3 needs $2 GB." \
            "Free some space (e.g. 'make distclean' in old checkouts, 'pip cache purge') and rerun."
    fi
}

# apt_install_or_die "what is missing" pkg... : installs as root, otherwise says what to run.
apt_install_or_die() {
    local what="$1"
    shift
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        step "installing Debian packages: $*"
        if ! DEBIAN_FRONTEND=noninteractive run_logged apt-get install -y -qq "$@"; then
            run_logged apt-get update -qq || true
            DEBIAN_FRONTEND=noninteractive run_logged apt-get install -y -qq "$@" ||
                die "could not install $* with apt-get; install $what yourself and rerun."
        fi
    elif command -v apt-get >/dev/null 2>&1; then
        die "missing $what. Run: sudo apt-get install $*   then rerun 'make setup'."
    else
        die "missing $what, and this is not a Debian/Ubuntu system (no apt-get): install it with your" \
            "package manager and rerun 'make setup'."
    fi
}

pip_failure_hint() {
    if grep -qE 'NewConnectionError|Temporary failure in name resolution|Network is unreachable|ConnectTimeout|ReadTimeout|Could not fetch URL|ProxyError|SSLError' "$LOG"; then
        warn "pip could not reach the package index. Check network access to PyPI (or the index set in" \
            "'pip config list' / PIP_INDEX_URL) and rerun 'make setup'."
    elif grep -qE 'No matching distribution found|Could not find a version' "$LOG"; then
        warn "a package in requirements.txt was not found on the index (see the log): the index may be" \
            "unreachable, or this Python version has no wheel for it (torch 2.14.1 here is for Python 3.11)."
    elif grep -qE 'No space left on device' "$LOG"; then
        warn "the disk filled up while installing: free space (about 10 GB) and rerun 'make setup'."
    fi
}
