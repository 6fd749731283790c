'use strict';
// Production build for Node: resolves lodash/dayjs/rxjs from the project's node_modules,
// minifies with terser. Caching is off so nothing is written under node_modules/.cache.
const path = require('node:path');

module.exports = {
  mode: 'production',
  target: 'node20',
  context: __dirname,
  entry: './src/index.js',
  output: {
    path: path.join(__dirname, 'dist'),
    filename: 'bundle.js',
    clean: true,
  },
  cache: false,
  devtool: false,
  performance: { hints: false },
  infrastructureLogging: { level: 'warn' },
  stats: 'errors-warnings',
};
