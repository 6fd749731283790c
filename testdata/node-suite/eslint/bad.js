'use strict';
var unused = 1;

function check(x) {
  if (x == null) return missingName;
  let y = x + 1;
  return y;
}

module.exports = check;
