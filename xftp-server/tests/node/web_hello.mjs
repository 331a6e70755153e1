// A browser-like XFTP web client in node: HTTP/2 over TLS with SNI, the
// CORS preflight, and the web hello whose identity proof it verifies the
// way xftp-web does (chain of 2-4 certificates, SHA-256 of the identity
// certificate = the server's key hash, proof over challenge || sessionId
// signed by the leaf key from the handshake chain).
//
// usage: node web_hello.mjs <port> <key hash, base64url>
// Prints one JSON line; exits 1 on any failed check.
import http2 from 'node:http2';
import crypto from 'node:crypto';

const [port, keyHashB64] = process.argv.slice(2);
const BLOCK = 16384;
const fail = (msg) => {
  console.log(JSON.stringify({ ok: false, error: msg }));
  process.exit(1);
};

function pad(msg) {
  const b = Buffer.alloc(BLOCK, '#');
  b.writeUInt16BE(msg.length, 0);
  msg.copy(b, 2);
  return b;
}

function unpad(b) {
  if (b.length !== BLOCK) fail(`block of ${b.length} bytes`);
  const n = b.readUInt16BE(0);
  return b.subarray(2, 2 + n);
}

function request(session, headers, body) {
  return new Promise((resolve, reject) => {
    const req = session.request(headers);
    const chunks = [];
    let head;
    req.on('response', (h) => { head = h; });
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve({ headers: head, body: Buffer.concat(chunks) }));
    req.on('error', reject);
    req.end(body);
  });
}

function parseServerHandshake(b) {
  let i = 0;
  const u8 = () => b[i++];
  const u16 = () => { const v = b.readUInt16BE(i); i += 2; return v; };
  const take = (n) => { const v = b.subarray(i, i + n); i += n; return v; };
  const minV = u16(), maxV = u16();
  const sessionId = take(u8());
  const chain = [];
  for (let n = u8(); n > 0; n--) chain.push(take(u16()));
  const signedKey = take(u16());
  const proof = i < b.length ? take(u8()) : Buffer.alloc(0);
  return { minV, maxV, sessionId, chain, signedKey, proof };
}

const session = http2.connect(`https://127.0.0.1:${port}`, {
  servername: 'localhost',
  rejectUnauthorized: false, // a test certificate; the proof is what is checked
});
session.on('error', (e) => fail(`session: ${e.message}`));

try {
  const pre = await request(session, { ':method': 'OPTIONS', ':path': '/' });
  const preOk = pre.headers[':status'] === 200
    && pre.headers['access-control-allow-origin'] === '*'
    && pre.headers['access-control-allow-methods'] === 'POST, OPTIONS'
    && pre.headers['access-control-allow-headers'] === '*'
    && pre.headers['access-control-max-age'] === '86400';
  if (!preOk) fail(`preflight headers ${JSON.stringify(pre.headers)}`);

  const challenge = crypto.randomBytes(32);
  const hello = pad(Buffer.concat([Buffer.from([0x31, 32]), challenge]));
  const r = await request(
    session,
    { ':method': 'POST', ':path': '/', 'xftp-web-hello': '1' },
    hello,
  );
  if (r.headers['access-control-allow-origin'] !== '*'
    || r.headers['access-control-expose-headers'] !== '*') {
    fail(`no CORS headers on the hello: ${JSON.stringify(r.headers)}`);
  }
  const hs = parseServerHandshake(unpad(r.body));
  if (hs.chain.length < 2 || hs.chain.length > 4) fail(`chain of ${hs.chain.length}`);
  const idHash = crypto.createHash('sha256').update(hs.chain[1]).digest('base64url');
  if (idHash !== keyHashB64.replace(/=+$/, '')) fail('identity certificate does not match the key hash');
  const leafKey = new crypto.X509Certificate(hs.chain[0]).publicKey;
  const proofOk = crypto.verify(null, Buffer.concat([challenge, hs.sessionId]), leafKey, hs.proof);
  if (!proofOk) fail('identity proof does not verify');
  // The same proof must not verify for another challenge.
  const other = Buffer.from(challenge); other[0] ^= 1;
  if (crypto.verify(null, Buffer.concat([other, hs.sessionId]), leafKey, hs.proof)) {
    fail('proof verifies for a different challenge');
  }
  console.log(JSON.stringify({
    ok: true,
    versions: [hs.minV, hs.maxV],
    sessionIdLength: hs.sessionId.length,
    proofLength: hs.proof.length,
    leafKeyType: leafKey.asymmetricKeyType,
  }));
  session.close();
} catch (e) {
  fail(String(e));
}
