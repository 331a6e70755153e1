//! Server addresses and connection links as QR codes on a terminal: the
//! apps add a server, or connect, by scanning one.

use std::io::IsTerminal;

/// `text` as a QR code drawn with Unicode half blocks (two rows of modules
/// per line), quiet zone included; `None` when it is too long for one.
pub fn render(text: &str) -> Option<String> {
    let code = qrcode::QrCode::new(text.as_bytes()).ok()?;
    Some(
        code.render::<qrcode::render::unicode::Dense1x2>()
            .quiet_zone(true)
            .build(),
    )
}

/// Prints the code for `text` when standard output is a terminal (in a
/// pipe or a log it would only be noise).
pub fn print_on_terminal(text: &str) {
    if std::io::stdout().is_terminal()
        && let Some(s) = render(text)
    {
        println!("{s}");
    }
}
