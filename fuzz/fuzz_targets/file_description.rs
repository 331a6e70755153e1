#![no_main]

use libfuzzer_sys::fuzz_target;
use smp_core::file::description::FileDescription;
use smp_core::file::weblink;

// Descriptions: what we write reads back, and writing it again gives the
// same text. (The first rewrite of a foreign text may move a chunk's
// digest and size to another of its replicas and reorder servers: the
// folded chunks are the same, their YAML is normalised once.)
fuzz_target!(|data: &[u8]| {
    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = FileDescription::from_yaml(text) {
        let once = FileDescription::from_yaml(&d.to_yaml()).expect("our own YAML reads");
        let yaml = once.to_yaml();
        let twice = FileDescription::from_yaml(&yaml).expect("our own YAML reads");
        assert_eq!(twice.to_yaml(), yaml);
    }
    let _ = weblink::decode_web_link(text);
});
