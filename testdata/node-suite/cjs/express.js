'use strict';
// express app with a router, JSON body parsing and a param handler, served on loopback.
const assert = require('node:assert/strict');
const { pkgVersion } = require('../lib/pkg');
const http = require('node:http');
const express = require('express');

const app = express();
app.use(express.json());
const router = express.Router();
router.param('id', (req, _res, next, id) => {
  req.item = { id: Number(id), name: `item-${id}` };
  next();
});
router.get('/items/:id', (req, res) => res.json(req.item));
router.post('/echo', (req, res) => res.status(201).json({ got: req.body }));
app.use('/api', router);
app.use((_req, res) => res.status(404).send('nope'));

function request(port, method, path, body) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request(
      { host: '127.0.0.1', port, method, path, headers: data ? { 'content-type': 'application/json' } : {} },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode, type: res.headers['content-type'], text }));
      },
    );
    req.on('error', reject);
    if (data) req.write(data);
    req.end();
  });
}

const timer = setTimeout(() => {
  console.error('express: timed out');
  process.exit(2);
}, 10000);

const server = app.listen(0, '127.0.0.1', async () => {
  try {
    const { port } = server.address();
    const a = await request(port, 'GET', '/api/items/42');
    assert.equal(a.status, 200);
    assert.match(a.type, /application\/json/);
    assert.deepEqual(JSON.parse(a.text), { id: 42, name: 'item-42' });
    const b = await request(port, 'POST', '/api/echo', { hello: ['vrift'] });
    assert.equal(b.status, 201);
    assert.deepEqual(JSON.parse(b.text), { got: { hello: ['vrift'] } });
    const c = await request(port, 'GET', '/missing');
    assert.equal(c.status, 404);
    console.log('express', pkgVersion('express', __dirname), 'ok');
  } catch (err) {
    console.error(err);
    process.exitCode = 1;
  } finally {
    clearTimeout(timer);
    server.close();
  }
});
