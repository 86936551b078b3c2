//! The server side of a TLS connection on rustls's unbuffered API, holding no buffer while the
//! connection is idle.
//!
//! rustls's buffered `ServerConnection` keeps a 4 KiB read buffer per connection for good
//! (`DeframerVecBuffer::prepare_read` sizes it before every read), half of the 8 KB an idle device
//! connection may cost (issue #4; docs/benchmarks/results.md). Here the socket is read into one
//! scratch buffer per thread, and a connection keeps only what is left over: part of a record,
//! plaintext its reader has not taken, records the socket has not accepted. Idle, it keeps none.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::mem;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use rustls::ServerConfig;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The largest record on the wire: a 5-byte header and 2^14 + 256 bytes of ciphertext
/// (RFC 8446 §5.2; TLS 1.2 allows 2^14 + 2048 in theory, rustls never sends more than this).
const MAX_RECORD: usize = 5 + (1 << 14) + 256;
/// Each thread's read buffer: room for several records per read system call.
const SCRATCH_LEN: usize = 4 * MAX_RECORD;
/// Plaintext taken per `poll_write`, so one call's records stay a bounded size.
const MAX_PLAINTEXT_PER_WRITE: usize = 4 * (1 << 14);
/// Record overhead per 2^14 bytes of plaintext, generously: header, content type, AEAD tag.
const RECORD_OVERHEAD: usize = 64;
/// Ciphertext queued beyond this makes writers wait for the socket.
const OUTGOING_HIGH_WATER: usize = 64 * 1024;
/// A sent-out buffer up to this capacity is kept for the next write (acknowledgements are tens
/// of bytes); a larger one is released.
const OUTGOING_KEPT: usize = 256;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A server TLS connection over TCP, after its handshake ([`accept`]).
pub struct ServerTlsStream {
    tcp: TcpStream,
    conn: UnbufferedServerConnection,
    /// Received ciphertext rustls has not finished with: part of a record, or the records of a
    /// handshake message still being joined (rustls refuses those over 64 KiB). Never a whole
    /// application-data record.
    incoming: Vec<u8>,
    /// Decrypted application data, from `plaintext_read` on not yet taken by the reader.
    plaintext: Vec<u8>,
    plaintext_read: usize,
    /// Records to send, from `outgoing_written` on not yet accepted by the socket.
    outgoing: Vec<u8>,
    outgoing_written: usize,
    /// The peer sent close_notify or closed its side of the TCP connection.
    read_closed: bool,
    /// Our close_notify is queued.
    close_queued: bool,
}

impl std::fmt::Debug for ServerTlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTlsStream")
            .field("peer", &self.tcp.peer_addr().ok())
            .field("incoming", &self.incoming.len())
            .field("plaintext", &(self.plaintext.len() - self.plaintext_read))
            .field("outgoing", &(self.outgoing.len() - self.outgoing_written))
            .finish_non_exhaustive()
    }
}

/// Runs the server side of the TLS handshake on `tcp`. The caller bounds it in time.
///
/// # Errors
/// The socket's errors; a TLS failure (after sending the peer its alert) as
/// [`io::ErrorKind::InvalidData`]; a peer gone mid-handshake as [`io::ErrorKind::UnexpectedEof`].
pub async fn accept(tcp: TcpStream, config: Arc<ServerConfig>) -> io::Result<ServerTlsStream> {
    let conn = UnbufferedServerConnection::new(config).map_err(invalid_data)?;
    let mut stream = ServerTlsStream {
        tcp,
        conn,
        incoming: Vec::new(),
        plaintext: Vec::new(),
        plaintext_read: 0,
        outgoing: Vec::new(),
        outgoing_written: 0,
        read_closed: false,
        close_queued: false,
    };
    while stream.conn.is_handshaking() {
        poll_fn(|cx| stream.poll_receive(cx)).await?;
        if stream.read_closed {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "peer closed the connection during the TLS handshake",
            ));
        }
        // Our flight (and, once done, the session tickets) goes out before the next read.
        poll_fn(|cx| stream.poll_send(cx)).await?;
    }
    Ok(stream)
}

impl ServerTlsStream {
    /// The client's certificate chain, leaf first (empty without one): the whole chain, as
    /// CA-signed devices may send intermediates.
    pub fn peer_chain(&self) -> Vec<Vec<u8>> {
        self.conn
            .peer_certificates()
            .map(|chain| chain.iter().map(|der| der.to_vec()).collect())
            .unwrap_or_default()
    }

    /// Bytes of buffer this connection holds outside rustls: none while it is idle, up to 256
    /// kept for the next small write.
    pub fn buffered_capacity(&self) -> usize {
        self.incoming.capacity() + self.plaintext.capacity() + self.outgoing.capacity()
    }

    /// Feeds received ciphertext to rustls until it needs more: application data is appended to
    /// `plaintext`, records to send to `outgoing`. Returns how many leading bytes of `data` are
    /// done with.
    fn process(&mut self, data: &mut [u8]) -> io::Result<usize> {
        let mut done = 0;
        loop {
            let UnbufferedStatus { discard, state } = self.conn.process_tls_records(&mut data[done..]);
            let state = match state {
                Ok(state) => state,
                Err(error) => return Err(self.fail(error)),
            };
            match state {
                ConnectionState::ReadTraffic(mut traffic) => {
                    while let Some(record) = traffic.next_record() {
                        let record = record.map_err(invalid_data)?;
                        done += record.discard;
                        self.plaintext.extend_from_slice(record.payload);
                    }
                }
                ConnectionState::EncodeTlsData(mut encode) => {
                    append(&mut self.outgoing, 0, |out| encode.encode(out))?;
                }
                // Queued in `outgoing`, ahead of anything written later: order is kept.
                ConnectionState::TransmitTlsData(transmit) => transmit.done(),
                ConnectionState::PeerClosed | ConnectionState::Closed => {
                    self.read_closed = true;
                    return Ok(done + discard);
                }
                ConnectionState::BlockedHandshake | ConnectionState::WriteTraffic(_) => {
                    return Ok(done + discard);
                }
                // Early data is never enabled (`ServerConfig::max_early_data_size` is 0).
                other => return Err(io::Error::other(format!("unexpected TLS state {other:?}"))),
            }
            done += discard;
        }
    }

    /// Queues the alert rustls prepared for `error` and sends it if the socket takes it now.
    fn fail(&mut self, error: rustls::Error) -> io::Error {
        for _ in 0..4 {
            match self.conn.process_tls_records(&mut []).state {
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    if append(&mut self.outgoing, 0, |out| encode.encode(out)).is_err() {
                        break;
                    }
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => transmit.done(),
                _ => break,
            }
        }
        let _ = self.try_send();
        invalid_data(error)
    }

    /// Reads what the socket has and processes it. Ready once anything arrived (application
    /// data, handshake records, close_notify or the end of the stream).
    fn poll_receive(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let need = SCRATCH_LEN.max(self.incoming.len() + MAX_RECORD);
        with_scratch(need, |scratch| {
            let held = self.incoming.len();
            scratch[..held].copy_from_slice(&self.incoming);
            // `poll_read` rather than readiness and `try_read`: tokio takes a short read as
            // "drained" and skips the read that would only say WouldBlock.
            let mut read_buf = ReadBuf::new(&mut scratch[held..]);
            ready!(Pin::new(&mut self.tcp).poll_read(cx, &mut read_buf))?;
            let read = read_buf.filled().len();
            if read == 0 {
                self.read_closed = true;
                self.incoming = Vec::new();
                return Poll::Ready(Ok(()));
            }
            let used = held + read;
            let done = self.process(&mut scratch[..used])?;
            let rest = &scratch[done.min(used)..used];
            if rest.is_empty() {
                self.incoming = Vec::new();
            } else {
                self.incoming.clear();
                self.incoming.extend_from_slice(rest);
            }
            Poll::Ready(Ok(()))
        })
    }

    /// Encrypts `data` into `outgoing`.
    fn encrypt(&mut self, data: &[u8]) -> io::Result<()> {
        // `incoming` never holds a whole application-data record (`poll_receive` processes all
        // of them), so handing it over decrypts nothing a parked reader would miss.
        let mut incoming = mem::take(&mut self.incoming);
        let result = self.encrypt_with(&mut incoming, data);
        self.incoming = incoming;
        result
    }

    fn encrypt_with(&mut self, incoming: &mut Vec<u8>, data: &[u8]) -> io::Result<()> {
        let room = data.len() + RECORD_OVERHEAD * (1 + data.len() / (1 << 14));
        loop {
            let UnbufferedStatus { discard, state } = self.conn.process_tls_records(incoming);
            let state = match state {
                Ok(state) => state,
                Err(error) => return Err(self.fail(error)),
            };
            match state {
                ConnectionState::WriteTraffic(mut traffic) => {
                    return append(&mut self.outgoing, room, |out| traffic.encrypt(data, out));
                }
                ConnectionState::EncodeTlsData(mut encode) => {
                    append(&mut self.outgoing, 0, |out| encode.encode(out))?;
                }
                ConnectionState::TransmitTlsData(transmit) => transmit.done(),
                // Sending after the peer's close_notify is allowed (RFC 8446 §6.1).
                ConnectionState::PeerClosed => self.read_closed = true,
                ConnectionState::Closed => return Err(io::ErrorKind::BrokenPipe.into()),
                other => return Err(io::Error::other(format!("cannot write in TLS state {other:?}"))),
            }
            incoming.drain(..discard.min(incoming.len()));
        }
    }

    /// Writes what is queued, waiting for the socket as needed.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.outgoing_written < self.outgoing.len() {
            let pending = &self.outgoing[self.outgoing_written..];
            match ready!(Pin::new(&mut self.tcp).poll_write(cx, pending))? {
                0 => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                written => self.outgoing_written += written,
            }
        }
        self.sent_all();
        Poll::Ready(Ok(()))
    }

    /// Writes what is queued as far as the socket takes it without waiting.
    fn try_send(&mut self) -> io::Result<()> {
        while self.outgoing_written < self.outgoing.len() {
            match self.tcp.try_write(&self.outgoing[self.outgoing_written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => self.outgoing_written += written,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(error) => return Err(error),
            }
        }
        self.sent_all();
        Ok(())
    }

    fn sent_all(&mut self) {
        if self.outgoing.capacity() > OUTGOING_KEPT {
            self.outgoing = Vec::new();
        } else {
            self.outgoing.clear();
        }
        self.outgoing_written = 0;
    }
}

impl AsyncRead for ServerTlsStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.plaintext_read < this.plaintext.len() {
                let available = &this.plaintext[this.plaintext_read..];
                let taken = available.len().min(buf.remaining());
                buf.put_slice(&available[..taken]);
                this.plaintext_read += taken;
                if this.plaintext_read == this.plaintext.len() {
                    this.plaintext = Vec::new();
                    this.plaintext_read = 0;
                }
                // Whatever reading queued (a key update's answer) leaves now if it can; the next
                // write or flush sends the rest.
                this.try_send()?;
                return Poll::Ready(Ok(()));
            }
            if this.read_closed {
                return Poll::Ready(Ok(()));
            }
            ready!(this.poll_receive(cx))?;
        }
    }
}

impl AsyncWrite for ServerTlsStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.outgoing.len() - this.outgoing_written >= OUTGOING_HIGH_WATER {
            ready!(this.poll_send(cx))?;
        }
        let data = &data[..data.len().min(MAX_PLAINTEXT_PER_WRITE)];
        this.encrypt(data)?;
        // Sent at once, as tokio-rustls does: not every writer flushes.
        this.try_send()?;
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_send(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_queued {
            this.close_queued = true;
            if let Ok(ConnectionState::WriteTraffic(mut traffic)) =
                this.conn.process_tls_records(&mut []).state
            {
                append(&mut this.outgoing, MAX_RECORD, |out| {
                    traffic.queue_close_notify(out)
                })?;
            }
        }
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}

/// rustls's "the buffer is too small": how large it must be.
trait NeedsRoom {
    fn required_size(&self) -> Option<usize>;
}

impl NeedsRoom for EncodeError {
    fn required_size(&self) -> Option<usize> {
        match self {
            EncodeError::InsufficientSize(size) => Some(size.required_size),
            EncodeError::AlreadyEncoded => None,
        }
    }
}

impl NeedsRoom for EncryptError {
    fn required_size(&self) -> Option<usize> {
        match self {
            EncryptError::InsufficientSize(size) => Some(size.required_size),
            _ => None,
        }
    }
}

/// Appends what `write` puts into a buffer to `out`, offering `room` bytes first and then the
/// size rustls asks for.
fn append<E: NeedsRoom + std::fmt::Display>(
    out: &mut Vec<u8>,
    room: usize,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, E>,
) -> io::Result<()> {
    let start = out.len();
    let mut room = room.max(out.capacity() - start);
    loop {
        out.resize(start + room, 0);
        match write(&mut out[start..]) {
            Ok(written) => {
                out.truncate(start + written);
                return Ok(());
            }
            Err(error) => match error.required_size() {
                Some(required) if required > room => room = required,
                _ => {
                    out.truncate(start);
                    return Err(io::Error::other(error.to_string()));
                }
            },
        }
    }
}

/// Runs `f` on this thread's read buffer, at least `len` bytes long.
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut scratch) => {
            if scratch.len() < len {
                scratch.resize(len, 0);
            }
            f(&mut scratch[..])
        }
        // Not reentrant in practice (polls do not nest); stay correct if one ever does.
        Err(_) => f(&mut vec![0; len]),
    })
}

fn invalid_data(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}
