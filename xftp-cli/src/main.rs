//! `xftp`: send, receive and delete files through XFTP servers, a drop-in
//! for the reference `xftp` command.

fn main() -> std::process::ExitCode {
    xftp_cli::cli::main(std::env::args_os())
}
