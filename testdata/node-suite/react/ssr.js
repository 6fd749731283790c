'use strict';
// react + react-dom/server: server-side render a small component tree.
const assert = require('node:assert/strict');
const { pkgVersion } = require('../lib/pkg');
const React = require('react');
const { renderToStaticMarkup, renderToString } = require('react-dom/server');

const h = React.createElement;
function Item({ label }) {
  return h('li', { className: 'item' }, label);
}
function List({ items }) {
  const [count] = React.useState(items.length);
  return h('section', null, h('h1', null, `${count} packages`), h('ul', null, items.map((l) => h(Item, { key: l, label: l }))));
}

const html = renderToStaticMarkup(h(List, { items: ['react', 'react-dom', 'next'] }));
assert.equal(
  html,
  '<section><h1>3 packages</h1><ul><li class="item">react</li><li class="item">react-dom</li><li class="item">next</li></ul></section>',
);
assert.match(renderToString(h(Item, { label: 'x' })), /^<li class="item">x<\/li>$/);
assert.equal(React.version, pkgVersion('react-dom', __dirname));

console.log('react', React.version, 'ssr ok');
