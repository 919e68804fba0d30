# shellcheck shell=bash
# Sourced by the project's scripts: puts Node >= 24 first on PATH and installs dependencies when needed.
# The machine's default node may be older; Node 24 comes from the npm registry's `node` package, which ships
# the binary, into a project-local .tools folder (ignored by git), so a fresh clone needs no manual step.

NODE_MAJOR_REQUIRED=24
PROJECT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TOOLS_DIR="$PROJECT_ROOT/.tools"

node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

ensure_node() {
  if [ -x "$TOOLS_DIR/node_modules/node/bin/node" ]; then
    export PATH="$TOOLS_DIR/node_modules/node/bin:$PATH"
  fi
  if [ "$(node_major)" -ge "$NODE_MAJOR_REQUIRED" ]; then return 0; fi
  command -v npm >/dev/null || { echo "npm is needed to install Node $NODE_MAJOR_REQUIRED" >&2; return 1; }
  echo "[toolchain] node $(node --version 2>/dev/null || echo none) is older than $NODE_MAJOR_REQUIRED: installing node@$NODE_MAJOR_REQUIRED into .tools/" >&2
  mkdir -p "$TOOLS_DIR"
  [ -f "$TOOLS_DIR/package.json" ] || echo '{"name":"fwc-tools","private":true}' > "$TOOLS_DIR/package.json"
  (cd "$TOOLS_DIR" && npm install --no-audit --no-fund --loglevel=error "node@$NODE_MAJOR_REQUIRED" >&2)
  export PATH="$TOOLS_DIR/node_modules/node/bin:$PATH"
  if [ "$(node_major)" -lt "$NODE_MAJOR_REQUIRED" ]; then
    echo "[toolchain] could not put Node $NODE_MAJOR_REQUIRED on PATH" >&2
    return 1
  fi
}

# Installs node_modules when missing or older than the lockfile.
ensure_dependencies() {
  local stamp="$PROJECT_ROOT/node_modules/.fwc-installed"
  if [ ! -f "$stamp" ] || [ "$PROJECT_ROOT/package-lock.json" -nt "$stamp" ]; then
    echo "[toolchain] installing dependencies (npm ci)" >&2
    # npm ci refuses a lockfile that lacks the optional per-platform binaries of biome and buf for other
    # operating systems; the registry this machine reaches does not serve those (404), so no complete
    # lockfile can be written here. Fall back to an install that still honours every locked version.
    if ! (cd "$PROJECT_ROOT" && npm ci --no-audit --no-fund --loglevel=error >&2 2>/dev/null); then
      echo "[toolchain] npm ci rejected the lockfile (missing other-platform optional packages); npm install --no-save" >&2
      (cd "$PROJECT_ROOT" && npm install --no-save --no-audit --no-fund --loglevel=error >&2)
    fi
    touch "$stamp"
  fi
}

# ---------------------------------------------------------------------------------------------------------
# OS packages (container image build, real-node suite): installed with apt when running as root on Debian.
#
#   ensure_os_packages PKG...   Debian package names, e.g. podman runc debootstrap zstd containerd
#                               containernetworking-plugins. Returns 0 when all are present (installed now or
#                               before, or their programs found on a machine without dpkg), else prints a loud
#                               message naming what is missing and why it could not be installed and returns 1.
#                               The caller decides: under CI=true that must fail, outside CI it may skip.

# The program or file that shows a package is usable where dpkg cannot tell (another distribution).
os_package_probe() {
  case "$1" in
    containernetworking-plugins) [ -x /usr/lib/cni/bridge ] || [ -x /opt/cni/bin/bridge ] ;;
    containerd) command -v containerd >/dev/null && command -v ctr >/dev/null ;;
    python3-venv) python3 -c 'import ensurepip, venv' >/dev/null 2>&1 ;;
    *) command -v "$1" >/dev/null ;;
  esac
}

os_package_present() {
  if command -v dpkg-query >/dev/null; then
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ] && return 0
  fi
  os_package_probe "$1"
}

ensure_os_packages() {
  local missing=() pkg
  for pkg in "$@"; do os_package_present "$pkg" || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  local why=''
  if [ "$(id -u)" -ne 0 ]; then
    why='not running as root'
  elif ! command -v apt-get >/dev/null; then
    why='no apt-get on this machine'
  else
    echo "[toolchain] installing OS packages: ${missing[*]}" >&2
    # Once per run (exported to child scripts); another process may hold apt's lock for a while.
    if [ -z "${FWC_APT_UPDATED:-}" ]; then
      DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq >&2 || why='apt-get update failed'
      export FWC_APT_UPDATED=1
    fi
    if [ -z "$why" ]; then
      DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
        "${missing[@]}" >&2 || why='apt-get install failed'
    fi
    local still=()
    for pkg in "${missing[@]}"; do os_package_present "$pkg" || still+=("$pkg"); done
    missing=("${still[@]}")
    [ ${#missing[@]} -eq 0 ] && return 0
    why="${why:-apt-get did not install them}"
  fi
  toolchain_unavailable "OS packages ${missing[*]} are missing and cannot be installed here ($why)"
  return 1
}

# Says loudly that a prerequisite is missing. What needs it fails under CI=true and may skip (saying so)
# outside CI; the caller decides.
toolchain_unavailable() {
  {
    echo '!!! ======================================================================================'
    echo "!!! [toolchain] $1"
    echo '!!! Install them, or run as root on a Debian-based machine, where the scripts install them.'
    if [ "${CI:-}" = true ]; then echo '!!! CI=true: what needs them fails.'; fi
    echo '!!! ======================================================================================'
  } >&2
}

# ---------------------------------------------------------------------------------------------------------
# Python's moto (the IAM emulator of the tests and `npm run local`), pinned by scripts/lib/moto-requirements.txt
# in a project-local virtual environment; test/support/moto.ts starts .tools/moto-venv/bin/python.
MOTO_VENV="$TOOLS_DIR/moto-venv"
ensure_moto() {
  local req="$PROJECT_ROOT/scripts/lib/moto-requirements.txt" stamp="$MOTO_VENV/.fwc-installed"
  if [ -f "$stamp" ] && [ "$stamp" -nt "$req" ] && [ -x "$MOTO_VENV/bin/python" ]; then return 0; fi
  command -v python3 >/dev/null || ensure_os_packages python3 python3-venv || return 1
  if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then ensure_os_packages python3-venv || return 1; fi
  echo "[toolchain] installing moto (pinned) into .tools/moto-venv" >&2
  rm -rf "$MOTO_VENV"
  python3 -m venv "$MOTO_VENV" >&2 &&
    "$MOTO_VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$req" >&2 || {
    echo "[toolchain] could not install moto into .tools/moto-venv" >&2
    return 1
  }
  touch "$stamp"
}
