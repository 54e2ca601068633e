//! Long-lived TCP streams for tests that hold a connection across an event
//! (a failover, a reload) and check that no byte is lost: an echo server
//! and a client that checks every byte it gets back.
use std::{
    io::{self, Read, Write},
    net::{SocketAddr, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, Result, bail};

use crate::{Netns, http::connect_long_lived, server::Server};

/// A TCP echo server inside a namespace; stopped on drop.
#[derive(Debug)]
pub struct EchoBackend {
    bytes: Arc<AtomicU64>,
    server: Server,
}

impl EchoBackend {
    /// Starts the server on `addr` inside `ns` (port 0 picks a free port).
    pub fn start(ns: &Netns, addr: SocketAddr) -> Result<EchoBackend> {
        let bytes = Arc::new(AtomicU64::new(0));
        let handler = {
            let bytes = Arc::clone(&bytes);
            Arc::new(move |stream| echo(stream, &bytes))
        };
        let server = Server::start(ns, addr, &format!("echo {addr}"), handler)
            .context("starting the echo backend")?;
        Ok(EchoBackend { bytes, server })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.server.accepted()
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.server.open()
    }

    /// Bytes received so far, over all connections. Each is counted before
    /// it is echoed: once a client has its bytes back, they are counted.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Stops the server now, closing every open connection.
    pub fn stop(&mut self) {
        self.server.stop();
    }
}

fn echo(mut stream: TcpStream, bytes: &AtomicU64) -> io::Result<()> {
    let mut buffer = [0; 16 * 1024];
    loop {
        let read = stream.read(&mut buffer)?;
        if read == 0 {
            return Ok(());
        }
        // Counted before the echo, so that a client that got its echo can
        // rely on the count.
        bytes.fetch_add(read as u64, Ordering::Relaxed);
        stream.write_all(&buffer[..read])?;
    }
}

/// A client connection to an echo server that sends a known byte sequence
/// and checks that every byte comes back, in order.
#[derive(Debug)]
pub struct EchoStream {
    stream: TcpStream,
    /// Bytes sent and verified so far; also where the pattern continues.
    verified: u64,
}

impl EchoStream {
    /// Connects from inside `ns` to the echo server at `addr`. Every later
    /// read and write on the stream gives up after `timeout`.
    pub fn connect(ns: &Netns, addr: SocketAddr, timeout: Duration) -> Result<EchoStream> {
        let stream = connect_long_lived(ns, addr, timeout)?;
        Ok(EchoStream {
            stream,
            verified: 0,
        })
    }

    /// Sends the next `len` bytes of the sequence and checks the echo.
    /// Errors if the connection broke, timed out or a byte differs.
    pub fn exchange(&mut self, len: usize) -> Result<()> {
        let sent: Vec<u8> = (self.verified..).take(len).map(pattern).collect();
        self.stream
            .write_all(&sent)
            .with_context(|| format!("sending after {} verified bytes", self.verified))?;
        let mut echoed = vec![0; len];
        self.stream
            .read_exact(&mut echoed)
            .with_context(|| format!("reading the echo after {} verified bytes", self.verified))?;
        if let Some(offset) = sent.iter().zip(&echoed).position(|(a, b)| a != b) {
            bail!(
                "byte {} of the stream came back as {:#04x}, sent {:#04x}",
                self.verified + offset as u64,
                echoed[offset],
                sent[offset]
            );
        }
        self.verified += len as u64;
        Ok(())
    }

    /// Bytes sent and echoed back intact so far.
    pub fn verified(&self) -> u64 {
        self.verified
    }

    /// The client's local address (its source port identifies the flow).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.stream.local_addr()?)
    }
}

/// The byte at `offset` of the test sequence: a counter mixed so that lost,
/// repeated or reordered bytes show.
fn pattern(offset: u64) -> u8 {
    (offset.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8
}
