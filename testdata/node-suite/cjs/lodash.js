'use strict';
// require() of a classic CommonJS package, its deep paths and its template engine.
const assert = require('node:assert/strict');
const { pkgVersion } = require('../lib/pkg');
const _ = require('lodash');
const debounce = require('lodash/debounce');
const fpMap = require('lodash/fp/map');

assert.deepEqual(_.chunk([1, 2, 3, 4, 5], 2), [[1, 2], [3, 4], [5]]);
assert.equal(_.kebabCase('Vrift Node Suite'), 'vrift-node-suite');
assert.deepEqual(_.groupBy(['one', 'two', 'three'], 'length'), { 3: ['one', 'two'], 5: ['three'] });
const deep = { a: { b: [1, { c: 2 }] } };
const clone = _.cloneDeep(deep);
assert.notEqual(clone.a, deep.a);
assert.deepEqual(clone, deep);
assert.equal(_.template('hello <%= name %>!')({ name: 'vrift' }), 'hello vrift!');
assert.deepEqual(fpMap((x) => x * 2)([1, 2, 3]), [2, 4, 6]);
assert.equal(typeof debounce(() => {}, 10).cancel, 'function');
assert.equal(pkgVersion('lodash', __dirname), _.VERSION);

console.log('lodash', _.VERSION, 'from', require.resolve('lodash'));
console.log('lodash ok');
