// ESM importing CommonJS (lodash, semver, debug), dual packages (uuid, zod, commander) and a dynamic import.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import _ from 'lodash';
import semver from 'semver';
import createDebug from 'debug';
import { v4 as uuidv4, validate as uuidValidate } from 'uuid';
import { z } from 'zod';
import { Command } from 'commander';

assert.deepEqual(_.uniq([3, 1, 3, 2, 1]), [3, 1, 2]);
assert.equal(semver.maxSatisfying(['1.2.3', '1.9.0', '2.0.0'], '^1.2.0'), '1.9.0');
assert.ok(semver.gt('14.2.35', '14.2.9'));
assert.equal(typeof createDebug('vrift:suite'), 'function');
assert.ok(uuidValidate(uuidv4()));

const Pkg = z.object({
  name: z.string().min(1),
  version: z.string().refine((v) => semver.valid(v) !== null, 'not semver'),
  private: z.boolean().optional(),
});
const { pkgJson } = createRequire(import.meta.url)('../lib/pkg.js');
const here = fileURLToPath(new URL('.', import.meta.url));
for (const name of ['lodash', 'semver', 'debug', 'uuid', 'zod', 'commander']) {
  const parsed = Pkg.parse(pkgJson(name, here));
  assert.equal(parsed.name, name);
}
assert.equal(Pkg.safeParse({ name: '', version: 'x' }).success, false);
assert.equal(new Command('x').name(), 'x');

const rxjs = await import('rxjs');
assert.equal(typeof rxjs.firstValueFrom, 'function');

console.log('esm interop ok');
