//! The proxy role of private message routing (smp.md §5): `PRXY` opens or
//! reuses one shared connection to the relay (as a router, so no block
//! encryption and a session secret for the proxy layer), `PFWD` wraps the
//! client's sealed command into `RFWD` and unwraps the `RRES`.
//!
//! The proxy never sees the queue or the command: it forwards `et` as it
//! came. Relays are known to the proxy only by address; nothing about the
//! client is sent on.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use smp_core::address::ServerAddress;
use smp_core::client::smp::{SmpClient, SmpClientError, SmpClientOptions};
use smp_core::crypto::keys::PublicKey;
use smp_core::crypto::random_array;
use smp_core::crypto::secretbox::CbNonce;
use smp_core::smp::command::{BasicAuth, RelayServer};
use smp_core::smp::error::{BrokerError, NetworkError, ProxyError, TransportError};
use smp_core::smp::proxy::{
    FwdTransmission, ProxyLayerError, pkey_range, unwrap_response, wrap_forward,
};
use smp_core::smp::version::{SENDING_PROXY_VERSION, SUPPORTED_RANGE, Version};
use smp_core::smp::{Command, ErrorType, Response};

use crate::handler::{ClientRef, Router};

/// `client_concurrency`: forwarded commands one client may have in flight.
pub const DEFAULT_CLIENT_CONCURRENCY: usize = 32;

#[derive(Debug, Clone, Default)]
pub struct ProxySettings {
    /// Dial these sockets for these host names instead of resolving them
    /// (tests put relays on loopback ports; operators may pin hosts).
    pub resolve: HashMap<String, SocketAddr>,
}

/// One shared session with a relay.
struct Relay {
    client: SmpClient,
    /// X25519(relay session key, our hello key): the `RFWD` layer.
    secret: zeroize::Zeroizing<[u8; 32]>,
}

pub struct ProxyAgent {
    settings: ProxySettings,
    router: Arc<Router>,
    /// By relay address text.
    relays: tokio::sync::Mutex<HashMap<String, Arc<Relay>>>,
    /// By proxy–relay session ID (the `PFWD` entity).
    sessions: Mutex<HashMap<Vec<u8>, Arc<Relay>>>,
}

fn proxy_err(e: ProxyError) -> Response {
    Response::Err(ErrorType::Proxy(Box::new(e)))
}

fn broker(e: BrokerError) -> Response {
    proxy_err(ProxyError::Broker(e))
}

/// `smpProxyError`: how a failure to reach or use the relay is reported.
fn client_error(e: &SmpClientError) -> Response {
    match e {
        SmpClientError::Protocol(e) => proxy_err(ProxyError::Protocol(e.clone())),
        SmpClientError::Timeout(_) => broker(BrokerError::Timeout),
        SmpClientError::Address(_) => broker(BrokerError::Host),
        SmpClientError::Transport(t) => broker(BrokerError::Transport(*t)),
        SmpClientError::Handshake(h) => broker(BrokerError::Transport(h.transport_error())),
        SmpClientError::BadResponse(e) => {
            broker(BrokerError::Response(e.encode().unwrap_or_default()))
        }
        SmpClientError::UnexpectedResponse(what) => {
            broker(BrokerError::Unexpected(what.as_bytes().to_vec()))
        }
        SmpClientError::Io(_) => Response::Err(ErrorType::Internal),
        _ => broker(BrokerError::Network(NetworkError::Failed)),
    }
}

fn relay_address(s: &RelayServer) -> Result<ServerAddress, Box<Response>> {
    s.to_address()
        .map_err(|_| Box::new(broker(BrokerError::Host)))
}

impl ProxyAgent {
    pub fn new(settings: ProxySettings, router: Arc<Router>) -> Self {
        Self {
            settings,
            router,
            relays: Default::default(),
            sessions: Default::default(),
        }
    }

    fn reply(me: &ClientRef, corr: &[u8], entity: &[u8], r: &Response) {
        if let Ok(t) = smp_core::smp::transmission::encode_response_transmission(
            me.version,
            &me.session_id,
            corr,
            entity,
            r,
        ) {
            let _ = me.outbox.send(crate::handler::Outgoing::event(vec![t]));
        }
    }

    /// `PRXY`: answered with `PKEY` once the relay session exists.
    pub fn spawn_prxy(
        self: Arc<Self>,
        me: Arc<ClientRef>,
        corr: Vec<u8>,
        server: RelayServer,
        auth: Option<BasicAuth>,
    ) {
        tokio::spawn(async move {
            let Ok(_permit) = me.proxy_slots.clone().acquire_owned().await else {
                return;
            };
            let r = self.prxy(&server, auth.as_ref()).await;
            Self::reply(&me, &corr, b"", &r);
        });
    }

    async fn prxy(&self, server: &RelayServer, auth: Option<&BasicAuth>) -> Response {
        if let Some(p) = &self.router.policy.create_password
            && !auth.is_some_and(|a| a.matches(p))
        {
            return proxy_err(ProxyError::BasicAuth);
        }
        let addr = match relay_address(server) {
            Ok(a) => a,
            Err(r) => return *r,
        };
        let relay = match self.relay(&addr).await {
            Ok(r) => r,
            Err(r) => return *r,
        };
        let c = &relay.client;
        if c.version() < SENDING_PROXY_VERSION {
            return broker(BrokerError::Transport(TransportError::Version));
        }
        let range = c.server_versions();
        let Some(key) = c.server_cert_chain_key() else {
            return broker(BrokerError::Transport(TransportError::NoAuth));
        };
        let Some(agreed) = range
            .compatible(&SUPPORTED_RANGE)
            .and_then(|r| pkey_range(&r))
        else {
            return broker(BrokerError::Transport(TransportError::Version));
        };
        self.router.stats.proxy_session();
        Response::Pkey {
            session_id: c.session_id().as_ref().to_vec(),
            versions: agreed,
            key: key.clone(),
        }
    }

    /// The shared session with `addr`, opened if needed.
    async fn relay(&self, addr: &ServerAddress) -> Result<Arc<Relay>, Box<Response>> {
        let name = addr.to_string();
        let mut relays = self.relays.lock().await;
        if let Some(r) = relays.get(&name)
            && !r.client.is_closed()
        {
            return Ok(r.clone());
        }
        let opts = SmpClientOptions {
            socket_addr: self
                .settings
                .resolve
                .get(&addr.preferred_host().to_string())
                .copied(),
            proxy_server: true,
            ..SmpClientOptions::default()
        };
        let (client, mut events) = SmpClient::connect(addr, &opts).await.map_err(|e| {
            tracing::warn!("proxy: cannot connect to a relay: {e}");
            client_error(&e)
        })?;
        // Events (only ERR BLOCK or a disconnect can come) are dropped.
        tokio::spawn(async move { while events.recv().await.is_some() {} });
        let secret = client
            .session_secret()
            .ok_or_else(|| Box::new(broker(BrokerError::Transport(TransportError::NoAuth))))?;
        let relay = Arc::new(Relay { client, secret });
        relays.insert(name, relay.clone());
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.retain(|_, r| !r.client.is_closed());
        sessions.insert(relay.client.session_id().as_ref().to_vec(), relay.clone());
        Ok(relay)
    }

    /// `PFWD`: forwarded as `RFWD`, answered with `PRES`.
    pub fn spawn_pfwd(
        self: Arc<Self>,
        me: Arc<ClientRef>,
        corr: Vec<u8>,
        entity: Vec<u8>,
        v: Version,
        key: PublicKey,
        et: Vec<u8>,
    ) {
        tokio::spawn(async move {
            let Ok(_permit) = me.proxy_slots.clone().acquire_owned().await else {
                return;
            };
            let r = self.pfwd(&corr, &entity, v, key, et).await;
            Self::reply(&me, &corr, &entity, &r);
        });
    }

    async fn pfwd(
        &self,
        corr: &[u8],
        session: &[u8],
        v: Version,
        key: PublicKey,
        et: Vec<u8>,
    ) -> Response {
        let relay = {
            let s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            s.get(session).cloned()
        };
        let Some(relay) = relay.filter(|r| !r.client.is_closed()) else {
            return proxy_err(ProxyError::NoSession);
        };
        if relay.client.version() < SENDING_PROXY_VERSION {
            return broker(BrokerError::Transport(TransportError::Version));
        }
        let m = CbNonce(random_array::<24>());
        let fwd = FwdTransmission {
            corr_id: CbNonce::normalize(corr),
            version: v,
            key,
            encrypted: et,
        };
        let Ok(data) = wrap_forward(&relay.secret, &m, &fwd) else {
            return Response::Err(ErrorType::Internal);
        };
        self.router.stats.proxied_sent();
        match relay
            .client
            .request(Some(m.0.to_vec()), b"", &Command::Rfwd(data), None)
            .await
        {
            // As the reference's `forwardSMPTransmission`: a layer that does
            // not open is `CRYPTO`, one that does not parse `RESPONSE BLOCK`.
            Ok(Response::Rres(b)) => match unwrap_response(&relay.secret, &m, &b) {
                Ok(fr) => Response::Pres(fr.encrypted),
                Err(ProxyLayerError::Crypto) => Response::Err(ErrorType::Crypto),
                Err(_) => broker(BrokerError::Response(b"BLOCK".to_vec())),
            },
            Ok(r) => broker(BrokerError::Unexpected(
                r.tag(relay.client.version()).as_bytes().to_vec(),
            )),
            Err(e) => client_error(&e),
        }
    }
}
