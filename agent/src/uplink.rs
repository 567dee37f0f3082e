//! The MQTT uplink: seals and spools outgoing bodies, publishes the spool in lane order,
//! removes what the hub acks, stores reports and answers them with receipts.
//!
//! rumqttc's `EventLoop` is polled by one task of its own ([`poll_loop`]), which only forwards
//! what it sees. This task never awaits the client's request channel (it uses `try_publish`), so
//! the two can never wait on each other. rumqttc keeps in-flight QoS 1 publishes only in memory;
//! the spool is the durable copy, and everything unacked is republished after a reconnect or an
//! ack timeout (the hub deduplicates on device and seq).

use crate::clock::now_ms;
use crate::journey::Journeys;
use crate::quota;
use crate::reports::ReportStore;
use crate::spool::{Spool, SpoolError};
use crate::stats::AgentStats;
use crate::window::{LinkWindow, is_priority};
use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Packet, Publish, QoS};
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};
use yilian_protocol::connect::connect_password;
use yilian_protocol::envelope::{Envelope, Header, seal};
use yilian_protocol::keys::{PublicKey, SigningKey};
use yilian_protocol::limits;
use yilian_protocol::message::{Ack, Lane, LinkState, Payload, RefusalReason, ReportReceipt, Status};
use yilian_protocol::topic::{Channel, Topic};

pub use crate::window::BULK_WINDOW;

/// Something to send to the hub.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Priority lane.
    pub lane: Lane,
    /// The body.
    pub payload: Payload,
    /// Told the seq once the body is sealed and on disk (the inbox tracks acks by seq).
    pub spooled: Option<mpsc::UnboundedSender<u64>>,
}

impl Outgoing {
    /// A body for `lane`, with nobody waiting for its seq.
    pub fn new(lane: Lane, payload: Payload) -> Self {
        Self { lane, payload, spooled: None }
    }
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
    /// TLS to the broker (county CA pin, device certificate); `None` only with
    /// `insecure_plaintext`.
    pub tls: Option<rumqttc::TlsConfiguration>,
    /// Resend unacked envelopes after this long.
    pub ack_timeout: Duration,
    /// Status heartbeat interval.
    pub heartbeat: Duration,
    /// Unacked envelopes in flight at most (fewer on a slow link: see [`crate::window`]).
    pub window: usize,
    /// Spool quota in bytes (see [`crate::quota`]).
    pub spool_max_bytes: u64,
    /// The device key file, watched for a waiting rotation (see [`crate::rotation`]).
    pub key_file: Option<std::path::PathBuf>,
    /// The pinned hub key file, rewritten when the hub rotates its key.
    pub hub_key_file: Option<std::path::PathBuf>,
}

enum LinkEvent {
    Connected,
    Disconnected(String),
    Message(Publish),
}

/// What became of one outgoing body.
enum Spooled {
    /// Written under this seq; the stream ranges dropped to make room.
    Stored(u64, Vec<yilian_protocol::message::StreamGap>),
    /// A monitoring chunk with no room: not written; these ranges (it included) are dropped.
    Dropped(Vec<yilian_protocol::message::StreamGap>),
    /// Could not be sealed (over its size limit).
    Unsealable(String),
}

/// The uplink's state, owned by its task.
struct Uplink {
    cfg: UplinkConfig,
    key: Arc<SigningKey>,
    hub_key: PublicKey,
    spool: Arc<Mutex<Spool>>,
    reports: ReportStore,
    journeys: Arc<Journeys>,
    stats: Arc<AgentStats>,
    client: AsyncClient,
    up: Topic,
    status: Topic,
    /// Published and not yet acked, and what the link has shown it carries.
    window: LinkWindow,
    connected: bool,
    last_problem: String,
    /// Bodies whose spool write failed (disk full), retried in order before anything new.
    unspooled: VecDeque<Outgoing>,
    /// Rejected spool records already reported on the status topic (those found at open too).
    tampered_reported: u64,
    /// A key rotation on its way: the next key and the seq of the rotation message.
    rotation: Option<(Arc<SigningKey>, u64)>,
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

/// MQTT options for the agent: TLS, the connect password, persistent session, packet limits, and
/// a signed "offline" will.
fn mqtt_options(cfg: &UplinkConfig, key: &SigningKey, status: &Topic, will: Vec<u8>) -> MqttOptions {
    let mut o = MqttOptions::new(cfg.device.clone(), cfg.host.clone(), cfg.port);
    if let Some(tls) = &cfg.tls {
        o.set_transport(rumqttc::Transport::tls_with_config(tls.clone()));
    }
    o.set_credentials(cfg.device.clone(), connect_password(key, &cfg.device, now_ms()));
    o.set_keep_alive(Duration::from_secs(15));
    o.set_clean_session(false);
    o.set_max_packet_size(limits::MQTT_MAX_PACKET, limits::MQTT_MAX_PACKET);
    o.set_inflight(cfg.window.clamp(1, u16::MAX as usize) as u16);
    o.set_request_channel_capacity(cfg.window * 2 + 16);
    o.set_last_will(LastWill::new(status.to_string(), will, QoS::AtLeastOnce, true));
    o
}

async fn poll_loop(
    mut eventloop: EventLoop,
    key: Arc<SigningKey>,
    tx: mpsc::Sender<LinkEvent>,
    shutdown: CancellationToken,
) {
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
                // The password carries its time: each reconnect needs a fresh one.
                let device = eventloop.mqtt_options.client_id();
                eventloop.mqtt_options.set_credentials(device.clone(), connect_password(&key, &device, now_ms()));
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tx.send(LinkEvent::Disconnected(e.to_string())) => {}
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                None
            }
        };
        if let Some(f) = forward {
            // Never block shutdown on a full channel (a flood on our topics).
            tokio::select! {
                _ = shutdown.cancelled() => return,
                sent = tx.send(f) => if sent.is_err() { return },
            }
        }
    }
}

/// What the clinic keeps of the hub's answers: reports and each study's journey.
#[derive(Debug, Clone)]
pub struct ClinicRecords {
    /// Received reports.
    pub reports: ReportStore,
    /// Each study's journey.
    pub journeys: Arc<Journeys>,
}

/// Runs the uplink until `rx` closes: every producer has stopped and what they sent is spooled.
pub async fn run(
    cfg: UplinkConfig,
    key: Arc<SigningKey>,
    hub_key: PublicKey,
    spool: Arc<Mutex<Spool>>,
    records: ClinicRecords,
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
        &status_payload(LinkState::Offline, &lock(&spool), "connection lost"),
    )
    .unwrap_or_default();
    let (client, eventloop) = AsyncClient::new(mqtt_options(&cfg, &key, &status, will), cfg.window * 2 + 16);
    let (link_tx, mut link_rx) = mpsc::channel(256);
    let poll_token = CancellationToken::new();
    let poller = tokio::spawn(poll_loop(eventloop, key.clone(), link_tx, poll_token.clone()));
    let window = cfg.window;
    let mut u = Uplink {
        cfg,
        key,
        hub_key,
        spool,
        reports: records.reports,
        journeys: records.journeys,
        stats,
        client,
        status,
        up,
        window: LinkWindow::new(window, Instant::now()),
        connected: false,
        last_problem: String::new(),
        unspooled: VecDeque::new(),
        tampered_reported: 0,
        rotation: None,
    };
    u.update_spool_stats();
    u.start_rotation().await;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut heartbeat = tokio::time::interval(u.cfg.heartbeat);
    loop {
        tokio::select! {
            // While something could not be spooled, take nothing new: the producers wait (and
            // the serial driver reports what the cart sent meanwhile as lost frames).
            msg = rx.recv(), if u.unspooled.is_empty() => match msg {
                Some(o) => {
                    u.spool_outgoing(o).await;
                    // Gap notices it produced go out at once (they wait only if the disk fails).
                    u.retry_unspooled().await;
                    u.pump().await;
                }
                None => break,
            },
            Some(ev) = link_rx.recv() => u.on_link(ev).await,
            _ = tick.tick() => {
                u.retry_unspooled().await;
                u.pump().await;
                u.note_silence();
            }
            _ = heartbeat.tick() => {
                u.publish_status(LinkState::Heartbeat);
                u.start_rotation().await;
            }
        }
    }
    u.retry_unspooled().await;
    if !u.unspooled.is_empty() {
        error!(
            messages = u.unspooled.len(),
            "stopping with messages that could not be written to the spool; they are lost"
        );
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

/// Seals the body of spooled `seq` again under a new seq above `highest_seq`, replacing it.
fn reseal(
    s: &mut Spool,
    key: &SigningKey,
    device: &str,
    up: &Topic,
    seq: u64,
    highest_seq: u64,
) -> Result<u64, String> {
    let lane = s.lane_of(seq).ok_or("not spooled")?;
    let bytes = s.read(seq).map_err(|e| e.to_string())?.ok_or("not spooled")?;
    let env = Envelope::decode(&bytes).map_err(|e| e.to_string())?;
    let payload = Payload::decode(env.header.kind, &env.body).ok_or("unknown kind")?.map_err(|e| e.to_string())?;
    s.skip_past(highest_seq);
    let new_seq = s.allocate_seq().map_err(|e| e.to_string())?;
    let mut header = Header::new(key, device, new_seq, env.header.created_at_ms, lane);
    header.epoch = s.epoch();
    let sealed = seal(key, header, up, &payload).map_err(|e| e.to_string())?;
    s.append(lane, new_seq, &sealed).map_err(|e| e.to_string())?;
    s.remove(seq).map_err(|e| e.to_string())?;
    Ok(new_seq)
}

impl Uplink {
    /// Sends the rotation to a waiting next key (`yilian-agent rotate-key`), signed by the
    /// current key; the switch happens when the hub acks it ([`Uplink::finish_rotation`]).
    async fn start_rotation(&mut self) {
        let Some(path) = self.cfg.key_file.clone() else { return };
        if self.rotation.is_some() {
            return;
        }
        let next = match blocking(move || crate::rotation::pending(&path)).await {
            Some(Ok(Some(k))) => Arc::new(k),
            Some(Ok(None)) => return,
            Some(Err(e)) => return self.problem(format!("cannot read the next device key: {e}")),
            None => return,
        };
        if next.public_key() == self.key.public_key() {
            return;
        }
        let body =
            yilian_protocol::message::KeyRotation::sign(&self.cfg.device, &self.key.public_key(), &next, now_ms());
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut o = Outgoing::new(Lane::Stream, Payload::KeyRotation(body));
        o.spooled = Some(tx);
        self.spool_outgoing(o).await;
        if let Ok(seq) = rx.try_recv() {
            info!(seq, from = %self.key.key_id(), to = %next.key_id(), "device key rotation sent");
            self.rotation = Some((next, seq));
        }
    }

    /// The hub acked the rotation: the next key becomes the key, on disk and for signing.
    async fn finish_rotation(&mut self) {
        let (Some((next, _)), Some(path)) = (self.rotation.take(), self.cfg.key_file.clone()) else { return };
        match blocking(move || crate::rotation::commit(&path)).await {
            Some(Ok(())) => {
                info!(from = %self.key.key_id(), to = %next.key_id(), "device key rotated");
                self.key = next;
            }
            Some(Err(e)) => self.problem(format!("the hub took the new key but it cannot replace the old file: {e}")),
            None => self.problem("key rotation task failed".into()),
        }
    }

    /// The hub moved to a new key, said with its pinned key and proven by the new one: pin the
    /// new key (durably first, so a crash cannot leave the agent trusting a key it forgot).
    async fn follow_hub_key(&mut self, r: yilian_protocol::message::KeyRotation, hub_id: &str) {
        if r.new_public_key == self.hub_key {
            return;
        }
        if let Err(e) = r.check(&yilian_protocol::enrol::hub_signer(hub_id), &self.hub_key) {
            warn!(error = %e, "hub key rotation without a valid proof ignored");
            AgentStats::add(&self.stats.rejected_downlink, 1);
            return;
        }
        if let Some(path) = self.cfg.hub_key_file.clone() {
            let text = format!("{}\n", r.new_public_key.to_hex());
            match blocking(move || crate::durable::write_atomic(&path, text.as_bytes())).await {
                Some(Ok(())) => {}
                Some(Err(e)) => return self.problem(format!("cannot pin the hub's new key: {e}")),
                None => return self.problem("pinning the hub's new key failed".into()),
            }
        }
        info!(from = %self.hub_key.id(), to = %r.new_public_key.id(), "hub key rotated; following");
        self.hub_key = r.new_public_key;
    }

    /// Notes since when sent messages wait for the hub with no word from it (the clinic page's
    /// "hub not answering").
    fn note_silence(&self) {
        let silent = &self.stats.hub_silent_since_ms;
        if self.window.is_empty() {
            silent.store(0, std::sync::atomic::Ordering::Relaxed);
        } else if silent.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            silent.store(now_ms().max(1) as u64, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn update_window_stats(&self) {
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        self.stats.inflight_bytes.store(self.window.bytes(), relaxed);
        self.stats.inflight_budget.store(self.window.budget(Instant::now()), relaxed);
    }

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
    /// If the spool cannot take it, `o` waits in memory and is retried; it is never dropped.
    async fn spool_outgoing(&mut self, o: Outgoing) {
        let (spool, key, device, up) = (self.spool.clone(), self.key.clone(), self.cfg.device.clone(), self.up.clone());
        let now = now_ms();
        let item = o.clone();
        let max = self.cfg.spool_max_bytes;
        let protected: HashSet<u64> = self.window.seqs().collect();
        let result = blocking(move || -> Result<Spooled, SpoolError> {
            let mut s = lock(&spool);
            let seq = s.allocate_seq()?;
            let mut header = Header::new(&key, &device, seq, now, item.lane);
            header.epoch = s.epoch();
            let bytes = match seal(&key, header, &up, &item.payload) {
                Ok(b) => b,
                Err(e) => return Ok(Spooled::Unsealable(e.to_string())),
            };
            let need = bytes.len() as u64;
            let mut dropped = quota::make_room(&mut s, need, max, &protected)?;
            let new_chunk = match &item.payload {
                Payload::StreamChunk(c) => Some(quota::chunk_gap(c)),
                _ => None,
            };
            if let Some(gap) = &new_chunk
                && s.bytes() + need > max
            {
                dropped.push(gap.clone());
                return Ok(Spooled::Dropped(dropped));
            }
            loop {
                match s.append(item.lane, seq, &bytes) {
                    Ok(()) => return Ok(Spooled::Stored(seq, dropped)),
                    Err(e) if quota::is_disk_full(&e) => {
                        // The disk, not the quota, is full: monitoring data gives way first.
                        let freed = quota::make_room(&mut s, u64::MAX, 0, &protected)?;
                        if freed.is_empty() {
                            if let Some(gap) = new_chunk {
                                dropped.push(gap);
                                return Ok(Spooled::Dropped(dropped));
                            }
                            return Err(e);
                        }
                        dropped.extend(freed);
                    }
                    Err(e) => return Err(e),
                }
            }
        })
        .await;
        let dropped = match result {
            Some(Ok(Spooled::Stored(seq, dropped))) => {
                debug!(seq, "spooled");
                if let Some(tx) = &o.spooled {
                    let _ = tx.send(seq);
                }
                if let Payload::StudyPart(p) = &o.payload {
                    let (j, uid, count) = (self.journeys.clone(), p.study_uid.clone(), p.count);
                    blocking(move || j.part_spooled(&uid, count, seq)).await;
                }
                dropped
            }
            Some(Ok(Spooled::Dropped(dropped))) => dropped,
            Some(Ok(Spooled::Unsealable(e))) => {
                self.problem(format!("cannot seal a message, it is not sent: {e}"));
                vec![]
            }
            Some(Err(e)) => {
                let full = if quota::is_disk_full(&e) { "SPOOL FULL: " } else { "" };
                self.problem(format!("{full}spool write failed; holding the message in memory and retrying: {e}"));
                self.unspooled.push_back(o);
                vec![]
            }
            None => {
                self.problem("spool task failed; holding the message and retrying".into());
                self.unspooled.push_back(o);
                vec![]
            }
        };
        if !dropped.is_empty() {
            let gaps = quota::merge(dropped);
            let ranges: Vec<String> = gaps
                .iter()
                .map(|g| format!("stream {} samples {}..{}", g.stream_id, g.first_sample, g.end_sample))
                .collect();
            self.problem(format!(
                "SPOOL FULL: monitoring data dropped ({}); resting studies are kept",
                ranges.join(", ")
            ));
            for g in gaps {
                // Small, and never dropped: the hub must learn of the gap.
                self.unspooled.push_back(Outgoing::new(Lane::Stream, Payload::StreamGap(g)));
            }
        }
        self.update_spool_stats();
    }

    async fn retry_unspooled(&mut self) {
        while let Some(o) = self.unspooled.pop_front() {
            let before = self.unspooled.len();
            self.spool_outgoing(o).await;
            if self.unspooled.len() > before {
                // Failed again: it went to the back; put it first again and wait for the next tick.
                if let Some(o) = self.unspooled.pop_back() {
                    self.unspooled.push_front(o);
                }
                return;
            }
        }
        if self.last_problem.starts_with("spool") {
            info!("spool writable again");
            self.last_problem.clear();
        }
    }

    /// Publishes spooled envelopes in lane order while the window has room (see
    /// [`crate::window`]: the routine lanes get a byte budget sized to the link, so a STAT study
    /// spooled now goes out ahead of a backlog, not behind it).
    async fn pump(&mut self) {
        if !self.connected {
            return;
        }
        let now = Instant::now();
        let expired = self.window.expire(now, self.cfg.ack_timeout);
        if expired > 0 {
            debug!(expired, "no ack in time; sending again");
        }
        let mut admission = self.window.admission(now);
        if admission.closed() {
            return;
        }
        let spool = self.spool.clone();
        let skip: HashSet<u64> = self.window.seqs().collect();
        let batch = blocking(move || {
            let mut s = lock(&spool);
            let mut chosen = Vec::new();
            for (lane, seq, size) in s.pending_sized() {
                // Lanes come in priority order: past the priority lanes, a full routine budget
                // ends the search.
                if admission.closed() || (!is_priority(lane) && admission.routine_closed()) {
                    break;
                }
                if !skip.contains(&seq) && admission.admit(lane, size) {
                    chosen.push((lane, seq));
                }
            }
            // A record that fails to open is quarantined by `read` and skipped; the rest go.
            let batch = chosen
                .into_iter()
                .filter_map(|(lane, seq)| s.read(seq).ok().flatten().map(|b| (lane, seq, b)))
                .collect();
            (batch, s.tampered())
        })
        .await
        .unwrap_or_default();
        let (batch, tampered): (Vec<(Lane, u64, Vec<u8>)>, u64) = batch;
        self.stats.spool_tampered.store(tampered, std::sync::atomic::Ordering::Relaxed);
        if tampered > self.tampered_reported {
            let new = tampered - self.tampered_reported;
            self.tampered_reported = tampered;
            self.problem(format!(
                "{new} spool record(s) failed authentication (changed, truncated or swapped on disk); quarantined, not sent"
            ));
        }
        let topic = self.up.to_string();
        for (lane, seq, bytes) in batch {
            let len = bytes.len() as u64;
            if self.client.try_publish(topic.clone(), QoS::AtLeastOnce, false, bytes).is_err() {
                break; // request channel full: retry on the next tick
            }
            self.window.sent(seq, lane, len, Instant::now());
            AgentStats::add(&self.stats.publishes, 1);
        }
        self.update_window_stats();
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
                AgentStats::add(&self.stats.connects, 1);
                // Whatever was in flight may be lost with a broker restart: send it all again.
                self.window.reconnected();
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

    async fn on_ack(&mut self, ack: Ack) {
        // The round trip ends now, not after the spool files are removed.
        let arrived = Instant::now();
        let spool = self.spool.clone();
        let epoch = lock(&spool).epoch();
        if ack.epoch != epoch {
            // Meant for an earlier spool of this device (wiped or restored): ignore it.
            debug!(ack_epoch = ack.epoch, epoch, "ack for another spool epoch ignored");
            return;
        }
        let (key, device, up) = (self.key.clone(), self.cfg.device.clone(), self.up.clone());
        let journeys = self.journeys.clone();
        let result = blocking(move || {
            let mut s = lock(&spool);
            let seqs: Vec<u64> = s.pending().map(|(_, seq)| seq).filter(|seq| ack.contains(*seq)).collect();
            let mut removed = 0u64;
            let mut notes = Vec::new();
            let mut resealed = Vec::new();
            for seq in seqs {
                match s.remove(seq) {
                    Ok(true) => removed += 1,
                    Ok(false) => {}
                    Err(e) => notes.push(format!("could not remove acked seq {seq}; it will be resent: {e}")),
                }
            }
            for r in &ack.refused {
                if !s.contains(r.seq) {
                    continue;
                }
                match &r.reason {
                    RefusalReason::SeqReused { highest_seq } => {
                        match reseal(&mut s, &key, &device, &up, r.seq, *highest_seq) {
                            Ok(new_seq) => {
                                resealed.push((r.seq, new_seq));
                                notes.push(format!("hub already had seq {}; sent again as seq {new_seq}", r.seq))
                            }
                            Err(e) => notes.push(format!("could not re-seal refused seq {}: {e}", r.seq)),
                        }
                    }
                    RefusalReason::Inconsistent(why) => match s.set_aside(r.seq) {
                        Ok(Some(path)) => {
                            notes.push(format!("PROBLEM: hub refused seq {}: {why}; kept in {}", r.seq, path.display()))
                        }
                        Ok(None) => {}
                        Err(e) => notes.push(format!("could not set aside refused seq {}: {e}", r.seq)),
                    },
                }
            }
            drop(s);
            for (old, new) in resealed {
                journeys.resealed(old, new);
            }
            journeys.acked(|seq| ack.contains(seq), now_ms());
            (removed, ack, notes)
        })
        .await;
        if let Some((removed, ack, notes)) = result {
            for r in &ack.refused {
                self.window.forget(r.seq);
            }
            let acked: Vec<u64> = self.window.seqs().filter(|seq| ack.contains(*seq)).collect();
            self.window.acked(acked, arrived);
            self.update_window_stats();
            if let Some((_, seq)) = &self.rotation {
                if ack.contains(*seq) {
                    self.finish_rotation().await;
                } else if ack.refused.iter().any(|r| r.seq == *seq) {
                    self.rotation = None;
                    self.problem("the hub refused the key rotation; the current key stays".into());
                }
            }
            AgentStats::add(&self.stats.acked, removed);
            for n in notes {
                if n.starts_with("PROBLEM") {
                    self.problem(n);
                } else {
                    warn!(note = %n, "spool");
                }
            }
        }
        self.update_spool_stats();
        if self.last_problem.starts_with("SPOOL FULL") && lock(&self.spool).bytes() < self.cfg.spool_max_bytes {
            info!("spool back under its quota");
            self.last_problem.clear();
            self.publish_status(LinkState::Heartbeat);
        }
        self.pump().await;
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
            .and_then(|env| env.verify(&self.hub_key, &topic, None).map_err(|e| e.to_string()));
        let v = match verified {
            Ok(v) => v,
            Err(e) => {
                warn!(topic = %p.topic, error = %e, "rejected a message that claims to come from the hub");
                AgentStats::add(&self.stats.rejected_downlink, 1);
                return;
            }
        };
        self.stats.hub_heard_at_ms.store(now_ms().max(0) as u64, std::sync::atomic::Ordering::Relaxed);
        self.stats.hub_silent_since_ms.store(0, std::sync::atomic::Ordering::Relaxed);
        match v.payload() {
            Payload::Ack(ack) if ack.device_id == self.cfg.device => self.on_ack(ack.clone()).await,
            Payload::HubKeyRotation(r) => self.follow_hub_key(r.clone(), &v.header().device_id).await,
            Payload::Report(report) => {
                let (store, r, bytes) = (self.reports.clone(), report.clone(), p.payload.to_vec());
                match blocking(move || store.store(&r, &bytes)).await {
                    Some(Ok(path)) => {
                        info!(report = %report.report_id, study = %report.study_uid, path = %path.display(), "report received");
                        let (j, r) = (self.journeys.clone(), report.clone());
                        blocking(move || j.delivered(&r, now_ms())).await;
                        AgentStats::add(&self.stats.reports, 1);
                        let receipt = Payload::ReportReceipt(ReportReceipt {
                            report_id: report.report_id.clone(),
                            study_uid: report.study_uid.clone(),
                            stored_at_ms: now_ms(),
                        });
                        self.spool_outgoing(Outgoing::new(Lane::Stream, receipt)).await;
                        self.pump().await;
                    }
                    Some(Err(e)) => self.problem(format!("cannot store report: {e}")),
                    None => self.problem("report task failed".into()),
                }
            }
            Payload::StudyClaim(c) => {
                info!(study = %c.study_uid, claimed = c.claimed, "a specialist took up the study at the hub");
                let (j, c) = (self.journeys.clone(), c.clone());
                blocking(move || j.claimed(&c)).await;
            }
            Payload::CriticalNotice(n) => {
                let (j, n2) = (self.journeys.clone(), n.clone());
                if blocking(move || j.critical(&n2, now_ms())).await == Some(true) {
                    // Loud on purpose: the clinic page raises the alarm from the same record.
                    warn!(report = %n.report_id, study = %n.study_uid, "CRITICAL RESULT: a clinician must acknowledge it on the clinic page");
                    AgentStats::add(&self.stats.critical, 1);
                }
            }
            other => {
                warn!(kind = ?std::mem::discriminant(other), "unexpected message kind from the hub ignored")
            }
        }
    }
}
