//! A tiny HTTP/1.1 server that answers with its own name, and clients that
//! ask it from inside a namespace.
//!
//! Enough HTTP for the lab: request line and headers, `Content-Length`
//! bodies, keep-alive (HTTP/1.1 default, `Connection: close`, HTTP/1.0).
use std::{
    io::{self, BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, ensure};

use crate::{Netns, server::Server, wait::wait_until};

/// Longest request or response head the lab's HTTP code accepts.
const MAX_HEAD_LINES: usize = 100;
/// Longest single try of [`wait_http`].
const MAX_TRY: Duration = Duration::from_secs(1);

/// An HTTP server inside a namespace that answers every request with
/// `200 OK` and the body `{name}\n`; stopped on drop.
#[derive(Debug)]
pub struct HttpBackend {
    name: String,
    requests: Arc<AtomicU64>,
    server: Server,
}

impl HttpBackend {
    /// Starts the server on `addr` inside `ns` (port 0 picks a free port;
    /// see [`HttpBackend::addr`]).
    pub fn start(ns: &Netns, addr: SocketAddr, name: &str) -> Result<HttpBackend> {
        let requests = Arc::new(AtomicU64::new(0));
        let body = format!("{name}\n");
        let handler = {
            let requests = Arc::clone(&requests);
            Arc::new(move |stream| serve(stream, &body, &requests))
        };
        let server = Server::start(ns, addr, &format!("http {name}"), handler)
            .with_context(|| format!("starting HTTP backend {name}"))?;
        Ok(HttpBackend {
            name: name.to_owned(),
            requests,
            server,
        })
    }

    /// The name the server answers with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.server.accepted()
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.server.open()
    }

    /// Stops the server now (as a crashed backend would: new connections
    /// are refused, open ones are closed). Dropping it does the same.
    pub fn stop(&mut self) {
        self.server.stop();
    }
}

/// What the server needs to know about one request.
struct Request {
    keep_alive: bool,
}

fn serve(stream: TcpStream, body: &str, requests: &AtomicU64) -> io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    while let Some(request) = read_request(&mut reader)? {
        requests.fetch_add(1, Ordering::Relaxed);
        let connection = if request.keep_alive {
            "keep-alive"
        } else {
            "close"
        };
        write!(
            writer,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
             Connection: {connection}\r\n\r\n{body}",
            body.len()
        )?;
        writer.flush()?;
        if !request.keep_alive {
            break;
        }
    }
    Ok(())
}

/// Reads one request and skips its body; `None` at a clean end of stream.
fn read_request(reader: &mut impl BufRead) -> io::Result<Option<Request>> {
    let Some(head) = read_head(reader)? else {
        return Ok(None);
    };
    let version = head.start.split_whitespace().nth(2).unwrap_or_default();
    let mut keep_alive = version == "HTTP/1.1";
    if let Some(connection) = head.header("connection") {
        keep_alive = !connection.eq_ignore_ascii_case("close");
    }
    if head.header("transfer-encoding").is_some() {
        // Chunked request bodies are beyond this server: answer, then close.
        keep_alive = false;
    } else {
        let length = head.content_length()?.unwrap_or(0);
        io::copy(&mut reader.take(length), &mut io::sink())?;
    }
    Ok(Some(Request { keep_alive }))
}

/// A request or response head: its start line and headers.
struct Head {
    start: String,
    headers: Vec<(String, String)>,
}

impl Head {
    /// The value of header `name` (lower case), if present.
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    fn content_length(&self) -> io::Result<Option<u64>> {
        self.header("content-length")
            .map(|value| {
                value
                    .parse()
                    .map_err(|_| invalid(format!("bad Content-Length {value:?}")))
            })
            .transpose()
    }
}

/// Reads a head up to its empty line; `None` if the stream ends first.
fn read_head(reader: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut start = String::new();
    if reader.read_line(&mut start)? == 0 {
        return Ok(None);
    }
    let mut headers = Vec::new();
    for _ in 0..MAX_HEAD_LINES {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end();
        if line.is_empty() {
            return Ok(Some(Head {
                start: start.trim_end().to_owned(),
                headers,
            }));
        }
        let (key, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("bad header line {line:?}")))?;
        headers.push((key.trim().to_owned(), value.trim().to_owned()));
    }
    Err(invalid("too many header lines".to_owned()))
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Connects to `addr` from inside `ns` within `timeout`. The stream stays
/// in `ns` and can be used from any thread.
pub fn connect(ns: &Netns, addr: SocketAddr, timeout: Duration) -> Result<TcpStream> {
    ns.enter(|| TcpStream::connect_timeout(&addr, timeout))
        .with_context(|| format!("connecting to {addr} from {}", ns.name()))
}

/// Like [`connect`], for a connection held open: every later read and
/// write gives up after `timeout`, and small writes go out at once.
pub(crate) fn connect_long_lived(
    ns: &Netns,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<TcpStream> {
    let stream = connect(ns, addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// `GET /` from inside `ns` on a new connection; returns the body (a lab
/// backend answers `{name}\n`). Errors on a status other than 200 or when
/// the whole exchange takes longer than `timeout`.
pub fn http_get(ns: &Netns, addr: SocketAddr, timeout: Duration) -> Result<String> {
    let deadline = Instant::now() + timeout;
    let stream = connect(ns, addr, timeout)?;
    get(stream, addr, deadline).with_context(|| format!("GET http://{addr}/ from {}", ns.name()))
}

/// Retries [`http_get`] until it succeeds (a daemon came up, a VIP moved)
/// or `timeout` elapses; returns the body. Each try gets at most a second.
/// The timeout error carries the last failure.
pub fn wait_http(ns: &Netns, addr: SocketAddr, timeout: Duration) -> Result<String> {
    let mut last_error = None;
    wait_until(
        timeout,
        &format!("http://{addr}/ to answer from {}", ns.name()),
        || match http_get(ns, addr, timeout.min(MAX_TRY)) {
            Ok(body) => Ok(Some(body)),
            Err(error) => {
                last_error = Some(error);
                Ok(None)
            }
        },
    )
    .map_err(|error| match last_error {
        Some(last) => error.context(format!("last attempt: {last:#}")),
        None => error,
    })
}

/// `GET /` on a new connection from the calling thread's namespace, within
/// `timeout`; returns the body.
pub(crate) fn get_here(addr: SocketAddr, timeout: Duration) -> Result<String> {
    let deadline = Instant::now() + timeout;
    let stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    get(stream, addr, deadline).with_context(|| format!("GET http://{addr}/"))
}

/// Opens `connections` connections to `addr` from inside `ns`, all at once
/// so that each has its own source port, sends `GET /` on each and returns
/// the answering backends' names (bodies without the newline), one per
/// connection in the order opened. All within `timeout`.
pub fn http_get_many(
    ns: &Netns,
    addr: SocketAddr,
    connections: usize,
    timeout: Duration,
) -> Result<Vec<String>> {
    let deadline = Instant::now() + timeout;
    let streams = ns
        .enter(|| {
            (0..connections)
                .map(|_| TcpStream::connect_timeout(&addr, remaining(deadline)?))
                .collect::<io::Result<Vec<_>>>()
        })
        .with_context(|| {
            format!(
                "opening {connections} connections to {addr} from {}",
                ns.name()
            )
        })?;
    streams
        .into_iter()
        .enumerate()
        .map(|(index, stream)| {
            let port = stream.local_addr().map_or(0, |local| local.port());
            let body = get(stream, addr, deadline).with_context(|| {
                format!("GET http://{addr}/ on connection {index} (source port {port})")
            })?;
            Ok(body.trim_end().to_owned())
        })
        .collect()
}

/// One `GET /` with `Connection: close` on `stream`; returns the body.
fn get(mut stream: TcpStream, addr: SocketAddr, deadline: Instant) -> Result<String> {
    stream.set_write_timeout(Some(remaining(deadline)?))?;
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    stream.set_read_timeout(Some(remaining(deadline)?))?;
    read_response(&mut BufReader::new(stream))
}

/// An answer of [`http_request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpReply {
    /// The status code (200, 404, ...).
    pub status: u16,
    pub body: String,
}

/// `METHOD path` with an empty body to `addr` from inside `ns` (an API
/// call such as the balancers' admin API), as HTTP/1.0 so that the answer
/// is never chunked and ends with the connection. Returns the answer
/// whatever its status; connecting, sending and reading each give up
/// after `timeout`.
pub fn http_request(
    ns: &Netns,
    addr: SocketAddr,
    method: &str,
    path: &str,
    timeout: Duration,
) -> Result<HttpReply> {
    let exchange = || -> Result<HttpReply> {
        let mut stream = connect(ns, addr, timeout)?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_read_timeout(Some(timeout))?;
        write!(
            stream,
            "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"
        )?;
        read_reply(&mut BufReader::new(stream))
    };
    exchange().with_context(|| format!("{method} http://{addr}{path} from {}", ns.name()))
}

/// Reads one `200 OK` response and returns its body.
fn read_response(reader: &mut BufReader<TcpStream>) -> Result<String> {
    let reply = read_reply(reader)?;
    ensure!(
        reply.status == 200,
        "status {}: {}",
        reply.status,
        reply.body.trim_end()
    );
    Ok(reply.body)
}

/// Reads one response: its status and its body (of `Content-Length`
/// bytes, or up to the end of the stream without one).
fn read_reply(reader: &mut impl BufRead) -> Result<HttpReply> {
    let head = read_head(reader)?.context("connection closed before a response")?;
    let status = head
        .start
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("status line {:?}", head.start))?;
    let mut body = Vec::new();
    match head.content_length()? {
        Some(length) => {
            reader.take(length).read_to_end(&mut body)?;
            ensure!(
                body.len() as u64 == length,
                "body cut short: {} of {length} bytes",
                body.len()
            );
        }
        None => {
            reader.read_to_end(&mut body)?;
        }
    }
    let body = String::from_utf8(body).context("body is not UTF-8")?;
    Ok(HttpReply { status, body })
}

/// One kept-alive HTTP connection, one flow: `GET /` again and again on
/// the same TCP connection, each answered by the backend the flow is
/// balanced to (for tests and demos that hold connections across a
/// failover, a drain or a reload).
#[derive(Debug)]
pub struct HttpSession {
    addr: SocketAddr,
    reader: BufReader<TcpStream>,
    requests: u64,
}

impl HttpSession {
    /// Connects from inside `ns` to `addr`; every later request gives up
    /// after `timeout`.
    pub fn connect(ns: &Netns, addr: SocketAddr, timeout: Duration) -> Result<HttpSession> {
        let stream = connect_long_lived(ns, addr, timeout)?;
        Ok(HttpSession {
            addr,
            reader: BufReader::new(stream),
            requests: 0,
        })
    }

    /// `GET /` on the connection; returns the answer without its newline
    /// (a lab backend's name). An error if the connection broke, timed
    /// out, or the server closed it.
    pub fn get(&mut self) -> Result<String> {
        let addr = self.addr;
        let stream = self.reader.get_mut();
        write!(stream, "GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n")
            .with_context(|| format!("request {} on a session to {addr}", self.requests + 1))?;
        let body = read_response(&mut self.reader)
            .with_context(|| format!("answer {} on a session to {addr}", self.requests + 1))?;
        self.requests += 1;
        Ok(body.trim_end().to_owned())
    }

    /// Requests answered on this connection so far.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// The client's address (its source port identifies the flow).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.reader.get_ref().local_addr()?)
    }
}

/// The time left until `deadline`; an error once it has passed (a zero
/// socket timeout would mean "no timeout").
fn remaining(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::ErrorKind::TimedOut.into());
    }
    Ok(left)
}

#[cfg(test)]
mod tests {
    use anyhow::bail;

    use super::*;

    #[test]
    fn parses_keep_alive_and_skips_bodies() -> Result<()> {
        let input = b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc\
                      GET / HTTP/1.0\r\n\r\n";
        let mut reader = &input[..];
        let first = read_request(&mut reader)?.context("first request")?;
        assert!(first.keep_alive);
        let second = read_request(&mut reader)?.context("second request")?;
        assert!(!second.keep_alive);
        assert!(read_request(&mut reader)?.is_none());
        Ok(())
    }

    #[test]
    fn replies_of_any_status_with_and_without_a_length() -> Result<()> {
        let mut reader = &b"HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\nnone!extra"[..];
        let reply = read_reply(&mut reader)?;
        assert_eq!((reply.status, reply.body.as_str()), (404, "none!"));
        let mut reader = &b"HTTP/1.0 200 OK\r\n\r\n{\"up\":true}"[..];
        let reply = read_reply(&mut reader)?;
        assert_eq!((reply.status, reply.body.as_str()), (200, "{\"up\":true}"));
        assert!(read_reply(&mut &b"garbage\r\n\r\n"[..]).is_err());
        Ok(())
    }

    #[test]
    fn connection_close_ends_keep_alive() -> Result<()> {
        let mut reader = &b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n"[..];
        let request = read_request(&mut reader)?.context("request")?;
        if request.keep_alive {
            bail!("Connection: close was ignored");
        }
        Ok(())
    }
}
