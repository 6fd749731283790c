'use strict';
// uuid (CommonJS build): random v4, and v5 checked against an independent SHA-1 computation.
const assert = require('node:assert/strict');
const { pkgVersion } = require('../lib/pkg');
const crypto = require('node:crypto');
const uuid = require('uuid');

const a = uuid.v4();
assert.ok(uuid.validate(a));
assert.equal(uuid.version(a), 4);
assert.notEqual(uuid.v4(), a);

function v5(name, ns) {
  const nsBytes = Buffer.from(ns.replace(/-/g, ''), 'hex');
  const h = crypto.createHash('sha1').update(nsBytes).update(Buffer.from(name, 'utf8')).digest();
  h[6] = (h[6] & 0x0f) | 0x50;
  h[8] = (h[8] & 0x3f) | 0x80;
  const hex = h.subarray(0, 16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
for (const name of ['vrift', 'node_modules/lodash/package.json', '']) {
  assert.equal(uuid.v5(name, uuid.v5.URL), v5(name, uuid.v5.URL));
}
assert.equal(uuid.v5.DNS, '6ba7b810-9dad-11d1-80b4-00c04fd430c8');
assert.deepEqual(Array.from(uuid.parse(uuid.NIL)), new Array(16).fill(0));
assert.equal(uuid.stringify(uuid.parse(a)), a);

console.log('uuid', pkgVersion('uuid', __dirname), 'ok');
