//! file_encryption.json and chunk_sizes.json: every case.

mod support;

use serde_json::Value;
use smp_core::crypto::digest::{sha256, sha512};
use smp_core::crypto::secretbox::{CbNonce, SbKey};
use smp_core::file::chunks::{self, prepare_chunk_sizes, prepare_chunk_specs, single_chunk_size};
use smp_core::file::crypto::{FilePlan, decrypt_bytes, encrypt_bytes};
use smp_core::file::description::FileSize;
use smp_core::file::header::FileHeader;
use smp_core::file::stream::{decrypt_file, encrypt_file};
use support::*;

fn header_of(c: &Value) -> FileHeader {
    FileHeader {
        file_name: str_of(&c["file_name"]).to_string(),
        file_extra: c["file_extra"].as_str().map(str::to_string),
    }
}

fn u32s(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn file_headers() {
    let v = xftp("file_encryption.json");
    for c in cases(&v, "file_header") {
        let h = header_of(c);
        let enc = hex(&c["encoded"]);
        assert_eq!(h.encode().unwrap(), enc);
        assert_eq!(FileHeader::decode_prefix(&enc).unwrap(), (h, enc.len()));
    }
    let inputs = &v["inputs"];
    assert_eq!(
        header_of(inputs).encode().unwrap(),
        hex(&inputs["file_header"])
    );
}

#[test]
fn encrypt_every_size_exactly() {
    let v = xftp("file_encryption.json");
    let inputs = &v["inputs"];
    let key = SbKey(arr(&inputs["key"]));
    let nonce = CbNonce(arr(&inputs["nonce"]));
    let header = header_of(inputs);
    for c in cases(&v, "encrypt") {
        let size = u64_of(&c["plaintext_size"]) as usize;
        let plain = ramp(size);
        assert_eq!(sha512(&plain).to_vec(), hex(&c["plaintext_sha512"]));
        let plan = FilePlan::new(&header, size as u64).unwrap();
        assert_eq!(
            plan.header.len() as u64 + size as u64,
            u64_of(&c["file_size"])
        );
        assert_eq!(
            prepare_chunk_sizes(u64_of(&c["payload_size"])),
            plan.chunk_sizes
        );
        assert_eq!(plan.chunk_sizes, u32s(&c["chunk_sizes"]));
        assert_eq!(plan.enc_size, u64_of(&c["enc_size"]));
        assert_eq!(
            plan.enc_size - 24 - u64_of(&c["file_size"]),
            u64_of(&c["padding_length"])
        );

        // The streaming path, which is what uploads use.
        let mut out = Vec::new();
        let ef = encrypt_file(&plain[..], size as u64, &header, &key, &nonce, &mut out).unwrap();
        assert_eq!(out.len() as u64, ef.enc_size);
        assert_eq!(ef.digest.to_vec(), hex(&c["encrypted_sha512"]));
        assert_eq!(sha512(&out).to_vec(), hex(&c["encrypted_sha512"]));
        assert_eq!(out[..64], hex(&c["encrypted_first_64"])[..]);
        assert_eq!(out[out.len() - 64..], hex(&c["encrypted_last_64"])[..]);
        assert_eq!(out[out.len() - 16..], hex(&c["auth_tag"])[..]);
        if let Some(full) = c.get("encrypted") {
            assert_eq!(out, hex(full));
        }
        let offsets: Vec<u64> = c["chunk_offsets"]
            .as_array()
            .unwrap()
            .iter()
            .map(u64_of)
            .collect();
        let specs = prepare_chunk_specs(&ef.chunk_sizes);
        assert_eq!(specs.iter().map(|s| s.offset).collect::<Vec<_>>(), offsets);
        let want: Vec<Vec<u8>> = c["chunk_digests_sha256"]
            .as_array()
            .unwrap()
            .iter()
            .map(hex)
            .collect();
        let got: Vec<Vec<u8>> = ef.chunk_digests.iter().map(|d| d.to_vec()).collect();
        assert_eq!(got, want);
        for (spec, d) in specs.iter().zip(&want) {
            let chunk = &out[spec.offset as usize..(spec.offset + spec.size as u64) as usize];
            assert_eq!(sha256(chunk).to_vec(), *d);
        }
        // The in-memory path gives the same bytes.
        assert_eq!(
            encrypt_bytes(&key, &nonce, &header, &plain, plan.enc_size).unwrap(),
            out
        );
        // And it decrypts back, through both paths.
        let (h, back) = decrypt_bytes(&key, &nonce, &out).unwrap();
        assert_eq!((h, back.len()), (header.clone(), size));
        assert_eq!(sha512(&back).to_vec(), hex(&c["plaintext_sha512"]));
        let mut streamed = Vec::new();
        let (h2, digest) =
            decrypt_file(&out[..], out.len() as u64, &key, &nonce, &mut streamed).unwrap();
        assert_eq!(h2, header);
        assert_eq!(digest.to_vec(), hex(&c["encrypted_sha512"]));
        assert_eq!(streamed, plain);
    }
}

#[test]
fn decrypt_cases() {
    let v = xftp("file_encryption.json");
    for c in cases(&v, "decrypt") {
        let enc = hex(&c["encrypted"]);
        assert_eq!(enc.len() as u64, u64_of(&c["enc_size"]));
        let (h, content) =
            decrypt_bytes(&SbKey(arr(&c["key"])), &CbNonce(arr(&c["nonce"])), &enc).unwrap();
        let e = &c["expected"];
        assert_eq!(h, header_of(e));
        assert_eq!(content.len() as u64, u64_of(&e["content_size"]));
        assert_eq!(content, ramp(content.len()));
        assert_eq!(sha512(&content).to_vec(), hex(&e["content_sha512"]));
    }
    for c in cases(&v, "small_files") {
        let key = SbKey(arr(&c["key"]));
        let nonce = CbNonce(arr(&c["nonce"]));
        let header = header_of(c);
        assert_eq!(header.encode().unwrap(), hex(&c["file_header"]));
        let source = hex(&c["source"]);
        assert_eq!(
            header.encode().unwrap().len() + source.len(),
            u64_of(&c["file_size"]) as usize
        );
        let enc = hex(&c["encrypted"]);
        assert_eq!(
            encrypt_bytes(&key, &nonce, &header, &source, u64_of(&c["enc_size"])).unwrap(),
            enc
        );
        assert_eq!(decrypt_bytes(&key, &nonce, &enc).unwrap(), (header, source));
    }
    for c in cases(&v, "decrypt_errors") {
        let enc = hex(&c["encrypted"]);
        assert_eq!(enc.len() as u64, u64_of(&c["enc_size"]));
        let r = decrypt_bytes(&SbKey(arr(&c["key"])), &CbNonce(arr(&c["nonce"])), &enc);
        assert!(r.is_err(), "{} was accepted", c["case"]);
        let mut sink = Vec::new();
        let r = decrypt_file(
            &enc[..],
            enc.len() as u64,
            &SbKey(arr(&c["key"])),
            &CbNonce(arr(&c["nonce"])),
            &mut sink,
        );
        assert!(r.is_err(), "{} was accepted by the stream", c["case"]);
    }
}

#[test]
fn chunk_sizing() {
    let v = xftp("chunk_sizes.json");
    let k = &v["constants"];
    assert_eq!(u32s(&k["chunk_sizes"]), chunks::SERVER_CHUNK_SIZES.to_vec());
    assert_eq!(
        u64_of(&k["fileSizeLen"]) + u64_of(&k["authTagSize"]),
        chunks::FILE_OVERHEAD
    );
    for c in cases(&v, "prepare_chunk_sizes") {
        let sizes = prepare_chunk_sizes(u64_of(&c["payload_size"]));
        assert_eq!(sizes.len() as u64, u64_of(&c["chunk_count"]), "{c}");
        assert_eq!(
            sizes.iter().map(|&s| s as u64).sum::<u64>(),
            u64_of(&c["total"])
        );
        let mut runs: Vec<(u32, u64)> = Vec::new();
        for &s in &sizes {
            match runs.last_mut() {
                Some((size, n)) if *size == s => *n += 1,
                _ => runs.push((s, 1)),
            }
        }
        let want: Vec<(u32, u64)> = c["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r[0].as_u64().unwrap() as u32, r[1].as_u64().unwrap()))
            .collect();
        assert_eq!(runs, want, "{}", c["payload_size"]);
        if let Some(list) = c.get("chunk_sizes") {
            assert_eq!(sizes, u32s(list));
        }
    }
    for c in cases(&v, "prepare_chunk_sizes_strings") {
        let sizes = prepare_chunk_sizes(u64_of(&c["payload_size"]));
        let text: Vec<String> = sizes
            .iter()
            .map(|&s| FileSize(s as u64).to_string())
            .collect();
        assert_eq!(text.join(","), str_of(&c["sizes"]));
        let parsed: Vec<u32> = str_of(&c["sizes"])
            .split(',')
            .map(|t| t.parse::<FileSize>().unwrap().0 as u32)
            .collect();
        assert_eq!(parsed, sizes);
    }
    for c in cases(&v, "single_chunk_size") {
        let want = c["chunk_size"].as_u64().map(|s| s as u32);
        assert_eq!(single_chunk_size(u64_of(&c["payload_size"])), want);
    }
    for c in cases(&v, "prepare_chunk_specs") {
        let specs = prepare_chunk_specs(&u32s(&c["chunk_sizes"]));
        let want: Vec<(u64, u32)> = c["specs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (u64_of(&s["offset"]), u64_of(&s["size"]) as u32))
            .collect();
        assert_eq!(
            specs.iter().map(|s| (s.offset, s.size)).collect::<Vec<_>>(),
            want
        );
    }
}
