//! Response bodies: small ones from memory, blobs streamed from their files.

use super::*;

/// A response body: small JSON documents in memory, blobs streamed from disk.
pub(crate) enum ResponseBody {
    Empty,
    Full(Full<Bytes>),
    File(FileBody),
}

/// A file's next `remaining` bytes, read a chunk at a time so a layer of any
/// size costs one buffer.
pub(crate) struct FileBody {
    pub(crate) file: tokio::fs::File,
    pub(crate) remaining: u64,
    pub(crate) buffer: Box<[u8]>,
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            ResponseBody::Empty => Poll::Ready(None),
            ResponseBody::Full(full) => Pin::new(full)
                .poll_frame(cx)
                .map_err(|never| match never {}),
            ResponseBody::File(body) => {
                if body.remaining == 0 {
                    return Poll::Ready(None);
                }
                let want = body
                    .buffer
                    .len()
                    .min(usize::try_from(body.remaining).unwrap_or(usize::MAX));
                let mut buf = ReadBuf::new(&mut body.buffer[..want]);
                ready!(Pin::new(&mut body.file).poll_read(cx, &mut buf))?;
                let read = buf.filled();
                if read.is_empty() {
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the blob file is shorter than it was when the response started",
                    ))));
                }
                body.remaining -= read.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(Bytes::copy_from_slice(read)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Empty => true,
            ResponseBody::Full(full) => full.is_end_stream(),
            ResponseBody::File(body) => body.remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Empty => SizeHint::with_exact(0),
            ResponseBody::Full(full) => full.size_hint(),
            ResponseBody::File(body) => SizeHint::with_exact(body.remaining),
        }
    }
}
