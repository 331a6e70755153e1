#!/usr/bin/env bash
# Links the no_std cores (smp-core with its TLS engine, device-sync, and firmware with
# its event loop on a board with nothing attached) into a #![no_std] staticlib for bare-metal riscv32imac: a
# dependency that pulls in std, or needs an OS, fails here.
# The crate is generated in a temporary directory; nothing is added to the
# workspace.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/src"
cat > "$dir/Cargo.toml" <<TOML
[package]
name = "smp-core-nostd-link"
version = "0.0.0"
edition = "2024"
publish = false

[lib]
crate-type = ["staticlib"]

[dependencies]
smp-core = { path = "$root/smp-core", default-features = false, features = ["tls"] }
device-sync = { path = "$root/device-sync", default-features = false }
firmware = { path = "$root/firmware", default-features = false }
zeroize = { version = "1", default-features = false }

[profile.release]
panic = "abort"

[workspace]
TOML
cat > "$dir/src/lib.rs" <<'RS'
#![no_std]
extern crate alloc;

use core::alloc::{GlobalAlloc, Layout};

/// Never allocates: the check is that everything links without std.
struct NoAlloc;

// SAFETY: returning null is the documented way for an allocator to report
// failure, and dealloc is only ever called with pointers alloc returned,
// of which there are none.
unsafe impl GlobalAlloc for NoAlloc {
    unsafe fn alloc(&self, _: Layout) -> *mut u8 {
        core::ptr::null_mut()
    }
    unsafe fn dealloc(&self, _: *mut u8, _: Layout) {}
}

#[global_allocator]
static ALLOC: NoAlloc = NoAlloc;

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// Pulls the agent layer, the ratchet, envelopes, chat and file crypto into
/// the link.
#[unsafe(no_mangle)]
pub extern "C" fn smp_core_nostd_probe(ck: &[u8; 32], out: &mut [u8; 32]) -> usize {
    let (next, _, _) = smp_core::agent::ratchet::chain_kdf(ck);
    *out = next;
    let v = smp_core::agent::version::AGENT_VERSIONS.max() as usize;
    let msg = smp_core::chat::parse_chat_messages(b"{}").len();
    let env = smp_core::agent::envelope::AgentMsgEnvelope::decode(b"").is_err() as usize;
    let link = smp_core::agent::link::ConnectionRequest::parse("simplex:/").is_err() as usize;
    let file = smp_core::file::chunks::prepare_chunk_sizes(1 << 20).len();
    let yaml = smp_core::file::description::ValidFileDescription::from_yaml(
        "party: recipient",
        smp_core::file::description::FileParty::Recipient,
    )
    .is_err() as usize;
    v + msg + env + link + file + yaml
}

/// Pulls device-sync's core into the link: the layout, record sealing,
/// the journal and the job over the card.
#[unsafe(no_mangle)]
pub extern "C" fn device_sync_nostd_probe(key: &[u8; 32], out: &mut [u8; 4096]) -> usize {
    use device_sync::format::layout::Runs;
    let Ok(runs) = Runs::from_chunk_sizes(&[65536, 65536]) else {
        return 0;
    };
    let Some(c) = runs.chunk(0) else { return 0 };
    let cipher = device_sync::format::record::RecordCipher::new(key);
    cipher.seal(&c, 0, device_sync::format::record::record_nonce(1, 2, 0), &mut out[..]);
    let card = core::mem::size_of::<
        device_sync::card::Card<device_sync::blockdev::Coalesce<device_sync::blockdev::RamDisk>>,
    >();
    let job = core::mem::size_of::<
        device_sync::job::Job<device_sync::card::Card<device_sync::blockdev::RamDisk>>,
    >();
    runs.data_len() as usize + card + job
}

/// Pulls the firmware core into the link: the history, chat handling and
/// the console.
#[unsafe(no_mangle)]
pub extern "C" fn firmware_nostd_probe(line: &[u8; 64]) -> usize {
    let Ok(line) = core::str::from_utf8(line) else { return 0 };
    let cmd = firmware::console::Command::parse(line).is_ok() as usize;
    let mut chats = firmware::chat::Chats::new();
    let steps = chats.receive(1, line.as_bytes()).len();
    let hist = core::mem::size_of::<
        firmware::history::History<device_sync::card::Card<device_sync::blockdev::RamDisk>>,
    >();
    cmd + steps + hist + firmware::history::file_name(1).len()
}

/// A board with nothing attached, so that the device's event loop (and the
/// generic code under it: history, chat, console, catalog) is compiled and
/// linked for the target rather than left as unused generics.
mod quiet {
    use alloc::string::String;
    use alloc::vec::Vec;
    use device_sync::blockdev::RamDisk;
    use device_sync::card::Card;
    use device_sync::job::Job;
    use firmware::hal::{
        Board, Clock, Contact, Delivery, Entropy, FetchFailure, Fetcher, Input, Messaging, Ui,
    };
    use firmware::ui::UiEvent;

    pub struct Quiet;
    pub type QuietCard = Card<RamDisk>;

    impl Messaging for Quiet {
        type Error = &'static str;
        async fn next(&mut self, _: u32) -> Result<Option<Delivery>, Self::Error> {
            Ok(None)
        }
        fn release(&mut self, _: u64) -> Result<(), Self::Error> {
            Ok(())
        }
        fn keep(&mut self, _: u64) -> Result<(), Self::Error> {
            Ok(())
        }
        async fn send(&mut self, _: u64, _: &[u8]) -> Result<i64, Self::Error> {
            Err("no router")
        }
        async fn address(&mut self) -> Result<String, Self::Error> {
            Err("no router")
        }
        async fn invite(&mut self) -> Result<String, Self::Error> {
            Err("no router")
        }
        async fn connect(&mut self, _: &str) -> Result<(), Self::Error> {
            Err("no router")
        }
        fn contacts(&self) -> Result<Vec<Contact>, Self::Error> {
            Ok(Vec::new())
        }
        fn contact(&self, _: u64) -> Option<Contact> {
            None
        }
        fn contact_named(&self, _: &str) -> Option<Contact> {
            None
        }
        fn down_routers(&self) -> Vec<String> {
            Vec::new()
        }
        fn routers(&self) -> Vec<String> {
            Vec::new()
        }
        fn set_routers(&mut self, _: &[String]) -> Result<(), Self::Error> {
            Err("no router")
        }
    }

    impl Fetcher<QuietCard> for Quiet {
        async fn chunk(
            &mut self,
            _: &mut QuietCard,
            _: &mut Job<QuietCard>,
            _: &mut dyn FnMut(u64, u64),
        ) -> Result<bool, FetchFailure> {
            Err(FetchFailure::Unreachable)
        }
    }

    impl Clock for Quiet {
        fn unix_time(&self) -> Option<u64> {
            None
        }
    }

    impl Entropy for Quiet {
        fn fill(&mut self, buf: &mut [u8]) {
            buf.fill(0x5a);
        }
    }

    pub struct Line<'a>(pub Option<&'a str>);

    impl Ui for Line<'_> {
        fn show(&mut self, _: &UiEvent<'_>) {}
        fn poll_input(&mut self) -> Option<Input> {
            self.0.take().map(|l| Input::Line(l.into()))
        }
    }

    pub struct QuietBoard<'a>(core::marker::PhantomData<&'a ()>);

    impl<'a> Board for QuietBoard<'a> {
        type Card = QuietCard;
        type Messaging = Quiet;
        type Fetcher = Quiet;
        type Clock = Quiet;
        type Entropy = Quiet;
        type Ui = Line<'a>;
    }
}

/// One turn of the device's event loop with `line` typed at its console;
/// returns whether the device keeps running.
#[unsafe(no_mangle)]
pub extern "C" fn firmware_app_probe(line: &[u8; 64]) -> usize {
    use core::future::Future;
    use core::task::{Context, Poll, Waker};
    let Ok(line) = core::str::from_utf8(line) else { return 0 };
    let Ok(card) = device_sync::card::Card::mount(device_sync::blockdev::RamDisk::new(1 << 16))
    else {
        return 0;
    };
    let parts = firmware::app::Parts::<quiet::QuietBoard<'_>> {
        card,
        messaging: quiet::Quiet,
        fetcher: quiet::Quiet,
        clock: quiet::Quiet,
        entropy: quiet::Quiet,
        ui: quiet::Line(Some(line)),
    };
    let keys = device_sync::job::DeviceKeys {
        files_mk: zeroize::Zeroizing::new([1; 32]),
        device_id: [2; 16],
        key_id: 1,
    };
    let mut app = firmware::app::App::new(parts, keys, alloc::vec::Vec::new());
    let mut cx = Context::from_waker(Waker::noop());
    let turn = core::pin::pin!(app.step(0)).poll(&mut cx);
    matches!(turn, Poll::Ready(Ok(true))) as usize
}

/// The device's TLS client: a ClientHello pinned to `key_hash`, encoded by
/// rustls over the RustCrypto provider; returns its length.
#[unsafe(no_mangle)]
pub extern "C" fn tls_engine_probe(key_hash: &[u8; 32], entropy: &[u8; 32]) -> usize {
    smp_core::tls::rustcrypto::seed(entropy);
    match smp_core::tls::engine::Client::connect(*key_hash, b"smp/1", 1_800_000_000) {
        Ok(c) => c.outgoing().len(),
        Err(_) => 0,
    }
}
RS
cargo build --quiet --release --manifest-path "$dir/Cargo.toml" \
  --target riscv32imac-unknown-none-elf --target-dir "$root/target/nostd-link"
ls "$root"/target/nostd-link/riscv32imac-unknown-none-elf/release/libsmp_core_nostd_link.a >/dev/null
echo "no_std staticlib for riscv32imac-unknown-none-elf: linked"
