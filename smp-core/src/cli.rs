//! What every SimpleGo binary offers beside its own commands: shell
//! completions and man pages. Both are generated from the binary's clap
//! definition at run time, so they cannot drift from the options it accepts
//! and a packager needs nothing but the installed binary.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub use clap_complete::Shell;

/// The two subcommands, flattened into each binary's own command enum
/// (`#[command(flatten)] Docs(smp_core::cli::Docs)`).
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Docs {
    /// Print a completion script for a shell (bash: save it as
    /// /usr/share/bash-completion/completions/NAME)
    Completions {
        /// bash, zsh, fish, elvish or powershell
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Write the man pages, one per command, into a directory
    Man {
        /// Where the pages go (created if missing), e.g. /usr/local/share/man/man1
        dir: PathBuf,
    },
}

impl Docs {
    /// `cmd` is the binary's whole command, as its parser builds it (with
    /// any texts resolved at run time, such as the directories in force).
    pub fn run(&self, cmd: clap::Command) -> io::Result<()> {
        match self {
            Docs::Completions { shell } => {
                let script = completion_script(cmd, *shell);
                let mut out = io::stdout().lock();
                out.write_all(&script)?;
                out.flush()
            }
            Docs::Man { dir } => man_pages(cmd, dir),
        }
    }
}

/// The completion script for `cmd` under its own name.
pub fn completion_script(mut cmd: clap::Command, shell: Shell) -> Vec<u8> {
    let name = cmd.get_name().to_string();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, name.clone(), &mut script);
    if shell == Shell::Bash && name.contains('-') {
        script = mend_bash_case_labels(&script, &name);
    }
    script
}

/// clap_complete 4.6's bash generator names a subcommand's state
/// `xftp__server__subcmd__init` where it is set but matches
/// `xftp__subcmd__server__subcmd__init` where its options are offered (it
/// turns the binary name's hyphen into the subcommand separator in one place
/// only), so no subcommand of a hyphenated binary completes its options.
/// The labels are rewritten to the spelling that is set.
fn mend_bash_case_labels(script: &[u8], name: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(script);
    let wrong = format!("{}__subcmd__", name.replace('-', "__subcmd__"));
    let right = format!("{}__subcmd__", name.replace('-', "__"));
    text.replace(&wrong, &right).into_bytes()
}

/// `NAME.1` and `NAME-SUBCOMMAND.1` for every subcommand, in `dir`.
pub fn man_pages(cmd: clap::Command, dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    // generate_to builds the command itself with the help subcommand
    // disabled; building it here first would add pages for `help`.
    clap_mangen::generate_to(cmd, dir)
}
