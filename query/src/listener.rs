//! A TCP listener whose connections accept what Prometheus' Go server accepts in a request line.
//!
//! `curl -g 'localhost:9090/federate?match[]={__name__=~"job:.*"}'` sends the quotes raw. Go's
//! server takes the request; hyper's parser refuses a `"`, `<` or `>` in the query and answers
//! 400 with an empty body before any handler runs. [`LenientIo`] percent-encodes exactly those
//! bytes in each request target as they arrive, so the request reaches the router as if the
//! client had encoded them. It follows HTTP/1.1 framing to find each request line of a
//! keep-alive connection: headers up to the blank line, then `Content-Length` bytes of body.
//! After a chunked body, or on an HTTP/2 connection, it passes the bytes through unchanged.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Longest request or header line inspected; longer ones pass unchanged (hyper refuses them).
const MAX_LINE: usize = 64 << 10;

/// [`TcpListener`] for `axum::serve`, with [`LenientIo`] connections.
pub struct LenientListener(pub TcpListener);

impl axum::serve::Listener for LenientListener {
    type Io = LenientIo<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = axum::serve::Listener::accept(&mut self.0).await;
        (LenientIo::new(io), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

#[derive(Debug)]
enum State {
    /// In a request line; `spaces` seen so far (the target is between the first and second).
    RequestLine { spaces: u8, len: usize },
    /// In the header block; the current line so far.
    Headers {
        line: Vec<u8>,
        content_length: u64,
        chunked: bool,
    },
    /// This many body bytes remain.
    Body(u64),
    /// Everything from here on passes unchanged.
    Passthrough,
}

/// A connection that percent-encodes `"`, `<` and `>` in request targets (see the module).
pub struct LenientIo<S> {
    inner: S,
    state: State,
    out: Vec<u8>,
    out_pos: usize,
}

impl<S> LenientIo<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            state: State::RequestLine { spaces: 0, len: 0 },
            out: Vec::new(),
            out_pos: 0,
        }
    }

    fn push(&mut self, b: u8) {
        let state = std::mem::replace(&mut self.state, State::Passthrough);
        self.state = match state {
            State::Passthrough => {
                self.out.push(b);
                State::Passthrough
            }
            State::Body(n) => {
                self.out.push(b);
                if n <= 1 {
                    State::RequestLine { spaces: 0, len: 0 }
                } else {
                    State::Body(n - 1)
                }
            }
            State::RequestLine { spaces, len } => {
                if len == 0 && (b == b'\r' || b == b'\n') {
                    // Empty lines before a request line are allowed.
                    self.out.push(b);
                    return;
                }
                match b {
                    b'\n' => {
                        self.out.push(b);
                        State::Headers {
                            line: Vec::new(),
                            content_length: 0,
                            chunked: false,
                        }
                    }
                    b' ' => {
                        self.out.push(b);
                        State::RequestLine {
                            spaces: spaces.saturating_add(1),
                            len: len + 1,
                        }
                    }
                    b'"' | b'<' | b'>' if spaces == 1 && len < MAX_LINE => {
                        self.out.extend_from_slice(match b {
                            b'"' => b"%22",
                            b'<' => b"%3C",
                            _ => b"%3E",
                        });
                        State::RequestLine {
                            spaces,
                            len: len + 1,
                        }
                    }
                    _ => {
                        self.out.push(b);
                        State::RequestLine {
                            spaces,
                            len: len + 1,
                        }
                    }
                }
            }
            State::Headers {
                mut line,
                mut content_length,
                mut chunked,
            } => {
                self.out.push(b);
                if b != b'\n' {
                    if line.len() < MAX_LINE {
                        line.push(b);
                    }
                    self.state = State::Headers {
                        line,
                        content_length,
                        chunked,
                    };
                    return;
                }
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_end_matches('\r');
                if text.is_empty() {
                    if chunked {
                        State::Passthrough
                    } else if content_length > 0 {
                        State::Body(content_length)
                    } else {
                        State::RequestLine { spaces: 0, len: 0 }
                    }
                } else {
                    if let Some((name, value)) = text.split_once(':') {
                        let name = name.trim();
                        if name.eq_ignore_ascii_case("content-length") {
                            content_length = value.trim().parse().unwrap_or(0);
                        } else if name.eq_ignore_ascii_case("transfer-encoding") {
                            chunked = true;
                        }
                    }
                    line.clear();
                    State::Headers {
                        line,
                        content_length,
                        chunked,
                    }
                }
            }
        };
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for LenientIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.out_pos == this.out.len() {
            this.out.clear();
            this.out_pos = 0;
            let mut raw = [0u8; 8192];
            let want = buf.remaining().min(raw.len());
            let mut rb = ReadBuf::new(&mut raw[..want]);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {}
                other => return other,
            }
            let filled = rb.filled().to_vec();
            if filled.starts_with(b"PRI * HTTP/2") {
                this.state = State::Passthrough;
            }
            for b in filled {
                this.push(b);
            }
        }
        let n = buf.remaining().min(this.out.len() - this.out_pos);
        buf.put_slice(&this.out[this.out_pos..this.out_pos + n]);
        this.out_pos += n;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for LenientIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn through(input: &[u8]) -> String {
        let mut io = LenientIo::new(input);
        let mut out = Vec::new();
        io.read_to_end(&mut out).await.unwrap();
        String::from_utf8(out).unwrap()
    }

    #[tokio::test]
    async fn encodes_targets_of_every_request_on_a_connection() {
        let input = concat!(
            "GET /federate?match[]={__name__=~\"job:.*\"} HTTP/1.1\r\nHost: a\r\nX-Q: \"kept\"\r\n\r\n",
            "POST /api/v1/sql HTTP/1.1\r\nContent-Length: 12\r\n\r\nSELECT \"<\" 1",
            "GET /x?a=<b> HTTP/1.1\r\n\r\n",
        );
        assert_eq!(
            through(input.as_bytes()).await,
            concat!(
                "GET /federate?match[]={__name__=~%22job:.*%22} HTTP/1.1\r\nHost: a\r\nX-Q: \"kept\"\r\n\r\n",
                "POST /api/v1/sql HTTP/1.1\r\nContent-Length: 12\r\n\r\nSELECT \"<\" 1",
                "GET /x?a=%3Cb%3E HTTP/1.1\r\n\r\n",
            )
        );
    }

    #[tokio::test]
    async fn chunked_bodies_and_http2_pass_unchanged() {
        let chunked = "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n\"\"\"\r\n0\r\n\r\nGET /\" HTTP/1.1\r\n\r\n";
        assert_eq!(through(chunked.as_bytes()).await, chunked);
        let h2 = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\"\"";
        assert_eq!(through(h2.as_bytes()).await, h2);
    }
}
