//! Connections run against each other in memory, through a toy router that
//! enforces what SMP routers enforce about securing queues (a secured queue
//! takes only SENDs signed by its key; SKEY only on messaging queues; KEY
//! only by the owner): invitation and contact-address flows, fast and
//! legacy, PQ on, off and declined, state reloaded between every step, and
//! bad input that must leave a connection working.

use std::collections::{HashMap, VecDeque};

use smp_core::address::ServerAddress;
use smp_core::agent::connection::{
    AgentError, AgentEvent, Connection, ContactAddress, Output, QueueAddr,
};
use smp_core::agent::link::ConnectionRequest;
use smp_core::agent::message::{AMessageReceipt, MsgIntegrity};
use smp_core::agent::x3dh::{OsRng, RngEntropy, os_entropy};
use smp_core::crypto::{PublicKey, random_array};
use smp_core::smp::command::QueueMode;

const SERVER: &str = "smp://Uxo803FEbR2W9WFqIAMUglG6rCmiJDr3lDpjdPZ6r50=@smp.alice.example";

enum Owner {
    Conn(usize),
    Address(usize),
}

struct Queue {
    owner: Owner,
    rcv_id: Vec<u8>,
    mode: Option<QueueMode>,
    sender: Option<PublicKey>,
    inbox: VecDeque<Vec<u8>>,
}

#[derive(Default)]
struct World {
    conns: Vec<Connection>,
    addresses: Vec<ContactAddress>,
    queues: HashMap<Vec<u8>, Queue>,
    events: HashMap<usize, Vec<AgentEvent>>,
    /// Which party each connection belongs to (for auto-accept and naming).
    party: Vec<&'static str>,
    pq: HashMap<&'static str, bool>,
    legacy: bool,
    reload: bool,
}

fn ent() -> RngEntropy<OsRng> {
    os_entropy()
}

impl World {
    fn new_queue(&mut self, owner: Owner, mode: QueueMode) -> QueueAddr {
        let snd_id = random_array::<24>().to_vec();
        let rcv_id = random_array::<24>().to_vec();
        let mode = if self.legacy { None } else { Some(mode) };
        self.queues.insert(
            snd_id.clone(),
            Queue {
                owner,
                rcv_id: rcv_id.clone(),
                mode,
                sender: None,
                inbox: VecDeque::new(),
            },
        );
        QueueAddr {
            server: ServerAddress::parse(SERVER).unwrap(),
            rcv_id,
            snd_id,
            mode,
        }
    }

    fn invite(&mut self, party: &'static str) -> ConnectionRequest {
        let i = self.conns.len();
        let q = self.new_queue(Owner::Conn(i), QueueMode::Messaging);
        let (c, link) = Connection::create_invitation(q, self.pq[party], &mut ent()).unwrap();
        self.conns.push(c);
        self.party.push(party);
        // Links survive their text form.
        ConnectionRequest::parse(&link.to_link_string().unwrap()).unwrap()
    }

    fn join(&mut self, party: &'static str, link: &ConnectionRequest) -> usize {
        let i = self.conns.len();
        let q = self.new_queue(Owner::Conn(i), QueueMode::Messaging);
        let info = format!("info of {party}");
        let (c, out) =
            Connection::join(link, q, info.as_bytes(), self.pq[party], &mut ent()).unwrap();
        self.conns.push(c);
        self.party.push(party);
        self.run(i, out);
        i
    }

    fn address(&mut self) -> ConnectionRequest {
        let i = self.addresses.len();
        let q = self.new_queue(Owner::Address(i), QueueMode::Contact);
        let (a, link) = ContactAddress::create(q, &mut ent());
        self.addresses.push(a);
        link
    }

    fn request(&mut self, party: &'static str, address: &ConnectionRequest) -> usize {
        let i = self.conns.len();
        let q = self.new_queue(Owner::Conn(i), QueueMode::Messaging);
        let (c, out) =
            Connection::request_contact(address, q, b"x.contact", self.pq[party], &mut ent())
                .unwrap();
        self.conns.push(c);
        self.party.push(party);
        self.run(i, out);
        i
    }

    /// Carries out outputs as a router would, failing the test on any
    /// command a router would refuse.
    fn run(&mut self, from: usize, out: Vec<Output>) {
        for o in out {
            match o {
                Output::SecurePeerQueue {
                    snd_id, sender_key, ..
                } => {
                    let q = self.queues.get_mut(&snd_id).expect("SKEY: no such queue");
                    assert_eq!(
                        q.mode,
                        Some(QueueMode::Messaging),
                        "SKEY on a queue that does not allow it"
                    );
                    assert!(q.sender.is_none(), "SKEY on a secured queue");
                    q.sender = Some(sender_key.public_key());
                }
                Output::SecureOwnQueue { rcv_id, sender_key } => {
                    let q = self
                        .queues
                        .values_mut()
                        .find(|q| q.rcv_id == rcv_id)
                        .expect("KEY: no such queue");
                    assert!(
                        matches!(q.owner, Owner::Conn(c) if c == from),
                        "KEY by a non-owner"
                    );
                    assert!(q.sender.is_none(), "KEY twice");
                    q.sender = Some(sender_key);
                }
                Output::Send {
                    snd_id,
                    sender_key,
                    body,
                    ..
                } => {
                    let q = self.queues.get_mut(&snd_id).expect("SEND: no such queue");
                    match (&q.sender, &sender_key) {
                        (Some(k), Some(s)) => {
                            assert_eq!(k, &s.public_key(), "SEND signed by a wrong key")
                        }
                        (None, None) => {}
                        (Some(_), None) => panic!("unsigned SEND to a secured queue"),
                        (None, Some(_)) => panic!("signed SEND to an unsecured queue"),
                    }
                    assert!(body.len() <= 16048, "SEND body of {} bytes", body.len());
                    q.inbox.push_back(body);
                }
                Output::Event(e) => self.events.entry(from).or_default().push(e),
            }
        }
    }

    fn reload(&mut self, i: usize) {
        if self.reload {
            let enc = self.conns[i].encode().unwrap();
            self.conns[i] = Connection::decode(&enc).unwrap();
            assert_eq!(self.conns[i].encode().unwrap(), enc);
        }
    }

    /// Delivers until every queue is empty; confirmations are allowed and
    /// contact requests accepted at once, as the apps do.
    fn deliver(&mut self) {
        loop {
            let Some(snd_id) = self
                .queues
                .iter()
                .find(|(_, q)| !q.inbox.is_empty())
                .map(|(k, _)| k.clone())
            else {
                return;
            };
            let q = self.queues.get_mut(&snd_id).unwrap();
            let body = q.inbox.pop_front().unwrap();
            match q.owner {
                Owner::Conn(i) => {
                    let out = self.conns[i].receive(&body, &mut ent()).unwrap();
                    self.reload(i);
                    let allow = out
                        .iter()
                        .any(|o| matches!(o, Output::Event(AgentEvent::Confirmation { .. })));
                    self.run(i, out);
                    if allow {
                        let info = format!("info of {}", self.party[i]);
                        let out = self.conns[i].allow(info.as_bytes(), &mut ent()).unwrap();
                        self.reload(i);
                        self.run(i, out);
                    }
                }
                Owner::Address(a) => {
                    let req = self.addresses[a].receive(&body).unwrap();
                    assert_eq!(req.conn_info, b"x.contact");
                    self.join("host", &req.invitation);
                }
            }
        }
    }

    fn send(&mut self, i: usize, text: &str) -> i64 {
        let (id, out) = self.conns[i]
            .send_message(text.as_bytes(), &mut ent())
            .unwrap();
        self.reload(i);
        self.run(i, out);
        id
    }

    fn take_events(&mut self, i: usize) -> Vec<AgentEvent> {
        self.events.remove(&i).unwrap_or_default()
    }

    fn texts(&mut self, i: usize) -> Vec<(String, MsgIntegrity)> {
        self.take_events(i)
            .into_iter()
            .filter_map(|e| match e {
                AgentEvent::Message {
                    body, integrity, ..
                } => Some((String::from_utf8(body).unwrap(), integrity)),
                _ => None,
            })
            .collect()
    }
}

fn world(alice_pq: bool, bob_pq: bool, legacy: bool, reload: bool) -> World {
    let mut w = World {
        legacy,
        reload,
        ..World::default()
    };
    w.pq.insert("alice", alice_pq);
    w.pq.insert("bob", bob_pq);
    w.pq.insert("host", alice_pq);
    w
}

/// Alice invites, Bob joins; both end connected with the other's info.
fn connect(w: &mut World) -> (usize, usize) {
    let link = w.invite("alice");
    let b = w.join("bob", &link);
    w.deliver();
    let a = 0;
    assert!(w.conns[a].is_connected(), "alice: {}", w.conns[a].status());
    assert!(w.conns[b].is_connected(), "bob: {}", w.conns[b].status());
    let ea = w.take_events(a);
    let eb = w.take_events(b);
    assert!(ea.contains(&AgentEvent::Confirmation {
        conn_info: b"info of bob".to_vec()
    }));
    assert!(ea.contains(&AgentEvent::Connected));
    assert!(eb.contains(&AgentEvent::Info {
        conn_info: b"info of alice".to_vec()
    }));
    assert!(eb.contains(&AgentEvent::Connected));
    (a, b)
}

fn conversation(w: &mut World, a: usize, b: usize) {
    w.send(a, "hello bob");
    w.send(b, "hello alice");
    w.deliver();
    assert_eq!(
        w.texts(b),
        vec![("hello bob".to_string(), MsgIntegrity::Ok)]
    );
    assert_eq!(
        w.texts(a),
        vec![("hello alice".to_string(), MsgIntegrity::Ok)]
    );
    // 100 in a row arrive once each, in order.
    for n in 0..100 {
        w.send(a, &format!("m{n}"));
    }
    w.deliver();
    let got: Vec<String> = w
        .texts(b)
        .into_iter()
        .map(|(t, i)| {
            assert_eq!(i, MsgIntegrity::Ok);
            t
        })
        .collect();
    assert_eq!(got, (0..100).map(|n| format!("m{n}")).collect::<Vec<_>>());
    // Turns, so ratchet steps happen in both directions.
    for n in 0..5 {
        w.send(a, &format!("a{n}"));
        w.deliver();
        w.send(b, &format!("b{n}"));
        w.deliver();
    }
    assert_eq!(w.texts(b).len(), 5);
    assert_eq!(w.texts(a).len(), 5);
}

#[test]
fn invitation_fast_flow() {
    let mut w = world(false, false, false, false);
    let (a, b) = connect(&mut w);
    assert!(!w.conns[a].pq_support() && !w.conns[b].pq_support());
    conversation(&mut w, a, b);
}

#[test]
fn invitation_fast_flow_with_reloads_at_every_step() {
    let mut w = world(true, true, false, true);
    let (a, b) = connect(&mut w);
    conversation(&mut w, a, b);
    assert!(w.conns[a].pq_support() && w.conns[b].pq_support());
}

#[test]
fn legacy_flow_with_key_and_hello() {
    let mut w = world(false, false, true, true);
    let (a, b) = connect(&mut w);
    conversation(&mut w, a, b);
}

#[test]
fn pq_on_off_and_declined() {
    for (ap, bp) in [(true, true), (true, false), (false, true)] {
        let mut w = world(ap, bp, false, false);
        let (a, b) = connect(&mut w);
        conversation(&mut w, a, b);
        // Joining decides: PQ only when both want it...
        if !bp {
            assert!(!w.conns[b].pq_support(), "bob declined PQ ({ap},{bp})");
        }
        if ap && bp {
            assert!(w.conns[a].pq_support() && w.conns[b].pq_support());
        }
    }
}

#[test]
fn contact_address_flow() {
    for legacy in [false, true] {
        let mut w = world(false, false, legacy, true);
        let address = w.address();
        let address = ConnectionRequest::parse(&address.to_link_string().unwrap()).unwrap();
        let requester = w.request("bob", &address);
        w.deliver();
        let host = w.conns.len() - 1;
        assert_ne!(host, requester);
        assert!(w.conns[requester].is_connected());
        assert!(w.conns[host].is_connected());
        conversation(&mut w, host, requester);
    }
}

#[test]
fn early_message_before_connected_and_receipts() {
    let mut w = world(false, false, false, false);
    let link = w.invite("alice");
    let b = w.join("bob", &link);
    // Bob may send before CON once SKEY secured Alice's queue (agent v7).
    w.send(b, "early");
    w.deliver();
    assert_eq!(w.texts(0), vec![("early".to_string(), MsgIntegrity::Ok)]);
    let id = w.send(0, "with receipt");
    w.deliver();
    let hash = w
        .take_events(b)
        .into_iter()
        .find_map(|e| match e {
            AgentEvent::Message { msg_id, hash, .. } => {
                assert_eq!(msg_id, id);
                Some(hash)
            }
            _ => None,
        })
        .unwrap();
    let out = w.conns[b]
        .send_receipts(
            vec![AMessageReceipt {
                agent_msg_id: id,
                msg_hash: hash.clone(),
                rcpt_info: vec![],
            }],
            &mut ent(),
        )
        .unwrap();
    w.run(b, out);
    w.deliver();
    let ev = w.take_events(0);
    assert!(ev.iter().any(
        |e| matches!(e, AgentEvent::Receipts(r) if r[0].agent_msg_id == id && r[0].msg_hash == hash)
    ));
}

#[test]
fn bad_input_leaves_the_connection_working() {
    let mut w = world(false, false, false, false);
    let (a, b) = connect(&mut w);
    // Capture one real message body.
    w.send(a, "one");
    let (snd_id, _) = w.conns[a]
        .peer_queue()
        .map(|(s, i)| (i.to_vec(), s.clone()))
        .unwrap();
    let body = w
        .queues
        .get_mut(&snd_id)
        .unwrap()
        .inbox
        .pop_front()
        .unwrap();
    let before = w.conns[b].encode().unwrap();
    // Truncated, corrupted anywhere, empty: refused, state unchanged.
    for bad in [
        body[..40].to_vec(),
        Vec::new(),
        {
            let mut x = body.clone();
            x[60] ^= 0x20;
            x
        },
        {
            let mut x = body.clone();
            let n = x.len() - 1;
            x[n] ^= 1;
            x
        },
    ] {
        assert!(w.conns[b].receive(&bad, &mut ent()).is_err());
        assert_eq!(w.conns[b].encode().unwrap(), before);
    }
    // A message for another connection (wrong keys): refused.
    let mut other = world(false, false, false, false);
    let (oa, _) = connect(&mut other);
    other.send(oa, "elsewhere");
    let (osnd, _) = other.conns[oa]
        .peer_queue()
        .map(|(s, i)| (i.to_vec(), s.clone()))
        .unwrap();
    let foreign = other
        .queues
        .get_mut(&osnd)
        .unwrap()
        .inbox
        .pop_front()
        .unwrap();
    assert!(matches!(
        w.conns[b].receive(&foreign, &mut ent()),
        Err(AgentError::Crypto)
    ));
    // The real one still decrypts; a replay of it is a duplicate.
    let out = w.conns[b].receive(&body, &mut ent()).unwrap();
    assert!(
        matches!(&out[..], [Output::Event(AgentEvent::Message { body, .. })] if body == b"one")
    );
    let out = w.conns[b].receive(&body, &mut ent()).unwrap();
    assert_eq!(out, vec![Output::Event(AgentEvent::Duplicate)]);
    // And later messages flow.
    w.send(a, "two");
    w.deliver();
    assert_eq!(w.texts(b), vec![("two".to_string(), MsgIntegrity::Ok)]);
    // After the ratchet turned (b answers, a replies), the old copy no
    // longer decrypts but is still recognised as a duplicate.
    w.send(b, "turn");
    w.deliver();
    w.send(a, "three");
    w.deliver();
    assert_eq!(w.texts(b), vec![("three".to_string(), MsgIntegrity::Ok)]);
    let out = w.conns[b].receive(&body, &mut ent()).unwrap();
    assert_eq!(out, vec![Output::Event(AgentEvent::Duplicate)]);
    // Commands out of order are refused cleanly.
    assert!(w.conns[a].allow(b"again", &mut ent()).is_err());
    assert!(Connection::decode(&before[..before.len() - 3]).is_err());
}
