// Vite build; cacheDir is moved out of node_modules/.vite (VRIFT_SUITE_CACHE is set by node-suite.sh).
import { defineConfig } from 'vite';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import os from 'node:os';

const root = path.dirname(fileURLToPath(import.meta.url));
const cache = process.env.VRIFT_SUITE_CACHE || path.join(os.tmpdir(), 'vrift-node-suite-cache');

export default defineConfig({
  root,
  cacheDir: path.join(cache, 'vite'),
  clearScreen: false,
  logLevel: 'info',
  build: {
    outDir: path.join(root, 'dist'),
    emptyOutDir: true,
    reportCompressedSize: false,
    sourcemap: false,
  },
});
