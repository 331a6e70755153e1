//! Private message routing from the sender's side: `PRXY` to this
//! connection's router (the proxy), then `PFWD` with a command encrypted
//! for the relay that hosts the queue; the relay's answer comes back in
//! `PRES` (§5 of the SMP notes).

use super::{SmpClient, SmpClientError, unexpected};
use crate::address::ServerAddress;
use crate::crypto::keys::{KeyAlgorithm, PrivateKey, PublicKey};
use crate::crypto::random_array;
use crate::crypto::secretbox::CbNonce;
use crate::smp::command::{BasicAuth, Command, QueueLinkData, RelayServer};
use crate::smp::proxy::{decrypt_response, encrypt_command, forward_version};
use crate::smp::response::Response;
use crate::smp::transmission::{
    AuthKey, ClientAuth, decode_response_transmission, encode_command_transmission,
};
use crate::smp::version::Version;

/// A relay session held by the proxy, as `PKEY` described it.
#[derive(Clone)]
pub struct ProxiedRelay {
    /// The proxy–relay session ID: the entity of `PFWD` and the session
    /// inner commands are signed for.
    pub session_id: Vec<u8>,
    /// The version inner commands are encoded at.
    pub version: Version,
    /// The relay's per-session X25519 key (verified against its identity).
    pub relay_key: PublicKey,
}

impl std::fmt::Debug for ProxiedRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxiedRelay")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl SmpClient {
    /// `PRXY`: asks this connection's router to open (or reuse) its session
    /// with `relay`. The relay's chain must hash to the relay's key hash and
    /// sign the session key with its own leaf.
    pub async fn proxy_session(
        &self,
        relay: &ServerAddress,
        relay_auth: Option<BasicAuth>,
    ) -> Result<ProxiedRelay, SmpClientError> {
        let cmd = Command::Prxy {
            server: RelayServer::from_address(relay),
            auth: relay_auth,
        };
        let (session_id, versions, key) = match self.request(None, b"", &cmd, None).await? {
            Response::Pkey {
                session_id,
                versions,
                key,
            } => (session_id, versions, key),
            r => return Err(unexpected(&r, self.version())),
        };
        let relay_key = key
            .verify(relay.key_hash().as_bytes(), None, KeyAlgorithm::X25519)
            .map_err(SmpClientError::RelayIdentity)?;
        let version = forward_version(&versions, &self.inner.options.versions)
            .ok_or(SmpClientError::RelayVersion)?;
        Ok(ProxiedRelay {
            session_id,
            version,
            relay_key,
        })
    }

    /// Forwards one sender command through the proxy and returns the
    /// relay's reply. An inner `ERR` is [`SmpClientError::Relay`]; the
    /// proxy's own `ERR PROXY …` is [`SmpClientError::Proxy`].
    pub async fn proxy_command(
        &self,
        relay: &ProxiedRelay,
        entity_id: &[u8],
        command: &Command,
        key: Option<&PrivateKey>,
    ) -> Result<Response, SmpClientError> {
        // One nonce: PFWD corrId, inner corrId and encryption nonce.
        let n: [u8; 24] = random_array();
        let auth = key
            .map(|k| {
                Ok::<_, SmpClientError>(ClientAuth {
                    key: match k.algorithm() {
                        // Authenticated for the relay's session key.
                        KeyAlgorithm::X25519 => AuthKey::Authenticate {
                            own: k,
                            server_session_key: &relay.relay_key,
                        },
                        _ => AuthKey::Sign(k),
                    },
                    service: None,
                })
            })
            .transpose()?;
        let inner = encode_command_transmission(
            relay.version,
            &relay.session_id,
            &n,
            entity_id,
            command,
            auth,
        )?;
        let ephemeral = PrivateKey::generate(KeyAlgorithm::X25519);
        let cmd_secret = ephemeral.dh(&relay.relay_key)?;
        let nonce = CbNonce(n);
        let encrypted = encrypt_command(&cmd_secret, &nonce, &inner)
            .map_err(|_| SmpClientError::Transport(crate::smp::TransportError::LargeMsg))?;
        let pfwd = Command::Pfwd {
            version: relay.version,
            key: ephemeral.public_key(),
            encrypted,
        };
        let r2 = match self
            .request(Some(n.to_vec()), &relay.session_id, &pfwd, None)
            .await?
        {
            Response::Pres(r2) => r2,
            r => return Err(unexpected(&r, self.version())),
        };
        let t = decrypt_response(&cmd_secret, &nonce, &r2)
            .map_err(|_| SmpClientError::BadForwardedResponse)?;
        let rt = decode_response_transmission(&t, relay.version, &relay.session_id)
            .map_err(|_| SmpClientError::BadForwardedResponse)?;
        if rt.corr_id != n || rt.entity_id != entity_id {
            return Err(SmpClientError::UnexpectedResponse(
                "forwarded reply for another command",
            ));
        }
        match rt.response.map_err(SmpClientError::BadResponse)? {
            Response::Err(e) => Err(SmpClientError::Relay(e)),
            r => Ok(r),
        }
    }

    /// `SEND` through the proxy.
    pub async fn proxy_send(
        &self,
        relay: &ProxiedRelay,
        snd_id: &[u8],
        sender_key: Option<&PrivateKey>,
        notify: bool,
        body: &[u8],
    ) -> Result<(), SmpClientError> {
        let cmd = Command::Send {
            notification: notify,
            body: body.to_vec(),
        };
        match self.proxy_command(relay, snd_id, &cmd, sender_key).await? {
            Response::Ok => Ok(()),
            r => Err(unexpected(&r, relay.version)),
        }
    }

    /// `LGET` through the proxy.
    pub async fn proxy_get_link(
        &self,
        relay: &ProxiedRelay,
        link_id: &[u8],
    ) -> Result<(Vec<u8>, QueueLinkData), SmpClientError> {
        let r = self
            .proxy_command(relay, link_id, &Command::Lget, None)
            .await?;
        super::link_answer(r, relay.version)
    }

    /// `LKEY` through the proxy.
    pub async fn proxy_secure_get_link(
        &self,
        relay: &ProxiedRelay,
        link_id: &[u8],
        sender_key: &PrivateKey,
    ) -> Result<(Vec<u8>, QueueLinkData), SmpClientError> {
        let cmd = Command::Lkey(sender_key.public_key());
        let r = self
            .proxy_command(relay, link_id, &cmd, Some(sender_key))
            .await?;
        super::link_answer(r, relay.version)
    }

    /// `SKEY` through the proxy: the sender secures the queue with its key.
    pub async fn proxy_skey(
        &self,
        relay: &ProxiedRelay,
        snd_id: &[u8],
        sender_key: &PrivateKey,
    ) -> Result<(), SmpClientError> {
        let cmd = Command::Skey(sender_key.public_key());
        match self
            .proxy_command(relay, snd_id, &cmd, Some(sender_key))
            .await?
        {
            Response::Ok => Ok(()),
            r => Err(unexpected(&r, relay.version)),
        }
    }
}
