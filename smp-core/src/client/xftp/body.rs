//! HTTP/2 bodies of XFTP requests and responses.
//!
//! Requests are one 16384-byte block, followed for FPUT by the chunk read
//! from the caller's reader piece by piece, so an upload never holds more
//! than one piece in memory. Responses start with a 16384-byte block that
//! may span DATA frames; for FGET the encrypted chunk and its tag follow and
//! are decrypted as they arrive.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::error::XftpClientError;
use crate::crypto::secretbox::SbStream;
use crate::xftp::XFTP_BLOCK_SIZE;
use crate::xftp::error::XftpErrorType;
use crate::xftp::fget::FgetDecoder;

/// Size of the pieces an upload is read and sent in.
const UPLOAD_PIECE: usize = 64 * 1024;

/// Where a failed chunk reader leaves its error, because hyper only reports
/// that the body failed.
pub(crate) type SourceError = Arc<Mutex<Option<io::Error>>>;

struct ChunkSource {
    reader: Pin<Box<dyn AsyncRead + Send>>,
    remaining: u64,
    buf: Vec<u8>,
    error: SourceError,
}

/// A request body: an optional block, then optionally `size` chunk bytes.
pub(crate) struct RequestBody {
    block: Option<Bytes>,
    chunk: Option<ChunkSource>,
}

impl RequestBody {
    /// The native client hello.
    pub(crate) fn empty() -> Self {
        Self {
            block: None,
            chunk: None,
        }
    }

    pub(crate) fn block(block: Vec<u8>) -> Self {
        Self {
            block: Some(Bytes::from(block)),
            chunk: None,
        }
    }

    /// The FPUT body: exactly `size` bytes are taken from `reader`; a reader
    /// that ends early fails the request rather than sending a short chunk.
    pub(crate) fn with_chunk(
        block: Vec<u8>,
        reader: Pin<Box<dyn AsyncRead + Send>>,
        size: u64,
    ) -> (Self, SourceError) {
        let error = SourceError::default();
        let body = Self {
            block: Some(Bytes::from(block)),
            chunk: Some(ChunkSource {
                reader,
                remaining: size,
                buf: vec![0; UPLOAD_PIECE.min(usize::try_from(size).unwrap_or(UPLOAD_PIECE))],
                error: error.clone(),
            }),
        };
        (body, error)
    }
}

fn record(slot: &SourceError, e: io::Error) -> io::Error {
    let kind = e.kind();
    if let Ok(mut s) = slot.lock() {
        *s = Some(e);
    }
    io::Error::new(kind, "chunk source failed")
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if let Some(block) = this.block.take() {
            return Poll::Ready(Some(Ok(Frame::data(block))));
        }
        let Some(src) = this.chunk.as_mut() else {
            return Poll::Ready(None);
        };
        if src.remaining == 0 {
            return Poll::Ready(None);
        }
        let want = usize::try_from(src.remaining)
            .unwrap_or(usize::MAX)
            .min(src.buf.len());
        let mut rb = ReadBuf::new(&mut src.buf[..want]);
        match src.reader.as_mut().poll_read(cx, &mut rb) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(record(&src.error, e)))),
            Poll::Ready(Ok(())) => {
                let n = rb.filled().len();
                if n == 0 {
                    let e = io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "chunk reader ended before the declared size",
                    );
                    return Poll::Ready(Some(Err(record(&src.error, e))));
                }
                src.remaining -= n as u64;
                Poll::Ready(Some(Ok(Frame::data(Bytes::copy_from_slice(rb.filled())))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.block.is_none() && self.chunk.as_ref().is_none_or(|c| c.remaining == 0)
    }

    /// Only a lower bound: an exact hint makes hyper add `content-length`,
    /// which the reference client never sends.
    fn size_hint(&self) -> SizeHint {
        let block = self.block.as_ref().map_or(0, |b| b.len() as u64);
        let chunk = self.chunk.as_ref().map_or(0, |c| c.remaining);
        let mut hint = SizeHint::new();
        hint.set_lower(block + chunk);
        hint
    }
}

impl From<Infallible> for XftpClientError {
    fn from(e: Infallible) -> Self {
        match e {}
    }
}

/// Reads the response block: the first 16384 body bytes whatever the frame
/// boundaries (fewer if the body ends first). Returns it with the bytes of
/// the last frame that came after it.
pub(crate) async fn read_block<B>(body: &mut B) -> Result<(Vec<u8>, Bytes), XftpClientError>
where
    B: Body<Data = Bytes> + Unpin,
    XftpClientError: From<B::Error>,
{
    let mut block = Vec::with_capacity(XFTP_BLOCK_SIZE);
    while block.len() < XFTP_BLOCK_SIZE {
        let Some(frame) = body.frame().await else {
            break;
        };
        let Ok(data) = frame?.into_data() else {
            continue; // trailers carry nothing for XFTP
        };
        let take = (XFTP_BLOCK_SIZE - block.len()).min(data.len());
        block.extend_from_slice(&data[..take]);
        if take < data.len() {
            return Ok((block, data.slice(take..)));
        }
    }
    Ok((block, Bytes::new()))
}

/// Decrypts an FGET body (`ciphertext(size) ‖ tag(16)`) into a writer.
struct FgetReceiver {
    decoder: FgetDecoder,
    buf: Vec<u8>,
}

fn chunk_error(e: XftpErrorType) -> XftpClientError {
    match e {
        XftpErrorType::Crypto => XftpClientError::ChunkCrypto,
        XftpErrorType::Digest => XftpClientError::ChunkDigest,
        _ => XftpClientError::ChunkSize,
    }
}

impl FgetReceiver {
    async fn feed<W: AsyncWrite + Unpin>(
        &mut self,
        piece: &[u8],
        writer: &mut W,
    ) -> Result<(), XftpClientError> {
        self.buf.clear();
        self.buf.extend_from_slice(piece);
        let n = self.decoder.update(&mut self.buf).map_err(chunk_error)?;
        if n > 0 {
            writer
                .write_all(&self.buf[..n])
                .await
                .map_err(XftpClientError::Sink)?;
        }
        Ok(())
    }

    fn finish(self, digest: &[u8]) -> Result<(), XftpClientError> {
        self.decoder.finish(digest).map_err(chunk_error)
    }
}

/// Streams the FGET body after the block into `writer`, decrypting with
/// `stream` and checking, as the reference client does, the size (`SIZE`),
/// the tag (`CRYPTO`) and the chunk digest (`DIGEST`). Plaintext is written
/// before the tag can be checked, so on any error the output is garbage.
pub(crate) async fn receive_fget_body<B, W>(
    body: &mut B,
    leftover: Bytes,
    size: u64,
    digest: &[u8],
    stream: SbStream,
    writer: &mut W,
) -> Result<(), XftpClientError>
where
    B: Body<Data = Bytes> + Unpin,
    XftpClientError: From<B::Error>,
    W: AsyncWrite + Unpin,
{
    let mut rx = FgetReceiver {
        decoder: FgetDecoder::with_stream(stream, size),
        buf: Vec::new(),
    };
    rx.feed(&leftover, writer).await?;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            rx.feed(&data, writer).await?;
        }
    }
    writer.flush().await.map_err(XftpClientError::Sink)?;
    rx.finish(digest)
}

/// Reads what is left of a body, up to `limit` bytes (more is an error:
/// the caller expected an empty or short body).
pub(crate) async fn read_rest<B>(
    body: &mut B,
    leftover: Bytes,
    limit: usize,
) -> Result<Option<Vec<u8>>, XftpClientError>
where
    B: Body<Data = Bytes> + Unpin,
    XftpClientError: From<B::Error>,
{
    if leftover.len() > limit {
        return Ok(None);
    }
    let mut out = leftover.to_vec();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if out.len() + data.len() > limit {
                return Ok(None);
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::digest::sha256;
    use crate::crypto::keys::{KeyAlgorithm, PrivateKey};
    use crate::crypto::secretbox::CbNonce;
    use crate::xftp::fget::{encrypt_fget_body, fget_stream};
    use std::collections::VecDeque;

    /// A body delivering fixed DATA frames, to exercise frame boundaries.
    struct Frames(VecDeque<Bytes>);

    impl Frames {
        fn split(data: &[u8], sizes: &[usize]) -> Self {
            let mut out = VecDeque::new();
            let mut rest = data;
            let mut i = 0;
            while !rest.is_empty() {
                let n = sizes[i % sizes.len()].min(rest.len());
                out.push_back(Bytes::copy_from_slice(&rest[..n]));
                rest = &rest[n..];
                i += 1;
            }
            Self(out)
        }
    }

    impl Body for Frames {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(self.get_mut().0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }

    async fn collect(mut body: RequestBody) -> Result<Vec<u8>, io::Error> {
        let mut out = Vec::new();
        while let Some(f) = body.frame().await {
            if let Ok(d) = f?.into_data() {
                out.extend_from_slice(&d);
            }
        }
        Ok(out)
    }

    #[tokio::test]
    async fn request_body_is_block_then_exactly_size_bytes() {
        let chunk: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
        let block = vec![b'#'; XFTP_BLOCK_SIZE];
        // The reader has more than `size`: only `size` bytes may be sent.
        let (body, err) = RequestBody::with_chunk(
            block.clone(),
            Box::pin(io::Cursor::new(chunk.clone())),
            40_000,
        );
        assert_eq!(body.size_hint().lower(), 16384 + 40_000);
        assert_eq!(body.size_hint().exact(), None);
        let sent = collect(body).await.unwrap();
        assert_eq!(sent.len(), 16384 + 40_000);
        assert_eq!(&sent[..16384], &block[..]);
        assert_eq!(&sent[16384..], &chunk[..40_000]);
        assert!(err.lock().unwrap().is_none());
    }

    #[tokio::test]
    async fn short_chunk_reader_fails_the_body() {
        let (body, err) =
            RequestBody::with_chunk(vec![0; 16], Box::pin(io::Cursor::new(vec![1u8; 100])), 101);
        let e = collect(body).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        let recorded = err.lock().unwrap().take().expect("error recorded");
        assert_eq!(recorded.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn empty_and_block_bodies() {
        let b = RequestBody::empty();
        assert!(b.is_end_stream());
        assert!(collect(b).await.unwrap().is_empty());
        assert_eq!(
            collect(RequestBody::block(vec![7; 10])).await.unwrap(),
            vec![7; 10]
        );
    }

    #[tokio::test]
    async fn block_is_read_across_frames_and_leftover_kept() {
        let data: Vec<u8> = (0..20_000u32).map(|i| (i % 253) as u8).collect();
        let mut body = Frames::split(&data, &[1000, 7, 3333]);
        let (block, leftover) = read_block(&mut body).await.unwrap();
        assert_eq!(block, &data[..XFTP_BLOCK_SIZE]);
        let rest = read_rest(&mut body, leftover, usize::MAX)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rest, &data[XFTP_BLOCK_SIZE..]);
    }

    #[tokio::test]
    async fn short_body_gives_short_block_and_rest_limit_applies() {
        let mut body = Frames::split(&[1, 2, 3], &[2]);
        let (block, leftover) = read_block(&mut body).await.unwrap();
        assert_eq!(block, [1, 2, 3]);
        assert!(leftover.is_empty());
        let mut body = Frames::split(&[0; 10], &[4]);
        assert_eq!(read_rest(&mut body, Bytes::new(), 9).await.unwrap(), None);
    }

    struct Fget {
        body: Vec<u8>,
        chunk: Vec<u8>,
        rcv: PrivateKey,
        srv_pub: crate::crypto::PublicKey,
        nonce: CbNonce,
    }

    fn fget(size: usize) -> Fget {
        let chunk: Vec<u8> = (0..size).map(|i| (i * 7 % 256) as u8).collect();
        let rcv = PrivateKey::generate(KeyAlgorithm::X25519);
        let srv = PrivateKey::generate(KeyAlgorithm::X25519);
        let nonce = CbNonce::generate();
        let body = encrypt_fget_body(&chunk, &rcv.public_key(), &srv, &nonce).unwrap();
        Fget {
            body,
            chunk,
            rcv,
            srv_pub: srv.public_key(),
            nonce,
        }
    }

    async fn receive(
        f: &Fget,
        body: &[u8],
        size: usize,
        digest: &[u8],
    ) -> Result<Vec<u8>, XftpClientError> {
        // The block and the start of the body share the first frame.
        let mut wire = vec![b'#'; XFTP_BLOCK_SIZE];
        wire.extend_from_slice(body);
        let mut frames = Frames::split(&wire, &[16_500, 4096, 1, 9000]);
        let (_, leftover) = read_block(&mut frames).await.unwrap();
        let stream = fget_stream(&f.srv_pub, &f.rcv, &f.nonce).unwrap();
        let mut out = Vec::new();
        receive_fget_body(&mut frames, leftover, size as u64, digest, stream, &mut out)
            .await
            .map(|()| out)
    }

    #[tokio::test]
    async fn fget_body_decrypts_across_frames() {
        let f = fget(100_000);
        let digest = sha256(&f.chunk);
        let out = receive(&f, &f.body, f.chunk.len(), &digest).await.unwrap();
        assert_eq!(out, f.chunk);
    }

    #[tokio::test]
    async fn fget_body_errors_match_the_reference() {
        let f = fget(30_000);
        let n = f.chunk.len();
        let digest = sha256(&f.chunk);
        // Shorter than the chunk.
        let e = receive(&f, &f.body[..n - 1], n, &digest).await.unwrap_err();
        assert!(matches!(e, XftpClientError::ChunkSize), "{e:?}");
        // Longer than chunk + tag.
        let mut long = f.body.clone();
        long.push(0);
        let e = receive(&f, &long, n, &digest).await.unwrap_err();
        assert!(matches!(e, XftpClientError::ChunkSize), "{e:?}");
        // Tag cut short.
        let e = receive(&f, &f.body[..n + 15], n, &digest)
            .await
            .unwrap_err();
        assert!(matches!(e, XftpClientError::ChunkCrypto), "{e:?}");
        // Flipped ciphertext bit.
        let mut bad = f.body.clone();
        bad[123] ^= 1;
        let e = receive(&f, &bad, n, &digest).await.unwrap_err();
        assert!(matches!(e, XftpClientError::ChunkCrypto), "{e:?}");
        // Flipped tag bit.
        let mut bad = f.body.clone();
        bad[n + 3] ^= 0x80;
        let e = receive(&f, &bad, n, &digest).await.unwrap_err();
        assert!(matches!(e, XftpClientError::ChunkCrypto), "{e:?}");
        // Authentic body, wrong digest in the description.
        let mut wrong = digest;
        wrong[0] ^= 1;
        let e = receive(&f, &f.body, n, &wrong).await.unwrap_err();
        assert!(matches!(e, XftpClientError::ChunkDigest), "{e:?}");
        assert_eq!(e.xftp_error(), Some(crate::xftp::XftpErrorType::Digest));
    }
}
