//! `simplego-device`: the SimpleGo device on a host board.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use firmware::host::{self, BoardError, RunOptions};

#[derive(Parser)]
#[command(
    name = "simplego-device",
    version,
    about = "The SimpleGo device on a host board: messaging with SimpleX contacts, files onto its encrypted card image"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create the card image, its key file (IMAGE.keys, 0600) and the
    /// device state (IMAGE.nvs)
    Init {
        /// The card image to create
        #[arg(long = "sd", value_name = "IMAGE")]
        image: PathBuf,
        /// Image size, e.g. 256M, 4G (at least 40M)
        #[arg(long, default_value = "256M", value_parser = parse_size)]
        size: u64,
        /// The name contacts see
        #[arg(long)]
        name: String,
        /// SMP routers, first the one new queues go to (default: the
        /// SimpleGo presets, smp.simplego.dev first)
        #[arg(long = "smp", value_name = "ADDR")]
        smp: Vec<String>,
    },
    /// Run the device until /quit or SIGTERM; commands are read from stdin
    Run {
        #[arg(long = "sd", value_name = "IMAGE")]
        image: PathBuf,
        /// Replace the device's SMP routers (kept for later runs)
        #[arg(long = "smp", value_name = "ADDR")]
        smp: Vec<String>,
        /// Only fetch files from these XFTP servers (default: any)
        #[arg(long = "xftp", value_name = "ADDR")]
        xftp: Vec<String>,
    },
    /// Print the messages stored on the card (the device must be stopped)
    History {
        #[arg(long = "sd", value_name = "IMAGE")]
        image: PathBuf,
        /// Only this contact's
        name: Option<String>,
    },
    #[command(flatten)]
    Docs(smp_core::cli::Docs),
}

fn parse_size(s: &str) -> Result<u64, String> {
    let (n, mul) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    let v: u64 = n.parse().map_err(|_| format!("not a size: {s}"))?;
    let v = v.checked_mul(mul).ok_or_else(|| format!("too big: {s}"))?;
    if v < 40 << 20 {
        return Err("a card image needs at least 40M".into());
    }
    Ok(v)
}

/// Exit codes: 1 other, 2 usage (clap), 3 a router cannot be reached, 7
/// unusable card, keys or device state.
fn code(e: &BoardError) -> u8 {
    match e {
        BoardError::Card(_) | BoardError::Store(..) | BoardError::NoDevice(_) => 7,
        BoardError::Running(_) | BoardError::Exists(_) => 1,
        BoardError::Agent(smp_core::client::agent::runtime::RuntimeError::Smp(_)) => 3,
        _ => 1,
    }
}

/// Counts the heap, so that a run ends with its peak (the figure README's
/// RAM section and the end-to-end stories check).
#[global_allocator]
static HEAP: device_sync::heap::CountingAlloc = device_sync::heap::CountingAlloc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let r = match cli.command {
        Cmd::Init {
            image,
            size,
            name,
            smp,
        } => host::init(&image, size, &name, &smp).map(|c| {
            println!(
                "created {} ({} MiB, FAT32), its keys in {} and the device state in {}",
                image.display(),
                size >> 20,
                c.keys.display(),
                c.state.display()
            );
        }),
        Cmd::Run { image, smp, xftp } => {
            let opts = RunOptions {
                smp,
                xftp,
                qr: true,
            };
            let r = host::run(&image, &opts).await;
            if r.is_ok() {
                println!("heap peak: {} bytes", device_sync::heap::peak());
            }
            r
        }
        Cmd::History { image, name } => host::history(&image, name.as_deref()).map(|lines| {
            for l in lines {
                println!("{l}");
            }
        }),
        Cmd::Docs(d) => {
            return match d.run(<Cli as clap::CommandFactory>::command()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("simplego-device: {e}");
                    ExitCode::FAILURE
                }
            };
        }
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("simplego-device: {e}");
            ExitCode::from(code(&e))
        }
    }
}
