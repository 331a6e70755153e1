//! The build got the XSalsa20-Poly1305 backend it asked for, so a CI run
//! with `SMP_CORE_CRYPTO_BACKEND=rustcrypto` really checks the vectors
//! against RustCrypto (and the default one against libsodium); and a
//! process switched to the other backend at run time gets it, with the
//! same bytes.

use smp_core::crypto::backend::{self, Backend};
use smp_core::crypto::secretbox::{CbNonce, SbStream};

fn seal(data: &[u8]) -> (Vec<u8>, [u8; 16]) {
    let mut s = SbStream::new(&[5; 32], &CbNonce([6; 24]));
    let mut buf = data.to_vec();
    s.encrypt(&mut buf);
    (buf, s.tag())
}

// One test, not several: the switch is process-wide.
#[test]
fn the_active_backend_is_the_one_asked_for_and_can_be_switched() {
    let default = if cfg!(feature = "sodium") {
        "sodium"
    } else {
        "rustcrypto"
    };
    let wanted = match option_env!("SMP_CORE_CRYPTO_BACKEND") {
        None | Some("") => default,
        Some(w) => w,
    };
    assert_eq!(backend::active().name(), wanted);
    assert_eq!(Backend::build_default().name(), wanted);
    let data: Vec<u8> = (0..100_003u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let first = seal(&data);

    #[cfg(feature = "sodium")]
    {
        use backend::{Active, Switched, XSalsa20Poly1305};
        let is_sodium = |s: &Active| matches!(s, Switched::Sodium(_));
        assert_eq!(
            is_sodium(&Active::new(&[0; 32], &[0; 24])),
            wanted == "sodium"
        );
        for b in [Backend::RustCrypto, Backend::Sodium, Backend::RustCrypto] {
            backend::select(b);
            assert_eq!(backend::active(), b);
            assert_eq!(
                is_sodium(&Active::new(&[0; 32], &[0; 24])),
                b == Backend::Sodium
            );
            assert_eq!(seal(&data), first, "{} gives other bytes", b.name());
        }
    }
}
