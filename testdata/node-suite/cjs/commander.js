'use strict';
// commander: options, arguments, subcommands, parsed from a fixed argv.
const assert = require('node:assert/strict');
const { pkgVersion } = require('../lib/pkg');
const { Command, InvalidArgumentError } = require('commander');

function parseIntStrict(v) {
  const n = Number.parseInt(v, 10);
  if (Number.isNaN(n)) throw new InvalidArgumentError('not a number');
  return n;
}

let built = null;
const program = new Command('vrift-demo').exitOverride().configureOutput({ writeErr: () => {}, writeOut: () => {} });
program.option('-v, --verbose', 'be loud').option('--store <dir>', 'store dir', '/default/store');
program
  .command('ingest')
  .argument('<paths...>')
  .option('-j, --jobs <n>', 'parallelism', parseIntStrict, 1)
  .option('--no-hardlinks', 'copy instead of linking')
  .action((paths, opts) => {
    built = { paths, opts };
  });

program.parse(['ingest', 'a/node_modules', 'b/node_modules', '-j', '4', '--no-hardlinks'], { from: 'user' });
assert.deepEqual(built.paths, ['a/node_modules', 'b/node_modules']);
assert.equal(built.opts.jobs, 4);
assert.equal(built.opts.hardlinks, false);
assert.equal(program.opts().store, '/default/store');

const bad = new Command().exitOverride().configureOutput({ writeErr: () => {} });
bad.option('-j, --jobs <n>', 'n', parseIntStrict);
assert.throws(() => bad.parse(['-j', 'lots'], { from: 'user' }), /not a number/);

console.log('commander', pkgVersion('commander', __dirname), 'ok');
