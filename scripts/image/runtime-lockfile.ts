// Turns the committed package.json + package-lock.json in a folder into the pair the container image
// installs from with `npm ci`: the runtime dependencies plus typescript (to build dist/), nothing else.
//
// Why: the committed lockfile also locks the dev tools (biome, buf), whose per-platform optional binaries
// for other operating systems are missing from it, so `npm ci` (with or without --omit=dev) refuses it as a
// whole. npm, asked for a lockfile of the reduced package.json offline and with an empty cache, can only
// prune the committed one (it has no metadata to resolve anything anew); this file then checks that every
// remaining entry is exactly the committed one (version, resolved, integrity, ...), so the image installs
// what the lockfile locked or the build fails.
//
// Runs inside the image build with plain `node` (type stripping: no imports beyond node:*), in a folder
// that holds package.json and package-lock.json: `node runtime-lockfile.ts`.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';

interface PackageJson {
  name?: string;
  version?: string;
  type?: string;
  license?: string;
  private?: boolean;
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
}

interface Lockfile {
  lockfileVersion: number;
  packages: Record<string, Record<string, unknown>>;
}

const readJson = <T>(file: string): T => JSON.parse(readFileSync(file, 'utf8')) as T;

/** Rewrites dir/package.json and dir/package-lock.json; returns how many packages the pruned lockfile holds. */
export function pruneLockfileForImage(dir: string, npm = 'npm'): number {
  const manifest = readJson<PackageJson>(join(dir, 'package.json'));
  const committed = readJson<Lockfile>(join(dir, 'package-lock.json'));
  const typescript = manifest.devDependencies?.typescript;
  if (!typescript) throw new Error('package.json: devDependencies.typescript is needed to build dist/');
  const reduced: PackageJson = {
    name: manifest.name,
    version: manifest.version,
    type: manifest.type,
    license: manifest.license,
    private: manifest.private,
    dependencies: manifest.dependencies ?? {},
    devDependencies: { typescript },
  };
  writeFileSync(join(dir, 'package.json'), `${JSON.stringify(reduced, null, 2)}\n`);

  // An empty cache and --offline: npm cannot fetch metadata, so it cannot re-resolve; anything the
  // committed lockfile does not already hold fails here (ENOTCACHED) instead of being picked anew.
  const cache = mkdtempSync(join(tmpdir(), 'fwc-npm-cache-'));
  try {
    const npmRun = spawnSync(
      npm,
      [
        'install',
        '--package-lock-only',
        '--offline',
        '--ignore-scripts',
        '--no-audit',
        '--no-fund',
        '--loglevel=error',
      ],
      { cwd: dir, encoding: 'utf8', env: { ...process.env, npm_config_cache: cache } },
    );
    if (npmRun.status !== 0) {
      throw new Error(
        `npm could not prune package-lock.json to the image's dependencies (exit ${npmRun.status ?? npmRun.signal}):\n${npmRun.stderr}${npmRun.error ?? ''}`,
      );
    }
  } finally {
    rmSync(cache, { recursive: true, force: true });
  }

  const pruned = readJson<Lockfile>(join(dir, 'package-lock.json'));
  const problems: string[] = [];
  if (pruned.lockfileVersion !== committed.lockfileVersion) {
    problems.push(`lockfileVersion ${pruned.lockfileVersion} instead of ${committed.lockfileVersion}`);
  }
  for (const [path, entry] of Object.entries(pruned.packages)) {
    if (path === '') continue;
    const locked = committed.packages[path];
    if (!locked) problems.push(`${path}: not in the committed lockfile`);
    else if (!isDeepStrictEqual(entry, locked)) {
      problems.push(`${path}: ${JSON.stringify(entry)} differs from the committed ${JSON.stringify(locked)}`);
    }
  }
  for (const name of [...Object.keys(reduced.dependencies ?? {}), 'typescript']) {
    if (!pruned.packages[`node_modules/${name}`]) problems.push(`node_modules/${name}: missing`);
  }
  if (problems.length > 0) {
    throw new Error(`the pruned lockfile is not a subset of the committed one:\n  ${problems.join('\n  ')}`);
  }
  return Object.keys(pruned.packages).length - 1;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const count = pruneLockfileForImage(process.cwd());
  console.log(`runtime-lockfile: ${count} packages, each exactly as in the committed package-lock.json`);
}
