//! Progress output: indicatif bars on a terminal, the reference's progress
//! items otherwise (so that scripts reading stdout see what they expect).

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The reference pads progress items to this width and ends them with `\r`.
const ITEM_WIDTH: usize = 25;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// indicatif bars on stderr (stdout is a terminal).
    Bars,
    /// The reference's items on stdout: padded, `\r`-terminated, or one per
    /// line with `newline` (the reference's `-v`).
    Plain { newline: bool },
    /// Nothing (library use, tests).
    Hidden,
}

pub struct Progress {
    mode: Mode,
    multi: Option<MultiProgress>,
    out: Mutex<()>,
}

impl Progress {
    pub fn new(mode: Mode) -> Self {
        let multi = (mode == Mode::Bars)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Self {
            mode,
            multi,
            out: Mutex::new(()),
        }
    }

    /// Bars on a terminal, plain items otherwise; `-v` forces plain lines.
    pub fn for_terminal(verbose: bool) -> Self {
        use std::io::IsTerminal;
        let mode = if verbose {
            Mode::Plain { newline: true }
        } else if std::io::stdout().is_terminal() && std::io::stderr().is_terminal() {
            Mode::Bars
        } else {
            Mode::Plain { newline: false }
        };
        Self::new(mode)
    }

    pub fn hidden() -> Self {
        Self::new(Mode::Hidden)
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// A progress item as the reference prints it (`printNoNewLine`):
    /// `Encrypting file...`, `File uploaded!`, `File downloaded: …`.
    pub fn item(&self, text: &str) {
        if let Mode::Plain { newline } = self.mode {
            let _g = self.out.lock();
            let mut o = std::io::stdout().lock();
            let _ = write!(o, "{}", pad_item(text));
            if newline {
                let _ = writeln!(o);
            }
            let _ = o.flush();
        }
    }

    /// Ends the line the plain items share (the reference's `\n` before
    /// its result lines); nothing with bars.
    pub fn end_items(&self) {
        if self.mode == (Mode::Plain { newline: false }) {
            let _g = self.out.lock();
            let mut o = std::io::stdout().lock();
            let _ = writeln!(o);
            let _ = o.flush();
        }
    }

    /// A bar for `total` bytes labelled `label` ("encrypting", …). With
    /// `plain_item` (e.g. `Uploaded`), each [`Bar::chunk_done`] prints
    /// `<plain_item> <n>%` in plain mode, as the reference does per chunk.
    pub fn bar(&self, label: &str, total: u64, plain_item: Option<&'static str>) -> Bar<'_> {
        let pb = self.multi.as_ref().map(|m| {
            let pb = m.add(ProgressBar::new(total));
            pb.set_style(
                ProgressStyle::with_template(
                    "{prefix:>11} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                )
                .expect("static template")
                .progress_chars("=> "),
            );
            pb.set_prefix(label.to_string());
            pb
        });
        Bar {
            progress: self,
            pb,
            total,
            done: AtomicU64::new(0),
            plain_item,
        }
    }
}

/// `text` padded to the reference's width and ended with `\r`.
pub fn pad_item(text: &str) -> String {
    let pad = ITEM_WIDTH.saturating_sub(text.chars().count());
    format!("{text}{}\r", " ".repeat(pad))
}

pub struct Bar<'a> {
    progress: &'a Progress,
    pb: Option<ProgressBar>,
    total: u64,
    done: AtomicU64,
    plain_item: Option<&'static str>,
}

impl Bar<'_> {
    /// Bytes processed within a step (bars only).
    pub fn inc(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
        if let Some(pb) = &self.pb {
            pb.inc(n);
        }
    }

    /// Moves the bar up to `pos` bytes done (a counter kept elsewhere, e.g.
    /// by a blocking thread); never back.
    pub fn advance_to(&self, pos: u64) {
        let done = self.done.load(Ordering::Relaxed);
        if pos > done {
            self.inc(pos - done);
        }
    }

    /// A chunk of `n` bytes finished: advances the bar and, in plain mode,
    /// prints the reference's `Uploaded <n>%` item.
    pub fn chunk_done(&self, n: u64) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        if let Some(pb) = &self.pb {
            pb.inc(n);
        }
        if let Some(item) = self.plain_item {
            let pct = done
                .saturating_mul(100)
                .checked_div(self.total)
                .unwrap_or(100);
            self.progress.item(&format!("{item} {pct}%"));
        }
    }

    pub fn finish(&self) {
        if let Some(pb) = &self.pb {
            pb.finish();
        }
    }
}

impl Drop for Bar<'_> {
    fn drop(&mut self) {
        if let Some(pb) = &self.pb
            && !pb.is_finished()
        {
            pb.abandon();
        }
    }
}
