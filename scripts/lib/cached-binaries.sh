# shellcheck shell=bash
# Sourced by the scripts that build tools from source into the user's cache (the control plane, Prometheus):
# where the cache is, and the early exit when the binaries are already there.

CACHE_ROOT="${FWC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/flyte-workspace-controller}"

# has_binaries DIR NAME...: every NAME is an executable file in DIR.
has_binaries() {
  local dir="$1"
  shift
  for b in "$@"; do [ -x "$dir/$b" ] || return 1; done
}

# use_existing_binaries OVERRIDE_VAR BIN_DIR NAME...: when the variable named OVERRIDE_VAR is set, prints it
# and exits if it holds every NAME (exits 1 if not); otherwise prints BIN_DIR and exits if it holds them.
# Returns (so the caller builds) only when nothing usable exists.
use_existing_binaries() {
  local var="$1" dir="$2"
  shift 2
  local override="${!var:-}"
  if [ -n "$override" ]; then
    if has_binaries "$override" "$@"; then echo "$override"; exit 0; fi
    echo "$var=$override does not contain $*" >&2
    exit 1
  fi
  if has_binaries "$dir" "$@"; then echo "$dir"; exit 0; fi
}
