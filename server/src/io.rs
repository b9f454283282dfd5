//! The transport under an XML stream: TCP or TLS, with the bytes read since
//! the last complete stream element counted so that an oversized stanza is
//! cut off before it is buffered whole.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, BufStream, ReadBuf};
use tokio_xmpp::xmlstream::{XmlStream, XmppStreamElement};

/// A byte stream: a TCP socket or a TLS session over one.
pub(crate) trait Transport: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Transport for T {}

/// The I/O object under every XML stream of this server.
pub(crate) type Io = BufStream<Limited>;

/// An XML stream of XMPP elements over [`Io`].
pub(crate) type Xml = XmlStream<Io, XmppStreamElement>;

/// The marker inside the `io::Error` returned once the limit is crossed.
#[derive(Debug, thiserror::Error)]
#[error("stanza larger than the limit of {0} bytes")]
pub(crate) struct TooLarge(pub usize);

/// Whether `error` comes from the size limit.
pub(crate) fn is_too_large(error: &io::Error) -> bool {
    error.get_ref().is_some_and(|inner| inner.is::<TooLarge>())
}

/// Counts the bytes read since the last [`Budget::reset`].
#[derive(Debug, Clone)]
pub(crate) struct Budget {
    used: Arc<AtomicUsize>,
    limit: usize,
}

impl Budget {
    pub fn new(limit: usize) -> Budget {
        Budget {
            used: Arc::new(AtomicUsize::new(0)),
            limit,
        }
    }

    /// A complete element was read: start counting afresh.
    pub fn reset(&self) {
        self.used.store(0, Ordering::Relaxed);
    }

    /// Wraps `inner`, counting against this budget.
    pub fn wrap(&self, inner: Box<dyn Transport>) -> Io {
        BufStream::new(Limited {
            inner,
            budget: self.clone(),
        })
    }
}

/// A transport whose reads fail once the budget is exceeded.
pub(crate) struct Limited {
    inner: Box<dyn Transport>,
    budget: Budget,
}

impl Limited {
    /// The wrapped transport (for the STARTTLS upgrade).
    pub fn into_inner(self) -> Box<dyn Transport> {
        self.inner
    }
}

impl AsyncRead for Limited {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let limit = self.budget.limit;
        if self.budget.used.load(Ordering::Relaxed) > limit {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                TooLarge(limit),
            )));
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len().saturating_sub(before);
        self.budget.used.fetch_add(read, Ordering::Relaxed);
        result
    }
}

impl AsyncWrite for Limited {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
