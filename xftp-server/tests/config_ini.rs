//! The INI parser against the behaviour of `ini` 0.4.1, one quirk per test.

use xftp_server::config::Ini;

fn get<'a>(ini: &'a Ini, s: &str, k: &str) -> Option<&'a str> {
    ini.get(s, k)
}

#[test]
fn equals_and_colon_both_separate() {
    let ini = Ini::parse("[A]\nx = 1\ny: 2\n");
    assert_eq!(get(&ini, "A", "x"), Some("1"));
    assert_eq!(get(&ini, "A", "y"), Some("2"));
}

#[test]
fn split_at_first_separator_of_either_kind() {
    let ini = Ini::parse("[A]\nurl = http://h:80/x=y\nk: a=b\n");
    assert_eq!(get(&ini, "A", "url"), Some("http://h:80/x=y"));
    assert_eq!(get(&ini, "A", "k"), Some("a=b"));
    // A key cannot contain ':' — it is the separator.
    let ini = Ini::parse("[A]\na:b = c\n");
    assert_eq!(get(&ini, "A", "a"), Some("= c"));
}

#[test]
fn colon_drops_first_value_character() {
    // `clean ':' = T.drop 1`: without a space the first character is lost.
    let ini = Ini::parse("[A]\nport:8000\nother=8000\n");
    assert_eq!(get(&ini, "A", "port"), Some("000"));
    assert_eq!(get(&ini, "A", "other"), Some("8000"));
}

#[test]
fn keys_and_values_are_trimmed() {
    let ini = Ini::parse("[A]\n   key   =   some value  \t\n");
    assert_eq!(get(&ini, "A", "key"), Some("some value"));
}

#[test]
fn empty_value() {
    let ini = Ini::parse("[A]\nk =\nnext = 1\n");
    assert_eq!(get(&ini, "A", "k"), Some(""));
    assert_eq!(get(&ini, "A", "next"), Some("1"));
}

#[test]
fn comment_lines_hash_and_semicolon_with_leading_blanks() {
    let ini = Ini::parse("[A]\n# c1\n; c2\n   # c3 = 5\nk = v\n\t; x: y\n");
    assert_eq!(get(&ini, "A", "k"), Some("v"));
    assert_eq!(get(&ini, "A", "# c3"), None);
    assert_eq!(get(&ini, "A", "c3"), None);
}

#[test]
fn no_inline_comments() {
    let ini = Ini::parse("[A]\nport = 443 # https\nx = a ; b\n");
    assert_eq!(get(&ini, "A", "port"), Some("443 # https"));
    assert_eq!(get(&ini, "A", "x"), Some("a ; b"));
}

#[test]
fn case_sensitive_sections_and_keys() {
    let ini = Ini::parse("[Auth]\nNew_Files = off\n[AUTH]\nnew_files = on\n");
    assert_eq!(get(&ini, "AUTH", "new_files"), Some("on"));
    assert_eq!(get(&ini, "AUTH", "New_Files"), None);
    assert_eq!(get(&ini, "Auth", "New_Files"), Some("off"));
    assert_eq!(get(&ini, "auth", "new_files"), None);
}

#[test]
fn duplicate_key_first_wins() {
    let ini = Ini::parse("[A]\nk = 1\nk = 2\n");
    assert_eq!(get(&ini, "A", "k"), Some("1"));
}

#[test]
fn duplicate_section_last_wins_entirely() {
    let ini = Ini::parse("[A]\nk = 1\nonly_first = x\n[B]\nb = 2\n[A]\nk = 3\n");
    assert_eq!(get(&ini, "A", "k"), Some("3"));
    // The earlier section is replaced, not merged.
    assert_eq!(get(&ini, "A", "only_first"), None);
    assert_eq!(get(&ini, "B", "b"), Some("2"));
}

#[test]
fn line_without_separator_glues_to_next_key() {
    let ini = Ini::parse("[A]\nstray\nk = v\nz = 1\n");
    assert_eq!(get(&ini, "A", "k"), None);
    assert_eq!(get(&ini, "A", "stray\nk"), Some("v"));
    assert_eq!(get(&ini, "A", "z"), Some("1"));
}

#[test]
fn line_without_separator_before_section_silently_ends_parsing() {
    let ini = Ini::parse("[A]\nk = v\nstray\n[B]\nb = 1\n[C]\nc = 2\n");
    assert_eq!(get(&ini, "A", "k"), Some("v"));
    assert!(!ini.has_section("B"));
    assert!(!ini.has_section("C"));
    assert_eq!(ini.section_names(), vec!["A"]);
}

#[test]
fn empty_key_ends_parsing() {
    let ini = Ini::parse("[A]\nk = v\n= x\nz = 1\n[B]\nb = 1\n");
    assert_eq!(get(&ini, "A", "k"), Some("v"));
    assert_eq!(get(&ini, "A", "z"), None);
    assert!(!ini.has_section("B"));
}

#[test]
fn brackets_in_a_key_end_parsing() {
    let ini = Ini::parse("[A]\nk = v\na[0] = 1\n[B]\nb = 1\n");
    assert_eq!(get(&ini, "A", "k"), Some("v"));
    assert!(!ini.has_section("B"));
}

#[test]
fn brackets_in_a_value_are_fine() {
    let ini = Ini::parse("[A]\nk = [x]\n[B]\nb = 1\n");
    assert_eq!(get(&ini, "A", "k"), Some("[x]"));
    assert_eq!(get(&ini, "B", "b"), Some("1"));
}

#[test]
fn section_names_trimmed_and_text_after_bracket_is_a_key() {
    let ini = Ini::parse("[  A  ] k = v\n");
    assert_eq!(get(&ini, "A", "k"), Some("v"));
}

#[test]
fn unclosed_section_ends_parsing() {
    let ini = Ini::parse("[A]\nk = v\n[B\nb = 1\n");
    assert_eq!(get(&ini, "A", "k"), Some("v"));
    assert_eq!(ini.section_names(), vec!["A"]);
}

#[test]
fn globals_before_first_section_are_not_in_any_section() {
    let ini = Ini::parse("g = 1\n[A]\nk = v\n");
    assert_eq!(ini.globals, vec![("g".to_string(), "1".to_string())]);
    assert_eq!(get(&ini, "A", "g"), None);
    assert_eq!(get(&ini, "A", "k"), Some("v"));
}

#[test]
fn crlf_line_ends() {
    let ini = Ini::parse("[A]\r\nk = v\r\nz: w\r\n[B]\r\nb=1\r\n");
    assert_eq!(get(&ini, "A", "k"), Some("v"));
    assert_eq!(get(&ini, "A", "z"), Some("w"));
    assert_eq!(get(&ini, "B", "b"), Some("1"));
}

#[test]
fn blank_lines_and_no_trailing_newline() {
    let ini = Ini::parse("\n\n[A]\n\n\nk = v");
    assert_eq!(get(&ini, "A", "k"), Some("v"));
}

#[test]
fn byte_order_mark_hides_everything() {
    // GHC's UTF-8 decoding keeps U+FEFF, which is neither a blank nor '['.
    let ini = Ini::parse("\u{feff}[A]\nk = v\n");
    assert!(ini.section_names().is_empty());
}

#[test]
fn haskell_is_space_not_rust_whitespace() {
    // U+00A0 is a blank for Data.Char.isSpace; U+2028 is not.
    let ini = Ini::parse("[A]\nk = v\u{a0}\nz = w\u{2028}\n");
    assert_eq!(get(&ini, "A", "k"), Some("v"));
    assert_eq!(get(&ini, "A", "z"), Some("w\u{2028}"));
}

#[test]
fn missing_section_or_key() {
    let ini = Ini::parse("[A]\nk = v\n");
    assert_eq!(get(&ini, "B", "k"), None);
    assert_eq!(get(&ini, "A", "x"), None);
}

#[test]
fn never_panics_on_odd_input() {
    for text in [
        "",
        "[",
        "]",
        "=",
        ":",
        "[]",
        "[]\n=",
        "[A]\n:",
        "[A]\nk:",
        "[A]\nk:\u{e9}",
        "#",
        ";;;\n#\n[",
        "\u{feff}",
        "[\u{e9}]\n\u{e9}:\u{e9}\u{e9}",
        "[A]\nk = v\r",
        "\r\r\n\n[A]\r",
    ] {
        let _ = Ini::parse(text);
    }
}

proptest::proptest! {
    #[test]
    fn arbitrary_text_never_panics(s in "\\PC*") {
        let _ = Ini::parse(&s);
    }

    #[test]
    fn arbitrary_ini_like_text_never_panics(s in "[\\[\\]=:#; \\tA-Za-z0-9\\r\\n\u{a0}\u{2028}é]{0,64}") {
        let _ = Ini::parse(&s);
    }
}
