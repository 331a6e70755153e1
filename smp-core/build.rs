//! Chooses the XSalsa20-Poly1305 backend (`crypto::backend::Active`).
//!
//! libsodium when the `sodium` feature is on (it is with `std`), RustCrypto
//! otherwise. `SMP_CORE_CRYPTO_BACKEND=rustcrypto` picks RustCrypto in a
//! sodium build too: features only add, so this is how the test vectors are
//! run against the pure-Rust backend on a std target without rebuilding
//! every dependency.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=SMP_CORE_CRYPTO_BACKEND");
    println!("cargo::rustc-check-cfg=cfg(smp_sodium)");
    let sodium = std::env::var_os("CARGO_FEATURE_SODIUM").is_some();
    let wanted = std::env::var("SMP_CORE_CRYPTO_BACKEND").unwrap_or_default();
    match wanted.as_str() {
        "" if sodium => println!("cargo::rustc-cfg=smp_sodium"),
        "" | "rustcrypto" => {}
        "sodium" if sodium => println!("cargo::rustc-cfg=smp_sodium"),
        "sodium" => panic!("SMP_CORE_CRYPTO_BACKEND=sodium needs smp-core's `sodium` feature"),
        other => panic!("SMP_CORE_CRYPTO_BACKEND={other}: expected `sodium` or `rustcrypto`"),
    }
}
