//! OTLP collectors for tests, on free loopback ports, that hand every request (path, content
//! type, headers, protobuf message) to the test through a channel and answer with an empty
//! (valid) export response. The test decodes the messages with `opentelemetry-proto`.
//!
//! - [`start_collector`]: OTLP/HTTP, a few lines of HTTP/1.1;
//! - [`start_grpc_collector`]: OTLP/gRPC, a plain HTTP/2 server (hyper) that strips the gRPC
//!   frame (1 flag byte, 4 length bytes) from each unary request and answers an empty message
//!   with `grpc-status: 0` in the trailers. Smaller than a tonic server, and the exporter side
//!   is the real tonic client.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;

use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::HeaderMap;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// One export request the collector received.
#[derive(Debug)]
pub struct Received {
    /// The request path (`/v1/traces`, `/v1/metrics`; for gRPC the method,
    /// `/opentelemetry.proto.collector.trace.v1.TraceService/Export`).
    pub path: String,
    /// The `Content-Type` header.
    pub content_type: String,
    /// Every header, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The message (protobuf; for gRPC without its frame).
    pub body: Vec<u8>,
}

impl Received {
    /// Whether this request exports spans (over either protocol).
    pub fn is_traces(&self) -> bool {
        self.path == "/v1/traces" || self.path.ends_with("TraceService/Export")
    }

    /// The value of header `name` (lower case), if it was sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
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
        let mut headers = Vec::new();
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
                headers.push((name.trim().to_ascii_lowercase(), value.to_owned()));
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
            headers,
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

/// Starts the OTLP/gRPC collector on 127.0.0.1 (HTTP/2 without TLS); every export request it
/// answers arrives on the channel.
pub async fn start_grpc_collector()
-> anyhow::Result<(SocketAddr, mpsc::UnboundedReceiver<Received>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (sender, receiver) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let sender = sender.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |request| grpc_export(request, sender.clone()));
                let served = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                if let Err(error) = served {
                    eprintln!("gRPC collector connection failed: {error}");
                }
            });
        }
    });
    Ok((addr, receiver))
}

/// The body of a gRPC answer: one frame, then trailers.
type GrpcBody = http_body_util::combinators::WithTrailers<
    Full<Bytes>,
    std::future::Ready<Option<Result<HeaderMap, Infallible>>>,
>;

/// Answers one unary export: an empty message (a valid `Export*ServiceResponse`), status OK.
async fn grpc_export(
    request: Request<Incoming>,
    sender: mpsc::UnboundedSender<Received>,
) -> Result<Response<GrpcBody>, Infallible> {
    let path = request.uri().path().to_owned();
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let content_type = headers
        .iter()
        .find(|(name, _)| name == "content-type")
        .map(|(_, value)| value.clone())
        .unwrap_or_default();
    let framed = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            eprintln!("gRPC collector: body not read: {error}");
            Bytes::new()
        }
    };
    // One uncompressed frame: flag 0, big-endian length, the message.
    let body = framed.get(5..).map(<[u8]>::to_vec).unwrap_or_default();
    let _ = sender.send(Received {
        path,
        content_type,
        headers,
        body,
    });
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", hyper::header::HeaderValue::from_static("0"));
    let body = Full::new(Bytes::from_static(&[0, 0, 0, 0, 0]))
        .with_trailers(std::future::ready(Some(Ok(trailers))));
    let response = Response::builder()
        .header("content-type", "application/grpc")
        .body(body)
        .expect("static headers are valid");
    Ok(response)
}
