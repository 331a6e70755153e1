//! The proxy role (PRXY/PFWD). Placeholder until the SMP client lands.

use std::sync::Arc;

use smp_core::crypto::keys::PublicKey;
use smp_core::smp::command::{BasicAuth, RelayServer};
use smp_core::smp::error::{BrokerError, ProxyError};
use smp_core::smp::version::Version;
use smp_core::smp::{ErrorType, Response};

use crate::handler::ClientRef;

#[derive(Debug, Clone, Default)]
pub struct ProxySettings {}

pub struct ProxyAgent;

impl ProxyAgent {
    pub fn new(_s: ProxySettings, _r: Arc<crate::handler::Router>) -> Self {
        Self
    }
    pub fn spawn_prxy(
        self: Arc<Self>,
        me: Arc<ClientRef>,
        corr: Vec<u8>,
        _server: RelayServer,
        _auth: Option<BasicAuth>,
    ) {
        reply(&me, &corr, b"");
    }
    pub fn spawn_pfwd(
        self: Arc<Self>,
        me: Arc<ClientRef>,
        corr: Vec<u8>,
        entity: Vec<u8>,
        _v: Version,
        _key: PublicKey,
        _et: Vec<u8>,
    ) {
        reply(&me, &corr, &entity);
    }
}

fn reply(me: &ClientRef, corr: &[u8], entity: &[u8]) {
    let r = Response::Err(ErrorType::Proxy(Box::new(ProxyError::Broker(
        BrokerError::Timeout,
    ))));
    if let Ok(t) = smp_core::smp::transmission::encode_response_transmission(
        me.version,
        &me.session_id,
        corr,
        entity,
        &r,
    ) {
        let _ = me.outbox.send(vec![t]);
    }
}
