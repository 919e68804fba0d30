// The pod sandbox ("pause") image, built here because no registry is reachable: Kubernetes' own
// build/pause/linux/pause.c from the k8s.io/kubernetes module the control plane is built from, compiled
// static with gcc, as a one-layer OCI image archive that `ctr images import` takes. Cached by version.

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const PAUSE_VERSION = '3.10';
export const PAUSE_IMAGE = `localhost/flyte-workspace-controller/pause:${PAUSE_VERSION}`;

function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * Writes an OCI image layout holding one layer (the contents of `rootfs`), as a tar archive at `archive`.
 * Reproducible: fixed owners and times, sorted entries.
 */
export function writeOciArchive(opts: {
  rootfs: string;
  archive: string;
  ref: string;
  entrypoint: string[];
  workingDir?: string;
  env?: string[];
}): void {
  const work = mkdtempSync(`${opts.archive}.work-`);
  try {
    const blobs = join(work, 'layout', 'blobs', 'sha256');
    mkdirSync(blobs, { recursive: true });
    const layerTar = join(work, 'layer.tar');
    execFileSync('tar', [
      '--sort=name',
      '--owner=0',
      '--group=0',
      '--numeric-owner',
      '--mtime=@0',
      '-C',
      opts.rootfs,
      '-cf',
      layerTar,
      '.',
    ]);
    const layer = readFileSync(layerTar);
    const layerDigest = sha256(layer);
    writeFileSync(join(blobs, layerDigest), layer);
    const config = Buffer.from(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        config: { Entrypoint: opts.entrypoint, WorkingDir: opts.workingDir, Env: opts.env },
        rootfs: { type: 'layers', diff_ids: [`sha256:${layerDigest}`] },
      }),
    );
    const configDigest = sha256(config);
    writeFileSync(join(blobs, configDigest), config);
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: {
          mediaType: 'application/vnd.oci.image.config.v1+json',
          digest: `sha256:${configDigest}`,
          size: config.length,
        },
        layers: [
          { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: `sha256:${layerDigest}`, size: layer.length },
        ],
      }),
    );
    const manifestDigest = sha256(manifest);
    writeFileSync(join(blobs, manifestDigest), manifest);
    writeFileSync(join(work, 'layout', 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    writeFileSync(
      join(work, 'layout', 'index.json'),
      JSON.stringify({
        schemaVersion: 2,
        manifests: [
          {
            mediaType: 'application/vnd.oci.image.manifest.v1+json',
            digest: `sha256:${manifestDigest}`,
            size: manifest.length,
            platform: { architecture: 'amd64', os: 'linux' },
            annotations: { 'io.containerd.image.name': opts.ref },
          },
        ],
      }),
    );
    const tmp = `${opts.archive}.tmp`;
    execFileSync('tar', [
      '--sort=name',
      '--owner=0',
      '--group=0',
      '--mtime=@0',
      '-C',
      join(work, 'layout'),
      '-cf',
      tmp,
      '.',
    ]);
    renameSync(tmp, opts.archive);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** Where the k8s.io/kubernetes module of that version sits in the Go module cache (downloads it if needed). */
function kubernetesModuleDir(kubeVersion: string): string {
  const out = execFileSync('go', ['mod', 'download', '-json', `k8s.io/kubernetes@v${kubeVersion}`], {
    cwd: '/',
    encoding: 'utf8',
    env: { ...process.env, GOFLAGS: '-mod=mod' },
  });
  const dir = (JSON.parse(out) as { Dir?: string }).Dir;
  if (!dir) throw new Error(`go mod download k8s.io/kubernetes@v${kubeVersion} gave no directory:\n${out}`);
  return dir;
}

/** Builds (once) and returns the pause image archive under `cacheDir`. */
export function pauseImageArchive(cacheDir: string, kubeVersion: string): string {
  const archive = join(cacheDir, `pause-${PAUSE_VERSION}.oci.tar`);
  if (existsSync(archive)) return archive;
  mkdirSync(cacheDir, { recursive: true });
  const source = join(kubernetesModuleDir(kubeVersion), 'build', 'pause', 'linux', 'pause.c');
  const work = mkdtempSync(join(cacheDir, 'pause-build-'));
  try {
    mkdirSync(join(work, 'rootfs'));
    execFileSync(
      'gcc',
      [
        '-Os',
        '-Wall',
        '-Werror',
        '-static',
        `-DVERSION=v${PAUSE_VERSION}`,
        '-o',
        join(work, 'rootfs', 'pause'),
        source,
      ],
      {
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    execFileSync('strip', [join(work, 'rootfs', 'pause')]);
    writeOciArchive({ rootfs: join(work, 'rootfs'), archive, ref: PAUSE_IMAGE, entrypoint: ['/pause'] });
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return archive;
}
