# syntax=docker/dockerfile:1
# flyte-workspace-controller image. Build:  docker build -t flyte-workspace-controller:0.1.0 .
#
# Three stages on the same Debian release (bookworm), so the production node_modules installed in `deps`
# run unchanged on the slim runtime:
#   build    full toolchain: `npm ci` (dev deps for tsc) + `npm run build` -> dist/
#   deps     production dependencies only: `npm ci --omit=dev`
#   runtime  node:24-bookworm-slim + package.json (ESM "type": "module") + node_modules + dist/ + manifests/,
#            non-root numeric user, nothing written to the root filesystem (logs go to stdout; the
#            Deployment mounts an emptyDir on /tmp and sets readOnlyRootFilesystem).
ARG NODE_IMAGE=node:24-bookworm
ARG NODE_RUNTIME_IMAGE=node:24-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /src
ENV npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
COPY package.json package-lock.json .npmrc ./
# --ignore-scripts: only tsc is needed here; the dev tools' install scripts (buf, esbuild) are not.
RUN npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && rm -f dist/.tsbuildinfo

FROM ${NODE_IMAGE} AS deps
WORKDIR /src
ENV npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
COPY package.json package-lock.json .npmrc ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force

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
ENTRYPOINT ["node", "dist/cli.js"]
CMD ["run"]
