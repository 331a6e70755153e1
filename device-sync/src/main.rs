//! `device-sync`: the host board's tool. It runs the device's own code
//! (embedded-sdmmc FAT32, the encrypted format, the download job) on a card
//! image in a file, with its key store in a 0600 file beside the image.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use device_sync::catalog::{self, ExtractError, StoredFile};
use device_sync::format::journal::{Failure, JobState};
use device_sync::host::{self, CardSetupError, FetchError, FetchOptions, run_job};
use device_sync::job::{DeviceKeys, JobError};
use device_sync::storage::StorageError;
use smp_core::file::description::{FileParty, ValidFileDescription};
use smp_core::file::header::safe_file_name;

type Store = host::HostCard;

#[derive(Parser)]
#[command(
    name = "device-sync",
    version,
    about = "Fetch XFTP files onto a SimpleGo card image, encrypted with AES-256-GCM"
)]
struct Cli {
    /// The key file (default: IMAGE.keys beside the image)
    #[arg(long, global = true, value_name = "FILE")]
    keys: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a FAT32 card image and its key file (0600)
    Init {
        image: PathBuf,
        /// Image size, e.g. 256M, 4G (at least 40M)
        #[arg(long, default_value = "256M", value_parser = parse_size)]
        size: u64,
    },
    /// Download the file a recipient description names onto the card;
    /// run again after an interruption to resume
    Fetch {
        image: PathBuf,
        /// A recipient file description (.xftp YAML), or - for stdin
        description: String,
    },
    /// List the files on the card
    Ls { image: PathBuf },
    /// Write a complete file's content to OUT
    Extract {
        image: PathBuf,
        /// The file's name (as `ls` shows it) or its card id (F…)
        name: String,
        out: PathBuf,
        /// Extract what has arrived of an incomplete file
        #[arg(long)]
        partial: bool,
    },
    /// Check every record of every file and say which are damaged
    Verify { image: PathBuf },
    #[command(flatten)]
    Docs(smp_core::cli::Docs),
}

fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'K' | 'k')) => (&s[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&s[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("{s} is not a size like 256M or 4G"))
}

/// A failure in words, with the exit code scripts can tell apart.
struct Fail {
    code: u8,
    msg: String,
}

impl Fail {
    fn new(code: u8, msg: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
        }
    }
}

/// Exit codes: 1 other, 3 server unreachable, 4 file gone from its
/// servers, 5 card full, 6 damaged data, 7 unusable card or keys.
fn job_fail(e: JobError) -> Fail {
    match e {
        JobError::Failed(Failure::Gone) => Fail::new(
            4,
            "the file is no longer on its servers (expired or deleted)",
        ),
        JobError::Failed(Failure::Full) | JobError::Storage(StorageError::Full) => {
            Fail::new(5, "the card is full; the partial file was removed")
        }
        JobError::Failed(f @ (Failure::Digest | Failure::Tag | Failure::Size)) => Fail::new(
            6,
            format!("the downloaded file did not check out ({f:?}); it was removed"),
        ),
        JobError::Format(f) => Fail::new(6, f.to_string()),
        e => Fail::new(1, e.to_string()),
    }
}

fn key_path(cli_keys: &Option<PathBuf>, image: &Path) -> PathBuf {
    cli_keys
        .clone()
        .unwrap_or_else(|| host::default_key_path(image))
}

fn setup(e: CardSetupError) -> Fail {
    match e {
        CardSetupError::Exists(_) => Fail::new(1, e.to_string()),
        e => Fail::new(7, e.to_string()),
    }
}

fn open_card(image: &Path, keys: &DeviceKeys) -> Result<Store, Fail> {
    host::open_card(image, keys).map_err(setup)
}

fn init(image: &Path, size: u64, keys_path: &Path) -> Result<(), Fail> {
    if image.exists() {
        return Err(Fail::new(1, format!("{} exists already", image.display())));
    }
    host::init_card(image, size, keys_path).map_err(setup)?;
    println!(
        "created {} ({} MiB, FAT32) and its keys in {}",
        image.display(),
        size >> 20,
        keys_path.display()
    );
    Ok(())
}

fn read_description(arg: &str) -> Result<ValidFileDescription, Fail> {
    let text = if arg == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(|e| Fail::new(1, e.to_string()))?
    } else {
        std::fs::read_to_string(arg).map_err(|e| Fail::new(1, format!("cannot read {arg}: {e}")))?
    };
    ValidFileDescription::from_yaml(&text, FileParty::Recipient)
        .map_err(|e| Fail::new(1, format!("not a recipient file description: {e}")))
}

async fn fetch(image: &Path, keys: &DeviceKeys, arg: &str) -> Result<(), Fail> {
    let desc = read_description(arg)?;
    let mut card = open_card(image, keys)?;
    let mut job = host::job_for(&mut card, keys, &desc).map_err(job_fail)?;
    let bar = indicatif::ProgressBar::new(desc.size);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let r = if job.state() == JobState::Fetching {
        run_job(&mut card, &mut job, &FetchOptions::default(), |d, _| {
            bar.set_position(d)
        })
        .await
    } else {
        Ok(())
    };
    bar.finish_and_clear();
    let base = job.names().base.clone();
    let _ = job.close(&mut card);
    drop(card.into_device());
    match r {
        Ok(()) => {
            let mut card = open_card(image, keys)?;
            let f = catalog::list(&mut card, keys)
                .map_err(|e| Fail::new(1, e.to_string()))?
                .into_iter()
                .flatten()
                .find(|f| f.base == base);
            drop(card.into_device());
            let name = f
                .as_ref()
                .and_then(|f| f.header.as_ref())
                .map(|h| safe_file_name(&h.file_name))
                .unwrap_or_else(|| base.clone());
            let len = f.and_then(|f| f.content_len).unwrap_or(0);
            println!("{name} ({len} bytes) is on the card as {base}");
            Ok(())
        }
        Err(FetchError::Job(e)) => Err(job_fail(e)),
        Err(e @ FetchError::Unreachable { .. }) => Err(Fail::new(3, e.to_string())),
        Err(e) => Err(Fail::new(1, e.to_string())),
    }
}

fn state_word(f: &StoredFile) -> String {
    match f.state {
        JobState::Fetching => format!("fetching {}/{}", f.chunks_done, f.chunks),
        JobState::Verified => "complete".into(),
        JobState::Acked => "complete".into(),
        JobState::Failed => format!("failed ({:?})", f.failure).to_lowercase(),
    }
}

fn display_name(f: &StoredFile) -> String {
    f.header
        .as_ref()
        .map(|h| safe_file_name(&h.file_name))
        .unwrap_or_else(|| "-".into())
}

fn ls(image: &Path, keys: &DeviceKeys) -> Result<(), Fail> {
    let mut card = open_card(image, keys)?;
    let listed = catalog::list(&mut card, keys).map_err(|e| Fail::new(1, e.to_string()))?;
    for f in listed {
        match f {
            Ok(f) => println!(
                "{}\t{}\t{}\t{}",
                f.base,
                state_word(&f),
                f.content_len.map_or("-".into(), |n| n.to_string()),
                display_name(&f)
            ),
            Err((base, e)) => println!("{base}\tunreadable ({e})\t-\t-"),
        }
    }
    drop(card.into_device());
    Ok(())
}

fn resolve_name(card: &mut Store, keys: &DeviceKeys, name: &str) -> Result<String, Fail> {
    let listed = catalog::list(card, keys).map_err(|e| Fail::new(1, e.to_string()))?;
    let found: Vec<String> = listed
        .into_iter()
        .flatten()
        .filter(|f| f.base == name || display_name(f) == name)
        .map(|f| f.base)
        .collect();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Fail::new(1, format!("no file named {name} on the card"))),
        _ => Err(Fail::new(
            1,
            format!("several files are named {name}; give the card id from ls"),
        )),
    }
}

fn extract(
    image: &Path,
    keys: &DeviceKeys,
    name: &str,
    out: &Path,
    partial: bool,
) -> Result<(), Fail> {
    use std::io::Write;
    let mut card = open_card(image, keys)?;
    let base = resolve_name(&mut card, keys, name)?;
    let dir = out
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| Fail::new(1, format!("cannot write in {}: {e}", dir.display())))?;
    let r = catalog::extract(&mut card, keys, &base, partial, |b| tmp.write_all(b));
    drop(card.into_device());
    match r {
        Ok(_) => {
            tmp.as_file()
                .sync_all()
                .map_err(|e| Fail::new(1, e.to_string()))?;
            tmp.persist(out)
                .map_err(|e| Fail::new(1, format!("cannot write {}: {e}", out.display())))?;
            Ok(())
        }
        Err(ExtractError::Job(JobError::Format(e))) => {
            Err(Fail::new(6, format!("{name} ({base}) is damaged: {e}")))
        }
        Err(ExtractError::BadHeader) => Err(Fail::new(
            6,
            format!("{name} ({base}) is damaged: no valid file header"),
        )),
        Err(e) => Err(Fail::new(1, format!("{name} ({base}): {e}"))),
    }
}

fn verify(image: &Path, keys: &DeviceKeys) -> Result<(), Fail> {
    let mut card = open_card(image, keys)?;
    let listed = catalog::list(&mut card, keys).map_err(|e| Fail::new(1, e.to_string()))?;
    let mut bad = 0;
    for f in listed {
        let (base, name) = match &f {
            Ok(f) => (f.base.clone(), display_name(f)),
            Err((base, e)) => {
                println!("{base}: DAMAGED: {e}");
                bad += 1;
                continue;
            }
        };
        match catalog::verify(&mut card, keys, &base) {
            Ok(r) if r.damaged.is_empty() && !r.truncated => {
                println!("{base} {name}: ok ({} records)", r.records)
            }
            Ok(r) => {
                bad += 1;
                let list: Vec<String> = r.damaged.iter().map(u32::to_string).collect();
                println!(
                    "{base} {name}: DAMAGED: records {}{}",
                    if list.is_empty() {
                        "-".into()
                    } else {
                        list.join(",")
                    },
                    if r.truncated { " (file truncated)" } else { "" }
                );
            }
            Err(e) => {
                bad += 1;
                println!("{base} {name}: DAMAGED: {e}");
            }
        }
    }
    drop(card.into_device());
    if bad > 0 {
        return Err(Fail::new(6, format!("{bad} damaged file(s)")));
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let with_keys = |image: &Path| {
        host::load_keys(&key_path(&cli.keys, image)).map_err(|e| Fail::new(7, e.to_string()))
    };
    let r = match &cli.command {
        Command::Init { image, size } => init(image, *size, &key_path(&cli.keys, image)),
        Command::Fetch { image, description } => match with_keys(image) {
            Ok(k) => fetch(image, &k, description).await,
            Err(e) => Err(e),
        },
        Command::Ls { image } => with_keys(image).and_then(|k| ls(image, &k)),
        Command::Extract {
            image,
            name,
            out,
            partial,
        } => with_keys(image).and_then(|k| extract(image, &k, name, out, *partial)),
        Command::Verify { image } => with_keys(image).and_then(|k| verify(image, &k)),
        Command::Docs(d) => d
            .run(<Cli as clap::CommandFactory>::command())
            .map_err(|e| Fail::new(1, e.to_string())),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("device-sync: {}", f.msg);
            ExitCode::from(f.code)
        }
    }
}
