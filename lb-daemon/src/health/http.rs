//! The HTTP/1.1 exchange of `http` and `https` checks, over any byte
//! stream (plain TCP or TLS) with hyper's client connection: one `GET`
//! with `Connection: close`; the status must be in `expect_status` and,
//! when the check has a `body_contains`, the body must contain it.
//!
//! Only the head is waited for unless the body is to be searched. Like
//! HAProxy's `tune.chksize`, the body is searched within its first
//! [`MAX_BODY`] bytes: text beyond them is not found. A body the peer cuts
//! short by closing is searched as far as it came.
use std::{
    io,
    net::{IpAddr, SocketAddr},
};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::{Request, Uri, body::Incoming, client::conn::http1, header};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use super::result::{CheckResult, Failure};
use crate::config::HttpCheck;

/// Most bytes of a response body searched for `body_contains`.
pub const MAX_BODY: usize = 64 * 1024;

/// Most bytes of a response head (hyper's read buffer, which holds it).
const MAX_HEAD: usize = 64 * 1024;

/// The request for `path` on the backend `addr`; `default_port` (80 or
/// 443) is left out of the Host header.
pub fn request(
    path: &str,
    addr: SocketAddr,
    default_port: u16,
) -> Result<Request<Empty<Bytes>>, Failure> {
    let host = match addr.ip() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    let authority = if addr.port() == default_port {
        host
    } else {
        format!("{host}:{}", addr.port())
    };
    let target = request_target(path).map_err(Failure::Request)?;
    Request::get(target)
        .header(header::HOST, authority)
        .header(
            header::USER_AGENT,
            concat!("lb-health/", env!("CARGO_PKG_VERSION")),
        )
        .header(header::ACCEPT, "*/*")
        .header(header::CONNECTION, "close")
        .body(Empty::new())
        .map_err(|error| Failure::Request(error.to_string()))
}

/// The request target of `path`, percent-encoded, or why there is none:
/// a path too long for a request target once encoded. Configuration
/// validation rejects such paths, so a configured check never meets one.
pub fn request_target(path: &str) -> Result<Uri, String> {
    Uri::try_from(encode(path)).map_err(|error| error.to_string())
}

/// `path` with every byte that may not appear in a request target
/// percent-encoded: controls, space and non-ASCII (RFC 9112 §3.2), and
/// the few printable ones a URI's path or query may not hold (`"`, `#`,
/// `<`, `>`, `` ` ``), so that no configured path can break the request
/// apart or be refused.
fn encode(path: &str) -> String {
    let mut target = String::with_capacity(path.len());
    for byte in path.bytes() {
        if byte.is_ascii_graphic() && !b"\"#<>`".contains(&byte) {
            target.push(char::from(byte));
        } else {
            target.push_str(&format!("%{byte:02X}"));
        }
    }
    target
}

/// What of a response is judged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// The decoded body, at most [`MAX_BODY`] bytes (empty when the check
    /// has no `body_contains`).
    pub body: Vec<u8>,
}

/// Sends the request for `check` to the backend `addr` over `stream` and
/// judges the response; `default_port` as for [`request`]. The caller
/// bounds it with the check's timeout.
pub async fn check<S>(
    stream: S,
    check: &HttpCheck,
    addr: SocketAddr,
    default_port: u16,
) -> CheckResult
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let response = match request(&check.path, addr, default_port) {
        Ok(request) => exchange(stream, request, check.body_contains.is_some()).await,
        Err(reason) => Err(reason),
    };
    match response {
        Ok(response) => judge(check, &response),
        Err(reason) => reason.into(),
    }
}

/// Whether `response` passes `check`.
pub fn judge(check: &HttpCheck, response: &Response) -> CheckResult {
    if !check.expect_status.contains(&response.status) {
        return Failure::BadStatus(response.status).into();
    }
    if let Some(text) = &check.body_contains
        && !contains(&response.body, text.as_bytes())
    {
        return Failure::BodyMismatch.into();
    }
    CheckResult::Success
}

/// Whether `needle` occurs in `haystack` (an empty needle always does).
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// Sends `request` over `stream` and reads the response's head, and its
/// body too when `want_body`.
async fn exchange<S>(
    stream: S,
    request: Request<Empty<Bytes>>,
    want_body: bool,
) -> Result<Response, Failure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut sender, connection) = http1::Builder::new()
        .title_case_headers(true)
        .max_buf_size(MAX_HEAD)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|error| failure(&error))?;
    let answer = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|error| failure(&error))?;
        let status = response.status().as_u16();
        let body = if want_body {
            read_body(response.into_body()).await?
        } else {
            Vec::new()
        };
        Ok(Response { status, body })
    };
    tokio::pin!(answer);
    // The connection does the reading and writing. Once the answer is in
    // (the head, or the body as far as it is read), the connection is
    // dropped, its socket closed, without waiting for the rest.
    let ended = tokio::select! {
        response = &mut answer => return response,
        ended = connection => ended,
    };
    // The connection ended first. It has handed its outcome to the answer,
    // but for a failure it had nobody to hand to (the request not under
    // way yet): that failure is the answer's.
    match (answer.await, ended) {
        (Err(_), Err(error)) => Err(failure(&error)),
        (response, _) => response,
    }
}

/// The body, up to [`MAX_BODY`] bytes.
async fn read_body(mut body: Incoming) -> Result<Vec<u8>, Failure> {
    let mut read = Vec::new();
    while read.len() < MAX_BODY {
        let frame = match body.frame().await {
            None => break,
            Some(Ok(frame)) => frame,
            Some(Err(error)) if closed_early(&error) => break,
            Some(Err(error)) => return Err(failure(&error)),
        };
        if let Ok(data) = frame.into_data() {
            let room = MAX_BODY - read.len();
            read.extend_from_slice(&data[..data.len().min(room)]);
        }
    }
    Ok(read)
}

/// The failure a hyper error stands for: socket and TLS errors as
/// [`Failure::from_io`] classifies them, a connection closed before the
/// response was complete (hyper's incomplete message), or before the
/// request went out (cancelled), [`Failure::Reset`], and anything else
/// (not HTTP, a head too large, bad body framing) [`Failure::BadResponse`].
fn failure(error: &hyper::Error) -> Failure {
    // A request cancelled because the connection failed first (bytes
    // before the request went out, say) carries that failure.
    if error.is_canceled()
        && let Some(cause) =
            std::error::Error::source(error).and_then(|cause| cause.downcast_ref::<hyper::Error>())
    {
        return failure(cause);
    }
    match io_cause(error) {
        Some(cause) => match Failure::from_io(cause) {
            // hyper reports body framing it cannot decode as InvalidData
            // or InvalidInput, which a socket never gives.
            Failure::Io(_)
                if matches!(
                    cause.kind(),
                    io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput
                ) =>
            {
                Failure::BadResponse(cause.to_string())
            }
            reason => reason,
        },
        None if error.is_incomplete_message() || error.is_canceled() => Failure::Reset,
        None => Failure::BadResponse(error.to_string()),
    }
}

/// Whether `error` is the peer closing before the body's end: hyper's
/// incomplete message, or an unexpected EOF (within the body's framing, or
/// from a TLS peer that closes without close_notify).
fn closed_early(error: &hyper::Error) -> bool {
    error.is_incomplete_message()
        || io_cause(error).is_some_and(|cause| cause.kind() == io::ErrorKind::UnexpectedEof)
}

/// The I/O error beneath a hyper error, if there is one.
fn io_cause(error: &hyper::Error) -> Option<&io::Error> {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            return Some(io);
        }
        source = cause.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream};

    use super::*;

    fn http_check(statuses: &[u16], body: Option<&str>) -> HttpCheck {
        HttpCheck {
            path: "/healthz".into(),
            expect_status: statuses.to_vec(),
            body_contains: body.map(str::to_owned),
        }
    }

    fn response(status: u16, body: &str) -> Response {
        Response {
            status,
            body: body.as_bytes().to_vec(),
        }
    }

    /// How the peer ends after its answer.
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Then {
        Close,
        HoldOpen,
    }

    /// Runs `check` for the backend `addr` (default port 80) against an
    /// in-memory peer that reads the request head and answers `answer`;
    /// the result and the request head the peer read.
    async fn against_at(
        check: &HttpCheck,
        addr: &str,
        answer: &[u8],
        then: Then,
    ) -> (CheckResult, String) {
        let (client, mut server) = tokio::io::duplex(4096);
        let peer = async move {
            let head = read_head(&mut server).await;
            // The client may stop reading early and drop its end.
            let _ = server.write_all(answer).await;
            let held = (then == Then::HoldOpen).then_some(server);
            (head, held)
        };
        let addr = addr.parse().unwrap();
        let both = async { tokio::join!(super::check(client, check, addr, 80), peer) };
        let (result, (head, _held)) = tokio::time::timeout(Duration::from_secs(5), both)
            .await
            .expect("the check ends without the peer closing");
        (result, head)
    }

    async fn against(check: &HttpCheck, answer: &[u8], then: Then) -> CheckResult {
        against_at(check, "10.0.0.1:8080", answer, then).await.0
    }

    async fn read_head(stream: &mut DuplexStream) -> String {
        let mut head = Vec::new();
        let mut byte = [0u8];
        while !head.ends_with(b"\r\n\r\n") && stream.read_exact(&mut byte).await.is_ok() {
            head.push(byte[0]);
        }
        String::from_utf8(head).unwrap()
    }

    fn is_bad_response(result: &CheckResult) -> bool {
        matches!(result, CheckResult::Failure(Failure::BadResponse(_)))
    }

    #[tokio::test]
    async fn request_has_host_and_connection_close() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        let (result, head) =
            against_at(&http_check(&[200], None), "10.0.0.1:8080", ok, Then::Close).await;
        assert_eq!(result, CheckResult::Success);
        assert_eq!(
            head,
            format!(
                "GET /healthz HTTP/1.1\r\nHost: 10.0.0.1:8080\r\nUser-Agent: lb-health/{}\r\n\
                 Accept: */*\r\nConnection: close\r\n\r\n",
                env!("CARGO_PKG_VERSION")
            )
        );
        let (_, head) = against_at(
            &http_check(&[200], None),
            "[2001:db8::1]:80",
            ok,
            Then::Close,
        )
        .await;
        assert!(head.contains("\r\nHost: [2001:db8::1]\r\n"), "{head}");
    }

    #[test]
    fn request_target_cannot_be_broken_apart() {
        let addr = "10.0.0.1:80".parse().unwrap();
        let request = request("/a b\r\nX: y#frag?q=ü&<\"`>{}", addr, 80).unwrap();
        assert_eq!(
            request.uri(),
            "/a%20b%0D%0AX:%20y%23frag?q=%C3%BC&%3C%22%60%3E{}"
        );
        assert!(matches!(
            super::request(&"/a".repeat(40_000), addr, 80),
            Err(Failure::Request(_))
        ));
    }

    #[test]
    fn status_and_body_are_judged() {
        let ok = http_check(&[200, 204], Some("ready"));
        assert_eq!(
            judge(&ok, &response(200, "all ready\n")),
            CheckResult::Success
        );
        assert_eq!(
            judge(&ok, &response(503, "ready")),
            Failure::BadStatus(503).into()
        );
        assert_eq!(
            judge(&ok, &response(200, "starting")),
            Failure::BodyMismatch.into()
        );
        assert_eq!(
            judge(&http_check(&[200], None), &response(200, "")),
            CheckResult::Success
        );
    }

    #[tokio::test]
    async fn heads_and_bodies_are_read_as_far_as_needed() {
        use Failure::{BadStatus, BodyMismatch};
        use Then::{Close, HoldOpen};
        let partial: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial";
        let busy: &[u8] = b"HTTP/1.0 503 Busy\r\ncontent-length: 4\r\n\r\nbusyEXTRA";
        let unframed: &[u8] = b"HTTP/1.1 200 OK\r\n\r\nhello";
        let interim: &[u8] = b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n\
                               HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        // (answer, how the peer ends, body_contains, the failure if any)
        let cases = [
            // Without a body check, the head is enough.
            (partial, HoldOpen, None, None),
            // A body cut short by the close is searched as far as it came.
            (partial, Close, Some("part"), None),
            (partial, Close, Some("complete"), Some(BodyMismatch)),
            // Content-Length bounds the body.
            (busy, HoldOpen, Some("busy"), None),
            (busy, HoldOpen, Some("EXTRA"), Some(BodyMismatch)),
            // Without framing, the body runs to the close.
            (unframed, Close, Some("hello"), None),
            // Interim responses are skipped.
            (interim, HoldOpen, None, Some(BadStatus(404))),
        ];
        for (i, (answer, then, body, failure)) in cases.into_iter().enumerate() {
            let expected = failure.map_or(CheckResult::Success, CheckResult::Failure);
            let check = http_check(&[200, 503], body);
            assert_eq!(against(&check, answer, then).await, expected, "case {i}");
        }
    }

    #[tokio::test]
    async fn chunked_bodies_are_decoded() {
        let answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
                       4;ext=1\r\nrea\r\r\n3\r\ndy\n\r\n0\r\n\r\n";
        // The text spans both chunks.
        let check = http_check(&[200], Some("a\rdy"));
        assert_eq!(
            against(&check, answer, Then::HoldOpen).await,
            CheckResult::Success
        );
        // Cut anywhere in the body by a close: searched as far as it came.
        let body = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let text_end = answer.windows(2).position(|w| w == b"dy").unwrap() + 2;
        for cut in body..answer.len() {
            let expected = if cut >= text_end {
                CheckResult::Success
            } else {
                Failure::BodyMismatch.into()
            };
            assert_eq!(
                against(&check, &answer[..cut], Then::Close).await,
                expected,
                "cut at {cut}"
            );
        }
        let bad = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        assert!(is_bad_response(&against(&check, bad, Then::Close).await));
        let no_crlf = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc";
        assert!(is_bad_response(
            &against(&check, no_crlf, Then::HoldOpen).await
        ));
    }

    #[tokio::test]
    async fn the_body_is_searched_within_its_first_64_kib() {
        let check = http_check(&[200], Some("needle"));
        let answer = |filler: usize| {
            let body = [vec![b'a'; filler], b"needle".to_vec()].concat();
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
            [head.into_bytes(), body].concat()
        };
        assert_eq!(
            against(&check, &answer(MAX_BODY - 6), Then::HoldOpen).await,
            CheckResult::Success
        );
        assert_eq!(
            against(&check, &answer(MAX_BODY - 5), Then::HoldOpen).await,
            Failure::BodyMismatch.into()
        );
    }

    #[tokio::test]
    async fn garbage_and_early_close_are_typed_errors() {
        let check = http_check(&[200], None);
        let bad_length = b"HTTP/1.1 200 OK\r\nContent-Length: lots\r\n\r\n";
        assert!(is_bad_response(
            &against(&check, bad_length, Then::Close).await
        ));
        // Gone before the request went out.
        let (client, server) = tokio::io::duplex(64);
        drop(server);
        let addr = "10.0.0.1:80".parse().unwrap();
        assert_eq!(
            super::check(client, &check, addr, 80).await,
            Failure::Reset.into()
        );
        assert_eq!(
            against(&check, b"", Then::Close).await,
            Failure::Reset.into()
        );
        assert_eq!(
            against(&check, b"HTTP/1.1 200 OK\r\nX: y", Then::Close).await,
            Failure::Reset.into()
        );
        assert!(is_bad_response(
            &against(&check, b"SSH-2.0-OpenSSH_9.2\r\n", Then::HoldOpen).await
        ));
        // A banner before the request, however the connection's and the
        // request's futures happen to be polled (select! starts at random).
        for _ in 0..32 {
            let (client, mut server) = tokio::io::duplex(64);
            server.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").await.unwrap();
            let result = super::check(client, &check, addr, 80).await;
            assert!(is_bad_response(&result), "{result:?}");
        }
        let endless = [b"HTTP/1.1 200 OK\r\n".as_slice(), &[b'a'; MAX_HEAD]].concat();
        assert!(is_bad_response(
            &against(&check, &endless, Then::HoldOpen).await
        ));
    }

    #[test]
    fn substring_search() {
        assert!(contains(b"abc", b""));
        assert!(contains(b"abc", b"bc"));
        assert!(!contains(b"abc", b"abcd"));
        assert!(!contains(b"", b"a"));
    }
}
