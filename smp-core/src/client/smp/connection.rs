//! Connecting: TCP, pinned TLS, the SMP hello exchange, block encryption,
//! and the reader task that routes what the router sends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};

use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;

use super::{Inner, Shared, SmpClient, SmpClientError, SmpClientOptions, SmpEvent, SmpEvents};
use crate::address::ServerAddress;
use crate::crypto::keys::{KeyAlgorithm, PrivateKey};
use crate::smp::error::{ErrorType, TransportError};
use crate::smp::handshake::HandshakeError;
use crate::smp::response::Response;
use crate::smp::session::{self, ClientParams};
use crate::smp::transmission::{batch_transmissions, decode_response_transmission, parse_batch};
use crate::smp::version::Version;
use crate::tls::{self, SessionId, TlsConnection};
use crate::transport::{BlockReader, BlockWriteError, BlockWriter};

type Stream = TlsConnection<TcpStream>;
pub(super) type Reader = BlockReader<ReadHalf<Stream>>;
pub(super) type Writer = BlockWriter<WriteHalf<Stream>>;

impl SmpClient {
    /// Connects to the address's preferred host (or `opts.socket_addr`),
    /// pins TLS to its key hash, and runs the SMP handshake. Returns the
    /// client and the receiver of its events.
    pub async fn connect(
        address: &ServerAddress,
        opts: &SmpClientOptions,
    ) -> Result<(SmpClient, SmpEvents), SmpClientError> {
        let key_hash: [u8; 32] = address
            .key_hash()
            .as_bytes()
            .try_into()
            .map_err(|_| SmpClientError::Address("key hash is not a SHA-256 fingerprint"))?;
        let dial = async {
            let tcp = match opts.socket_addr {
                Some(sa) => TcpStream::connect(sa).await,
                None => {
                    let host = address.preferred_host();
                    if host.is_onion() {
                        return Err(SmpClientError::Address("onion hosts need a SOCKS proxy"));
                    }
                    TcpStream::connect((host.to_string().as_str(), address.effective_port())).await
                }
            }
            .map_err(SmpClientError::Connect)?;
            let _ = tcp.set_nodelay(true);
            let mut cfg = tls::client_config(key_hash, opts.alpn.unwrap_or(tls::ALPN_SMP))?;
            if opts.alpn.is_none() {
                cfg.alpn_protocols.clear();
            }
            Ok(tls::connect_with_config(tcp, &cfg).await?)
        };
        let tls = timeout(opts.connect_timeout, dial)
            .await
            .map_err(|_| SmpClientError::Timeout(super::TimeoutKind::Connect))??;
        timeout(opts.handshake_timeout, handshake(tls, &key_hash, opts))
            .await
            .map_err(|_| SmpClientError::Timeout(super::TimeoutKind::Handshake))?
    }
}

async fn handshake(
    tls: Stream,
    key_hash: &[u8; 32],
    opts: &SmpClientOptions,
) -> Result<(SmpClient, SmpEvents), SmpClientError> {
    let session_id = *tls.session_id();
    let leaf = tls
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .ok_or(SmpClientError::Handshake(HandshakeError::Transport(
            TransportError::Handshake(crate::smp::error::HandshakeErrorKind::BadAuth),
        )))?;
    let (r, w) = tokio::io::split(tls);
    let mut reader = BlockReader::new(r);
    let mut writer = BlockWriter::new(w);

    let block = reader
        .read_handshake()
        .await
        .map_err(SmpClientError::Io)?
        .ok_or(SmpClientError::Closed)?;
    let agreed = session::agree(
        &block,
        session_id.as_ref(),
        &leaf,
        ClientParams {
            key_hash,
            versions: opts.versions,
            session_key: opts
                .send_session_key
                .then(|| PrivateKey::generate(KeyAlgorithm::X25519)),
            proxy_server: opts.proxy_server,
        },
    )?;
    writer.write_raw(&agreed.reply).await.map_err(|e| match e {
        crate::transport::BlockWriteError::Io(e) => SmpClientError::Io(e),
        _ => SmpClientError::Transport(TransportError::LargeMsg),
    })?;
    let session::Agreed {
        version: v,
        hello,
        server_key,
        session_secret,
        cipher,
        ..
    } = agreed;
    let block_encryption = cipher.is_some();
    if let Some(cipher) = cipher {
        let (sealer, opener) = cipher.split();
        writer.set_cipher(sealer);
        reader.set_cipher(opener);
    }

    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        pending: StdMutex::new(Some(HashMap::new())),
        events: events_tx,
    });
    let task = tokio::spawn(read_loop(reader, shared.clone(), v, session_id));
    let (outbox, out_rx) = mpsc::unbounded_channel();
    let writer_task = tokio::spawn(write_loop(writer, out_rx));
    let client = SmpClient {
        inner: Arc::new(Inner {
            version: v,
            session_id,
            server_versions: hello.versions,
            server_chain_key: hello.auth_pub_key.clone(),
            session_secret,
            server_key,
            block_encryption,
            outbox,
            shared,
            options: opts.clone(),
            reader: task,
            writer: writer_task,
        }),
    };
    Ok((client, events_rx))
}

/// A transmission waiting for the writer, and who to tell once it is sent.
pub(super) struct Outgoing {
    pub transmission: Vec<u8>,
    pub written: oneshot::Sender<Result<(), WriteFailure>>,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum WriteFailure {
    TooLarge,
    Io(std::io::ErrorKind),
}

/// Sends queued transmissions, packing whatever is waiting into as few
/// blocks as fit (the reference client batches queued commands the same
/// way), so concurrent requests share blocks and their encryption.
async fn write_loop(mut writer: Writer, mut rx: mpsc::UnboundedReceiver<Outgoing>) {
    while let Some(first) = rx.recv().await {
        let mut queued = vec![first];
        while queued.len() < 255 {
            match rx.try_recv() {
                Ok(o) => queued.push(o),
                Err(_) => break,
            }
        }
        let ts: Vec<&[u8]> = queued.iter().map(|o| o.transmission.as_slice()).collect();
        let result = write_batches(&mut writer, &ts).await;
        for o in queued {
            let _ = o.written.send(result);
        }
        if let Err(WriteFailure::Io(_)) = result {
            return;
        }
    }
}

async fn write_batches(writer: &mut Writer, ts: &[&[u8]]) -> Result<(), WriteFailure> {
    let contents = batch_transmissions(ts).map_err(|_| WriteFailure::TooLarge)?;
    for c in contents {
        writer.write_content(&c).await.map_err(|e| match e {
            BlockWriteError::TooLarge(_) => WriteFailure::TooLarge,
            BlockWriteError::Io(e) => WriteFailure::Io(e.kind()),
        })?;
    }
    Ok(())
}

/// Routes every received transmission until the stream ends.
async fn read_loop(mut reader: Reader, shared: Arc<Shared>, v: Version, session_id: SessionId) {
    loop {
        match reader.read_content().await {
            Ok(Some(Ok(content))) => match parse_batch(&content) {
                Ok(items) => {
                    for t in items {
                        dispatch(&shared, t, v, &session_id);
                    }
                }
                Err(error) => shared.event(SmpEvent::Invalid {
                    entity_id: Vec::new(),
                    error,
                }),
            },
            // A block that does not decrypt or unpad; the stream goes on.
            Ok(Some(Err(error))) => shared.event(SmpEvent::Invalid {
                entity_id: Vec::new(),
                error,
            }),
            Ok(None) | Err(_) => break,
        }
    }
    shared.close();
}

fn dispatch(shared: &Shared, t: &[u8], v: Version, session_id: &SessionId) {
    let rt = match decode_response_transmission(t, v, session_id.as_ref()) {
        Ok(rt) => rt,
        Err(error) => {
            return shared.event(SmpEvent::Invalid {
                entity_id: Vec::new(),
                error,
            });
        }
    };
    if rt.is_event() {
        return shared.event(match rt.response {
            Ok(response) => SmpEvent::Server {
                entity_id: rt.entity_id,
                response,
            },
            Err(error) => SmpEvent::Invalid {
                entity_id: rt.entity_id,
                error,
            },
        });
    }
    let Some(p) = shared.take_pending(&rt.corr_id) else {
        return shared.event(SmpEvent::LateReply {
            entity_id: rt.entity_id,
            response: rt.response,
        });
    };
    // The entity must match, except for the errors a router sends with an
    // empty entity (`BLOCK` for a bad authorization, `SESSION`).
    let same_entity = p.entity_id == rt.entity_id
        || (rt.entity_id.is_empty()
            && matches!(
                rt.response,
                Ok(Response::Err(ErrorType::Block | ErrorType::Session))
            ));
    let result = if same_entity {
        rt.response.map_err(SmpClientError::BadResponse)
    } else {
        Err(SmpClientError::UnexpectedResponse(
            "reply for another entity",
        ))
    };
    let _ = p.reply.send(result);
}
