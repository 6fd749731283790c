'use strict';
// Every jest cache/coverage path points outside node_modules (VRIFT_SUITE_CACHE is set by node-suite.sh).
const path = require('node:path');
const os = require('node:os');

const cache = process.env.VRIFT_SUITE_CACHE || path.join(os.tmpdir(), 'vrift-node-suite-cache');

module.exports = {
  rootDir: __dirname,
  testEnvironment: 'node',
  testMatch: ['<rootDir>/__tests__/**/*.test.js'],
  cacheDirectory: path.join(cache, 'jest'),
  collectCoverage: true,
  collectCoverageFrom: ['<rootDir>/src/**/*.js'],
  coverageDirectory: path.join(cache, 'jest-coverage'),
  coverageReporters: ['text-summary'],
  watchman: false,
};
