//! An OTLP/HTTP collector for tests: a few lines of HTTP/1.1 on a free loopback port that
//! hand every request (path, content type, protobuf body) to the test through a channel, and
//! answer `200` with an empty (valid) export response. The test decodes the bodies with
//! `opentelemetry-proto`.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// One POST the collector received.
#[derive(Debug)]
pub struct Received {
    /// The request path (`/v1/traces`, `/v1/metrics`).
    pub path: String,
    /// The `Content-Type` header.
    pub content_type: String,
    /// The body (protobuf).
    pub body: Vec<u8>,
}

/// Starts the OTLP/HTTP collector on 127.0.0.1; every request it answers arrives on the channel.
pub async fn start_collector() -> anyhow::Result<(SocketAddr, mpsc::UnboundedReceiver<Received>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (sender, receiver) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let sender = sender.clone();
            tokio::spawn(async move {
                if let Err(error) = serve(stream, sender).await {
                    eprintln!("collector connection failed: {error}");
                }
            });
        }
    });
    Ok((addr, receiver))
}

/// Minimal HTTP/1.1 server side of one keep-alive connection: requests with a Content-Length
/// body, answered `200` with an empty (valid) export response.
async fn serve(stream: TcpStream, sender: mpsc::UnboundedSender<Received>) -> io::Result<()> {
    let mut stream = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if stream.read_line(&mut request_line).await? == 0 {
            return Ok(());
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let mut content_length = 0;
        let mut content_type = String::new();
        loop {
            let mut header = String::new();
            if stream.read_line(&mut header).await? == 0 {
                return Ok(());
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let value = value.trim();
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => {
                        content_length = value.parse().map_err(io::Error::other)?;
                    }
                    "content-type" => content_type = value.to_owned(),
                    "transfer-encoding" => {
                        return Err(io::Error::other("chunked bodies are not supported"));
                    }
                    _ => {}
                }
            }
        }
        let mut body = vec![0; content_length];
        stream.read_exact(&mut body).await?;
        // The test may have finished reading; a closed channel is not this server's problem.
        let _ = sender.send(Received {
            path,
            content_type,
            body,
        });
        stream
            .get_mut()
            .write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n",
            )
            .await?;
    }
}
