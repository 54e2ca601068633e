//! What one check found: [`CheckResult`] with a typed [`Failure`] reason.
use std::io;

/// The outcome of one check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckResult {
    Success,
    /// The backend answered, or the check ended, with something wrong.
    Failure(Failure),
    /// Nothing conclusive within the check's timeout.
    Timeout,
}

impl CheckResult {
    /// Every value of [`Self::label`].
    pub const LABELS: [&'static str; 3] = ["success", "failure", "timeout"];

    /// The `result` label of `lb_health_checks_total`.
    pub fn label(&self) -> &'static str {
        Self::LABELS[self.index()]
    }

    /// The position of [`Self::label`] in [`Self::LABELS`].
    pub fn index(&self) -> usize {
        match self {
            Self::Success => 0,
            Self::Failure(_) => 1,
            Self::Timeout => 2,
        }
    }

    /// Whether the check passed.
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Success)
    }
}

impl std::fmt::Display for CheckResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Success => f.write_str("success"),
            Self::Failure(reason) => write!(f, "failure: {reason}"),
            Self::Timeout => f.write_str("timeout"),
        }
    }
}

impl From<Failure> for CheckResult {
    fn from(reason: Failure) -> Self {
        Self::Failure(reason)
    }
}

/// Why a check failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// TCP RST to the SYN, or ICMP port unreachable for a UDP probe.
    #[error("connection refused")]
    Refused,
    /// The probe itself failed (a bug: it panicked); the check counts as
    /// failed and the other checks go on.
    #[error("internal error: {0}")]
    Internal(String),
    /// No route, host or network unreachable.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The connection was reset or closed before the check completed.
    #[error("connection reset or closed early")]
    Reset,
    /// Any other socket error.
    #[error("i/o error: {0}")]
    Io(String),
    /// The check needs a port and neither the backend nor the virtual
    /// server has one.
    #[error("no port to check")]
    NoPort,
    /// An HTTP status not in `expect_status`.
    #[error("bad status {0}")]
    BadStatus(u16),
    /// The HTTP body does not contain `body_contains` (within the bytes
    /// read, see [`super::http::MAX_BODY`]).
    #[error("body does not contain the expected text")]
    BodyMismatch,
    /// The path makes no valid HTTP request (it is longer than a request
    /// target may be); configuration validation rejects such paths.
    #[error("cannot build the request: {0}")]
    Request(String),
    /// The answer is not HTTP/1.x.
    #[error("malformed response: {0}")]
    BadResponse(String),
    /// TLS handshake or record error (certificate rejected, protocol error).
    #[error("tls error: {0}")]
    Tls(String),
    /// A UDP reply that does not contain `expect`.
    #[error("reply does not contain the expected bytes")]
    ReplyMismatch,
    /// The exec check's command exited with a non-zero status.
    #[error("exit status {0}")]
    ExitStatus(i32),
    /// The exec check's command was killed by a signal.
    #[error("killed by signal {0}")]
    Signal(i32),
    /// The exec check's command could not be started.
    #[error("cannot run the command: {0}")]
    Spawn(String),
}

impl Failure {
    /// Classifies a socket error.
    /// TLS errors surface from tokio-rustls as `InvalidData` wrapping a
    /// `rustls::Error`.
    pub fn from_io(error: &io::Error) -> Self {
        use io::ErrorKind as K;
        if let Some(tls) = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Self::Tls(tls.to_string());
        }
        match error.kind() {
            K::ConnectionRefused => Self::Refused,
            K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
                Self::Reset
            }
            K::HostUnreachable | K::NetworkUnreachable | K::AddrNotAvailable => {
                Self::Unreachable(error.to_string())
            }
            _ => Self::Io(error.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_the_metric_values() {
        assert_eq!(CheckResult::Success.label(), "success");
        assert_eq!(CheckResult::Failure(Failure::Refused).label(), "failure");
        assert_eq!(CheckResult::Timeout.label(), "timeout");
    }

    #[test]
    fn reasons_read_well() {
        assert_eq!(
            CheckResult::Failure(Failure::BadStatus(503)).to_string(),
            "failure: bad status 503"
        );
        assert_eq!(Failure::ExitStatus(1).to_string(), "exit status 1");
    }

    #[test]
    fn io_errors_are_classified() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(Failure::from_io(&refused), Failure::Refused);
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(Failure::from_io(&reset), Failure::Reset);
        let unreachable = io::Error::from_raw_os_error(libc::EHOSTUNREACH);
        assert!(matches!(
            Failure::from_io(&unreachable),
            Failure::Unreachable(_)
        ));
        let other = io::Error::other("odd");
        assert_eq!(Failure::from_io(&other), Failure::Io("odd".into()));
    }
}
