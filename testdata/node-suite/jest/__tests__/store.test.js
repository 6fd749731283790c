'use strict';
const { Store, ingestAll } = require('../src/store');

describe('Store', () => {
  test('dedups identical content', () => {
    const s = new Store();
    const a = s.put('module.exports = 1;\n');
    const b = s.put('module.exports = 1;\n');
    const c = s.put('module.exports = 2;\n');
    expect(a).toBe(b);
    expect(c).not.toBe(a);
    expect(s.stats()).toEqual({ blobs: 2, bytes: 40 });
  });

  test('get returns the stored bytes and throws on unknown digests', () => {
    const s = new Store();
    const d = s.put('hello');
    expect(s.get(d).toString()).toBe('hello');
    expect(() => s.get('0'.repeat(64))).toThrow(/missing blob/);
  });

  test('ingestAll calls back for every file', async () => {
    const s = new Store();
    const onEach = jest.fn().mockResolvedValue(undefined);
    const out = await ingestAll(s, { 'a.js': 'x', 'b.js': 'x', 'c.js': 'y' }, onEach);
    expect(onEach).toHaveBeenCalledTimes(3);
    expect(out['a.js']).toEqual(out['b.js']);
    expect(s.stats().blobs).toBe(2);
  });
});

describe('module mocking', () => {
  test('jest.doMock replaces a node_modules package', () => {
    jest.isolateModules(() => {
      jest.doMock('lodash', () => ({ sumBy: () => 12345 }));
      const { Store: MockedStore } = require('../src/store');
      expect(new MockedStore().stats().bytes).toBe(12345);
    });
    expect(new Store().stats().bytes).toBe(0);
  });
});
