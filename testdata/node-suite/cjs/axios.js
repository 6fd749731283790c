'use strict';
// axios through its Node http adapter against a loopback server (no proxy, no outside network).
const assert = require('node:assert/strict');
const http = require('node:http');
const axios = require('axios');

const server = http.createServer((req, res) => {
  let body = '';
  req.on('data', (c) => (body += c));
  req.on('end', () => {
    if (req.url === '/missing') {
      res.writeHead(404, { 'content-type': 'application/json' });
      return res.end('{"error":"not found"}');
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ method: req.method, url: req.url, agent: req.headers['x-suite'], body: body || null }));
  });
});

const timer = setTimeout(() => {
  console.error('axios: timed out');
  process.exit(2);
}, 10000);

server.listen(0, '127.0.0.1', async () => {
  try {
    const { port } = server.address();
    const client = axios.create({ baseURL: `http://127.0.0.1:${port}`, proxy: false, timeout: 5000 });
    client.interceptors.request.use((cfg) => {
      cfg.headers['x-suite'] = 'vrift';
      return cfg;
    });
    const a = await client.get('/things', { params: { q: 'a b', n: 2 } });
    assert.equal(a.status, 200);
    assert.deepEqual(a.data, { method: 'GET', url: '/things?q=a+b&n=2', agent: 'vrift', body: null });
    const b = await client.post('/things', { x: 1 });
    assert.deepEqual(JSON.parse(b.data.body), { x: 1 });
    await assert.rejects(client.get('/missing'), (err) => axios.isAxiosError(err) && err.response.status === 404);
    console.log('axios', axios.VERSION, 'ok');
  } catch (err) {
    console.error(err);
    process.exitCode = 1;
  } finally {
    clearTimeout(timer);
    server.close();
  }
});
