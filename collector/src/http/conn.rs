//! One connection's clock: the read and write deadlines that keep a client
//! from holding a connection (and what it reserved) by doing nothing.
//!
//! | phase | read deadline |
//! |---|---|
//! | new connection | its first request's headers within `header_timeout` (TLS handshake included, counted separately) |
//! | idle keep-alive, no byte of a next request yet | `idle_timeout` after the last answer was written |
//! | a next request started (first byte read) | its headers within `header_timeout` of that byte |
//! | a request in progress | none here: the handler bounds its body (`body.rs`) |
//!
//! Writes: a write (or flush) that cannot make progress for `write_timeout`
//! fails the connection, so a client that never reads its answers is dropped
//! and the answer's memory released.
//!
//! hyper's own `header_read_timeout` is not used: it also runs while a
//! keep-alive connection is idle, so it cannot tell the two timeouts apart.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The timeouts of a connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnTimeouts {
    pub header: Duration,
    pub idle: Duration,
    pub write: Duration,
}

#[derive(Debug)]
struct State {
    /// `None` while a request is in progress.
    read_deadline: Option<Instant>,
    /// Waiting for the first byte of a next request (idle keep-alive).
    idle: bool,
    /// A read that went pending while no deadline ran: woken when the
    /// answer is done, so it arms the idle deadline.
    reader: Option<Waker>,
}

/// Where a connection is between requests, shared by its IO and its service.
#[derive(Debug)]
pub struct Activity {
    state: Mutex<State>,
    t: ConnTimeouts,
}

impl Activity {
    /// A new connection: its first request's headers are due within the header timeout.
    pub fn new(t: ConnTimeouts) -> Activity {
        Activity {
            state: Mutex::new(State {
                read_deadline: Some(Instant::now() + t.header),
                idle: false,
                reader: None,
            }),
            t,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A request's headers were read: the handler bounds the rest.
    pub fn begin_request(&self) {
        let mut s = self.lock();
        s.read_deadline = None;
        s.idle = false;
    }

    /// The answer has been written (or dropped): the connection is idle.
    pub fn end_response(&self) {
        let reader = {
            let mut s = self.lock();
            s.read_deadline = Some(Instant::now() + self.t.idle);
            s.idle = true;
            s.reader.take()
        };
        if let Some(w) = reader {
            w.wake();
        }
    }

    fn bytes_read(&self) {
        let mut s = self.lock();
        if s.idle {
            s.idle = false;
            s.read_deadline = Some(Instant::now() + self.t.header);
        }
    }

    /// The read deadline; without one, `waker` is kept to be woken when one starts.
    fn read_deadline(&self, waker: &Waker) -> Option<Instant> {
        let mut s = self.lock();
        if s.read_deadline.is_none() {
            s.reader = Some(waker.clone());
        }
        s.read_deadline
    }
}

/// A connection's byte stream with the deadlines above.
pub struct ConnIo<T> {
    io: T,
    activity: Arc<Activity>,
    read_sleep: Pin<Box<Sleep>>,
    write_sleep: Option<Pin<Box<Sleep>>>,
}

impl<T> ConnIo<T> {
    /// Wraps `io`.
    pub fn new(io: T, activity: Arc<Activity>) -> ConnIo<T> {
        ConnIo {
            io,
            read_sleep: Box::pin(tokio::time::sleep(activity.t.header)),
            activity,
            write_sleep: None,
        }
    }

    /// A write made no progress: fails once it has been stuck for the write timeout.
    fn write_stalled<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        let t = self.activity.t.write;
        let sleep = self
            .write_sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(t)));
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client did not read its answer within the write timeout",
            )));
        }
        Poll::Pending
    }

    fn wrote<R>(&mut self, r: Poll<io::Result<R>>, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        match r {
            Poll::Pending => self.write_stalled(cx),
            ready => {
                self.write_sleep = None;
                ready
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ConnIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut me.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    me.activity.bytes_read();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if let Some(deadline) = me.activity.read_deadline(cx.waker()) {
                    if me.read_sleep.deadline() != deadline {
                        me.read_sleep.as_mut().reset(deadline);
                    }
                    if me.read_sleep.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "no request (or its headers) within the idle or header timeout",
                        )));
                    }
                }
                Poll::Pending
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ConnIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        let r = Pin::new(&mut me.io).poll_write(cx, data);
        me.wrote(r, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        let r = Pin::new(&mut me.io).poll_write_vectored(cx, bufs);
        me.wrote(r, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let r = Pin::new(&mut me.io).poll_flush(cx);
        me.wrote(r, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let r = Pin::new(&mut me.io).poll_shutdown(cx);
        me.wrote(r, cx)
    }
}

/// A response body that marks the connection idle once it has been written
/// (its end reached) or dropped, whichever comes first — once, so that a
/// late drop cannot start the idle clock during the next request.
pub struct EndOfResponse<B> {
    inner: B,
    activity: Arc<Activity>,
    done: bool,
}

impl<B> EndOfResponse<B> {
    /// Wraps the body of an answer on the connection of `activity`.
    pub fn new(inner: B, activity: Arc<Activity>) -> Self {
        EndOfResponse {
            inner,
            activity,
            done: false,
        }
    }

    fn finish(&mut self) {
        if !self.done {
            self.done = true;
            self.activity.end_response();
        }
    }
}

impl<B> Drop for EndOfResponse<B> {
    fn drop(&mut self) {
        self.finish();
    }
}

impl<B: Body + Unpin> Body for EndOfResponse<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let me = self.get_mut();
        let r = Pin::new(&mut me.inner).poll_frame(cx);
        if let Poll::Ready(None) = r {
            me.finish();
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
