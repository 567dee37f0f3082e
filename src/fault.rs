//! A loopback TCP proxy between agents and the broker that can pass, delay, blackhole, reset and
//! throttle traffic: the poor 4G and ADSL links of township clinics, on demand.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// What the link does now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LinkMode {
    /// Bytes flow.
    Pass,
    /// Bytes flow after this delay (each direction).
    Delay(Duration),
    /// Connections stay open but nothing gets through (a dead 4G link: no RST, no FIN). Like
    /// TCP over a dead link, bytes are held, not lost: if both ends are still there when the
    /// link returns, they arrive; if keepalives gave up first, the connection is gone.
    Blackhole,
    /// Existing connections are reset and new ones are refused at once.
    Reset,
    /// Bytes flow at most this fast (each direction), bytes per second.
    Throttle(u64),
}

/// A running proxy; dropping it stops it.
pub struct FaultProxy {
    addr: SocketAddr,
    mode: watch::Sender<LinkMode>,
    stop: CancellationToken,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (mode, rx) = watch::channel(LinkMode::Pass);
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = token.cancelled() => return,
                    a = listener.accept() => a,
                };
                let Ok((client, _)) = accepted else { continue };
                if *rx.borrow() == LinkMode::Reset {
                    let _ = client.set_zero_linger();
                    continue; // dropped with linger 0: the peer sees a reset
                }
                let (rx, token) = (rx.clone(), token.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else { return };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let conn = CancellationToken::new();
                    let a = tokio::spawn(pump(cr, sw, rx.clone(), conn.clone()));
                    let b = tokio::spawn(pump(sr, cw, rx, conn.clone()));
                    tokio::select! {
                        _ = token.cancelled() => conn.cancel(),
                        _ = conn.cancelled() => {}
                    }
                    let _ = a.await;
                    let _ = b.await;
                });
            }
        });
        Ok(Self { addr, mode, stop })
    }

    /// The address agents should connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `mqtt://` URL of the proxy.
    pub fn url(&self) -> String {
        format!("mqtt://{}", self.addr)
    }

    /// Changes what the link does, for every connection at once.
    pub fn set(&self, mode: LinkMode) {
        let _ = self.mode.send(mode);
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<LinkMode>,
    conn: CancellationToken,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // A dead link: read nothing, so bytes queue up in the sockets until the link returns.
        while *mode.borrow() == LinkMode::Blackhole {
            tokio::select! {
                _ = conn.cancelled() => return,
                changed = mode.changed() => if changed.is_err() { return },
            }
        }
        if *mode.borrow() == LinkMode::Reset {
            conn.cancel();
            return;
        }
        let n = tokio::select! {
            _ = conn.cancelled() => return,
            changed = mode.changed() => {
                if changed.is_err() || *mode.borrow() == LinkMode::Reset {
                    // Reset: abort both directions; the sockets close when the halves drop.
                    conn.cancel();
                    return;
                }
                continue;
            }
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => { conn.cancel(); return; }
                Ok(n) => n,
            },
        };
        let current = *mode.borrow();
        match current {
            LinkMode::Pass => {}
            LinkMode::Delay(d) => tokio::time::sleep(d).await,
            LinkMode::Blackhole => {
                // Read just before the link died: hold it until the link returns.
                while *mode.borrow() == LinkMode::Blackhole {
                    debug!(bytes = n, "held by a dead link");
                    tokio::select! {
                        _ = conn.cancelled() => return,
                        changed = mode.changed() => if changed.is_err() { return },
                    }
                }
            }
            LinkMode::Reset => {
                conn.cancel();
                return;
            }
            LinkMode::Throttle(bps) => {
                let secs = n as f64 / bps.max(1) as f64;
                tokio::time::sleep(Duration::from_secs_f64(secs)).await;
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            conn.cancel();
            return;
        }
    }
}

/// Shared handle type for tests that hand the proxy around.
pub type SharedProxy = Arc<FaultProxy>;
