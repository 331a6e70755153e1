//! `xftp-server`: parses the command line and runs it.

use std::process::ExitCode;

use xftp_server::cli::{self, StartConfig, StartError};
use xftp_server::config::ServerPaths;

fn main() -> ExitCode {
    // Logs go to stderr, as the reference's; they never carry IPs, IDs or keys.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let paths = ServerPaths::from_env();
    match cli::parse_args(&paths, std::env::args_os()) {
        Ok(args) => cli::run(&paths, args, start_server),
        Err(e) => cli::clap_exit(&e),
    }
}

/// Called by `start` once the configuration, fingerprint and credentials
/// are checked and the banner is printed; serves until SIGTERM or SIGINT.
fn start_server(cfg: StartConfig) -> Result<(), StartError> {
    xftp_server::app::run(cfg)
}
