//! A loopback TCP proxy between agents and the broker that can pass, delay, blackhole, reset,
//! throttle and shape traffic: the poor 4G and ADSL links of township clinics, on demand.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
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
    /// A WAN link, each direction on its own: bytes wait in the bottleneck's queue, leave it at
    /// `bytes_per_s`, and arrive `one_way_delay` later (see [`Shaper`]). A round trip is twice
    /// the delay plus the time to send the bytes and whatever queued before them.
    Shape {
        /// Rate of the bottleneck, bytes per second (1 Mbit/s is 125,000).
        bytes_per_s: u64,
        /// Propagation delay, one way.
        one_way_delay: Duration,
    },
}

/// Bytes the shaper schedules as one unit: about one TCP segment on an Ethernet-sized path.
pub const SEGMENT: usize = 1460;

/// The schedule of one direction of a shaped link: a FIFO bottleneck that sends at a fixed rate,
/// then a fixed propagation delay. Time is an argument; the proxy reads the clock.
///
/// The queue at the bottleneck holds at most about [`Shaper::QUEUE_TIME`] of the link's time
/// (at least 16 KiB), as a modem's buffer does; the proxy stops reading while it is full, so
/// further bytes wait in the sender's socket, as they do behind a real link.
#[derive(Debug, Clone)]
pub struct Shaper {
    bytes_per_s: u64,
    one_way_delay: Duration,
    /// When the bottleneck will have sent everything queued so far.
    busy_until: Option<Instant>,
}

impl Shaper {
    /// How much of the link's time the bottleneck's queue holds.
    pub const QUEUE_TIME: Duration = Duration::from_millis(250);

    /// A link of `bytes_per_s` (at least 1) and `one_way_delay`.
    pub fn new(bytes_per_s: u64, one_way_delay: Duration) -> Self {
        Self { bytes_per_s: bytes_per_s.max(1), one_way_delay, busy_until: None }
    }

    fn time_for(&self, bytes: u64) -> Duration {
        Duration::from_secs_f64(bytes as f64 / self.bytes_per_s as f64)
    }

    /// The queue's capacity in bytes.
    pub fn queue_limit(&self) -> u64 {
        ((self.bytes_per_s as f64 * Self::QUEUE_TIME.as_secs_f64()) as u64).max(16 * 1024)
    }

    /// Bytes waiting at the bottleneck at `now` (not yet sent onto the wire).
    pub fn queued(&self, now: Instant) -> u64 {
        self.busy_until.map_or(0, |b| {
            let left = b.saturating_duration_since(now);
            (left.as_secs_f64() * self.bytes_per_s as f64).ceil() as u64
        })
    }

    /// When the queue can take another segment: `now` if it can already.
    pub fn room_at(&self, now: Instant) -> Instant {
        let limit = self.queue_limit().saturating_sub(SEGMENT as u64);
        match self.busy_until {
            Some(b) if self.queued(now) > limit => b - self.time_for(limit),
            _ => now,
        }
    }

    /// Queues `bytes` at `now` and returns when their last byte arrives at the far end.
    pub fn send(&mut self, now: Instant, bytes: usize) -> Instant {
        let start = self.busy_until.map_or(now, |b| b.max(now));
        let done = start + self.time_for(bytes as u64);
        self.busy_until = Some(done);
        done + self.one_way_delay
    }
}

/// A running proxy; dropping it stops it.
pub struct FaultProxy {
    addr: SocketAddr,
    mode: watch::Sender<LinkMode>,
    stop: CancellationToken,
    /// Bytes delivered towards the target (up) and back to the clients (down).
    delivered: Arc<[AtomicU64; 2]>,
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
        let delivered = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let counts = delivered.clone();
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
                let (rx, token, counts) = (rx.clone(), token.clone(), counts.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else { return };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let conn = CancellationToken::new();
                    let a = tokio::spawn(direction(cr, sw, rx.clone(), conn.clone(), (counts.clone(), 0)));
                    let b = tokio::spawn(direction(sr, cw, rx, conn.clone(), (counts, 1)));
                    tokio::select! {
                        _ = token.cancelled() => conn.cancel(),
                        _ = conn.cancelled() => {}
                    }
                    let _ = a.await;
                    let _ = b.await;
                });
            }
        });
        Ok(Self { addr, mode, stop, delivered })
    }

    /// The address agents should connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `mqtt://` URL of the proxy.
    pub fn url(&self) -> String {
        format!("mqtt://{}", self.addr)
    }

    /// Bytes delivered so far from the clients to the target, over every connection.
    pub fn bytes_up(&self) -> u64 {
        self.delivered[0].load(Ordering::Relaxed)
    }

    /// Bytes delivered so far from the target back to the clients, over every connection.
    pub fn bytes_down(&self) -> u64 {
        self.delivered[1].load(Ordering::Relaxed)
    }

    /// Changes what the link does, for every connection at once.
    pub fn set(&self, mode: LinkMode) {
        let _ = self.mode.send(mode);
    }
}

/// Bytes on their way, and when they may be written out.
type Segment = (Instant, Vec<u8>);

/// Where a direction counts what it delivered: the proxy's counters and which one.
type Counter = (Arc<[AtomicU64; 2]>, usize);

/// One direction of a connection: a reader that applies the mode, and a writer that delivers
/// each segment at its time, in order (a shaped link keeps bytes "on the wire" while the reader
/// goes on reading).
async fn direction(
    from: tokio::net::tcp::OwnedReadHalf,
    to: tokio::net::tcp::OwnedWriteHalf,
    mode: watch::Receiver<LinkMode>,
    conn: CancellationToken,
    counter: Counter,
) {
    // Bounded, so a receiver that stops reading holds the sender back (as TCP's window does).
    let (tx, rx) = mpsc::channel::<Segment>(256);
    let writer = tokio::spawn(deliver(rx, to, mode.clone(), conn.clone(), counter));
    pump(from, tx, mode, conn.clone()).await;
    // The sender closed (or failed): what is on the wire still arrives, then both directions end.
    let _ = writer.await;
    conn.cancel();
}

/// Waits while the link is dead; false if the connection ended meanwhile.
async fn while_blackholed(mode: &mut watch::Receiver<LinkMode>, conn: &CancellationToken) -> bool {
    while *mode.borrow() == LinkMode::Blackhole {
        tokio::select! {
            _ = conn.cancelled() => return false,
            changed = mode.changed() => if changed.is_err() { return false },
        }
    }
    true
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    tx: mpsc::Sender<Segment>,
    mut mode: watch::Receiver<LinkMode>,
    conn: CancellationToken,
) {
    let mut buf = vec![0u8; 16 * 1024];
    // The shaped link's state, for the parameters it was made with.
    let mut shaper: Option<((u64, Duration), Shaper)> = None;
    loop {
        // A dead link: read nothing, so bytes queue up in the sockets until the link returns.
        if !while_blackholed(&mut mode, &conn).await {
            return;
        }
        let current = *mode.borrow();
        if current == LinkMode::Reset {
            conn.cancel();
            return;
        }
        if let LinkMode::Shape { bytes_per_s, one_way_delay } = current {
            let params = (bytes_per_s, one_way_delay);
            if shaper.as_ref().is_none_or(|(p, _)| *p != params) {
                shaper = Some((params, Shaper::new(bytes_per_s, one_way_delay)));
            }
            // The bottleneck's queue is full: stop reading until it has room.
            let room = shaper.as_ref().map_or_else(Instant::now, |(_, s)| s.room_at(Instant::now()));
            if room > Instant::now() {
                tokio::select! {
                    _ = conn.cancelled() => return,
                    _ = mode.changed() => {}
                    _ = tokio::time::sleep_until(room) => {}
                }
                continue;
            }
        } else {
            shaper = None;
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
                // The writer delivers what is queued, then the connection ends.
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
        };
        let current = *mode.borrow();
        let segments: Vec<Segment> = match current {
            LinkMode::Pass => vec![(Instant::now(), buf[..n].to_vec())],
            LinkMode::Delay(d) => {
                tokio::time::sleep(d).await;
                vec![(Instant::now(), buf[..n].to_vec())]
            }
            LinkMode::Blackhole => {
                // Read just before the link died: the writer holds it until the link returns.
                debug!(bytes = n, "held by a dead link");
                vec![(Instant::now(), buf[..n].to_vec())]
            }
            LinkMode::Reset => {
                conn.cancel();
                return;
            }
            LinkMode::Throttle(bps) => {
                let secs = n as f64 / bps.max(1) as f64;
                tokio::time::sleep(Duration::from_secs_f64(secs)).await;
                vec![(Instant::now(), buf[..n].to_vec())]
            }
            LinkMode::Shape { bytes_per_s, one_way_delay } => {
                let s = &mut shaper
                    .get_or_insert_with(|| ((bytes_per_s, one_way_delay), Shaper::new(bytes_per_s, one_way_delay)))
                    .1;
                let now = Instant::now();
                buf[..n].chunks(SEGMENT).map(|c| (s.send(now, c.len()), c.to_vec())).collect()
            }
        };
        for seg in segments {
            tokio::select! {
                _ = conn.cancelled() => return,
                sent = tx.send(seg) => if sent.is_err() { return },
            }
        }
    }
}

/// Writes each segment once its time has come, holding everything while the link is dead.
async fn deliver(
    mut rx: mpsc::Receiver<Segment>,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<LinkMode>,
    conn: CancellationToken,
    (counts, which): Counter,
) {
    let mut peeked: Option<Segment> = None;
    loop {
        let next = match peeked.take() {
            Some(s) => Some(s),
            None => tokio::select! {
                _ = conn.cancelled() => return,
                s = rx.recv() => s,
            },
        };
        let Some((at, mut out)) = next else { return };
        tokio::select! {
            _ = conn.cancelled() => return,
            _ = tokio::time::sleep_until(at) => {}
        }
        if !while_blackholed(&mut mode, &conn).await {
            return;
        }
        // What else is already due goes out in the same write.
        while out.len() < 64 * 1024 {
            match rx.try_recv() {
                Ok(s) if s.0 <= Instant::now() => out.extend_from_slice(&s.1),
                Ok(s) => {
                    peeked = Some(s);
                    break;
                }
                Err(_) => break,
            }
        }
        if to.write_all(&out).await.is_err() {
            conn.cancel();
            return;
        }
        counts[which].fetch_add(out.len() as u64, Ordering::Relaxed);
    }
}

/// Shared handle type for tests that hand the proxy around.
pub type SharedProxy = Arc<FaultProxy>;

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_shaped_link_sends_at_its_rate_then_adds_the_delay() {
        let t0 = Instant::now();
        let mut s = Shaper::new(1000, ms(100));
        // 500 bytes take 0.5 s to leave the bottleneck, then 0.1 s on the wire.
        assert_eq!(s.send(t0, 500), t0 + ms(600));
        // Queued at the same moment, the next waits for the first to leave.
        assert_eq!(s.send(t0, 250), t0 + ms(850));
        assert_eq!(s.queued(t0), 750);
        assert_eq!(s.queued(t0 + ms(500)), 250);
        assert_eq!(s.queued(t0 + ms(2000)), 0);
        // After the link has been idle, bytes wait for nothing but themselves and the wire.
        assert_eq!(s.send(t0 + ms(3000), 125), t0 + ms(3225));
    }

    #[test]
    fn the_bottleneck_queue_is_bounded_and_says_when_it_has_room() {
        let t0 = Instant::now();
        let mut s = Shaper::new(100_000, ms(50));
        assert_eq!(s.queue_limit(), 25_000, "250 ms of a 100 kB/s link");
        assert_eq!(Shaper::new(1000, ms(50)).queue_limit(), 16 * 1024, "never under 16 KiB");
        assert_eq!(s.room_at(t0), t0);
        for _ in 0..40 {
            s.send(t0, 1000);
        }
        let room = s.room_at(t0);
        assert!(room > t0, "40 kB queued on a 25 kB queue: no room now");
        assert!(s.queued(room) <= s.queue_limit() - SEGMENT as u64, "room for a segment then");
        assert_eq!(s.room_at(room), room);
    }

    /// A server that echoes what it reads.
    async fn echo_server() -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        Ok(addr)
    }

    #[tokio::test]
    async fn bytes_through_a_shaped_link_arrive_whole_in_order_and_no_sooner_than_the_link_allows()
    -> std::io::Result<()> {
        let proxy = FaultProxy::start(echo_server().await?).await?;
        proxy.set(LinkMode::Shape { bytes_per_s: 100_000, one_way_delay: ms(50) });
        let mut c = TcpStream::connect(proxy.addr()).await?;
        let mut one = [0u8; 1];
        let t = std::time::Instant::now();
        c.write_all(b"x").await?;
        c.read_exact(&mut one).await?;
        assert!(t.elapsed() >= ms(100), "a round trip is two one-way delays, took {:?}", t.elapsed());

        let sent: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let t = std::time::Instant::now();
        let (mut r, mut w) = c.into_split();
        let data = sent.clone();
        // The writer half is handed back, not dropped: like TCP's peer, the proxy ends both
        // directions when one side closes.
        let writer = tokio::spawn(async move { w.write_all(&data).await.map(|()| w) });
        let mut back = vec![0u8; sent.len()];
        r.read_exact(&mut back).await?;
        let _w = writer.await.map_err(std::io::Error::other)??;
        assert!(back == sent, "the echo differs from what was sent");
        // 200 kB at 100 kB/s is 2 s each way; the two directions overlap.
        assert!(t.elapsed() >= ms(2000), "200 kB crossed a 100 kB/s link in {:?}", t.elapsed());
        Ok(())
    }

    #[tokio::test]
    async fn what_is_on_the_wire_when_the_sender_closes_still_arrives() -> std::io::Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let target = listener.local_addr()?;
        let proxy = FaultProxy::start(target).await?;
        proxy.set(LinkMode::Shape { bytes_per_s: 200_000, one_way_delay: ms(30) });
        let mut c = TcpStream::connect(proxy.addr()).await?;
        let (mut server, _) = listener.accept().await?;
        let sent = vec![42u8; 50_000];
        c.write_all(&sent).await?;
        c.shutdown().await?;
        drop(c);
        let mut got = Vec::new();
        server.read_to_end(&mut got).await?;
        assert_eq!(got.len(), sent.len());
        assert_eq!((proxy.bytes_up(), proxy.bytes_down()), (50_000, 0));
        Ok(())
    }

    #[tokio::test]
    async fn switching_modes_mid_stream_keeps_the_bytes_in_order() -> std::io::Result<()> {
        let proxy = FaultProxy::start(echo_server().await?).await?;
        proxy.set(LinkMode::Shape { bytes_per_s: 50_000, one_way_delay: ms(20) });
        let c = TcpStream::connect(proxy.addr()).await?;
        let (mut r, mut w) = c.into_split();
        let sent: Vec<u8> = (0..60_000u32).map(|i| (i % 253) as u8).collect();
        let data = sent.clone();
        let writer = tokio::spawn(async move { w.write_all(&data).await.map(|()| w) });
        let mut back = vec![0u8; sent.len()];
        r.read_exact(&mut back[..10_000]).await?;
        proxy.set(LinkMode::Pass);
        r.read_exact(&mut back[10_000..]).await?;
        let _w = writer.await.map_err(std::io::Error::other)??;
        assert!(back == sent, "bytes reordered or changed across the switch");
        Ok(())
    }
}
