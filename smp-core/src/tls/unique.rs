//! The socket tap of the std shell: it copies the client's side of the
//! handshake so that [`super::finished`] can read the client Finished out of
//! it (tls-unique).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub use super::finished::SecretSlot;
use super::finished::{CAPTURE_LIMIT, SessionIdError};

/// Which direction of the socket carries the client's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapSide {
    /// Server: the client's records are the bytes we read.
    Reads,
    /// Client: the client's records are the bytes we write.
    Writes,
}

#[derive(Debug)]
struct Capture {
    side: TapSide,
    buf: Vec<u8>,
    recording: bool,
    overflow: bool,
}

impl Capture {
    fn record(&mut self, bytes: &[u8]) {
        if !self.recording {
            return;
        }
        if self.buf.len() + bytes.len() > CAPTURE_LIMIT {
            self.overflow = true;
            self.recording = false;
            self.buf = Vec::new();
            return;
        }
        self.buf.extend_from_slice(bytes);
    }
}

/// Socket wrapper that copies the client's side of the handshake; after
/// [`Tap::finish`] it is a plain pass-through for the life of the connection.
#[derive(Debug)]
pub struct Tap<S> {
    inner: S,
    capture: Capture,
}

impl<S> Tap<S> {
    pub fn new(inner: S, side: TapSide) -> Self {
        Self {
            inner,
            capture: Capture {
                side,
                buf: Vec::new(),
                recording: true,
                overflow: false,
            },
        }
    }

    /// Stops recording and hands out what was captured (or the overflow).
    pub fn finish(&mut self) -> Result<Vec<u8>, SessionIdError> {
        self.capture.recording = false;
        let buf = std::mem::take(&mut self.capture.buf);
        if self.capture.overflow {
            return Err(SessionIdError::CaptureOverflow);
        }
        Ok(buf)
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tap<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        if this.capture.side == TapSide::Reads
            && let Poll::Ready(Ok(())) = res
        {
            this.capture.record(&buf.filled()[before..]);
        }
        res
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tap<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.inner).poll_write(cx, data);
        if this.capture.side == TapSide::Writes
            && let Poll::Ready(Ok(n)) = res
        {
            this.capture.record(&data[..n.min(data.len())]);
        }
        res
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Shared handle so the connection shell can hand a fresh slot to each config clone.
pub(crate) fn new_slot() -> Arc<SecretSlot> {
    Arc::new(SecretSlot::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_fails_closed() {
        let mut cap = Capture {
            side: TapSide::Reads,
            buf: Vec::new(),
            recording: true,
            overflow: false,
        };
        cap.record(&vec![0u8; CAPTURE_LIMIT]);
        cap.record(&[1]);
        assert!(cap.overflow && cap.buf.is_empty());
        let mut tap = Tap {
            inner: (),
            capture: cap,
        };
        assert_eq!(tap.finish(), Err(SessionIdError::CaptureOverflow));
    }
}
