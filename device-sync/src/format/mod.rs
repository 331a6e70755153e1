//! What device-sync writes on the card (`design/device.md` §4): the keys,
//! the card marker, the data file (`F*.SGF`: header, layout, records), its
//! journal (`F*.SGJ`) and its manifest (`F*.SGM`). Pure functions over
//! bytes; the card and the job put them on the medium.

pub mod header;
pub mod journal;
pub mod keys;
pub mod layout;
pub mod manifest;
pub mod marker;
pub mod record;

/// Card block size; every structure here is a whole number of blocks.
pub const BLOCK: usize = 512;

/// Why stored bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("not a {0} (bad magic)")]
    Magic(&'static str),
    #[error("unsupported {0} version")]
    Version(&'static str),
    #[error("{0} is damaged (MAC check failed)")]
    Mac(&'static str),
    #[error("{0} is inconsistent: {1}")]
    Invalid(&'static str, &'static str),
    #[error("record {0} is damaged or out of place")]
    Record(u32),
    #[error("the file has too many different chunk sizes for the header (at most 8 runs)")]
    TooManyRuns,
    #[error("{0} does not fit its fixed size")]
    TooLarge(&'static str),
}
