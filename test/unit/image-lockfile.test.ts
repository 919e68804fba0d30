// The container image installs from the committed lockfile pruned to the runtime dependencies plus
// typescript (scripts/image/runtime-lockfile.ts). Pruning must keep every entry exactly as locked, and must
// fail rather than resolve anything anew.
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { pruneLockfileForImage } from '../../scripts/image/runtime-lockfile.js';

const ROOT = join(import.meta.dirname, '..', '..');
interface Lock {
  packages: Record<string, Record<string, unknown>>;
}
const committed = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as Lock;
const manifest = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  dependencies: Record<string, string>;
};

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function copyOfProject(): string {
  const dir = mkdtempSync(join(tmpdir(), 'fwc-lock-'));
  dirs.push(dir);
  for (const f of ['package.json', 'package-lock.json', '.npmrc']) cpSync(join(ROOT, f), join(dir, f));
  return dir;
}

describe('the image lockfile', () => {
  it('is the committed lockfile pruned to the runtime dependencies and typescript, entries unchanged', () => {
    const dir = copyOfProject();
    const count = pruneLockfileForImage(dir);
    const pruned = JSON.parse(readFileSync(join(dir, 'package-lock.json'), 'utf8')) as Lock;
    const paths = Object.keys(pruned.packages).filter((p) => p !== '');
    expect(paths).toHaveLength(count);
    for (const p of paths) expect(pruned.packages[p], p).toEqual(committed.packages[p]);
    for (const name of [...Object.keys(manifest.dependencies), 'typescript']) {
      expect(pruned.packages[`node_modules/${name}`]?.version, name).toBe(
        committed.packages[`node_modules/${name}`]?.version,
      );
    }
    for (const devTool of ['@biomejs/biome', '@bufbuild/buf', 'vitest', 'tsx']) {
      expect(pruned.packages[`node_modules/${devTool}`], devTool).toBeUndefined();
    }
  }, 120_000);

  it('fails instead of resolving a package the committed lockfile lacks', () => {
    const dir = copyOfProject();
    const lock = JSON.parse(readFileSync(join(dir, 'package-lock.json'), 'utf8')) as Lock;
    delete lock.packages['node_modules/p-queue'];
    writeFileSync(join(dir, 'package-lock.json'), JSON.stringify(lock, null, 2));
    expect(() => pruneLockfileForImage(dir)).toThrow(/could not prune|not a subset/);
  }, 120_000);
});
