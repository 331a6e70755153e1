// TLS 1.3 server on OpenSSL (node) for interop tests of our client.
// Usage: node server.js '<json options>'
//   {cert: [paths, leaf first], key, ciphers, ecdhCurve, alpn: [..], requestCert}
// requestCert mimics the reference SMP server, which asks every client for a
// certificate (normal clients answer with an empty one).
// Prints LISTENING <port>; for one connection sends the client's Finished as
// it received it (tls-unique on the server side) as a hex line, reads the
// client's session id line and prints:
//   PEER_FINISHED <hex> / CIPHER <name> / ALPN <proto> / CLIENT <hex>
'use strict';
const tls = require('tls');
const fs = require('fs');

const opts = JSON.parse(process.argv[2]);
const server = tls.createServer({
  minVersion: 'TLSv1.3',
  maxVersion: 'TLSv1.3',
  ciphers: opts.ciphers || 'TLS_CHACHA20_POLY1305_SHA256',
  ecdhCurve: opts.ecdhCurve || 'X25519',
  cert: opts.cert.map((p) => fs.readFileSync(p)).join(''),
  key: fs.readFileSync(opts.key),
  ALPNProtocols: opts.alpn || ['smp/1'],
  requestCert: !!opts.requestCert,
  rejectUnauthorized: false,
}, (socket) => {
  const peerFinished = socket.getPeerFinished().toString('hex');
  console.log(`PEER_FINISHED ${peerFinished}`);
  console.log(`CIPHER ${socket.getCipher().standardName}`);
  console.log(`ALPN ${socket.alpnProtocol}`);
  socket.write(peerFinished + '\n');
  let buf = '';
  socket.on('data', (d) => {
    buf += d.toString();
    const nl = buf.indexOf('\n');
    if (nl >= 0) {
      console.log(`CLIENT ${buf.slice(0, nl)}`);
      socket.end();
      server.close();
    }
  });
  socket.on('error', (e) => console.log(`ERROR ${e.code || e.message}`));
});
server.on('tlsClientError', (e) => {
  console.log(`ERROR ${e.code || e.message}`);
  server.close();
});
server.listen(0, '127.0.0.1', () => {
  console.log(`LISTENING ${server.address().port}`);
});
