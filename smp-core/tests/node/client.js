// TLS 1.3 client on OpenSSL (node) for interop tests of our server.
// Usage: node client.js '<json options>'
//   {port, ca, ciphers, ecdhCurve, alpn}
// Sends its own Finished (tls-unique on the client side) as a hex line,
// reads the server's session id line, and prints what OpenSSL reports:
//   FINISHED <hex> / CIPHER <name> / ALPN <proto> / SERVER <hex>
'use strict';
const tls = require('tls');
const fs = require('fs');

const opts = JSON.parse(process.argv[2]);
const socket = tls.connect({
  host: '127.0.0.1',
  port: opts.port,
  minVersion: 'TLSv1.3',
  maxVersion: 'TLSv1.3',
  ciphers: opts.ciphers || 'TLS_CHACHA20_POLY1305_SHA256',
  ecdhCurve: opts.ecdhCurve || 'X25519',
  sigalgs: 'ed448:ed25519',
  ALPNProtocols: [opts.alpn || 'smp/1'],
  ca: fs.readFileSync(opts.ca),
  // SimpleX leaves have only a CN; the reference skips the host-name check.
  checkServerIdentity: () => undefined,
});

socket.on('secureConnect', () => {
  const finished = socket.getFinished().toString('hex');
  console.log(`FINISHED ${finished}`);
  console.log(`CIPHER ${socket.getCipher().standardName}`);
  console.log(`ALPN ${socket.alpnProtocol}`);
  socket.write(finished + '\n');
});

let buf = '';
socket.on('data', (d) => {
  buf += d.toString();
  const nl = buf.indexOf('\n');
  if (nl >= 0) {
    console.log(`SERVER ${buf.slice(0, nl)}`);
    socket.end();
  }
});
socket.on('error', (e) => {
  console.log(`ERROR ${e.code || e.message}`);
  process.exitCode = 1;
});
