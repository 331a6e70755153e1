//! The INI reader both servers use: it reproduces `ini` 0.4.1 (the version
//! simplexmq pins), quirks included, so that an operator's existing
//! `file-server.ini` or `smp-server.ini` means the same thing to our
//! servers, and a file the reference would silently truncate is truncated
//! here too.

use std::collections::HashMap;

/// Key/value pairs of one section, in file order.
type Pairs = Vec<(String, String)>;

/// A parsed INI file with `ini` 0.4.1 semantics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ini {
    /// Key/value pairs before the first section; the reference never reads them.
    pub globals: Pairs,
    sections: HashMap<String, Pairs>,
}

impl Ini {
    /// Parses as much of `text` as `ini` 0.4.1 would; never fails, because
    /// 0.4.1 does not require the whole input to be consumed.
    pub fn parse(text: &str) -> Ini {
        let mut ini = Ini::default();
        let mut pos = 0;
        while let Some((k, v, next)) = key_value(text, pos) {
            ini.globals.push((k, v));
            pos = next;
        }
        while let Some((name, values, next)) = section(text, pos) {
            // Duplicate sections: the later one replaces the earlier (Map.fromList).
            ini.sections.insert(name, values);
            pos = next;
        }
        ini
    }

    /// The first value of `key` in `section` (case-sensitive), as `lookupValue`.
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.sections
            .get(section)?
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A count or limit of our own (`[LIMITS]`): a whole number from 1 to
    /// `u32::MAX`. `Ok(None)` when absent; `Err(value)` when it is anything
    /// else, for the caller to name in its error.
    pub fn positive(&self, section: &str, key: &str) -> Result<Option<u32>, &str> {
        match self.get(section, key) {
            None => Ok(None),
            Some(v) => match v.trim().parse::<u32>() {
                Ok(n) if n > 0 => Ok(Some(n)),
                _ => Err(v),
            },
        }
    }

    /// Whether a section of this exact name was read.
    pub fn has_section(&self, section: &str) -> bool {
        self.sections.contains_key(section)
    }

    /// Section names, sorted (as `Data.Ini.sections`).
    pub fn section_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.sections.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

/// `Data.Char.isSpace`: Latin-1 blanks plus Unicode category Zs. Unlike
/// `char::is_whitespace` it excludes U+0085, U+2028 and U+2029.
fn hs_is_space(c: char) -> bool {
    match c {
        ' ' | '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' | '\u{a0}' => true,
        '\u{85}' | '\u{2028}' | '\u{2029}' => false,
        c if (c as u32) < 0x100 => false,
        c => c.is_whitespace(),
    }
}

fn hs_strip(s: &str) -> &str {
    s.trim_matches(hs_is_space)
}

fn is_end_of_line(c: char) -> bool {
    c == '\n' || c == '\r'
}

fn skip_while(text: &str, pos: usize, pred: impl Fn(char) -> bool) -> usize {
    match text[pos..].char_indices().find(|&(_, c)| !pred(c)) {
        Some((i, _)) => pos + i,
        None => text.len(),
    }
}

fn peek(text: &str, pos: usize) -> Option<char> {
    text[pos..].chars().next()
}

/// `skipComments`: any number of lines whose first non-blank is `;` or `#`.
fn skip_comments(text: &str, mut pos: usize) -> usize {
    while let Some(c @ (';' | '#')) = peek(text, pos) {
        pos = skip_while(text, pos + c.len_utf8(), |c| !is_end_of_line(c));
        pos = skip_while(text, pos, hs_is_space);
    }
    pos
}

fn skip_blanks_and_comments(text: &str, pos: usize) -> usize {
    let pos = skip_while(text, pos, hs_is_space);
    let pos = skip_comments(text, pos);
    skip_while(text, pos, hs_is_space)
}

/// `keyValueParser`. The key runs up to the first `=`/`:` even across line
/// ends (so a line without a separator is glued to the next key); with `:`
/// the first character of the value is dropped, whatever it is.
fn key_value(text: &str, pos: usize) -> Option<(String, String, usize)> {
    let start = skip_blanks_and_comments(text, pos);
    let key_end = skip_while(text, start, |c| !matches!(c, '=' | ':' | '[' | ']'));
    if key_end == start {
        return None;
    }
    let delim = peek(text, key_end).filter(|c| matches!(c, '=' | ':'))?;
    let value_start = key_end + 1;
    let value_end = skip_while(text, value_start, |c| !is_end_of_line(c));
    let mut value = &text[value_start..value_end];
    if delim == ':' {
        let mut chars = value.chars();
        chars.next();
        value = chars.as_str();
    }
    let next = skip_while(text, value_end, hs_is_space);
    Some((
        hs_strip(&text[start..key_end]).to_string(),
        hs_strip(value).to_string(),
        next,
    ))
}

/// `sectionParser`: `[name]` then as many key/value pairs as parse.
fn section(text: &str, pos: usize) -> Option<(String, Pairs, usize)> {
    let open = skip_blanks_and_comments(text, pos);
    if peek(text, open) != Some('[') {
        return None;
    }
    let name_end = skip_while(text, open + 1, |c| c != ']' && c != '[');
    if peek(text, name_end) != Some(']') {
        return None;
    }
    let name = hs_strip(&text[open + 1..name_end]).to_string();
    let mut pos = skip_while(text, name_end + 1, hs_is_space);
    let mut values = Vec::new();
    while let Some((k, v, next)) = key_value(text, pos) {
        values.push((k, v));
        pos = next;
    }
    Some((name, values, pos))
}

/// Haskell `read :: Int64` for the forms an operator would write: decimal
/// with an optional `-`, or `0x`/`0o` literals. Overflow is refused (the
/// reference wraps around silently).
pub fn read_hs_int(s: &str) -> Option<i64> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (radix, body) = if let Some(h) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        (16, h)
    } else if let Some(o) = digits
        .strip_prefix("0o")
        .or_else(|| digits.strip_prefix("0O"))
    {
        (8, o)
    } else {
        (10, digits)
    };
    if body.is_empty() || !body.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = i128::from_str_radix(body, radix).ok()?;
    i64::try_from(if neg { -magnitude } else { magnitude }).ok()
}
