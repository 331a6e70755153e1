//! The build got the XSalsa20-Poly1305 backend it asked for, so a CI run
//! with `SMP_CORE_CRYPTO_BACKEND=rustcrypto` really checks the vectors
//! against RustCrypto (and the default one against libsodium).

use smp_core::crypto::backend;

#[test]
fn the_active_backend_is_the_one_asked_for() {
    let default = if cfg!(feature = "sodium") {
        "sodium"
    } else {
        "rustcrypto"
    };
    let wanted = match option_env!("SMP_CORE_CRYPTO_BACKEND") {
        None | Some("") => default,
        Some(w) => w,
    };
    assert_eq!(backend::ACTIVE, wanted);
    assert_eq!(
        core::any::type_name::<backend::Active>()
            .rsplit("::")
            .next(),
        Some(if wanted == "sodium" {
            "Sodium"
        } else {
            "RustCrypto"
        })
    );
}
