//! Test helpers: an in-process router on an ephemeral loopback port and a
//! hand-rolled SMP client that builds every block itself, so tests can
//! speak any version with any hello (the shapes the SMP notes §10 list).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use smp_core::crypto::keys::{KeyAlgorithm, PrivateKey, PublicKey};
use smp_core::crypto::random_array;
use smp_core::smp::block_crypto::BlockCipher;
use smp_core::smp::command::{NewQueue, SubscriptionMode};
use smp_core::smp::handshake::{ClientHello, ServerHello};
use smp_core::smp::message::{RcvMsgBody, decrypt_rcv_msg};
use smp_core::smp::transmission::{
    AuthKey, ClientAuth, ResponseTransmission, decode_response_transmission, encode_batch,
    encode_command_transmission, parse_batch,
};
use smp_core::smp::version::{self, Version};
use smp_core::smp::{Command, ErrorType, QueueIds, QueueReqData, Response};
use smp_core::tls::{self, ServerIdentity, TlsConnection};
use smp_core::transport::{BlockReader, BlockWriter};
use smp_server::app::{RunningServer, Settings, start};
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;

pub const PATIENCE: Duration = Duration::from_secs(10);

pub struct Env {
    pub dir: tempfile::TempDir,
    pub identity: ServerIdentity,
}

impl Env {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (identity, _) = ServerIdentity::generate(KeyAlgorithm::Ed25519, "127.0.0.1").unwrap();
        Self { dir, identity }
    }

    pub fn store_log(&self) -> PathBuf {
        self.dir.path().join("smp-server-store.log")
    }

    pub fn messages(&self) -> PathBuf {
        self.dir.path().join("smp-server-messages.log")
    }

    pub fn settings(&self) -> Settings {
        Settings::new(self.identity.clone(), SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// With the store log and message journal in this env's directory.
    pub fn persistent_settings(&self) -> Settings {
        let mut s = self.settings();
        s.store_log = Some(self.store_log());
        s.messages = Some(self.messages());
        s.ntfs = Some(self.dir.path().join("smp-server-ntfs.log"));
        s
    }

    pub async fn start(&self) -> RunningServer {
        start(self.settings()).await.unwrap()
    }

    pub fn key_hash(&self) -> [u8; 32] {
        self.identity.fingerprint()
    }

    /// A raw client at version `v` with the default hello.
    pub async fn client(&self, srv: &RunningServer, v: Version) -> RawClient {
        RawClient::connect(srv.addr(), self.key_hash(), Hello::v(v))
            .await
            .expect("hello accepted")
    }
}

/// How the raw client says hello.
#[derive(Debug, Clone, Copy)]
pub struct Hello {
    pub version: Version,
    pub send_key: bool,
    pub proxy: bool,
    pub alpn: bool,
    /// Puts a wrong identity hash into the hello (TLS pin stays right).
    pub wrong_key_hash: bool,
    /// Writes this version number over the encoded hello's first two bytes
    /// (a hello shaped for `version` but claiming another).
    pub wire_version: Option<Version>,
}

impl Hello {
    pub fn v(version: Version) -> Self {
        Self {
            version,
            send_key: version >= 7,
            proxy: false,
            alpn: true,
            wrong_key_hash: false,
            wire_version: None,
        }
    }
}

type Tls = TlsConnection<TcpStream>;

/// A client that writes blocks itself.
pub struct RawClient {
    pub reader: BlockReader<ReadHalf<Tls>>,
    pub writer: BlockWriter<WriteHalf<Tls>>,
    pub version: Version,
    pub session_id: Vec<u8>,
    pub server_hello: ServerHello,
    /// The server's per-connection X25519 key (from the signed hello key).
    pub server_key: Option<PublicKey>,
    pub own_key: PrivateKey,
    pub block_encryption: bool,
}

/// A queue created by [`RawClient::new_queue`].
pub struct TestQueue {
    pub ids: QueueIds,
    pub rcv_key: PrivateKey,
    pub rcv_dh: [u8; 32],
}

pub fn ed25519() -> PrivateKey {
    PrivateKey::generate(KeyAlgorithm::Ed25519)
}

pub fn corr() -> Vec<u8> {
    random_array::<24>().to_vec()
}

impl RawClient {
    /// TLS, then the server hello, then our hello. `None` if the server
    /// closed the connection before TLS (over its connection limit) or
    /// after our hello (a refused hello).
    pub async fn connect(addr: SocketAddr, key_hash: [u8; 32], h: Hello) -> Option<Self> {
        let sock = TcpStream::connect(addr).await.unwrap();
        let mut cfg = tls::client_config(key_hash, tls::ALPN_SMP).unwrap();
        if !h.alpn {
            cfg.alpn_protocols.clear();
        }
        let tls = tls::connect_with_config(sock, &cfg).await.ok()?;
        let leaf = tls.peer_certificates().unwrap()[0].to_vec();
        let session_id = tls.session_id().0.to_vec();
        let (r, w) = tokio::io::split(tls);
        let mut reader = BlockReader::new(r);
        let mut writer = BlockWriter::new(w);
        let block = reader.read_handshake().await.unwrap().unwrap();
        let server_hello = ServerHello::decode_block(&block).unwrap();
        assert_eq!(server_hello.session_id, session_id, "tls-unique");
        let server_key = server_hello.auth_pub_key.as_ref().map(|k| {
            let leaf_key = smp_core::smp::handshake::certificate_public_key(&leaf).unwrap();
            k.verify(&key_hash, Some(&leaf_key), KeyAlgorithm::X25519)
                .unwrap()
        });
        let own_key = PrivateKey::generate(KeyAlgorithm::X25519);
        let mut hello_hash = key_hash.to_vec();
        if h.wrong_key_hash {
            hello_hash[0] ^= 1;
        }
        let hello = ClientHello {
            version: h.version,
            key_hash: hello_hash,
            auth_pub_key: h.send_key.then(|| own_key.public_key()),
            proxy_server: h.proxy,
            client_service: None,
        };
        let mut bytes = hello.encode().unwrap();
        if let Some(wv) = h.wire_version {
            bytes[..2].copy_from_slice(&wv.to_be_bytes());
        }
        let block = smp_core::encoding::pad::pad(&bytes, 16384).unwrap();
        writer.write_raw(&block).await.unwrap();
        let block_encryption = hello.block_encryption() && server_key.is_some();
        if block_encryption {
            let secret = own_key.dh(server_key.as_ref().unwrap()).unwrap();
            let (s, o) = BlockCipher::client(&session_id, &secret).split();
            reader.set_cipher(o);
            writer.set_cipher(s);
        }
        let mut c = Self {
            reader,
            writer,
            version: h.wire_version.unwrap_or(h.version),
            session_id,
            server_hello,
            server_key,
            own_key,
            block_encryption,
        };
        // A refused hello closes the connection: probe with PING.
        c.send(&[c.encode(&corr(), b"", &Command::Ping, None)])
            .await;
        match tokio::time::timeout(PATIENCE, c.reader.read_content()).await {
            Ok(Ok(Some(Ok(content)))) => {
                let items = parse_batch(&content).unwrap();
                let r = decode_response_transmission(items[0], c.version, &c.session_id).unwrap();
                assert_eq!(r.response, Ok(Response::Pong));
                Some(c)
            }
            _ => None,
        }
    }

    /// One command transmission at this session's version.
    pub fn encode(
        &self,
        corr_id: &[u8],
        entity: &[u8],
        cmd: &Command,
        key: Option<&PrivateKey>,
    ) -> Vec<u8> {
        let auth = key.map(|k| ClientAuth {
            key: if k.algorithm() == KeyAlgorithm::X25519 {
                AuthKey::Authenticate {
                    own: k,
                    server_session_key: self.server_key.as_ref().unwrap(),
                }
            } else {
                AuthKey::Sign(k)
            },
            service: None,
        });
        encode_command_transmission(self.version, &self.session_id, corr_id, entity, cmd, auth)
            .unwrap()
    }

    pub async fn send(&mut self, ts: &[Vec<u8>]) {
        let b = encode_batch(ts).unwrap();
        self.writer.write_content(&b).await.unwrap();
    }

    /// The transmissions of the next block.
    pub async fn recv(&mut self) -> Vec<ResponseTransmission> {
        let content = tokio::time::timeout(PATIENCE, self.reader.read_content())
            .await
            .expect("a block in time")
            .unwrap()
            .expect("connection open")
            .expect("block decrypts");
        parse_batch(&content)
            .unwrap()
            .into_iter()
            .map(|t| decode_response_transmission(t, self.version, &self.session_id).unwrap())
            .collect()
    }

    /// Sends one command and returns the one response in the next block.
    pub async fn cmd(
        &mut self,
        entity: &[u8],
        cmd: &Command,
        key: Option<&PrivateKey>,
    ) -> Result<Response, ErrorType> {
        let c = corr();
        let t = self.encode(&c, entity, cmd, key);
        self.send(&[t]).await;
        let mut rs = self.recv().await;
        let r = rs.remove(0);
        assert_eq!(r.corr_id, c, "response echoes the corrId");
        match r.response {
            Ok(Response::Err(e)) => Err(e),
            other => other,
        }
    }

    /// A recipient command on `q`, signed with its key.
    pub async fn rcv(&mut self, q: &TestQueue, cmd: &Command) -> Result<Response, ErrorType> {
        let id = q.ids.rcv_id.clone();
        self.cmd(&id, cmd, Some(&q.rcv_key)).await
    }

    /// An unsigned SEND to `q`.
    pub async fn snd(&mut self, q: &TestQueue, body: &[u8]) -> Result<Response, ErrorType> {
        let id = q.ids.snd_id.clone();
        self.cmd(&id, &send_cmd(body), None).await
    }

    /// NEW with fresh Ed25519 + X25519 keys (and `req` from v15/v9 on).
    pub async fn new_queue_with(
        &mut self,
        sub: SubscriptionMode,
        req: Option<QueueReqData>,
        password: Option<&[u8]>,
    ) -> Result<TestQueue, ErrorType> {
        let rcv_key = PrivateKey::generate(KeyAlgorithm::Ed25519);
        let dh = PrivateKey::generate(KeyAlgorithm::X25519);
        let cmd = Command::New(NewQueue {
            rcv_auth_key: rcv_key.public_key(),
            rcv_dh_key: dh.public_key(),
            basic_auth: password.map(|p| smp_core::smp::command::BasicAuth::new(p).unwrap()),
            sub_mode: sub,
            queue_req_data: req,
            ntf_creds: None,
        });
        match self.cmd(b"", &cmd, Some(&rcv_key)).await? {
            Response::Ids(ids) => {
                let rcv_dh = *dh.dh(&ids.server_dh_key).unwrap();
                Ok(TestQueue {
                    ids,
                    rcv_key,
                    rcv_dh,
                })
            }
            other => panic!("expected IDS, got {other:?}"),
        }
    }

    /// A contact-address queue (v9+), create-only.
    pub async fn new_contact_queue(&mut self) -> TestQueue {
        self.new_queue_with(
            SubscriptionMode::OnlyCreate,
            Some(QueueReqData::Contact(None)),
            None,
        )
        .await
        .unwrap()
    }

    /// A messaging queue (mode where the version has one), create-only.
    pub async fn new_queue(&mut self) -> TestQueue {
        let req = if self.version >= version::SND_AUTH_KEY_VERSION {
            Some(QueueReqData::Messaging(None))
        } else {
            None
        };
        self.new_queue_with(SubscriptionMode::OnlyCreate, req, None)
            .await
            .unwrap()
    }
}

/// Opens a MSG body with the queue's DH secret.
pub fn open_msg(q: &TestQueue, r: &Response) -> (Vec<u8>, RcvMsgBody) {
    match r {
        Response::Msg { msg_id, body } => (
            msg_id.clone(),
            decrypt_rcv_msg(&q.rcv_dh, msg_id, body).unwrap(),
        ),
        other => panic!("expected MSG, got {other:?}"),
    }
}

pub fn body_of(m: &RcvMsgBody) -> &[u8] {
    match m {
        RcvMsgBody::Message { body, .. } => body,
        RcvMsgBody::Quota { .. } => b"",
    }
}

pub fn send_cmd(body: &[u8]) -> Command {
    Command::Send {
        notification: false,
        body: body.to_vec(),
    }
}
