//! The TLS stream type of ferry's sessions: tokio-rustls over a read-buffered TCP socket.
//!
//! rustls reads the socket 4 KiB at a time (its deframer's fixed read size), so a 1 GiB
//! download cost ~260 000 `read` system calls and as many trips through tokio's reactor;
//! that alone kept downloads below curl's speed. [`BufferedTcp`] reads up to [`DATA_READ_BUF`]
//! per system call and hands rustls its 4 KiB slices from memory. Writes go straight through
//! (rustls already writes whole records).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Bytes read from the socket per system call on a data connection.
pub(crate) const DATA_READ_BUF: usize = 256 * 1024;
/// ... and on the control connection (replies are short).
pub(crate) const CONTROL_READ_BUF: usize = 8 * 1024;

/// The read buffer a connection starts with; it doubles, up to the connection's capacity,
/// each time one read fills it. An upload's data connection reads only TLS handshakes and
/// alerts, and a small file's download a few records: neither should pay for 256 KiB (see
/// `pipeline::buffer_size` for what that cost with many small files).
const INITIAL_READ_BUF: usize = 16 * 1024;

/// A TCP socket with a read buffer.
#[derive(Debug)]
pub(crate) struct BufferedTcp {
    tcp: TcpStream,
    buf: Vec<u8>,
    capacity: usize,
    pos: usize,
    filled: usize,
}

impl BufferedTcp {
    pub(crate) fn new(tcp: TcpStream, capacity: usize) -> Self {
        BufferedTcp {
            tcp,
            buf: vec![0u8; INITIAL_READ_BUF.min(capacity)],
            capacity,
            pos: 0,
            filled: 0,
        }
    }
}

impl AsyncRead for BufferedTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos == this.filled {
            if out.remaining() >= this.buf.len() {
                return Pin::new(&mut this.tcp).poll_read(cx, out);
            }
            let mut rb = ReadBuf::new(&mut this.buf);
            ready!(Pin::new(&mut this.tcp).poll_read(cx, &mut rb))?;
            this.filled = rb.filled().len();
            this.pos = 0;
            if this.filled == 0 {
                return Poll::Ready(Ok(())); // end of stream
            }
            if this.filled == this.buf.len() && this.buf.len() < this.capacity {
                // A full read: more is coming faster than this buffer takes it.
                let grown = (this.buf.len() * 2).min(this.capacity);
                this.buf.resize(grown, 0);
            }
        }
        let n = out.remaining().min(this.filled - this.pos);
        out.put_slice(&this.buf[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for BufferedTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// A session's TLS stream (control or data connection).
pub(crate) type TlsStream = tokio_rustls::client::TlsStream<BufferedTcp>;

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn buffered_reads_return_every_byte_in_order() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let sent = data.clone();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(&sent).await.unwrap();
        });
        let mut b = BufferedTcp::new(TcpStream::connect(addr).await.unwrap(), 64 * 1024);
        assert_eq!(b.buf.len(), INITIAL_READ_BUF, "a connection starts small");
        let mut got = Vec::new();
        let mut small = [0u8; 4096];
        loop {
            let n = b.read(&mut small).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&small[..n]);
        }
        server.await.unwrap();
        assert_eq!(got, data);
    }
}
