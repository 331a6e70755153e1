//! `smp-server`: parses the command line and runs it.

use std::process::ExitCode;

use smp_server::cli;
use smp_server::config::ServerPaths;

fn main() -> ExitCode {
    // Logs go to stderr; they never carry IP addresses, queue IDs or keys.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let paths = ServerPaths::from_env();
    let args = match cli::parse_args(&paths, std::env::args_os()) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    cli::run(&paths, args, smp_server::app::run)
}
