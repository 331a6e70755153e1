//! The device's event loop on a board made in memory: the real card stack
//! (FAT32 over embedded-sdmmc, with power cuts), a scripted agent, and an
//! XFTP fetcher that answers the job's FGET requests from an encrypted
//! file in memory (device-sync's test server). What is checked is what a
//! user relies on: a text is on the card before its item is released, a
//! card that fails releases nothing, a file offer is held until the file
//! is on the card and extracts byte-identical, an interrupted one stays
//! held and resumes, and the console's commands do what they say.

#[path = "../../device-sync/tests/support/mod.rs"]
mod support;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use device_sync::blockdev::{Coalesce, CutMode, PowerCut, RamDisk};
use device_sync::card::Card;
use device_sync::catalog;
use device_sync::job::{ChunkDone, Job};
use firmware::app::{App, Parts, history_no};
use firmware::chat::{Chats, Step};
use firmware::hal::{
    Board, Clock, Contact, Delivery, Event, FetchFailure, Fetcher, Input, Messaging, Ui,
};
use firmware::history::{Direction, History};
use firmware::ui::UiEvent;
use smp_core::chat::{
    ChatEvent, ChatMessage, FileInvitation, MsgContainer, MsgContent, SUPPORTED_CHAT_VRANGE,
    SharedMsgId, file_descr_events,
};
use support::{Fault, Published, TestRng, device_keys, fetch_chunk, publish};

type TestCard = Card<Coalesce<PowerCut<RamDisk>>>;

const ALICE: u64 = 7;
const ADDRESS: u64 = 1;

/// What the scripted agent was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Release(u64),
    Keep(u64),
    Send(u64, Vec<u8>),
}

#[derive(Default)]
struct World {
    inbox: VecDeque<Delivery>,
    calls: Vec<Call>,
    shown: Vec<String>,
    typed: VecDeque<Input>,
    down: Vec<String>,
    /// The fetcher's server is reachable.
    reachable: bool,
    routers: Vec<String>,
    chunks_fetched: u32,
    next_sent_id: i64,
}

type Shared = Rc<RefCell<World>>;

struct Script(Shared);

impl Messaging for Script {
    type Error = String;
    async fn next(&mut self, _: u32) -> Result<Option<Delivery>, String> {
        Ok(self.0.borrow_mut().inbox.pop_front())
    }
    fn release(&mut self, item: u64) -> Result<(), String> {
        self.0.borrow_mut().calls.push(Call::Release(item));
        Ok(())
    }
    fn keep(&mut self, item: u64) -> Result<(), String> {
        self.0.borrow_mut().calls.push(Call::Keep(item));
        Ok(())
    }
    async fn send(&mut self, contact: u64, body: &[u8]) -> Result<i64, String> {
        let mut w = self.0.borrow_mut();
        w.calls.push(Call::Send(contact, body.to_vec()));
        w.next_sent_id += 1;
        let msg_id = w.next_sent_id;
        // Handed back through the inbox, as the agent's sent notices are.
        w.inbox.push_back(Delivery {
            item: 1000 + msg_id as u64,
            contact,
            event: Event::Sent {
                msg_id,
                body: body.to_vec(),
            },
        });
        Ok(msg_id)
    }
    async fn address(&mut self) -> Result<String, String> {
        Ok("https://smp.example/a#x".into())
    }
    async fn invite(&mut self) -> Result<String, String> {
        Err("the router refused".into())
    }
    async fn connect(&mut self, _: &str) -> Result<(), String> {
        Ok(())
    }
    fn contacts(&self) -> Result<Vec<Contact>, String> {
        Ok(vec![
            Contact {
                id: ADDRESS,
                name: "#1".into(),
                status: "address".into(),
            },
            Contact {
                id: ALICE,
                name: "alice".into(),
                status: "connected".into(),
            },
        ])
    }
    fn contact(&self, id: u64) -> Option<Contact> {
        self.contacts().ok()?.into_iter().find(|c| c.id == id)
    }
    fn contact_named(&self, name: &str) -> Option<Contact> {
        self.contacts()
            .ok()?
            .into_iter()
            .find(|c| c.name == name && !c.is_address())
    }
    fn down_routers(&self) -> Vec<String> {
        self.0.borrow().down.clone()
    }
    fn routers(&self) -> Vec<String> {
        self.0.borrow().routers.clone()
    }
    fn set_routers(&mut self, list: &[String]) -> Result<(), String> {
        self.0.borrow_mut().routers = list.to_vec();
        Ok(())
    }
}

/// Serves the published file's chunks, or nothing while unreachable.
struct MemFetcher {
    world: Shared,
    file: Rc<Published>,
}

impl Fetcher<TestCard> for MemFetcher {
    async fn chunk(
        &mut self,
        card: &mut TestCard,
        job: &mut Job<TestCard>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<bool, FetchFailure> {
        if !self.world.borrow().reachable {
            return Err(FetchFailure::Unreachable);
        }
        self.world.borrow_mut().chunks_fetched += 1;
        let done = fetch_chunk(
            job,
            card,
            &self.file,
            0,
            Fault::None,
            7_001,
            &mut TestRng(5),
        )
        .map_err(|e| FetchFailure::Other(e.to_string()))?;
        let (d, t) = job.bytes();
        progress(d, t);
        Ok(done == ChunkDone::Verified)
    }
}

struct NoClock;
impl Clock for NoClock {
    fn unix_time(&self) -> Option<u64> {
        Some(1_800_000_000)
    }
}

struct Screen(Shared);
impl Ui for Screen {
    fn show(&mut self, e: &UiEvent<'_>) {
        self.0.borrow_mut().shown.push(e.to_string());
    }
    fn poll_input(&mut self) -> Option<Input> {
        self.0.borrow_mut().typed.pop_front()
    }
}

struct MemBoard;
impl Board for MemBoard {
    type Card = TestCard;
    type Messaging = Script;
    type Fetcher = MemFetcher;
    type Clock = NoClock;
    type Entropy = TestRng;
    type Ui = Screen;
}

fn blank_card() -> RamDisk {
    let disk = RamDisk::formatted(40 << 20).unwrap();
    Card::init(Coalesce::new(disk))
        .unwrap()
        .into_device()
        .into_inner()
}

/// A device over `disk` whose card takes `budget` more block writes.
fn device(world: &Shared, disk: RamDisk, budget: u64, file: &Rc<Published>) -> App<MemBoard> {
    let card = Card::mount(Coalesce::new(PowerCut::new(
        disk,
        budget,
        CutMode::FailStop,
    )))
    .unwrap();
    let parts = Parts::<MemBoard> {
        card,
        messaging: Script(world.clone()),
        fetcher: MemFetcher {
            world: world.clone(),
            file: file.clone(),
        },
        clock: NoClock,
        entropy: TestRng(1),
        ui: Screen(world.clone()),
    };
    App::new(parts, device_keys(), Vec::new())
}

/// Runs turns until the inbox and the console are empty.
async fn settle(app: &mut App<MemBoard>, world: &Shared) -> bool {
    loop {
        let idle = {
            let w = world.borrow();
            w.inbox.is_empty() && w.typed.is_empty()
        };
        if idle {
            return true;
        }
        if !app.step(0).await.expect("a turn") {
            return false;
        }
    }
}

fn disk_of(app: App<MemBoard>) -> RamDisk {
    app.close()
        .unwrap()
        .card
        .into_device()
        .into_inner()
        .into_inner()
}

fn text_body(id: u8, text: &str) -> Vec<u8> {
    ChatMessage::new(
        SUPPORTED_CHAT_VRANGE,
        Some(SharedMsgId(vec![id; 12])),
        ChatEvent::MsgNew(MsgContainer::simple(MsgContent::Text { text: text.into() })),
    )
    .encode()
}

fn msg(item: u64, msg_id: i64, body: Vec<u8>) -> Delivery {
    Delivery {
        item,
        contact: ALICE,
        event: Event::Message { msg_id, body },
    }
}

fn history_of(disk: RamDisk, contact: u64) -> Vec<(Direction, i64, String)> {
    let keys = device_keys();
    let mut card = Card::mount(Coalesce::new(disk)).unwrap();
    let mut h = History::open(
        &mut card,
        &keys.files_mk,
        &keys.device_id,
        history_no(contact),
    )
    .unwrap();
    let all = h.read_all(&mut card).unwrap();
    h.close(&mut card).unwrap();
    all.into_iter()
        .map(|e| (e.direction, e.msg_id, e.text))
        .collect()
}

fn no_file() -> Rc<Published> {
    Rc::new(publish(support::content(1000, 1), 1))
}

#[tokio::test(flavor = "current_thread")]
async fn a_text_is_stored_once_before_its_item_is_released() {
    let world = Shared::default();
    let file = no_file();
    {
        let mut w = world.borrow_mut();
        w.inbox.push_back(Delivery {
            item: 1,
            contact: ALICE,
            event: Event::Connected,
        });
        w.inbox.push_back(msg(2, 40, text_body(1, "hello device")));
        // The same message again, as after a reset before its release.
        w.inbox.push_back(msg(3, 40, text_body(1, "hello device")));
    }
    let mut app = device(&world, blank_card(), u64::MAX, &file);
    assert!(settle(&mut app, &world).await);
    let disk = disk_of(app);
    let w = world.borrow();
    assert_eq!(
        w.calls,
        [Call::Release(1), Call::Release(2), Call::Release(3)]
    );
    assert_eq!(
        w.shown
            .iter()
            .filter(|l| *l == "alice: hello device")
            .count(),
        1,
        "{:?}",
        w.shown
    );
    assert!(w.shown.contains(&"alice connected".to_string()));
    assert_eq!(
        history_of(disk, ALICE),
        [(Direction::Received, 40, "hello device".to_string())]
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_card_that_fails_releases_nothing_and_the_message_comes_again() {
    let world = Shared::default();
    let file = no_file();
    let disk = blank_card();
    world
        .borrow_mut()
        .inbox
        .push_back(msg(5, 41, text_body(2, "kept safe")));
    // Power is lost at the first block write: the record cannot reach the
    // card, so the item must not be released (its ACK would lose it).
    let mut app = device(&world, disk.clone(), 0, &file);
    assert!(app.step(0).await.is_err());
    assert!(world.borrow().calls.is_empty());
    assert!(!world.borrow().shown.iter().any(|l| l.contains("kept safe")));
    drop(app);

    // After the reset the agent hands the item over again.
    world
        .borrow_mut()
        .inbox
        .push_back(msg(5, 41, text_body(2, "kept safe")));
    let mut app = device(&world, disk, u64::MAX, &file);
    assert!(settle(&mut app, &world).await);
    let disk = disk_of(app);
    assert_eq!(world.borrow().calls, [Call::Release(5)]);
    assert_eq!(
        history_of(disk, ALICE),
        [(Direction::Received, 41, "kept safe".to_string())]
    );
}

/// The offer and its description parts, as `xftp send --to` sends them.
fn offer(file: &Published, first_item: u64) -> Vec<Delivery> {
    let id = SharedMsgId(vec![0x33; 12]);
    let mut c = MsgContainer::simple(MsgContent::File {
        text: String::new(),
    });
    c.file = Some(FileInvitation::xftp(
        "report.bin",
        file.content.len() as u64,
    ));
    let mut bodies = vec![
        ChatMessage::new(
            SUPPORTED_CHAT_VRANGE,
            Some(id.clone()),
            ChatEvent::MsgNew(c),
        )
        .encode(),
    ];
    for (i, ev) in file_descr_events(&id, &file.desc.to_yaml(), 200)
        .into_iter()
        .enumerate()
    {
        let part_id = SharedMsgId(vec![0x40 + i as u8; 12]);
        bodies.push(ChatMessage::new(SUPPORTED_CHAT_VRANGE, Some(part_id), ev).encode());
    }
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, b)| msg(first_item + i as u64, 100 + i as i64, b))
        .collect()
}

#[tokio::test(flavor = "current_thread")]
async fn a_file_offer_is_held_until_the_file_is_on_the_card() {
    let world = Shared::default();
    let file = Rc::new(publish(support::content(300_000, 9), 1));
    let items = offer(&file, 20);
    let n = items.len() as u64;
    assert!(n >= 3, "the description comes in several parts");
    // Sanity: the device's chat layer sees one offer and one fetch.
    let mut chats = Chats::new();
    let steps: Vec<Step> = items
        .iter()
        .flat_map(|d| match &d.event {
            Event::Message { body, .. } => chats.receive(1, body),
            _ => Vec::new(),
        })
        .collect();
    assert!(matches!(steps.last(), Some(Step::Fetch { .. })));

    // The servers are down: every item is kept, none released.
    world.borrow_mut().inbox.extend(items.clone());
    let mut app = device(&world, blank_card(), u64::MAX, &file);
    assert!(settle(&mut app, &world).await);
    let disk = disk_of(app);
    {
        let w = world.borrow();
        let kept: Vec<Call> = (20..20 + n).map(Call::Keep).collect();
        assert_eq!(w.calls, kept);
        assert!(
            w.shown
                .iter()
                .any(|l| l.contains("report.bin is interrupted")),
            "{:?}",
            w.shown
        );
    }

    // The next start gets the kept items again, the servers answer, and
    // every item is released once the file is verified on the card.
    {
        let mut w = world.borrow_mut();
        w.calls.clear();
        w.reachable = true;
        w.inbox.extend(items);
    }
    let mut app = device(&world, disk, u64::MAX, &file);
    run_until(&mut app, &world, |w| {
        w.shown
            .iter()
            .any(|l| l.starts_with("alice sent report.bin"))
    })
    .await;
    let disk = disk_of(app);
    let w = world.borrow();
    let mut released: Vec<u64> = w
        .calls
        .iter()
        .filter_map(|c| match c {
            Call::Release(i) => Some(*i),
            _ => None,
        })
        .collect();
    released.sort();
    assert_eq!(released, (20..20 + n).collect::<Vec<_>>(), "{:?}", w.calls);
    let line = w
        .shown
        .iter()
        .find(|l| l.starts_with("alice sent report.bin (300000 bytes): on the card as "))
        .unwrap_or_else(|| panic!("{:?}", w.shown));
    let base = line.rsplit(' ').next().unwrap().to_string();
    let mut card = Card::mount(Coalesce::new(disk)).unwrap();
    let mut out = Vec::new();
    catalog::extract(&mut card, &device_keys(), &base, false, |b| {
        out.extend_from_slice(b);
        Ok::<(), ()>(())
    })
    .unwrap();
    assert!(out == file.content, "the extracted file differs");
}

#[tokio::test(flavor = "current_thread")]
async fn console_commands_do_what_they_say() {
    let world = Shared::default();
    let file = no_file();
    {
        let mut w = world.borrow_mut();
        for l in [
            "/msg bob hi",
            "/msg alice see you at 5",
            "/contacts",
            "/invite",
            "/nonsense",
        ] {
            w.typed.push_back(Input::Line(l.into()));
        }
        w.down.push("smp.example:5223".into());
    }
    let mut app = device(&world, blank_card(), u64::MAX, &file);
    assert!(settle(&mut app, &world).await);
    world.borrow_mut().down.clear();
    world
        .borrow_mut()
        .typed
        .push_back(Input::Line("/quit".into()));
    assert!(!settle(&mut app, &world).await);
    let disk = disk_of(app);
    let w = world.borrow();
    let shown: Vec<&str> = w.shown.iter().map(String::as_str).collect();
    assert_eq!(
        shown,
        [
            "router smp.example:5223 cannot be reached; retrying",
            "no contact named bob",
            "alice\tconnected",
            "/invite failed: the router refused",
            "unknown command /nonsense; /help lists them",
            "router smp.example:5223 is reachable again",
        ]
    );
    // The text went to alice as a chat message, and is in her history
    // with the id the agent gave it, written when the agent handed it back.
    let [Call::Send(to, body), Call::Release(1001)] = w.calls.as_slice() else {
        panic!("{:?}", w.calls)
    };
    assert_eq!(*to, ALICE);
    assert_eq!(
        Chats::new().receive(1, body),
        [Step::Text("see you at 5".into())]
    );
    assert_eq!(
        history_of(disk, ALICE),
        [(Direction::Sent, 1, "see you at 5".to_string())]
    );
}

#[tokio::test(flavor = "current_thread")]
async fn stop_ends_the_loop_after_the_address_is_shown() {
    let world = Shared::default();
    let file = no_file();
    world.borrow_mut().typed.push_back(Input::Stop);
    let mut app = device(&world, blank_card(), u64::MAX, &file);
    app.run(0).await.unwrap();
    assert_eq!(
        world.borrow().shown,
        ["address: https://smp.example/a#x", "ready"]
    );
}

/// Turns of the loop until `done` holds (at most 10,000).
async fn run_until(app: &mut App<MemBoard>, world: &Shared, done: impl Fn(&World) -> bool) {
    for _ in 0..10_000 {
        if done(&world.borrow()) {
            return;
        }
        assert!(app.step(0).await.expect("a turn"));
    }
    panic!("not reached: {:?}", world.borrow().shown);
}

#[tokio::test(flavor = "current_thread")]
async fn messages_keep_coming_while_a_file_downloads() {
    let world = Shared::default();
    let file = Rc::new(publish(support::content(1_500_000, 4), 1));
    assert!(file.desc.chunks.len() >= 3);
    {
        let mut w = world.borrow_mut();
        w.reachable = true;
        w.inbox.extend(offer(&file, 20));
        w.inbox
            .push_back(msg(90, 300, text_body(9, "while you wait")));
    }
    let mut app = device(&world, blank_card(), u64::MAX, &file);
    run_until(&mut app, &world, |w| {
        w.shown.iter().any(|l| l == "alice: while you wait")
    })
    .await;
    let (chunks_then, released_then) = {
        let w = world.borrow();
        (w.chunks_fetched, w.calls.contains(&Call::Release(90)))
    };
    // The text was stored and released with the file still coming in,
    // and the download is listed as in progress.
    assert!(released_then);
    world
        .borrow_mut()
        .typed
        .push_back(Input::Line("/files".into()));
    assert!(app.step(0).await.unwrap());
    assert!(
        world
            .borrow()
            .shown
            .iter()
            .any(|l| l.contains("\tfetching ") && l.ends_with("\t-\treport.bin")),
        "{:?}",
        world.borrow().shown
    );
    run_until(&mut app, &world, |w| {
        w.shown
            .iter()
            .any(|l| l.starts_with("alice sent report.bin"))
    })
    .await;
    let total = world.borrow().chunks_fetched;
    assert!(
        chunks_then < total,
        "the text waited for the whole file ({chunks_then} of {total} chunks)"
    );
    let disk = disk_of(app);
    assert_eq!(
        history_of(disk, ALICE),
        [(Direction::Received, 300, "while you wait".to_string())]
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_second_offer_waits_its_turn_and_is_fetched_after_the_first() {
    let world = Shared::default();
    let file = Rc::new(publish(support::content(200_000, 6), 1));
    {
        let mut w = world.borrow_mut();
        w.reachable = true;
        w.inbox.extend(offer(&file, 20));
        // The same file offered again under another message id: it
        // resolves to the same job once the first is done.
        let mut again = offer(&file, 50);
        for d in &mut again {
            if let Event::Message { body, .. } = &mut d.event {
                let text = String::from_utf8(body.clone()).unwrap();
                *body = text
                    .replace("MzMzMzMzMzMzMzMz", "RERERERERERERERE")
                    .into_bytes();
            }
        }
        w.inbox.extend(again);
    }
    let mut app = device(&world, blank_card(), u64::MAX, &file);
    run_until(&mut app, &world, |w| {
        w.shown
            .iter()
            .filter(|l| l.starts_with("alice sent report.bin"))
            .count()
            == 2
    })
    .await;
    let w = world.borrow();
    let receiving: Vec<usize> = w
        .shown
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("alice: receiving report.bin"))
        .map(|(i, _)| i)
        .collect();
    let sent = w
        .shown
        .iter()
        .position(|l| l.starts_with("alice sent report.bin"))
        .unwrap();
    assert_eq!(receiving.len(), 2, "{:?}", w.shown);
    assert!(receiving[0] < sent && sent < receiving[1], "{:?}", w.shown);
    let n = offer(&file, 0).len() as u64;
    let mut released: Vec<u64> = w
        .calls
        .iter()
        .filter_map(|c| match c {
            Call::Release(i) => Some(*i),
            _ => None,
        })
        .collect();
    released.sort();
    let want: Vec<u64> = (20..20 + n).chain(50..50 + n).collect();
    assert_eq!(released, want);
}

#[tokio::test(flavor = "current_thread")]
async fn a_sent_text_handed_back_again_is_stored_once() {
    let world = Shared::default();
    let file = no_file();
    let sent = |item| Delivery {
        item,
        contact: ALICE,
        event: Event::Sent {
            msg_id: 12,
            body: text_body(3, "on my way"),
        },
    };
    // Stored, then the device stopped before the item was released: it
    // comes again at the next start.
    world.borrow_mut().inbox.push_back(sent(8));
    let mut app = device(&world, blank_card(), u64::MAX, &file);
    assert!(settle(&mut app, &world).await);
    let disk = disk_of(app);
    world.borrow_mut().inbox.push_back(sent(8));
    let mut app = device(&world, disk, u64::MAX, &file);
    assert!(settle(&mut app, &world).await);
    let disk = disk_of(app);
    assert_eq!(world.borrow().calls, [Call::Release(8), Call::Release(8)]);
    assert_eq!(
        history_of(disk, ALICE),
        [(Direction::Sent, 12, "on my way".to_string())]
    );
    // Nothing of it is shown: the user typed it.
    assert!(world.borrow().shown.is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn a_text_sent_just_before_quit_is_on_the_card() {
    let world = Shared::default();
    let file = no_file();
    {
        let mut w = world.borrow_mut();
        w.typed
            .push_back(Input::Line("/msg alice bye for now".into()));
        w.typed.push_back(Input::Line("/quit".into()));
    }
    let mut app = device(&world, blank_card(), u64::MAX, &file);
    assert!(!app.step(0).await.unwrap());
    let disk = disk_of(app);
    assert_eq!(
        history_of(disk, ALICE),
        [(Direction::Sent, 1, "bye for now".to_string())]
    );
}

#[tokio::test(flavor = "current_thread")]
async fn routers_are_shown_checked_and_changed_on_the_device() {
    let world = Shared::default();
    let file = no_file();
    let key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let mine = format!("smp://{key}@10.0.0.1:5223");
    world.borrow_mut().routers = vec![mine.clone()];
    for l in [
        "/routers".to_string(),
        format!("/routers xftp://{key}@10.0.0.2:443"),
        "/routers smp://nonsense".to_string(),
    ] {
        world.borrow_mut().typed.push_back(Input::Line(l));
    }
    let mut app = device(&world, blank_card(), u64::MAX, &file);
    assert!(settle(&mut app, &world).await);
    {
        let w = world.borrow();
        assert_eq!(
            w.routers,
            std::slice::from_ref(&mine),
            "refused lists change nothing"
        );
        assert_eq!(
            w.shown[0],
            format!("router {mine} (default: new queues go here)")
        );
        assert!(w.shown[1].contains("is not an SMP router"), "{:?}", w.shown);
        assert!(
            w.shown[2].contains("is not a router address"),
            "{:?}",
            w.shown
        );
    }
    let other = format!("smp://{key}@10.0.0.3");
    world
        .borrow_mut()
        .typed
        .push_back(Input::Line(format!("/routers {other} {mine}")));
    assert!(settle(&mut app, &world).await);
    assert_eq!(world.borrow().routers, [other.clone(), mine.clone()]);
    world
        .borrow_mut()
        .typed
        .push_back(Input::Line("/routers presets".into()));
    assert!(settle(&mut app, &world).await);
    let w = world.borrow();
    assert_eq!(w.routers, smp_core::smp::presets::default_addresses());
    assert!(w.routers[0].contains("smp.simplego.dev"), "{:?}", w.routers);
    assert!(
        w.shown.last().is_some_and(|l| !l.contains("(default")),
        "the default is listed first"
    );
}
