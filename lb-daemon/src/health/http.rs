//! A minimal HTTP/1.1 client for health checks: one `GET` with
//! `Connection: close` over any byte stream (plain TCP or TLS), the status
//! line and headers parsed with `httparse`, the body (Content-Length,
//! chunked, or up to the close) read up to [`MAX_RESPONSE`] bytes in all.
//!
//! Like HAProxy's `tune.chksize`, the body is matched within the bytes
//! read: a `body_contains` beyond the first ~64 KiB is not found.
use std::net::IpAddr;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use super::result::{CheckResult, Failure};
use crate::config::HttpCheck;

/// Most bytes of a response (head and body) read.
pub const MAX_RESPONSE: usize = 64 * 1024;

/// Most header fields parsed.
const MAX_HEADERS: usize = 64;

/// The request for `path` on `host:port`.
pub fn request(path: &str, host: IpAddr, port: u16, default_port: u16) -> Vec<u8> {
    let host = match host {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    let authority = if port == default_port {
        host
    } else {
        format!("{host}:{port}")
    };
    format!(
        "GET {} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: lb-health/{}\r\n\
         Accept: */*\r\nConnection: close\r\n\r\n",
        request_target(path),
        env!("CARGO_PKG_VERSION"),
    )
    .into_bytes()
}

/// `path` with every byte that may not appear in a request target
/// (RFC 9112 §3.2: controls, space, non-ASCII, ...) percent-encoded, so
/// that no configured path can break the request apart.
fn request_target(path: &str) -> String {
    let mut target = String::with_capacity(path.len());
    for byte in path.bytes() {
        if byte.is_ascii_graphic() && byte != b'#' {
            target.push(char::from(byte));
        } else {
            target.push_str(&format!("%{byte:02X}"));
        }
    }
    target
}

/// A parsed (possibly truncated) response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// The decoded body, at most what fit in [`MAX_RESPONSE`].
    pub body: Vec<u8>,
}

/// Sends the request for `check` over `stream` and judges the response.
/// The caller bounds it with the check's timeout.
pub async fn check<S>(stream: &mut S, check: &HttpCheck, request: &[u8]) -> CheckResult
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match exchange(stream, request, check.body_contains.is_some()).await {
        Ok(response) => judge(check, &response),
        Err(reason) => CheckResult::Failure(reason),
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

/// Writes `request` and reads until a response is complete (only the
/// head when `want_body` is false), the peer closes, or
/// [`MAX_RESPONSE`] bytes have arrived.
async fn exchange<S>(stream: &mut S, request: &[u8], want_body: bool) -> Result<Response, Failure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    stream
        .write_all(request)
        .await
        .map_err(|e| Failure::from_io(&e))?;
    stream.flush().await.map_err(|e| Failure::from_io(&e))?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    loop {
        let room = MAX_RESPONSE - buf.len();
        let read = match stream.read(&mut chunk[..room.min(8192)]).await {
            Ok(read) => read,
            // A TLS peer that closes without close_notify: treat like a
            // plain close once something has arrived.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !buf.is_empty() => 0,
            Err(e) => return Err(Failure::from_io(&e)),
        };
        buf.extend_from_slice(&chunk[..read]);
        let end = read == 0 || buf.len() >= MAX_RESPONSE;
        if let Some(response) = parse(&buf, end, want_body)? {
            return Ok(response);
        }
        // `parse` returns a response or an error whenever `end` is set;
        // this guard only keeps the loop finite should that ever change.
        if end {
            return Err(Failure::BadResponse("incomplete response".into()));
        }
    }
}

/// Parses the response in `buf`. `Ok(None)`: more bytes are needed.
/// `end`: no more bytes will come (the peer closed or the bound is
/// reached): whatever is there is judged, truncated bodies included.
pub fn parse(buf: &[u8], end: bool, want_body: bool) -> Result<Option<Response>, Failure> {
    let mut start = 0;
    // Interim 1xx responses (RFC 9110 §15.2) precede the final one.
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut head = httparse::Response::new(&mut headers);
        let head_len = match head.parse(&buf[start..]) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if !end => return Ok(None),
            Ok(httparse::Status::Partial) if buf.is_empty() => return Err(Failure::Reset),
            Ok(httparse::Status::Partial) => {
                return Err(Failure::BadResponse(if buf.len() >= MAX_RESPONSE {
                    "head too long".into()
                } else {
                    "connection closed within the head".into()
                }));
            }
            Err(error) => return Err(Failure::BadResponse(error.to_string())),
        };
        let status = head
            .code
            .ok_or_else(|| Failure::BadResponse("no status".into()))?;
        let body_start = start + head_len;
        if (100..200).contains(&status) && status != 101 {
            start = body_start;
            continue;
        }
        if !want_body || status == 204 || status == 304 {
            return Ok(Some(Response {
                status,
                body: Vec::new(),
            }));
        }
        let framing = framing(head.headers)?;
        let rest = &buf[body_start..];
        let body = match framing {
            Framing::Chunked => match dechunk(rest)? {
                (body, true) => Some(body),
                (body, false) => end.then_some(body),
            },
            Framing::Length(len) => {
                if rest.len() as u64 >= len {
                    Some(rest[..len as usize].to_vec())
                } else {
                    end.then(|| rest.to_vec())
                }
            }
            Framing::Close => end.then(|| rest.to_vec()),
        };
        return Ok(body.map(|body| Response { status, body }));
    }
}

/// How the body's end is known (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    Chunked,
    Length(u64),
    /// Until the connection closes.
    Close,
}

fn framing(headers: &[httparse::Header<'_>]) -> Result<Framing, Failure> {
    let value = |name: &str| {
        headers
            .iter()
            .rev()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
    };
    if let Some(codings) = value("transfer-encoding") {
        // Chunked must be the last coding; anything else is read to the close.
        let last = codings.rsplit(',').next().unwrap_or("").trim().to_owned();
        return Ok(if last == "chunked" {
            Framing::Chunked
        } else {
            Framing::Close
        });
    }
    match value("content-length") {
        Some(len) => len
            .parse()
            .map(Framing::Length)
            .map_err(|_| Failure::BadResponse(format!("bad content-length {len:?}"))),
        None => Ok(Framing::Close),
    }
}

/// Decodes a chunked body (RFC 9112 §7.1) as far as `data` goes; the
/// flag tells whether the last (zero-size) chunk was reached. Trailers
/// are not needed and not read.
fn dechunk(mut data: &[u8]) -> Result<(Vec<u8>, bool), Failure> {
    let mut body = Vec::new();
    loop {
        let (consumed, size) = match httparse::parse_chunk_size(data) {
            Ok(httparse::Status::Complete(found)) => found,
            Ok(httparse::Status::Partial) => return Ok((body, false)),
            Err(_) => return Err(Failure::BadResponse("bad chunk size".into())),
        };
        if size == 0 {
            return Ok((body, true));
        }
        data = &data[consumed..];
        let available = usize::try_from(size).unwrap_or(usize::MAX).min(data.len());
        body.extend_from_slice(&data[..available]);
        if (available as u64) < size {
            return Ok((body, false));
        }
        data = &data[available..];
        // The CRLF after the chunk's data.
        match data {
            [b'\r', b'\n', rest @ ..] => data = rest,
            [] | [b'\r'] => return Ok((body, false)),
            _ => return Err(Failure::BadResponse("chunk not followed by CRLF".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(statuses: &[u16], body: Option<&str>) -> HttpCheck {
        HttpCheck {
            path: "/".into(),
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

    #[test]
    fn request_has_host_and_connection_close() {
        let v4 = request("/healthz", "10.0.0.1".parse().unwrap(), 8080, 80);
        assert_eq!(
            String::from_utf8(v4).unwrap(),
            format!(
                "GET /healthz HTTP/1.1\r\nHost: 10.0.0.1:8080\r\nUser-Agent: lb-health/{}\r\n\
                 Accept: */*\r\nConnection: close\r\n\r\n",
                env!("CARGO_PKG_VERSION")
            )
        );
        let v6 = String::from_utf8(request("/", "2001:db8::1".parse().unwrap(), 443, 443)).unwrap();
        assert!(v6.contains("\r\nHost: [2001:db8::1]\r\n"), "{v6}");
    }

    #[test]
    fn request_target_cannot_be_broken_apart() {
        let req = request("/a b\r\nX: y#frag?q=ü", "10.0.0.1".parse().unwrap(), 80, 80);
        let req = String::from_utf8(req).unwrap();
        assert!(
            req.starts_with("GET /a%20b%0D%0AX:%20y%23frag?q=%C3%BC HTTP/1.1\r\n"),
            "{req}"
        );
    }

    #[test]
    fn status_and_body_are_judged() {
        let ok = check(&[200, 204], Some("ready"));
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
            judge(&check(&[200], None), &response(200, "")),
            CheckResult::Success
        );
    }

    #[test]
    fn head_alone_is_enough_without_a_body_check() {
        let buf = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial";
        assert_eq!(parse(buf, false, false), Ok(Some(response(200, ""))));
        assert_eq!(parse(buf, false, true), Ok(None));
        assert_eq!(parse(buf, true, true), Ok(Some(response(200, "partial"))));
        assert_eq!(parse(b"HTTP/1.1 200 O", false, false), Ok(None));
    }

    #[test]
    fn content_length_bounds_the_body() {
        let buf = b"HTTP/1.0 503 Busy\r\ncontent-length: 4\r\n\r\nbusyEXTRA";
        assert_eq!(parse(buf, false, true), Ok(Some(response(503, "busy"))));
        let bad = b"HTTP/1.1 200 OK\r\nContent-Length: lots\r\n\r\n";
        assert!(matches!(
            parse(bad, false, true),
            Err(Failure::BadResponse(_))
        ));
    }

    #[test]
    fn body_without_framing_runs_to_the_close() {
        let buf = b"HTTP/1.1 200 OK\r\n\r\nhello";
        assert_eq!(parse(buf, false, true), Ok(None));
        assert_eq!(parse(buf, true, true), Ok(Some(response(200, "hello"))));
    }

    #[test]
    fn chunked_bodies_are_decoded() {
        let buf = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
                    4;ext=1\r\nrea\r\r\n3\r\ndy\n\r\n0\r\n\r\n";
        assert_eq!(
            parse(buf, false, true),
            Ok(Some(response(200, "rea\rdy\n")))
        );
        // Cut anywhere before the last chunk: more is needed, or at the
        // end, what arrived is judged.
        let head = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        for cut in head..buf.len() - 5 {
            assert_eq!(parse(&buf[..cut], false, true), Ok(None), "cut {cut}");
            let Ok(Some(partial)) = parse(&buf[..cut], true, true) else {
                panic!("cut {cut}");
            };
            assert!(b"rea\rdy\n".starts_with(&partial.body), "cut {cut}");
        }
        let bad = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        assert!(matches!(
            parse(bad, false, true),
            Err(Failure::BadResponse(_))
        ));
        let no_crlf = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc";
        assert!(matches!(
            parse(no_crlf, false, true),
            Err(Failure::BadResponse(_))
        ));
    }

    #[test]
    fn interim_responses_are_skipped() {
        let buf = b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n\
                    HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(parse(buf, false, true), Ok(Some(response(404, ""))));
        assert_eq!(parse(&buf[..45], false, true), Ok(None));
    }

    #[test]
    fn garbage_and_early_close_are_typed_errors() {
        assert_eq!(parse(b"", true, false), Err(Failure::Reset));
        assert!(matches!(
            parse(b"SSH-2.0-OpenSSH_9.2\r\n", false, false),
            Err(Failure::BadResponse(_))
        ));
        assert!(matches!(
            parse(b"HTTP/1.1 200 OK\r\nX: y", true, false),
            Err(Failure::BadResponse(_))
        ));
        let endless = [b"HTTP/1.1 200 OK\r\n".as_slice(), &[b'a'; MAX_RESPONSE]].concat();
        assert!(matches!(
            parse(&endless[..MAX_RESPONSE], true, false),
            Err(Failure::BadResponse(_))
        ));
    }

    #[test]
    fn substring_search() {
        assert!(contains(b"abc", b""));
        assert!(contains(b"abc", b"bc"));
        assert!(!contains(b"abc", b"abcd"));
        assert!(!contains(b"", b"a"));
    }

    #[tokio::test]
    async fn exchange_over_an_in_memory_stream() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        let serve = tokio::spawn(async move {
            let mut request = vec![0; 512];
            let n = server.read(&mut request).await.unwrap();
            request.truncate(n);
            server
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nready\n")
                .await
                .unwrap();
            request
        });
        let req = request("/h", "10.1.1.1".parse().unwrap(), 80, 80);
        let result = super::check(&mut client, &check(&[200], Some("ready")), &req).await;
        assert_eq!(result, CheckResult::Success);
        let seen = serve.await.unwrap();
        assert!(seen.starts_with(b"GET /h HTTP/1.1\r\n"));
    }
}
