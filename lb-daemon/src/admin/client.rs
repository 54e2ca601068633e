//! A small HTTP/1.1 client for the admin API: `lb-daemon status` and the
//! tests use it. One request per connection.
use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::{Method, Request, header};
use hyper_util::rt::TokioIo;

use super::{ErrorBody, STATUS_PATH};
use crate::status::Status;

/// Why a request to the admin API failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the admin API at {addr} (is lb-daemon running there?): {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the admin API at {addr} did not answer within {timeout:?}")]
    Timeout { addr: SocketAddr, timeout: Duration },
    #[error("HTTP exchange with the admin API at {addr} failed: {source}")]
    Http {
        addr: SocketAddr,
        source: hyper::Error,
    },
    #[error("invalid request path {path:?}: {source}")]
    Request {
        path: String,
        source: hyper::http::Error,
    },
    #[error("the admin API answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("the admin API answered with JSON that is not a status: {0}")]
    Json(#[from] serde_json::Error),
}

/// An answer: status code, `Content-Type` and body.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: String,
}

impl Reply {
    /// The body parsed as JSON of type `T`, if the status is 2xx;
    /// otherwise [`ClientError::Status`] with the server's error message.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, ClientError> {
        if !(200..300).contains(&self.status) {
            let message = serde_json::from_str::<ErrorBody>(&self.body)
                .map(|body| body.error)
                .unwrap_or_else(|_| self.body.trim().to_owned());
            return Err(ClientError::Status {
                status: self.status,
                message,
            });
        }
        Ok(serde_json::from_str(&self.body)?)
    }
}

/// Sends `method path` with an empty body to `addr`; the whole exchange
/// (connect included) is bounded by `timeout`.
pub async fn request(
    addr: SocketAddr,
    method: Method,
    path: &str,
    timeout: Duration,
) -> Result<Reply, ClientError> {
    tokio::time::timeout(timeout, exchange(addr, method, path))
        .await
        .unwrap_or(Err(ClientError::Timeout { addr, timeout }))
}

async fn exchange(addr: SocketAddr, method: Method, path: &str) -> Result<Reply, ClientError> {
    let http = |source| ClientError::Http { addr, source };
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .map_err(|source| ClientError::Request {
            path: path.to_owned(),
            source,
        })?;
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|source| ClientError::Connect { addr, source })?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http)?;
    // The connection task ends with the exchange (the response is read to
    // its end) or when the timeout drops `sender`.
    let driver = tokio::spawn(connection);
    let response = sender.send_request(request).await.map_err(http)?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(http)?
        .to_bytes();
    drop(sender);
    driver.abort();
    Ok(Reply {
        status,
        content_type,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// `GET /api/v1/status`.
pub async fn fetch_status(addr: SocketAddr, timeout: Duration) -> Result<Status, ClientError> {
    request(addr, Method::GET, STATUS_PATH, timeout)
        .await?
        .json()
}
