//! `simplego-device init` as a user meets it: without `--smp` the device
//! starts with the preset routers, SimpleGo's default first; a name or a
//! router that cannot work is refused before anything is written; a card
//! is not initialised twice.
#![cfg(feature = "std")]

use firmware::host::{BoardError, init, state_dir};
use smp_core::client::agent::store::Store;
use smp_core::smp::presets::{default_router, preset_routers};

#[test]
fn a_new_device_uses_the_presets_with_the_default_first() {
    let t = tempfile::tempdir().unwrap();
    let img = t.path().join("card.img");
    init(&img, 64 << 20, "dev", &[]).unwrap();
    let store = Store::open(&state_dir(&img)).unwrap();
    let routers = store.profile().unwrap().unwrap().smp_servers;
    let default = default_router().unwrap();
    assert_eq!(default.host, "smp.simplego.dev");
    assert!(
        routers[0].ends_with("@smp.simplego.dev"),
        "first router: {}",
        routers[0]
    );
    // Every preset that can be used is there once, and only those.
    let usable: Vec<String> = preset_routers()
        .iter()
        .filter_map(|r| r.usable_address().ok())
        .map(ToString::to_string)
        .collect();
    assert_eq!(routers.len(), usable.len());
    for u in &usable {
        assert_eq!(routers.iter().filter(|r| *r == u).count(), 1, "{u}");
    }
}

#[test]
fn bad_names_routers_and_a_second_init_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let img = t.path().join("card.img");
    assert!(matches!(
        init(&img, 64 << 20, "two words", &[]),
        Err(BoardError::BadName(_))
    ));
    assert!(matches!(
        init(&img, 64 << 20, "dev", &["smp://not-a-key@".into()]),
        Err(BoardError::Routers(_))
    ));
    let xftp = "xftp://AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=@127.0.0.1:443";
    assert!(matches!(
        init(&img, 64 << 20, "dev", &[xftp.into()]),
        Err(BoardError::Routers(why)) if why.contains("not an SMP router")
    ));
    assert!(
        !img.exists() && !state_dir(&img).exists(),
        "nothing written"
    );
    init(&img, 64 << 20, "dev", &[]).unwrap();
    assert!(matches!(
        init(&img, 64 << 20, "dev", &[]),
        Err(BoardError::Exists(_))
    ));
}
