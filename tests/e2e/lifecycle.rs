//! Device lifecycle end to end: enrolment with a bootstrap token and approval, quarantine of a
//! pending device's messages, token misuse, and revocation of a connected device.

use crate::common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use yilian::county::{Broker, Clinic, HubHandle, device_mqtt_options, mosquitto_enabled, wait_for};
use yilian_agent::enrol::{self, EnrolError};
use yilian_protocol::envelope::{Header, seal};
use yilian_protocol::keys::SigningKey;
use yilian_protocol::message::{DeviceOutput, Lane, Payload};
use yilian_protocol::topic::{Channel, Topic};

fn refused_code(r: Result<impl std::fmt::Debug, EnrolError>) -> String {
    match r {
        Err(EnrolError::Refused { code, .. }) => code,
        other => format!("not refused: {other:?}"),
    }
}

fn rejected(stats: &serde_json::Value, reason: &str) -> u64 {
    stats["rejected"][reason].as_u64().unwrap_or(0)
}

/// A device enrolled with a token is pending: its study is quarantined (no study, not acked, kept
/// in the agent's spool); once approved, the same study arrives and the spool drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pending_device_is_quarantined_until_approved_and_nothing_is_lost() -> anyhow::Result<()> {
    init_logs();
    let tmp = tempfile::tempdir()?;
    let hub = HubHandle::start(&tmp.path().join("hub"), Broker::Embedded).await?;
    let (site, device) = ("xiangzhen-enrol", "cart-enrol");
    let root = tmp.path().join("clinics");
    let dir = root.join(site);
    let b = hub.bootstrap(site, &hub.enrol_token(site)?);

    let key = enrol::load_or_make_key(&dir, device)?;
    let status = enrol::request(&b, device, &key, now_ms()).await?;
    assert_eq!(status.state, "pending");
    assert_eq!(status.hub_public_key, Some(hub.hub_key.to_hex()));
    // The same request again (an agent that crashed before it read the answer) is answered
    // again; the token is spent for anyone else.
    assert_eq!(enrol::request(&b, device, &key, now_ms()).await?.state, "pending");
    let other = SigningKey::generate()?;
    assert_eq!(refused_code(enrol::request(&b, "cart-other", &other, now_ms()).await), "token-used");
    assert_eq!(refused_code(enrol::request(&b, device, &other, now_ms()).await), "token-used");
    assert!(hub.device_key("cart-other")?.is_none());

    let waiting = {
        let (b, dir, key) = (b.clone(), dir.clone(), SigningKey::from_pkcs8(key.pkcs8())?);
        tokio::spawn(async move {
            enrol::wait_for_approval(&b, device, &dir, &key, Duration::from_millis(200), Duration::from_secs(300)).await
        })
    };

    // The agent runs with the key enrolment made (Clinic::prepare keeps an existing key).
    let mut clinic = Clinic::prepare(&root, site, device, &hub.hub_key, &hub.broker_url)?;
    assert_eq!(clinic.public_key, key.public_key());
    clinic.start_agent().await?;
    let prefix = record_ptb_study(&clinic, device, 3).await?;
    wait_for("the pending device's study in quarantine", WAIT, || {
        let q = hub.quarantined(device).unwrap_or(0);
        async move { (q > 0).then_some(()) }
    })
    .await?;
    let stats = hub.api.stats().await?;
    assert!(rejected(&stats, "pending device (quarantined)") > 0, "counted for admins: {stats}");
    assert!(
        !hub.api.studies().await?.iter().any(|s| uid_of(s).starts_with(&prefix)),
        "a pending device's study is not clinical data"
    );
    assert!(clinic.spool_entries() > 0, "not acked: the agent keeps the study in its spool");
    assert_eq!(clinic.stats.acked.load(Ordering::Relaxed), 0);

    hub.device_action(device, "approve", "")?;
    let config = waiting.await??;
    assert!(config.ends_with("agent.toml"), "{}", config.display());
    let pinned = std::fs::read_to_string(dir.join("keys/hub.pub"))?;
    assert_eq!(pinned.trim(), hub.hub_key.to_hex());
    yilian_agent::AgentConfig::load(&config)?;

    let api = hub.api.clone();
    let row = wait_for("the same study after approval", WAIT, || {
        let (api, prefix) = (api.clone(), prefix.clone());
        async move { api.queue().await.ok()?.into_iter().find(|s| uid_of(s).starts_with(&prefix)) }
    })
    .await?;
    assert_eq!(row["site_id"], site);
    clinic.wait_drained(WAIT).await?;
    assert_eq!(hub.quarantined(device)?, 0, "released on approval");
    clinic.stop_agent().await?;
    hub.stop().await
}

/// Bootstrap tokens: expired, for another clinic, unknown, malformed, and for a device id that
/// is taken are all refused with their own reason; a rejected device learns it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_tokens_are_single_use_bound_to_a_clinic_and_expire() -> anyhow::Result<()> {
    init_logs();
    let tmp = tempfile::tempdir()?;
    let hub = HubHandle::start(&tmp.path().join("hub"), Broker::Embedded).await?;
    let key = SigningKey::generate()?;
    let now = now_ms();

    let expired = hub.bootstrap("clinic-a", &hub.enrol_token_at("clinic-a", 3_600_000, now - 7_200_000)?);
    assert_eq!(refused_code(enrol::request(&expired, "cart-1", &key, now).await), "token-expired");
    let mut wrong_site = hub.bootstrap("clinic-a", &hub.enrol_token("clinic-b")?);
    assert_eq!(refused_code(enrol::request(&wrong_site, "cart-1", &key, now).await), "token-wrong-site");
    let unknown = hub.bootstrap("clinic-a", &format!("{}.{}", "ab".repeat(8), "cd".repeat(32)));
    assert_eq!(refused_code(enrol::request(&unknown, "cart-1", &key, now).await), "token-unknown");
    let malformed = hub.bootstrap("clinic-a", "not-a-token");
    assert_eq!(refused_code(enrol::request(&malformed, "cart-1", &key, now).await), "token-malformed");
    // A wrong secret with a real id is as unknown as a made-up token.
    let real = hub.enrol_token("clinic-a")?;
    let wrong_secret = format!("{}.{}", real.split('.').next().unwrap_or_default(), "ee".repeat(32));
    assert_eq!(
        refused_code(enrol::request(&hub.bootstrap("clinic-a", &wrong_secret), "cart-1", &key, now).await),
        "token-unknown"
    );
    // A stale signature is no proof of possession now.
    assert_eq!(
        refused_code(enrol::request(&hub.bootstrap("clinic-a", &real), "cart-1", &key, now - 3_600_000).await),
        "stale"
    );

    let pre = SigningKey::generate()?;
    hub.enroll("clinic-a", "cart-pre", &pre.public_key())?;
    assert_eq!(
        refused_code(enrol::request(&hub.bootstrap("clinic-a", &real), "cart-pre", &key, now).await),
        "device-taken"
    );
    // The refusals above did not spend the token: it still enrols a new device, once.
    wrong_site.site = "clinic-b".into();
    assert_eq!(enrol::request(&wrong_site, "cart-b", &key, now).await?.state, "pending");
    assert_eq!(refused_code(enrol::request(&wrong_site, "cart-c", &key, now).await), "token-used");
    assert!(hub.device_key("cart-c")?.is_none());

    hub.device_action("cart-b", "reject", "not ours")?;
    let dir = tmp.path().join("b");
    let r = enrol::wait_for_approval(&wrong_site, "cart-b", &dir, &key, Duration::from_millis(50), WAIT).await;
    assert!(matches!(&r, Err(EnrolError::NotApproved(s)) if s == "rejected"), "{r:?}");
    assert!(hub.device_key("cart-b")?.is_none(), "a rejected device may not connect");
    hub.stop().await
}

/// A raw MQTT connection as `device`, counting its connections and how they ended.
struct Conn {
    connects: Arc<AtomicU64>,
    drops: Arc<AtomicU64>,
    client: rumqttc::AsyncClient,
    task: tokio::task::JoinHandle<()>,
}

fn connect_as(mut opts: rumqttc::MqttOptions) -> anyhow::Result<Conn> {
    opts.set_clean_session(false);
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut ev) = rumqttc::AsyncClient::new(opts, 64);
    let (connects, drops) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (c, d) = (connects.clone(), drops.clone());
    let task = tokio::spawn(async move {
        loop {
            match ev.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                    c.fetch_add(1, Ordering::SeqCst);
                }
                Ok(_) => {}
                Err(_) => {
                    d.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        }
    });
    Ok(Conn { connects, drops, client, task })
}

async fn wait_count(what: &str, n: &Arc<AtomicU64>, at_least: u64) -> anyhow::Result<()> {
    wait_for(what, Duration::from_secs(60), || {
        let v = n.load(Ordering::SeqCst);
        async move { (v >= at_least).then_some(()) }
    })
    .await
}

/// Revoking a connected device: the broker connection drops within 60 s, the broker refuses it
/// when it comes back (the embedded broker's connect check gets no key for it; Mosquitto finds
/// its certificate in the CRL the hub rewrote), and its messages are refused and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_disconnects_a_connected_device_and_refuses_it() -> anyhow::Result<()> {
    init_logs();
    // Not a shared external broker: the hub must own the broker's CRL and be able to reload it.
    let brokers = std::iter::once(Broker::Embedded).chain(mosquitto_enabled().then_some(Broker::Mosquitto));
    for broker in brokers {
        eprintln!("revocation with broker {broker:?}");
        revocation_on(broker).await?;
    }
    Ok(())
}

async fn revocation_on(broker: Broker) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let embedded = matches!(broker, Broker::Embedded);
    let hub = HubHandle::start(&tmp.path().join("hub"), broker).await?;
    let (site, device) = ("clinic-r", "cart-stolen");
    let key = SigningKey::generate()?;
    hub.enroll(site, device, &key.public_key())?;
    let conn = connect_as(device_mqtt_options(&hub.hub_key, &hub.broker_url, site, device, &key)?)?;
    wait_count("the device to connect", &conn.connects, 1).await?;
    let up = Topic::new(site, device, Channel::Up)?;
    let send = |seq: u64| -> anyhow::Result<Vec<u8>> {
        let body = Payload::DeviceOutput(DeviceOutput {
            port: "cart".into(),
            line: format!("line {seq}"),
            received_at_ms: now_ms(),
        });
        Ok(seal(&key, Header::new(&key, device, seq, now_ms(), Lane::Stream), &up, &body)?)
    };
    conn.client.publish(up.to_string(), rumqttc::QoS::AtLeastOnce, false, send(1)?).await?;
    let api = hub.api.clone();
    wait_for("the active device's message stored", WAIT, || {
        let api = api.clone();
        async move {
            let devices = api.get_raw("/api/devices").await.ok()?.1;
            devices.as_array()?.iter().find(|d| d["device_id"] == device && d["messages"].as_i64() == Some(1)).cloned()
        }
    })
    .await?;

    let drops_before = conn.drops.load(Ordering::SeqCst);
    let revoked_at = Instant::now();
    hub.device_action(device, "revoke", "stolen cart")?;
    wait_count("the revoked device to be disconnected", &conn.drops, drops_before + 1).await?;
    let took = revoked_at.elapsed();
    assert!(took < Duration::from_secs(60), "disconnected after {took:?}");
    eprintln!("revoked device disconnected {} ms after revocation", took.as_millis());
    assert!(hub.device_key(device)?.is_none(), "the broker's connect check gets no key for a revoked device");

    // It tries to come back: the broker's connect check refuses it, again and again.
    let connects = conn.connects.load(Ordering::SeqCst);
    let drops = conn.drops.load(Ordering::SeqCst);
    wait_count("the revoked device's reconnections refused", &conn.drops, drops + 3).await?;
    assert_eq!(conn.connects.load(Ordering::SeqCst), connects, "a revoked device never gets back on the broker");
    conn.task.abort();
    if let Some(m) = &hub.mosquitto {
        let log = m.log();
        assert!(
            log.contains("Reloading config") && log.contains("certificate verify failed"),
            "Mosquitto re-read the CRL and refused the revoked certificate at the TLS handshake:\n{}",
            yilian::procs::tail(&log, 20)
        );
    }
    // The refusal is the revocation's, not the broker's: another cart of the county, enrolled
    // all along, connects.
    let other = SigningKey::generate()?;
    hub.enroll(site, "cart-kept", &other.public_key())?;
    let kept = connect_as(device_mqtt_options(&hub.hub_key, &hub.broker_url, site, "cart-kept", &other)?)?;
    wait_count("a device not revoked to connect", &kept.connects, 1).await?;
    kept.task.abort();
    if !embedded {
        // Mosquitto takes the client id from the certificate's CN, so a relay with the hub's
        // certificate would only take the hub's own session over; the hub's refusal of a revoked
        // device's message is the same code whatever the broker, proven with the embedded one.
        return hub.stop().await;
    }
    // A message of it that reaches the hub anyway (a broker that let it through) is refused
    // and counted.
    let relay = connect_as(hub.hub_mqtt_options("relay-test")?)?;
    wait_count("the relay to connect", &relay.connects, 1).await?;
    relay.client.publish(up.to_string(), rumqttc::QoS::AtLeastOnce, false, send(2)?).await?;
    wait_for("the revoked device's message refused", WAIT, || {
        let api = api.clone();
        async move { (rejected(&api.stats().await.ok()?, "revoked device") >= 1).then_some(()) }
    })
    .await?;
    let devices = api.get_raw("/api/devices").await?.1;
    let row = devices.as_array().and_then(|d| d.iter().find(|d| d["device_id"] == device).cloned());
    assert_eq!(row.map(|r| r["messages"].clone()), Some(serde_json::json!(1)), "nothing stored after revocation");
    relay.task.abort();
    hub.stop().await
}

/// Device key rotation: the running agent hands over to the next key (signed by the old one,
/// proven by the new one); the new key works, the old one works during the overlap and is
/// refused after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_device_rotates_its_key_with_an_overlap_then_the_old_key_is_refused() -> anyhow::Result<()> {
    init_logs();
    let tmp = tempfile::tempdir()?;
    let overlap = Duration::from_secs(15);
    let hub = HubHandle::start_with(&tmp.path().join("hub"), Broker::Embedded, |c| c.key_overlap = overlap).await?;
    let (site, device) = ("clinic-k", "cart-rotate");
    let mut clinic = Clinic::start(&tmp.path().join("clinics"), site, device, &hub).await?;
    let old = SigningKey::from_pkcs8(&std::fs::read(&clinic.config.key)?)?;
    let next = yilian_agent::rotation::prepare(&clinic.config.key)?.public_key();

    wait_for("the hub to take the new key", WAIT, || {
        let k = hub.device_key(device).ok().flatten();
        async move { (k.map(|(_, k)| k) == Some(next)).then_some(()) }
    })
    .await?;
    let key_file = clinic.config.key.clone();
    wait_for("the agent to switch to the new key", WAIT, || {
        let k = std::fs::read(&key_file).ok().and_then(|b| SigningKey::from_pkcs8(&b).ok());
        let waiting = yilian_agent::rotation::next_key_path(&key_file).exists();
        async move { (k.map(|k| k.public_key()) == Some(next) && !waiting).then_some(()) }
    })
    .await?;
    let rotated_at = Instant::now();

    // The new key works: what the agent sends now is signed by it and stored.
    let api = hub.api.clone();
    let stored = |api: yilian::client::Api| async move {
        let devices = api.get_raw("/api/devices").await.ok()?.1;
        devices.as_array()?.iter().find(|d| d["device_id"] == device)?["messages"].as_i64()
    };
    let before = stored(api.clone()).await.unwrap_or(0);
    clinic.print("新密钥 new key")?;
    wait_for("a message signed by the new key stored", WAIT, || {
        let api = api.clone();
        async move { (stored(api).await? > before).then_some(()) }
    })
    .await?;
    clinic.wait_drained(WAIT).await?;

    // The old key still works during the overlap...
    let conn = connect_as(hub.hub_mqtt_options("rotation-test")?)?;
    wait_count("the test client to connect", &conn.connects, 1).await?;
    let up = Topic::new(site, device, Channel::Up)?;
    let signed_by_old = |seq: u64| -> anyhow::Result<Vec<u8>> {
        let body = Payload::DeviceOutput(DeviceOutput {
            port: "old".into(),
            line: format!("old key {seq}"),
            received_at_ms: now_ms(),
        });
        Ok(seal(&old, Header::new(&old, device, seq, now_ms(), Lane::Stream), &up, &body)?)
    };
    let before = stored(api.clone()).await.unwrap_or(0);
    conn.client.publish(up.to_string(), rumqttc::QoS::AtLeastOnce, false, signed_by_old(1_000_000)?).await?;
    wait_for("a message signed by the old key stored during the overlap", WAIT, || {
        let api = api.clone();
        async move { (stored(api).await? > before).then_some(()) }
    })
    .await?;
    assert!(rotated_at.elapsed() < overlap, "the overlap ended before the old key was tried; raise it");

    // ...and is refused after it.
    tokio::time::sleep(overlap.saturating_sub(rotated_at.elapsed()) + Duration::from_secs(3)).await;
    let wrong_before = rejected(&api.stats().await?, "wrong key");
    conn.client.publish(up.to_string(), rumqttc::QoS::AtLeastOnce, false, signed_by_old(1_000_001)?).await?;
    wait_for("the old key refused after the overlap", WAIT, || {
        let api = api.clone();
        async move { (rejected(&api.stats().await.ok()?, "wrong key") > wrong_before).then_some(()) }
    })
    .await?;
    let audit = yilian_hub::store::Db::open(&hub.data_dir.join("yilian.db"))?.audit_log(50)?;
    assert!(audit.iter().any(|e| e.action == "device-rotate-key" && e.subject == device), "audited");
    conn.task.abort();
    clinic.stop_agent().await?;
    hub.stop().await
}

/// Hub key rotation: with the hub stopped, `yilian-hub key rotate`; the restarted hub signs only
/// with the new key and, at the agent's birth, tells it (signed by the old key, proven by the
/// new) to follow. The agent pins the new key and accepts a report signed by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_hub_rotates_its_key_and_an_agent_follows_then_accepts_its_report() -> anyhow::Result<()> {
    init_logs();
    let tmp = tempfile::tempdir()?;
    let hub_dir = tmp.path().join("hub");
    let hub = HubHandle::start(&hub_dir, Broker::Embedded).await?;
    let (site, device) = ("clinic-h", "cart-follow");
    let mut clinic = Clinic::start(&tmp.path().join("clinics"), site, device, &hub).await?;
    clinic.stop_agent().await?;
    hub.stop().await?;

    let (old, new) = yilian_hub::keys::rotate(&hub_dir)?;
    assert!(yilian_hub::keys::rotate(&hub_dir).is_err(), "one rotation at a time");
    let hub = HubHandle::start(&hub_dir, Broker::Embedded).await?;
    assert_eq!(hub.hub_key, new.public_key());
    let pinned = clinic.config.hub_public_key.clone();
    assert_eq!(std::fs::read_to_string(&pinned)?.trim(), old.public_key().to_hex());
    // The restarted hub's embedded broker listens elsewhere (rumqttd cannot be stopped in-process).
    clinic.config.broker = hub.broker_url.clone();
    clinic.start_agent().await?;
    wait_for("the agent to pin the hub's new key", WAIT, || {
        let text = std::fs::read_to_string(&pinned).unwrap_or_default();
        let want = new.public_key().to_hex();
        async move { (text.trim() == want).then_some(()) }
    })
    .await?;

    let prefix = record_ptb_study(&clinic, device, 5).await?;
    let api = hub.api.clone();
    let row = wait_for("the study after the hub's key rotation", WAIT, || {
        let (api, prefix) = (api.clone(), prefix.clone());
        async move { api.queue().await.ok()?.into_iter().find(|s| uid_of(s).starts_with(&prefix)) }
    })
    .await?;
    let uid = uid_of(&row).to_string();
    api.claim(&uid).await?;
    api.report(&uid, "窦性心律。", "正常心电图。").await?;
    let stats = clinic.stats.clone();
    wait_for("the agent to accept the report signed by the new key", WAIT, || {
        let s = stats.clone();
        async move { (s.reports.load(Ordering::Relaxed) >= 1).then_some(()) }
    })
    .await?;
    clinic.wait_drained(WAIT).await?;
    clinic.stop_agent().await?;
    hub.stop().await
}
