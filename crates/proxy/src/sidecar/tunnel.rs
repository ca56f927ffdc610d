//! Tunnels: many downstream connections over one mTLS connection between two strait
//! sidecars, as HTTP/2 CONNECT streams (the shape of Istio's HBONE), so that a new connection
//! from the app costs a stream (one round trip, a few microseconds of CPU) instead of TCP
//! connects through every gateway and a TLS handshake.
//!
//! - The client sidecar offers the ALPN protocol [`ALPN`]; a server sidecar that knows it
//!   selects it. Anyone else (Envoy, an older strait, a server with `--multiplex off`) selects
//!   nothing, and the connection carries one downstream connection's bytes as before.
//! - Each upstream target keeps tunnels per endpoint ([`Pool`], in the target's state: a new
//!   snapshot starts new tunnels, with the new certificate and the new expected identity; the
//!   old ones end with their last stream), each carrying up to [`MAX_STREAMS`] streams. A
//!   stream is a `CONNECT` request; the server answers it after admitting the caller's
//!   verified identity against the intentions *of the snapshot current at that moment* (a
//!   stream is judged like a new connection) and dialling the local app: `200` (bytes both
//!   ways, half-close by `END_STREAM`), `403` (denied: the downstream connection is closed,
//!   nothing else tried), `503` (the app is unreachable: the endpoint failed, the next one is
//!   tried, as a failed handshake is); `REFUSED_STREAM` (the server at its connection cap):
//!   the endpoint failed, the tunnel is kept.
//! - A tunnel that fails before a stream's answer (closed by its server after idling, cut by
//!   a gateway) is dropped from the pool and the stream retried on a fresh connection (twice
//!   if that one's server closes it at once: GOAWAY); a stream's answer is bounded by the
//!   upstream handshake deadline, so a tunnel whose peer went silent is passed over like a
//!   hung endpoint.
//! - The server closes a tunnel that carried no stream for the idle timeout, and sends GOAWAY
//!   on drain, when a trust root the caller was verified under is removed and when the
//!   caller's certificate expires: streams in flight finish, new ones go to a new connection,
//!   verified anew (one sent before the client saw the GOAWAY is answered `421`).

use bytes::{Buf, Bytes};
use h2::{RecvStream, SendStream};
use std::cell::RefCell;
use std::io;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsStream;

/// The ALPN protocol ID of a tunnel.
pub(crate) const ALPN: &[u8] = b"strait-tunnel/1";

/// Flow-control window per stream: with 1 MiB, one bulk stream through two gateways waited
/// for window updates (bench/bulk.sh: 6.7-7.1 Gbit/s sidecar to sidecar, 7.9-10.1 with
/// 8 MiB; 16 MiB gained nothing more). What a slow app has not read yet is bounded by it, as
/// the kernel's socket buffers bounded it per connection before (`tcp_rmem`: up to 6 MiB).
const STREAM_WINDOW: u32 = 8 << 20;
/// Streams one tunnel carries at once; the client opens another tunnel to the same endpoint
/// for more (the proxy's connection cap still applies per stream).
pub(crate) const MAX_STREAMS: u32 = 100;
/// Flow-control window of a whole tunnel, over all its streams: every stream's window at
/// once, so that streams whose readers stopped (their apps do not read) never hold back the
/// other streams of their tunnel, as separate connections would not. With less, four
/// stalled 8 MiB streams stopped every connection on a 32 MiB tunnel. What a server holds
/// unread is bounded per stream by [`STREAM_WINDOW`], so in all by `--max-connections` x
/// 8 MiB, as the kernel's receive buffers bounded it per connection without tunnels.
const TUNNEL_WINDOW: u32 = STREAM_WINDOW * MAX_STREAMS;
/// Largest DATA frame either side accepts: a write of the copy (up to 64 KiB) is one frame.
/// HTTP/2 flushes after each DATA frame larger than 256 bytes, so with its default (16 KiB)
/// a 64 KiB write took four system calls.
const MAX_FRAME: u32 = 64 * 1024;
/// What one stream may queue for sending before its writer waits.
const SEND_BUFFER: usize = 256 * 1024;
/// TLS records a tunnel's connection may hold unsent ([`Coalesced`]; rustls's default is
/// 64 KiB).
const TLS_BUFFER: usize = 256 * 1024;

pub(crate) fn client_builder() -> h2::client::Builder {
    let mut b = h2::client::Builder::new();
    b.initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(TUNNEL_WINDOW)
        .max_frame_size(MAX_FRAME)
        .initial_max_send_streams(MAX_STREAMS as usize)
        .max_send_buffer_size(SEND_BUFFER)
        .enable_push(false);
    b
}

pub(crate) fn server_builder() -> h2::server::Builder {
    let mut b = h2::server::Builder::new();
    b.initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(TUNNEL_WINDOW)
        .max_frame_size(MAX_FRAME)
        .max_concurrent_streams(MAX_STREAMS)
        .max_send_buffer_size(SEND_BUFFER);
    b
}

/// Writes of at least this many bytes are copied into a [`Chunk`] from the thread's spares;
/// smaller ones (messages) into a plain allocation.
const CHUNK_MIN: usize = 4 * 1024;
/// Capacity of a [`Chunk`]: the most one write of the copy brings.
const CHUNK_LEN: usize = 64 * 1024;
/// Spare chunks kept per thread.
const SPARES: usize = 8;

thread_local! {
    /// Buffers of written chunks, given back once the tunnel has sent them: bulk through a
    /// tunnel allocated (and the allocator returned to the kernel) 64 KiB per write, one
    /// `brk` and sixteen page faults each (bench/README.md, "Tunnels").
    static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A copy of written bytes, queued in the tunnel until sent; its buffer then goes back to the
/// thread's spares.
struct Chunk(Vec<u8>);

impl AsRef<[u8]> for Chunk {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.0);
        buf.clear();
        // A thread that is exiting has no spares left to keep it in.
        let _ = SPARE.try_with(|spare| {
            let mut spare = spare.borrow_mut();
            if spare.len() < SPARES {
                spare.push(buf);
            }
        });
    }
}

/// `data` as `Bytes` the tunnel can queue.
fn chunk(data: &[u8]) -> Bytes {
    if data.len() < CHUNK_MIN || data.len() > CHUNK_LEN {
        return Bytes::copy_from_slice(data);
    }
    let mut buf = SPARE
        .try_with(|spare| spare.borrow_mut().pop())
        .ok()
        .flatten()
        .unwrap_or_else(|| Vec::with_capacity(CHUNK_LEN));
    buf.extend_from_slice(data);
    Bytes::from_owner(Chunk(buf))
}

/// A tunnel's TLS connection, as HTTP/2 writes to it: each write is encrypted into records
/// kept in rustls (up to [`TLS_BUFFER`]) and only a flush sends them, so the frames HTTP/2
/// writes one by one in a turn (each 16 KiB frame of a 64 KiB write, the frames of several
/// streams) leave in one `writev`. Written through `TlsStream` directly, each frame was a
/// system call of its own.
pub(crate) struct Coalesced(TlsStream<TcpStream>);

impl Coalesced {
    pub(crate) fn new(mut tls: TlsStream<TcpStream>) -> Coalesced {
        match &mut tls {
            TlsStream::Client(s) => s.get_mut().1.set_buffer_limit(Some(TLS_BUFFER)),
            TlsStream::Server(s) => s.get_mut().1.set_buffer_limit(Some(TLS_BUFFER)),
        }
        Coalesced(tls)
    }

    fn writer(&mut self) -> rustls::Writer<'_> {
        match &mut self.0 {
            TlsStream::Client(s) => s.get_mut().1.writer(),
            TlsStream::Server(s) => s.get_mut().1.writer(),
        }
    }
}

impl AsyncRead for Coalesced {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Coalesced {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.writer().write(buf)? {
            // rustls's buffer is full: send what it holds, then take more.
            0 => Pin::new(&mut self.0).poll_write(cx, buf),
            n => Poll::Ready(Ok(n)),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.writer().write_vectored(bufs)? {
            0 => Pin::new(&mut self.0).poll_write_vectored(cx, bufs),
            n => Poll::Ready(Ok(n)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// The tunnels a target keeps open to one endpoint: each carries at most [`MAX_STREAMS`]
/// streams at once, and the next stream opens another one.
#[derive(Default)]
pub(crate) struct Pool {
    slots: Mutex<Vec<Pooled>>,
    /// Numbers the tunnels put in `slots`, so that a failed one is removed only if it is
    /// still there.
    generation: AtomicU64,
}

#[derive(Clone)]
pub(crate) struct Pooled {
    pub send: h2::client::SendRequest<Bytes>,
    pub generation: u64,
    opened: Instant,
    /// Streams open on the tunnel (each holds a [`Slot`]).
    streams: Arc<AtomicUsize>,
}

/// One of a tunnel's [`MAX_STREAMS`], held by a stream being opened or open on it.
pub(crate) struct Slot(Arc<AtomicUsize>);

impl Slot {
    /// A slot of `streams`, if one is free.
    fn take(streams: &Arc<AtomicUsize>) -> Option<Slot> {
        streams
            .fetch_update(Relaxed, Relaxed, |n| {
                (n < MAX_STREAMS as usize).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(streams.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

impl Pool {
    /// A tunnel to the endpoint younger than `max_age` (`--tunnel-max-age`) with a stream
    /// slot free, and that slot; tunnels past their age are forgotten (they end with their
    /// last stream).
    pub(crate) fn get(&self, max_age: Duration) -> Option<(Pooled, Slot)> {
        let mut slots = strait_base::sync::lock(&self.slots);
        slots.retain(|p| p.opened.elapsed() < max_age);
        slots
            .iter()
            .find_map(|p| Slot::take(&p.streams).map(|slot| (p.clone(), slot)))
    }

    /// Keeps `send`, a new tunnel, unless another one with a free slot is already kept
    /// (connections that dialled at the same moment: theirs serve their own stream, then
    /// close); either way, a slot of it for the stream that dialled it, and its generation
    /// (to [`Pool::remove`] it if that stream fails).
    pub(crate) fn offer(
        &self,
        send: &h2::client::SendRequest<Bytes>,
        max_age: Duration,
    ) -> (Slot, u64) {
        let pooled = Pooled {
            send: send.clone(),
            generation: self.generation.fetch_add(1, Relaxed) + 1,
            opened: Instant::now(),
            streams: Arc::default(),
        };
        let slot = Slot::take(&pooled.streams).expect("a new tunnel has free slots");
        let generation = pooled.generation;
        let mut slots = strait_base::sync::lock(&self.slots);
        slots.retain(|p| p.opened.elapsed() < max_age);
        let full = |p: &Pooled| p.streams.load(Relaxed) >= MAX_STREAMS as usize;
        if slots.iter().all(full) {
            slots.push(pooled);
        }
        (slot, generation)
    }

    /// Forgets the tunnel numbered `generation` (it failed).
    pub(crate) fn remove(&self, generation: u64) {
        strait_base::sync::lock(&self.slots).retain(|p| p.generation != generation);
    }
}

/// How opening a stream failed.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// The tunnel failed or is closing (closed, GOAWAY, reset): the stream was not served,
    /// and a fresh tunnel may work.
    Tunnel(h2::Error),
    /// The server refused the stream (`REFUSED_STREAM`: at its `--max-connections`); the
    /// tunnel itself is fine.
    Full,
    /// The server refused the caller: denied by its intentions.
    Denied,
    /// The server will not serve this tunnel any more (`421`: what its handshake verified
    /// no longer holds); a new connection is verified anew.
    Misdirected,
    /// The server answered with another status (`503`: its local app is unreachable).
    Status(http::StatusCode),
}

impl From<h2::Error> for OpenError {
    fn from(e: h2::Error) -> OpenError {
        match e.reason() {
            Some(h2::Reason::REFUSED_STREAM) if e.is_reset() && e.is_remote() => OpenError::Full,
            _ => OpenError::Tunnel(e),
        }
    }
}

impl OpenError {
    /// The tunnel is closing or closed by its server, in good order (GOAWAY without an
    /// error, or `421`): the stream was not served, and it is no failure of the endpoint.
    pub(crate) fn tunnel_closing(&self) -> bool {
        match self {
            OpenError::Tunnel(e) => {
                e.is_go_away() && e.is_remote() && e.reason() == Some(h2::Reason::NO_ERROR)
            }
            OpenError::Misdirected => true,
            _ => false,
        }
    }
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Tunnel(e) => write!(f, "tunnel failed: {e}"),
            OpenError::Full => {
                f.write_str("the upstream refused the stream (at its connection limit)")
            }
            OpenError::Denied => f.write_str("denied by the upstream's intentions"),
            OpenError::Misdirected => {
                f.write_str("the upstream serves no new streams on this tunnel (421)")
            }
            OpenError::Status(s) if *s == http::StatusCode::SERVICE_UNAVAILABLE => {
                f.write_str("the upstream's local app is unreachable (503)")
            }
            OpenError::Status(s) => write!(f, "the upstream answered {s}"),
        }
    }
}

/// Opens one stream on the tunnel `send`, in the tunnel's slot `slot`: a `CONNECT` for
/// `authority` (informational: the server has one local app) and its answer.
pub(crate) async fn open(
    send: h2::client::SendRequest<Bytes>,
    slot: Slot,
    authority: &http::Uri,
) -> Result<Stream, OpenError> {
    let mut send = send.ready().await?;
    let mut request = http::Request::new(());
    *request.method_mut() = http::Method::CONNECT;
    *request.uri_mut() = authority.clone();
    let (answer, tx) = send.send_request(request, false)?;
    let answer = answer.await?;
    match answer.status() {
        http::StatusCode::OK => {
            let mut stream = Stream::new(tx, answer.into_body());
            stream.slot = Some(slot);
            Ok(stream)
        }
        http::StatusCode::FORBIDDEN => Err(OpenError::Denied),
        http::StatusCode::MISDIRECTED_REQUEST => Err(OpenError::Misdirected),
        status => Err(OpenError::Status(status)),
    }
}

/// One stream of a tunnel as a byte stream: reads are the peer's DATA frames (flow-control
/// capacity given back as they are read), writes become DATA frames, shutdown sends
/// `END_STREAM` (a half-close: the other direction goes on).
pub(crate) struct Stream {
    tx: SendStream<Bytes>,
    rx: RecvStream,
    /// Received and not read yet.
    pending: Bytes,
    rx_done: bool,
    tx_done: bool,
    /// The tunnel's stream slot this stream holds (client side).
    slot: Option<Slot>,
}

impl Stream {
    pub(crate) fn new(tx: SendStream<Bytes>, rx: RecvStream) -> Stream {
        Stream {
            tx,
            rx,
            pending: Bytes::new(),
            rx_done: false,
            tx_done: false,
            slot: None,
        }
    }
}

fn io_error(e: h2::Error) -> io::Error {
    if e.is_io() {
        return e.into_io().unwrap_or_else(|| io::ErrorKind::Other.into());
    }
    let kind = match e.reason() {
        Some(h2::Reason::NO_ERROR | h2::Reason::CANCEL) => io::ErrorKind::ConnectionReset,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, format!("tunnel stream: {e}"))
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.pending.is_empty() {
                let n = this.pending.len().min(buf.remaining());
                buf.put_slice(&this.pending[..n]);
                this.pending.advance(n);
                // Errors only once the stream is gone; the next poll reports that.
                let _ = this.rx.flow_control().release_capacity(n);
                return Poll::Ready(Ok(()));
            }
            if this.rx_done {
                return Poll::Ready(Ok(()));
            }
            match ready!(this.rx.poll_data(cx)) {
                Some(Ok(data)) => this.pending = data,
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
                None => this.rx_done = true,
            }
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let tx = &mut self.tx;
        tx.reserve_capacity(buf.len());
        // `poll_capacity` answers only when capacity grew since it last answered, so the
        // capacity already assigned is taken first.
        while tx.capacity() == 0 {
            match ready!(tx.poll_capacity(cx)) {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
                None => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            }
        }
        let n = tx.capacity().min(buf.len());
        tx.send_data(chunk(&buf[..n]), false).map_err(io_error)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The tunnel's connection task writes and flushes frames as they are queued.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.tx_done {
            self.tx_done = true;
            self.tx.send_data(Bytes::new(), true).map_err(io_error)?;
        }
        Poll::Ready(Ok(()))
    }
}
