//! JSON-array batches (`Messages/Batch.hs`, agent.md §6.5): several chat
//! messages for one connection in one `A_MSG`, for peers with chat version
//! ≥ [`BATCH_SEND2_VERSION`](super::BATCH_SEND2_VERSION).

use alloc::vec::Vec;
use core::ops::Range;

use super::ChatError;

/// One `A_MSG` body holding the encoded messages `items` (indices into the
/// list given to [`batch_messages`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsgBatch {
    pub body: Vec<u8>,
    pub items: Range<usize>,
}

/// `encodeBatch`: nothing for no message, a lone message as is, else
/// `[m1,m2,...]`.
pub fn encode_json_batch(bodies: &[&[u8]]) -> Vec<u8> {
    match bodies {
        [] => Vec::new(),
        [one] => one.to_vec(),
        many => {
            let len = many.iter().map(|b| b.len()).sum::<usize>() + many.len() + 1;
            let mut out = Vec::with_capacity(len);
            out.push(b'[');
            for (i, b) in many.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b);
            }
            out.push(b']');
            out
        }
    }
}

/// Length of the batch of `n` bodies totalling `len` bytes.
fn batch_len(len: usize, n: usize) -> usize {
    match n {
        0 => 0,
        1 => len,
        _ => len + n + 1,
    }
}

/// Groups encoded messages into batches of at most `max_len` bytes, in
/// order, as the reference's `batchMessages` does: it fills batches from
/// the end of the list, so the first batch is the one that may be short. A
/// message longer than `max_len` on its own becomes an error in its place.
pub fn batch_messages(bodies: &[Vec<u8>], max_len: usize) -> Vec<Result<MsgBatch, ChatError>> {
    let mut out: Vec<Result<MsgBatch, ChatError>> = Vec::new();
    // The open batch is bodies[start..end], `len` bytes in total.
    let mut end = bodies.len();
    let mut start = end;
    let mut len = 0usize;
    let close = |out: &mut Vec<Result<MsgBatch, ChatError>>, start: usize, end: usize| {
        if start < end {
            let parts: Vec<&[u8]> = bodies[start..end].iter().map(Vec::as_slice).collect();
            out.push(Ok(MsgBatch {
                body: encode_json_batch(&parts),
                items: start..end,
            }));
        }
    };
    for i in (0..bodies.len()).rev() {
        let msg_len = bodies[i].len();
        if batch_len(len + msg_len, end - start + 1) <= max_len {
            start = i;
            len += msg_len;
        } else if msg_len <= max_len {
            close(&mut out, start, end);
            end = i + 1;
            start = i;
            len = msg_len;
        } else {
            close(&mut out, start, end);
            out.push(Err(ChatError::TooLarge {
                len: msg_len,
                limit: max_len,
            }));
            end = i;
            start = i;
            len = 0;
        }
    }
    close(&mut out, start, end);
    out.reverse();
    out
}
