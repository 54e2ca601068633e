//! The TCP server machinery shared by the lab's test servers: a listener
//! bound inside a namespace, one thread per connection, and a stop that
//! closes the listener and every open connection.
use std::{
    collections::HashMap,
    io,
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
};

use anyhow::{Context as _, Result};

use crate::Netns;

/// What a server does with one accepted connection. Errors end the
/// connection (a peer's reset is normal in tests).
pub(crate) type Handler = dyn Fn(TcpStream) -> io::Result<()> + Send + Sync;

/// A running server; stopped by [`Server::stop`] or on drop.
#[derive(Debug)]
pub(crate) struct Server {
    addr: SocketAddr,
    listener: Arc<TcpListener>,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct Shared {
    stopping: AtomicBool,
    accepted: AtomicU64,
    /// Open connections by number.
    open: Mutex<HashMap<u64, Connection>>,
}

/// An open connection as the server keeps track of it.
#[derive(Debug)]
struct Connection {
    /// A clone of the stream, to shut it down on stop.
    control: TcpStream,
    /// The thread serving it, once started.
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `addr` inside `ns` and serves every connection with `handler`
    /// on a thread of its own. `label` names the threads.
    pub(crate) fn start(
        ns: &Netns,
        addr: SocketAddr,
        label: &str,
        handler: Arc<Handler>,
    ) -> Result<Server> {
        // The listening socket belongs to the namespace it was created in;
        // the connections it accepts belong there too, whatever thread
        // serves them.
        let listener = ns
            .enter(|| TcpListener::bind(addr))
            .with_context(|| format!("{label}: binding {addr} in {}", ns.name()))?;
        let addr = listener.local_addr().context("local_addr")?;
        let listener = Arc::new(listener);
        let shared = Arc::new(Shared::default());
        let acceptor = std::thread::Builder::new()
            .name(format!("{label} accept"))
            .spawn({
                let listener = Arc::clone(&listener);
                let shared = Arc::clone(&shared);
                move || accept_loop(&listener, &shared, &handler)
            })
            .context("spawning the accept thread")?;
        Ok(Server {
            addr,
            listener,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// The bound address (with the port the kernel chose for port 0).
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub(crate) fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.shared.lock_open().len()
    }

    /// Stops accepting, shuts every open connection down (the peers see a
    /// FIN) and joins all threads. Idempotent.
    pub(crate) fn stop(&mut self) {
        let Some(acceptor) = self.acceptor.take() else {
            return;
        };
        self.shared.stopping.store(true, Ordering::SeqCst);
        // shutdown(2) on a listening socket wakes a thread blocked in
        // accept(2) on Linux, which then sees `stopping`.
        // SAFETY: shutdown on a socket fd that `self.listener` keeps open.
        unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR) };
        let _ = acceptor.join();
        // The acceptor is gone: no connection can be added any more.
        let open = std::mem::take(&mut *self.shared.lock_open());
        for connection in open.into_values() {
            let _ = connection.control.shutdown(Shutdown::Both);
            if let Some(thread) = connection.thread {
                let _ = thread.join();
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Shared {
    fn lock_open(&self) -> MutexGuard<'_, HashMap<u64, Connection>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>, handler: &Arc<Handler>) {
    loop {
        let accepted = listener.accept();
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok((stream, _peer)) = accepted else {
            // ECONNABORTED and the like concern one connection only.
            continue;
        };
        let Ok(control) = stream.try_clone() else {
            continue;
        };
        let number = shared.accepted.fetch_add(1, Ordering::Relaxed);
        // Register before the thread starts so that it can always find and
        // remove its own entry.
        shared.lock_open().insert(
            number,
            Connection {
                control,
                thread: None,
            },
        );
        let thread = std::thread::Builder::new().spawn({
            let shared = Arc::clone(shared);
            let handler = Arc::clone(handler);
            move || {
                let _ = handler(stream);
                shared.lock_open().remove(&number);
            }
        });
        let mut open = shared.lock_open();
        match thread {
            // The entry is gone if the connection already ended; the
            // finished thread then needs no join.
            Ok(thread) => {
                if let Some(connection) = open.get_mut(&number) {
                    connection.thread = Some(thread);
                }
            }
            Err(_) => {
                open.remove(&number);
            }
        }
    }
}
