//! The MQTT uplink: seals and spools outgoing bodies, publishes the spool in lane order,
//! removes what the hub acks, stores reports and answers them with receipts.
//!
//! rumqttc's `EventLoop` is polled by one task of its own ([`poll_loop`]), which only forwards
//! what it sees. This task never awaits the client's request channel (it uses `try_publish`), so
//! the two can never wait on each other. rumqttc keeps in-flight QoS 1 publishes only in memory;
//! the spool is the durable copy, and everything unacked is republished after a reconnect or an
//! ack timeout (the hub deduplicates on device and seq).

use crate::clock::now_ms;
use crate::reports::ReportStore;
use crate::spool::{Spool, SpoolError};
use crate::stats::AgentStats;
use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Packet, Publish, QoS};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};
use yilian_protocol::envelope::{Envelope, Header, seal};
use yilian_protocol::keys::{PublicKey, SigningKey};
use yilian_protocol::limits;
use yilian_protocol::message::{Lane, LinkState, Payload, ReportReceipt, Status};
use yilian_protocol::topic::{Channel, Topic};

/// Something to send to the hub.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Priority lane.
    pub lane: Lane,
    /// The body.
    pub payload: Payload,
}

/// Uplink settings.
#[derive(Debug, Clone)]
pub struct UplinkConfig {
    /// Site id.
    pub site: String,
    /// Device id (= MQTT client id).
    pub device: String,
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Resend unacked envelopes after this long.
    pub ack_timeout: Duration,
    /// Status heartbeat interval.
    pub heartbeat: Duration,
    /// Unacked envelopes in flight at most.
    pub window: usize,
}

enum LinkEvent {
    Connected,
    Disconnected(String),
    Message(Publish),
}

/// The uplink's state, owned by its task.
struct Uplink {
    cfg: UplinkConfig,
    key: Arc<SigningKey>,
    hub_key: PublicKey,
    spool: Arc<Mutex<Spool>>,
    reports: ReportStore,
    stats: Arc<AgentStats>,
    client: AsyncClient,
    up: Topic,
    status: Topic,
    inflight: HashMap<u64, Instant>,
    connected: bool,
    last_problem: String,
}

fn lock(spool: &Mutex<Spool>) -> std::sync::MutexGuard<'_, Spool> {
    // A panic while holding the lock cannot leave the spool inconsistent on disk (every change
    // is a single rename or unlink), so a poisoned lock is still safe to use.
    spool.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

fn status_payload(state: LinkState, spool: &Spool, detail: &str) -> Payload {
    Payload::Status(Status {
        state,
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        spool_entries: spool.len() as u64,
        spool_bytes: spool.bytes(),
        detail: detail.to_string(),
    })
}

/// MQTT options for the agent: persistent session, packet limits, and a signed "offline" will.
fn mqtt_options(cfg: &UplinkConfig, status: &Topic, will: Vec<u8>) -> MqttOptions {
    let mut o = MqttOptions::new(cfg.device.clone(), cfg.host.clone(), cfg.port);
    o.set_keep_alive(Duration::from_secs(15));
    o.set_clean_session(false);
    o.set_max_packet_size(limits::MQTT_MAX_PACKET, limits::MQTT_MAX_PACKET);
    o.set_inflight(cfg.window.clamp(1, u16::MAX as usize) as u16);
    o.set_request_channel_capacity(cfg.window * 2 + 16);
    o.set_last_will(LastWill::new(status.to_string(), will, QoS::AtLeastOnce, true));
    o
}

async fn poll_loop(mut eventloop: EventLoop, tx: mpsc::Sender<LinkEvent>, shutdown: CancellationToken) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let ev = tokio::select! {
            _ = shutdown.cancelled() => return,
            ev = eventloop.poll() => ev,
        };
        let forward = match ev {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff = Duration::from_millis(200);
                Some(LinkEvent::Connected)
            }
            Ok(Event::Incoming(Packet::Publish(p))) => Some(LinkEvent::Message(p)),
            Ok(_) => None,
            Err(e) => {
                let _ = tx.send(LinkEvent::Disconnected(e.to_string())).await;
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                None
            }
        };
        if let Some(f) = forward
            && tx.send(f).await.is_err()
        {
            return;
        }
    }
}

/// Runs the uplink until `rx` closes: every producer has stopped and what they sent is spooled.
pub async fn run(
    cfg: UplinkConfig,
    key: Arc<SigningKey>,
    hub_key: PublicKey,
    spool: Spool,
    reports: ReportStore,
    mut rx: mpsc::Receiver<Outgoing>,
    stats: Arc<AgentStats>,
) {
    let up = match Topic::new(&cfg.site, &cfg.device, Channel::Up) {
        Ok(t) => t,
        Err(e) => {
            error!(error = %e, "invalid site or device id");
            return;
        }
    };
    let status = up.with_channel(Channel::Status);
    let will = seal(
        &key,
        Header::new(&key, &cfg.device, 0, now_ms(), Lane::Stream),
        &status,
        &status_payload(LinkState::Offline, &spool, "connection lost"),
    )
    .unwrap_or_default();
    let (client, eventloop) = AsyncClient::new(mqtt_options(&cfg, &status, will), cfg.window * 2 + 16);
    let (link_tx, mut link_rx) = mpsc::channel(256);
    let poll_token = CancellationToken::new();
    let poller = tokio::spawn(poll_loop(eventloop, link_tx, poll_token.clone()));
    let mut u = Uplink {
        cfg,
        key,
        hub_key,
        spool: Arc::new(Mutex::new(spool)),
        reports,
        stats,
        client,
        status,
        up,
        inflight: HashMap::new(),
        connected: false,
        last_problem: String::new(),
    };
    u.update_spool_stats();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut heartbeat = tokio::time::interval(u.cfg.heartbeat);
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(o) => {
                    u.spool_outgoing(o).await;
                    u.pump().await;
                }
                None => break,
            },
            Some(ev) = link_rx.recv() => u.on_link(ev).await,
            _ = tick.tick() => u.pump().await,
            _ = heartbeat.tick() => u.publish_status(LinkState::Heartbeat),
        }
    }
    // Give in-flight acks a moment, then leave cleanly (the will is not sent on a clean disconnect).
    let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
    while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, link_rx.recv()).await {
        u.on_link(ev).await;
    }
    let _ = u.client.try_disconnect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    poll_token.cancel();
    let _ = poller.await;
    info!(pending = lock(&u.spool).len(), "uplink stopped; unacked envelopes stay in the spool");
}

impl Uplink {
    fn update_spool_stats(&self) {
        let s = lock(&self.spool);
        self.stats.spool_entries.store(s.len() as u64, std::sync::atomic::Ordering::Relaxed);
        self.stats.spool_bytes.store(s.bytes(), std::sync::atomic::Ordering::Relaxed);
    }

    fn problem(&mut self, what: String) {
        error!(problem = %what, "agent problem");
        AgentStats::add(&self.stats.problems, 1);
        self.last_problem = what;
        self.publish_status(LinkState::Heartbeat);
    }

    /// Seals `o` with the next seq and writes it to the spool (fsync) before anything is sent.
    async fn spool_outgoing(&mut self, o: Outgoing) {
        let (spool, key, device, up) = (self.spool.clone(), self.key.clone(), self.cfg.device.clone(), self.up.clone());
        let now = now_ms();
        let result = blocking(move || -> Result<Result<u64, String>, SpoolError> {
            let mut s = lock(&spool);
            let seq = s.allocate_seq()?;
            match seal(&key, Header::new(&key, &device, seq, now, o.lane), &up, &o.payload) {
                Ok(bytes) => {
                    s.append(o.lane, seq, &bytes)?;
                    Ok(Ok(seq))
                }
                Err(e) => Ok(Err(e.to_string())),
            }
        })
        .await;
        match result {
            Some(Ok(Ok(seq))) => debug!(seq, "spooled"),
            Some(Ok(Err(e))) => self.problem(format!("cannot seal a message: {e}")),
            Some(Err(e)) => self.problem(format!("spool write failed, message not sent: {e}")),
            None => self.problem("spool task failed".into()),
        }
        self.update_spool_stats();
    }

    /// Publishes spooled envelopes in lane order while the window has room.
    async fn pump(&mut self) {
        if !self.connected {
            return;
        }
        let now = Instant::now();
        let timeout = self.cfg.ack_timeout;
        self.inflight.retain(|_, sent| now.duration_since(*sent) < timeout);
        let room = self.cfg.window.saturating_sub(self.inflight.len());
        if room == 0 {
            return;
        }
        let spool = self.spool.clone();
        let skip: std::collections::HashSet<u64> = self.inflight.keys().copied().collect();
        let batch = blocking(move || {
            let s = lock(&spool);
            let seqs: Vec<u64> = s.pending().map(|(_, seq)| seq).filter(|seq| !skip.contains(seq)).take(room).collect();
            seqs.into_iter().filter_map(|seq| s.read(seq).ok().flatten().map(|b| (seq, b))).collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        let topic = self.up.to_string();
        for (seq, bytes) in batch {
            if self.client.try_publish(topic.clone(), QoS::AtLeastOnce, false, bytes).is_err() {
                break; // request channel full: retry on the next tick
            }
            self.inflight.insert(seq, Instant::now());
            AgentStats::add(&self.stats.publishes, 1);
        }
    }

    fn publish_status(&self, state: LinkState) {
        if !self.connected {
            return;
        }
        let payload = status_payload(state, &lock(&self.spool), &self.last_problem);
        let header = Header::new(&self.key, &self.cfg.device, 0, now_ms(), Lane::Stream);
        match seal(&self.key, header, &self.status, &payload) {
            Ok(bytes) => {
                let _ = self.client.try_publish(self.status.to_string(), QoS::AtLeastOnce, true, bytes);
            }
            Err(e) => warn!(error = %e, "cannot seal status"),
        }
    }

    async fn on_link(&mut self, ev: LinkEvent) {
        match ev {
            LinkEvent::Connected => {
                info!(device = %self.cfg.device, "connected to broker");
                self.connected = true;
                self.stats.connected.store(1, std::sync::atomic::Ordering::Relaxed);
                // Whatever was in flight may be lost with a broker restart: send it all again.
                self.inflight.clear();
                for ch in [Channel::Ack, Channel::Report] {
                    let t = self.up.with_channel(ch).to_string();
                    if let Err(e) = self.client.try_subscribe(t, QoS::AtLeastOnce) {
                        warn!(error = %e, "subscribe failed");
                    }
                }
                self.publish_status(LinkState::Online);
                self.pump().await;
            }
            LinkEvent::Disconnected(why) => {
                if self.connected {
                    warn!(reason = %why, "lost the broker; spooling until it is back");
                }
                self.connected = false;
                self.stats.connected.store(0, std::sync::atomic::Ordering::Relaxed);
            }
            LinkEvent::Message(p) => self.on_message(p).await,
        }
    }

    async fn on_message(&mut self, p: Publish) {
        let topic = match Topic::parse(&p.topic) {
            Ok(t) if t.device() == self.cfg.device && t.site() == self.cfg.site => t,
            _ => {
                warn!(topic = %p.topic, "message on an unexpected topic ignored");
                return;
            }
        };
        let verified = Envelope::decode(&p.payload)
            .map_err(|e| e.to_string())
            .and_then(|env| env.verify(&self.hub_key, &topic, now_ms()).map_err(|e| e.to_string()));
        let v = match verified {
            Ok(v) => v,
            Err(e) => {
                warn!(topic = %p.topic, error = %e, "rejected a message that claims to come from the hub");
                AgentStats::add(&self.stats.rejected_downlink, 1);
                return;
            }
        };
        match v.payload() {
            Payload::Ack(ack) if ack.device_id == self.cfg.device => {
                let spool = self.spool.clone();
                let ack = ack.clone();
                let removed = blocking(move || {
                    let mut s = lock(&spool);
                    let seqs: Vec<u64> = s.pending().map(|(_, seq)| seq).filter(|seq| ack.contains(*seq)).collect();
                    let mut n = 0u64;
                    for seq in seqs {
                        match s.remove(seq) {
                            Ok(true) => n += 1,
                            Ok(false) => {}
                            Err(e) => warn!(error = %e, "could not remove an acked envelope; it will be resent"),
                        }
                    }
                    (n, ack)
                })
                .await;
                if let Some((n, ack)) = removed {
                    self.inflight.retain(|seq, _| !ack.contains(*seq));
                    AgentStats::add(&self.stats.acked, n);
                }
                self.update_spool_stats();
                self.pump().await;
            }
            Payload::Report(report) => {
                let (store, r, bytes) = (self.reports.clone(), report.clone(), p.payload.to_vec());
                match blocking(move || store.store(&r, &bytes)).await {
                    Some(Ok(path)) => {
                        info!(report = %report.report_id, study = %report.study_uid, path = %path.display(), "report received");
                        AgentStats::add(&self.stats.reports, 1);
                        let receipt = Payload::ReportReceipt(ReportReceipt {
                            report_id: report.report_id.clone(),
                            study_uid: report.study_uid.clone(),
                            stored_at_ms: now_ms(),
                        });
                        self.spool_outgoing(Outgoing { lane: Lane::Stream, payload: receipt }).await;
                        self.pump().await;
                    }
                    Some(Err(e)) => self.problem(format!("cannot store report: {e}")),
                    None => self.problem("report task failed".into()),
                }
            }
            other => {
                warn!(kind = ?std::mem::discriminant(other), "unexpected message kind from the hub ignored")
            }
        }
    }
}
