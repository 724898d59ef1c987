#!/usr/bin/env bash
# The system packages of scripts/system-packages.txt, by group (run, test, podman, ... or all):
#   scripts/system-packages.sh install GROUP...   apt-get install the packages whose program is missing
#   scripts/system-packages.sh check GROUP...     exit 1 naming the package of every missing program
# Idempotent: what is present is left alone.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
SYSTEM_PACKAGES=${RABBITIPC_SYSTEM_PACKAGES:-$ROOT/scripts/system-packages.txt}   # another list: for tests

usage() { die "usage: $0 install|check GROUP... (groups: $(list_groups | tr '\n' ' ')all)"; }
list_groups() { grep -v '^#' "$SYSTEM_PACKAGES" | awk 'NF { print $1 }' | sort -u; }

[ $# -ge 2 ] || usage
action=$1
shift
case $action in install|check) ;; *) usage ;; esac
for group in "$@"; do
  [ "$group" = all ] || list_groups | grep -qx "$group" || usage
done

missing_programs=()
missing_packages=()
while read -r group program package _why; do
  wanted=0
  for want in "$@"; do [ "$want" = all ] || [ "$want" = "$group" ] && wanted=1; done
  [ $wanted -eq 1 ] || continue
  have_program "$program" && continue
  missing_programs+=("$program")
  missing_packages+=("$package")
done < <(grep -v '^#' "$SYSTEM_PACKAGES" | awk 'NF')

[ ${#missing_programs[@]} -eq 0 ] && { log "system packages for: $* present"; exit 0; }

if [ "$action" = install ]; then
  installable=()
  for package in "${missing_packages[@]}"; do [ "$package" = - ] || installable+=("$package"); done
  [ ${#installable[@]} -eq 0 ] || apt_install "${installable[@]}"
  exec "$0" check "$@"
fi
for i in "${!missing_programs[@]}"; do
  if [ "${missing_packages[$i]}" = - ]; then
    printf 'missing: %s (comes with the base image, not from apt-get)\n' "${missing_programs[$i]}" >&2
  else
    printf 'missing: %s (apt-get install -y %s)\n' "${missing_programs[$i]}" "${missing_packages[$i]}" >&2
  fi
done
exit 1
