import { Entry, Kind, summarize } from './shapes';

// lib is plain ES2020 with no @types: declare the one host API used.
declare const console: { log(...args: unknown[]): void };

const raw: unknown[] = [
  { path: 'node_modules/lodash/package.json', kind: 'file', size: 578, mode: 0o644 },
  { path: 'node_modules/.bin/tsc', kind: 'symlink', size: 0 },
  { path: 'node_modules/lodash', kind: 'dir', size: 4096 },
  { path: 'node_modules/lodash/lodash.js', kind: 'file', size: 544098 },
];

const entries = raw.map((r) => Entry.parse(r));
const s = summarize(entries);
const bad = Entry.safeParse({ path: 'x', kind: 'socket', size: -1 });

console.log(`files=${s.counts[Kind.File]} dirs=${s.counts[Kind.Dir]} symlinks=${s.counts[Kind.Symlink]} bytes=${s.bytes}`);
console.log(`invalid=${bad.success ? 'no' : bad.error.issues.map((i) => i.path.join('.')).join(',')}`);
