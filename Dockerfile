# syntax=docker/dockerfile:1
# flyte-workspace-controller image. Build:  docker build -t flyte-workspace-controller:0.1.0 .
# (podman build works the same; scripts/build-image.sh builds it on machines without a registry.)
#
# Stages, all on the same Debian release (bookworm), so the node_modules installed in `deps` run unchanged
# on the slim runtime:
#   lockfile  the committed package.json + package-lock.json reduced to the runtime dependencies plus
#             typescript; npm prunes the lockfile offline and every remaining entry is checked to be exactly
#             the committed one (scripts/image/runtime-lockfile.ts explains why `npm ci` needs this)
#   build     `npm ci` of that pair, then tsc -> dist/
#   deps      production dependencies only: `npm ci --omit=dev` of the same pair
#   runtime   node:24-bookworm-slim + package.json (ESM "type": "module") + node_modules + dist/ + manifests/,
#             non-root numeric user, nothing written to the root filesystem (logs go to stdout; the
#             Deployment mounts an emptyDir on /tmp and sets readOnlyRootFilesystem).
# Reproducible: the same commit gives the same files; with fixed timestamps (podman build --timestamp 0, or
# BuildKit's SOURCE_DATE_EPOCH with rewrite-timestamp) it gives the same image ID.
ARG NODE_IMAGE=node:24-bookworm
ARG NODE_RUNTIME_IMAGE=node:24-bookworm-slim

FROM ${NODE_IMAGE} AS lockfile
WORKDIR /src
COPY package.json package-lock.json ./
COPY scripts/image/runtime-lockfile.ts /opt/
RUN node /opt/runtime-lockfile.ts

FROM ${NODE_IMAGE} AS build
WORKDIR /src
ENV npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
COPY .npmrc ./
COPY --from=lockfile /src/package.json /src/package-lock.json ./
# --ignore-scripts: no dependency of the image needs an install script.
RUN npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npx tsc -p tsconfig.build.json && rm -f dist/.tsbuildinfo

FROM ${NODE_IMAGE} AS deps
WORKDIR /src
ENV npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
COPY .npmrc ./
COPY --from=lockfile /src/package.json /src/package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts

FROM ${NODE_RUNTIME_IMAGE} AS runtime
LABEL org.opencontainers.image.title="flyte-workspace-controller" \
      org.opencontainers.image.description="Provisions Flyte projects, tenant namespaces and IAM roles for workspaces described by ConfigMaps" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV NODE_ENV=production
WORKDIR /app
# Owned by root and read-only to the process: the controller never writes next to its code.
COPY --from=deps /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY package.json ./
COPY manifests ./manifests
# 65532 = the conventional "nonroot" uid/gid; numeric so runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532
EXPOSE 8080 8081
# Node's flags (heap size) belong on this command line, not in NODE_OPTIONS: Node refuses some of them
# there (--optimize-for-size) and exits 9. manifests/deployment.yaml sets them with `command`.
ENTRYPOINT ["node", "dist/cli.js"]
CMD ["run"]
