'use strict';
const crypto = require('node:crypto');
const _ = require('lodash');

// A toy content-addressed store: identical blobs are kept once.
class Store {
  constructor() {
    this.blobs = new Map();
  }

  put(content) {
    const digest = crypto.createHash('sha256').update(content).digest('hex');
    if (!this.blobs.has(digest)) this.blobs.set(digest, Buffer.from(content));
    return digest;
  }

  get(digest) {
    const b = this.blobs.get(digest);
    if (!b) throw new Error(`missing blob ${digest}`);
    return b;
  }

  stats() {
    return { blobs: this.blobs.size, bytes: _.sumBy([...this.blobs.values()], 'length') };
  }
}

async function ingestAll(store, files, onEach) {
  const out = {};
  for (const [name, content] of Object.entries(files)) {
    out[name] = store.put(content);
    await onEach(name, out[name]);
  }
  return out;
}

module.exports = { Store, ingestAll };
