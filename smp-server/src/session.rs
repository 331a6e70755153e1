//! One client connection: the server side of the SMP handshake (version
//! range by ALPN, signed per-connection X25519 key, optional block
//! encryption), then a reader that runs each block's commands in order and
//! a writer that sends their responses together, before follow-up events.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use smp_core::crypto::keys::{KeyAlgorithm, PrivateKey};
use smp_core::smp::block_crypto::BlockCipher;
use smp_core::smp::error::{HandshakeErrorKind, TransportError};
use smp_core::smp::handshake::{
    CertChainPubKey, ClientHello, ServerHandshakeResponse, ServerHello, sign_session_key,
};
use smp_core::smp::transmission::{
    batch_transmissions, decode_command_transmission, encode_response_transmission, parse_batch,
};
use smp_core::smp::version::{self, LEGACY_SERVER_RANGE, SUPPORTED_RANGE};
use smp_core::smp::{Command, ErrorType, Response};
use smp_core::tls::{ServerIdentity, TlsConnection};
use smp_core::transport::{BlockReader, BlockWriter};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::time::timeout;
use zeroize::Zeroizing;

use crate::handler::{ClientRef, Conn, Out, Outgoing, PendingMsg, REPLY_QUEUE, Router};
use crate::proxy::ProxyAgent;

/// `smpHandshakeTimeout`.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(120);

/// What every connection shares.
pub struct ServerCtx {
    pub router: Arc<Router>,
    pub identity: ServerIdentity,
    /// The identity's chain as DER, for every server hello.
    pub cert_chain: Vec<Vec<u8>>,
    pub proxy: Arc<ProxyAgent>,
    /// Close connections idle this long that subscribe nothing.
    pub inactive_ttl: Option<Duration>,
}

/// Runs a connection whose TLS handshake is done, until it closes.
pub async fn serve<S>(ctx: Arc<ServerCtx>, tls: TlsConnection<S>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let offered = if tls.alpn().is_some() {
        SUPPORTED_RANGE
    } else {
        LEGACY_SERVER_RANGE
    };
    let session_id = tls.session_id().0.to_vec();
    let (r, w) = tokio::io::split(tls);
    let mut reader = BlockReader::new(r);
    let mut writer = BlockWriter::new(w);

    let server_key = PrivateKey::generate(KeyAlgorithm::X25519);
    let auth_pub_key = if version::has_auth_keys(offered.max()) {
        match sign_session_key(&server_key.public_key(), ctx.identity.leaf_key()) {
            Ok(signed) => Some(CertChainPubKey {
                cert_chain: ctx.cert_chain.clone(),
                signed_pub_key: signed,
            }),
            Err(_) => return,
        }
    } else {
        None
    };
    let hello = ServerHello {
        versions: offered,
        session_id: session_id.clone(),
        auth_pub_key,
    };
    let Ok(block) = hello.encode_block() else {
        return;
    };
    if writer.write_raw(&block).await.is_err() {
        return;
    }
    let Ok(Ok(Some(block))) = timeout(HANDSHAKE_TIMEOUT, reader.read_handshake()).await else {
        return;
    };
    // Any failure closes the connection without a word, as the reference does.
    let Ok(ch) = ClientHello::decode_block(&block) else {
        return;
    };
    let fingerprint = ctx.identity.fingerprint();
    let Ok(v) = ch.accept(&offered, &fingerprint) else {
        return;
    };
    if ch.client_service.is_some() {
        // Client certificates are never requested, so a service cannot be proven.
        let resp = ServerHandshakeResponse::Error(TransportError::Handshake(
            HandshakeErrorKind::BadService,
        ));
        if let Ok(b) = resp.encode()
            && let Ok(block) = smp_core::encoding::pad::pad(&b, smp_core::encoding::pad::BLOCK_SIZE)
        {
            let _ = writer.write_raw(&block).await;
        }
        return;
    }
    let sess_secret = match (&ch.auth_pub_key, version::has_auth_keys(v)) {
        (Some(k), true) => match server_key.dh(k) {
            Ok(s) => Some(Zeroizing::new(*s)),
            Err(_) => return,
        },
        _ => None,
    };
    if ch.block_encryption()
        && let Some(s) = &sess_secret
    {
        let (sealer, opener) = BlockCipher::server(&session_id, s).split();
        reader.set_cipher(opener);
        writer.set_cipher(sealer);
    }

    let (tx, mut rx) = mpsc::unbounded_channel::<Outgoing>();
    let reply_slots = Arc::new(tokio::sync::Semaphore::new(REPLY_QUEUE));
    let me = Arc::new(ClientRef::new(
        ctx.router.next_client_id(),
        v,
        session_id.clone(),
        tx,
    ));
    // Weak: the writer must keep neither the outbox open (it would never
    // end) nor the router's state, which holds this client's outbox.
    let (writer_me, writer_ctx) = (Arc::downgrade(&me), Arc::downgrade(&ctx));
    // From v8 everything waiting is packed together; v6/v7 sessions keep
    // each group (a block's responses, or one event) in blocks of its own,
    // because the SimpleGo firmware reads only the first transmission of
    // most blocks.
    let coalesce = v >= version::SENDING_PROXY_VERSION;
    let writer_task = tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut group = first.transmissions;
            let mut permits = vec![first.permit];
            while coalesce && group.len() < 1024 {
                match rx.try_recv() {
                    Ok(more) => {
                        group.extend(more.transmissions);
                        permits.push(more.permit);
                    }
                    Err(_) => break,
                }
            }
            let Ok(contents) = batch_transmissions(&group) else {
                continue;
            };
            for c in contents {
                if writer.write_content(&c).await.is_err() {
                    return;
                }
            }
            drop(permits);
            // Slots came free: messages that waited for one go out now.
            if let Some(me) = writer_me.upgrade()
                && me.has_deferred()
                && let Some(ctx) = writer_ctx.upgrade()
            {
                ctx.router.deliver_deferred(&me);
            }
        }
        let _ = writer.shutdown().await;
    });

    let mut conn = Conn {
        me: me.clone(),
        server_key,
        sess_secret,
        gets: HashMap::new(),
    };
    let idle = ctx.inactive_ttl.unwrap_or(Duration::MAX);
    loop {
        // Read the next block only when its answers have room to wait.
        let Ok(permit) = reply_slots.clone().acquire_owned().await else {
            break;
        };
        let content = match timeout(idle, reader.read_content()).await {
            Ok(Ok(Some(c))) => c,
            Ok(_) => break,
            Err(_) => {
                // `[INACTIVE_CLIENTS]`: only connections without subscriptions.
                if !ctx.router.has_subscriptions(me.id) {
                    break;
                }
                continue;
            }
        };
        handle_block(&ctx, &mut conn, content, permit);
    }
    ctx.router.client_gone(me.id);
    drop(conn);
    drop(me);
    let _ = writer_task.await;
}

fn encode(me: &ClientRef, corr: &[u8], entity: &[u8], r: &Response) -> Option<Vec<u8>> {
    encode_response_transmission(me.version, &me.session_id, corr, entity, r).ok()
}

/// Runs one block's transmissions in order and queues their responses as
/// one group, then follow-up messages and events.
fn handle_block(
    ctx: &Arc<ServerCtx>,
    conn: &mut Conn,
    content: Result<Vec<u8>, ErrorType>,
    permit: OwnedSemaphorePermit,
) {
    let me = conn.me.clone();
    let v = me.version;
    let reply = |transmissions, permit| Outgoing {
        transmissions,
        permit: Some(permit),
    };
    let block_err = |permit| {
        if let Some(t) = encode(&me, b"", b"", &Response::Err(ErrorType::Block)) {
            let _ = me.outbox.send(reply(vec![t], permit));
        }
    };
    let Ok(content) = content else {
        return block_err(permit);
    };
    let Ok(items) = parse_batch(&content) else {
        return block_err(permit);
    };
    let mut replies: Vec<Vec<u8>> = Vec::new();
    let mut follows: Vec<(Vec<u8>, PendingMsg)> = Vec::new();
    let mut events = Vec::new();
    for t in items {
        let st = match decode_command_transmission(t, v, &me.session_id) {
            Ok(st) => st,
            Err(e) => {
                replies.extend(encode(
                    &me,
                    &e.corr_id,
                    &e.entity_id,
                    &Response::Err(e.error),
                ));
                continue;
            }
        };
        let corr = st.raw.corr_id.to_vec();
        let entity = st.raw.entity_id.to_vec();
        match &st.command {
            Command::Rfwd(data) => {
                let (out, ev) = ctx.router.relay_forward(conn, &corr, data);
                events.extend(ev);
                replies.extend(encode(&me, &corr, &entity, &out.into_response()));
            }
            Command::Prxy { server, auth } => {
                ctx.proxy
                    .clone()
                    .spawn_prxy(me.clone(), corr, server.clone(), auth.clone());
            }
            Command::Pfwd {
                version: fwd_v,
                key,
                encrypted,
            } => {
                ctx.proxy.clone().spawn_pfwd(
                    me.clone(),
                    corr,
                    entity,
                    *fwd_v,
                    key.clone(),
                    encrypted.clone(),
                );
            }
            _ => {
                let o = ctx.router.process(conn, &st, v);
                let resp = o.out.into_response();
                replies.extend(encode(&me, &o.corr_id, &o.entity_id, &resp));
                follows.extend(o.follow);
                events.extend(o.events);
            }
        }
    }
    // A waiting message after SUB rides in the same block when the block's
    // responses are few (as the reference), otherwise it follows alone.
    let mut separate = Vec::new();
    for (entity, m) in follows {
        if replies.len() <= 4 {
            // Riding with the responses, it waits under their permit.
            replies.extend(encode(&me, b"", &entity, &m.seal()));
        } else {
            separate.push((entity, m));
        }
    }
    if !replies.is_empty() {
        let _ = me.outbox.send(reply(replies, permit));
    }
    for (entity, m) in separate {
        me.send_delivery(&entity, m);
    }
    // Events for others (and for this connection) go after the responses.
    for (client, entity, out) in events {
        match out {
            Out::Msg(m) => client.send_delivery(&entity, m),
            Out::Resp(r) => client.send_event(&entity, &r),
        }
    }
}
