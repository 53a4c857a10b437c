//! The engine's IO: one thread with a single-threaded runtime that owns the UDP socket and feeds the
//! [`Core`]; and [`Sfu`], the handle that starts it and sends it [`Command`]s.
//!
//! The loop waits for a [`Command`], a datagram or the core's next timeout; hands the input to the core
//! with the time it arrived; gives the core the time again (due timeouts, room sweep, settling); then
//! sends the datagrams and reports the events the core has for it. Nothing here decides anything.

use std::{
    net::SocketAddr,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use tokio::{net::UdpSocket, sync::mpsc};

use super::{
    Command, SfuConfig, SfuEvent, SfuStats,
    core::{Core, Output},
    now_ms,
};

/// A running SFU: cheap to clone.
#[derive(Clone)]
pub struct Sfu {
    pub(crate) config: Arc<SfuConfig>,
    pub(crate) commands: mpsc::UnboundedSender<Command>,
    pub(crate) next_client: Arc<AtomicU64>,
    listen_url: Arc<OnceLock<String>>,
    pub stats: Arc<SfuStats>,
    /// The UDP address media goes to.
    pub media_addr: SocketAddr,
}

impl std::fmt::Debug for Sfu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sfu").field("url", &self.url()).field("media_addr", &self.media_addr).finish()
    }
}

impl Sfu {
    /// Binds the UDP socket and starts the engine thread. Events arrive on the returned receiver.
    pub fn start(config: SfuConfig) -> std::io::Result<(Sfu, mpsc::UnboundedReceiver<SfuEvent>)> {
        let socket = std::net::UdpSocket::bind(config.udp_bind)?;
        socket.set_nonblocking(true)?;
        let bound = socket.local_addr()?;
        let media_addr = SocketAddr::new(config.advertise_ip, bound.port());
        let (tx, rx) = mpsc::unbounded_channel();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let stats = Arc::new(SfuStats::default());
        let config = Arc::new(config);
        spawn(socket, media_addr, config.clone(), rx, events_tx, stats.clone())?;
        let sfu = Sfu {
            config,
            commands: tx,
            next_client: Arc::new(AtomicU64::new(1)),
            listen_url: Arc::default(),
            stats,
            media_addr,
        };
        Ok((sfu, events_rx))
    }

    /// Where clients connect when no URL was configured (the first call wins).
    pub fn set_listen_url(&self, url: String) {
        let _ = self.listen_url.set(url);
    }

    /// The URL clients connect to, once known.
    pub fn url(&self) -> Option<String> {
        self.config.url.clone().or_else(|| self.listen_url.get().cloned())
    }

    pub(crate) fn send(&self, c: Command) {
        let _ = self.commands.send(c);
    }

    pub(crate) fn client_id(&self) -> u64 {
        self.next_client.fetch_add(1, Ordering::Relaxed)
    }
}

/// Datagrams read per wake-up before the touched peers are polled.
const READ_BATCH: usize = 64;

fn spawn(
    socket: std::net::UdpSocket,
    media_addr: SocketAddr,
    config: Arc<SfuConfig>,
    commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<SfuEvent>,
    stats: Arc<SfuStats>,
) -> std::io::Result<()> {
    std::thread::Builder::new().name("sfu".into()).spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => return tracing::error!(error = %e, "the SFU engine could not start"),
        };
        rt.block_on(async move {
            let socket = match UdpSocket::from_std(socket) {
                Ok(s) => s,
                Err(e) => return tracing::error!(error = %e, "the SFU socket could not be registered"),
            };
            let core = Core::new(&config, media_addr, stats, Instant::now(), now_ms());
            run(core, socket, commands, events).await;
        });
    })?;
    Ok(())
}

/// Until the command channel closes (every `Sfu` handle dropped).
async fn run(
    mut core: Core,
    socket: UdpSocket,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<SfuEvent>,
) {
    let mut buf = vec![0u8; 2048];
    loop {
        let wake = core.poll_timeout();
        tokio::select! {
            cmd = commands.recv() => {
                let Some(cmd) = cmd else { return };
                core.handle_command(Instant::now(), cmd);
            }
            r = socket.recv_from(&mut buf) => {
                if let Ok((n, source)) = r {
                    core.handle_datagram(Instant::now(), source, &buf[..n]);
                    for _ in 1..READ_BATCH {
                        match socket.try_recv_from(&mut buf) {
                            Ok((n, source)) => core.handle_datagram(Instant::now(), source, &buf[..n]),
                            Err(_) => break,
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
        core.handle_timeout(Instant::now());
        while let Some(out) = core.poll_output() {
            match out {
                // A full socket buffer drops the datagram, as the network would; str0m copes with loss.
                Output::Transmit { destination, contents } => {
                    let _ = socket.try_send_to(&contents, destination);
                }
                Output::Event(e) => {
                    let _ = events.send(e);
                }
            }
        }
    }
}
