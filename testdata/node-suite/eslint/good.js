'use strict';
const path = require('path');

function relativeParts(from, to) {
  const rel = path.relative(from, to);
  return rel === '' ? [] : rel.split(path.sep);
}

module.exports = { relativeParts };
console.log(relativeParts('/a/b', '/a/b/c/d').length === 2);
