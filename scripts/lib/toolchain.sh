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
