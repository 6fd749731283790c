'use strict';
// rxjs: operators, subjects and promise interop.
const assert = require('node:assert/strict');
const { pkgVersion } = require('../lib/pkg');
const { from, range, BehaviorSubject, lastValueFrom, firstValueFrom, timer } = require('rxjs');
const { filter, map, reduce, toArray, scan, take, mergeMap } = require('rxjs/operators');

(async () => {
  const sumOfDoubledEvens = await lastValueFrom(
    range(1, 10).pipe(filter((n) => n % 2 === 0), map((n) => n * 2), reduce((a, b) => a + b, 0)),
  );
  assert.equal(sumOfDoubledEvens, 60);

  const running = await lastValueFrom(from([1, 2, 3, 4]).pipe(scan((a, b) => a + b, 0), toArray()));
  assert.deepEqual(running, [1, 3, 6, 10]);

  const subject = new BehaviorSubject('a');
  const seen = [];
  const sub = subject.subscribe((v) => seen.push(v));
  subject.next('b');
  subject.next('c');
  sub.unsubscribe();
  subject.next('d');
  assert.deepEqual(seen, ['a', 'b', 'c']);

  const merged = await lastValueFrom(
    from([30, 10, 20]).pipe(mergeMap((ms) => timer(ms).pipe(map(() => ms))), take(3), toArray()),
  );
  assert.deepEqual(merged, [10, 20, 30]);
  assert.equal(await firstValueFrom(subject), 'd');

  console.log('rxjs', pkgVersion('rxjs', __dirname), 'ok');
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
