'use strict';
// yargs: commands, typed options and validation, parsed from a fixed argv.
const assert = require('node:assert/strict');
const { pkgVersion } = require('../lib/pkg');
const yargs = require('yargs/yargs');
const { hideBin } = require('yargs/helpers');

let served = null;
const parser = yargs(hideBin(['node', 'cli.js', 'serve', '--port', '8080', '-v', '--tag', 'a', '--tag', 'b']))
  .scriptName('vrift-demo')
  .command(
    'serve [dir]',
    'serve a directory',
    (y) =>
      y
        .positional('dir', { type: 'string', default: '.' })
        .option('port', { type: 'number', demandOption: true })
        .option('tag', { type: 'array', string: true }),
    (argv) => {
      served = argv;
    },
  )
  .option('verbose', { alias: 'v', type: 'boolean', default: false })
  .strict()
  .exitProcess(false)
  .fail((msg, err) => {
    throw err || new Error(msg);
  });

parser.parse();
assert.equal(served.port, 8080);
assert.equal(served.dir, '.');
assert.equal(served.verbose, true);
assert.deepEqual(served.tag, ['a', 'b']);

assert.throws(
  () => yargs(['serve']).command('serve', 'x', (y) => y.option('port', { demandOption: true })).exitProcess(false).fail((m) => { throw new Error(m); }).parse(),
  /Missing required argument: port/,
);

console.log('yargs', pkgVersion('yargs', __dirname), 'ok');
