'use strict';
// Read an installed package's package.json by walking up node_modules dirs like Node's
// resolver does. require('<name>/package.json') is not usable: an "exports" map may forbid it.
const fs = require('node:fs');
const path = require('node:path');

function pkgJson(name, from) {
  let dir = path.resolve(from);
  for (;;) {
    const p = path.join(dir, 'node_modules', name, 'package.json');
    if (fs.existsSync(p)) return JSON.parse(fs.readFileSync(p, 'utf8'));
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`package ${name} not found from ${from}`);
    dir = up;
  }
}

module.exports = { pkgJson, pkgVersion: (name, from) => pkgJson(name, from).version };
