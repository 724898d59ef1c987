# Shared shell helpers, sourced by the top-level scripts. Not meant to run on its own.
# shellcheck shell=bash

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${RABBITIPC_VENV:-$ROOT/.venv}

log() { printf '%s\n' "==> $*" >&2; }
die() { printf '%s\n' "error: $*" >&2; exit 1; }

# as_root CMD...: run as root directly, through sudo, or fail with what to run by hand.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root to run: $* (run it as root, or install sudo)"
  fi
}

# apt_install PKG...: install the Debian packages that are missing (apt-get update first).
apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null 2>&1 || die "please install: ${missing[*]} (no apt-get on this machine)"
  log "installing ${missing[*]} with apt-get"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# have_program PROGRAM: true when PROGRAM (a name on PATH, or an absolute path or glob) exists.
have_program() {
  case $1 in
    /*) compgen -G "$1" >/dev/null ;;
    *) command -v "$1" >/dev/null 2>&1 ;;
  esac
}

# ensure_venv runtime|EXTRA: the project virtualenv with rabbitipc and its dependencies, plus the
# named extra (e.g. test), reinstalled when pyproject.toml, setup.py or the C extension's source changes. `runtime` installs only the
# runtime dependencies (the local run needs no test tools); a venv with the test extra serves a
# runtime request as it is.
ensure_venv() {
  local extra=$1
  [ "$extra" = runtime ] && extra=""
  local python=${PYTHON:-python3}
  command -v "$python" >/dev/null 2>&1 || apt_install python3
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "Python 3.11 or newer is needed ($("$python" --version 2>&1) found); set PYTHON=/path/to/python3.11"
  if [ ! -x "$VENV/bin/python" ]; then
    if ! "$python" -m venv "$VENV" >/dev/null 2>&1; then
      rm -rf "$VENV"
      apt_install python3-venv
      "$python" -m venv "$VENV"
    fi
  fi
  local want stamp
  # The C extension is built by the (editable) install: its source and setup.py count too.
  want=$(cat "$ROOT/pyproject.toml" "$ROOT/setup.py" "$ROOT/rabbitipc/wire/_speedups.c" | cksum)
  for stamp in "$VENV/.rabbitipc-installed-${extra:-runtime}" "$VENV/.rabbitipc-installed-test"; do
    [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && return 0
  done
  log "installing rabbitipc and its ${extra:+$extra }dependencies into $VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "${ROOT}${extra:+[$extra]}"
  printf '%s' "$want" >"$VENV/.rabbitipc-installed-${extra:-runtime}"
}

# wait_for DESCRIPTION SECONDS CMD...: poll CMD until it succeeds, at most SECONDS.
wait_for() {
  local what=$1 limit=$2
  shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      printf '%s\n' "error: timed out after ${limit}s waiting for $what" >&2
      return 1
    fi
    sleep 1
  done
}
