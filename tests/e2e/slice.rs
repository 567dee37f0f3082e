//! The vertical slice, end to end across the real parts: a pseudo-terminal cart, the agent, an
//! MQTT broker (embedded rumqttd, and Mosquitto when `YILIAN_TEST_MQTT_URL` is set), the hub and
//! SQLite.

use crate::common::*;
use anyhow::Context;
use rumqttc::{AsyncClient, QoS};
use std::time::Duration;
use yilian::county::{self, Broker, Clinic, HubHandle, wait_for};
use yilian::records;
use yilian::sim;
use yilian_agent::AgentStats;
use yilian_protocol::envelope::{Header, seal};
use yilian_protocol::keys::SigningKey;
use yilian_protocol::message::{DeviceOutput, Lane, Payload};
use yilian_protocol::topic::{Channel, Topic};
use yilian_protocol::{limits, wire};

/// Study over the pty → agent → broker → hub store → queue → claim → report → agent → receipt.
async fn full_path(broker: Broker, tag: &str) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let hub = HubHandle::start(&tmp.path().join("hub"), broker).await?;
    let (site, device) = (format!("xiangzhen-{tag}"), format!("cart-{tag}"));
    let clinic = Clinic::start(&tmp.path().join("clinics"), &site, &device, &hub).await?;
    let rec = records::ptb_12_lead()?;
    let visit = sim::demo_visit(0);
    let acquired = now_ms();
    let (id, sent) = clinic
        .cart(move |c| -> anyhow::Result<_> {
            c.hello()?;
            c.study(&rec, 1234, 10_000, &visit, acquired)
        })
        .await?;
    let prefix = format!("{device}-{acquired}-{id}-");
    clinic.print("病人: 张伟  ID: MZ001000  12导联 10 s 采集完成")?;

    let api = hub.api.clone();
    let row = wait_for("the study in the queue", WAIT, || {
        let (api, prefix) = (api.clone(), prefix.clone());
        async move { api.queue().await.ok()?.into_iter().find(|s| uid_of(s).starts_with(&prefix)) }
    })
    .await?;
    let uid = uid_of(&row).to_string();
    assert_eq!(row["priority"], "stat");
    assert_eq!(row["patient_name"], "张伟");
    assert_eq!(row["site_id"], site.as_str());
    assert_eq!(row["state"], "queued");
    assert_eq!(row["sample_rate_hz"], 1000);
    assert_eq!(row["samples_per_lead"], 10_000);
    assert!(row["question"].as_str().unwrap_or_default().contains("急性心梗"));

    // Sample-exact: what the hub decodes is what the cart sent.
    let detail = api.study(&uid).await?;
    let leads = detail["leads"].as_array().context("leads")?;
    let names: Vec<&str> = leads.iter().filter_map(|l| l["name"].as_str()).collect();
    assert_eq!(names, ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]);
    for (lead, sent) in leads.iter().zip(&sent) {
        let expected: Vec<i32> = sent.iter().map(|v| i32::from(*v)).collect();
        assert_eq!(ints(&lead["samples"]), expected, "lead {}", lead["name"]);
        // 500 nV per LSB: the µV values are exactly half the integers.
        let uv = lead["samples_uv"].as_array().context("uv")?;
        assert_eq!(uv[17].as_f64(), Some(f64::from(expected[17]) * 0.5));
    }

    // A claim is exclusive.
    api.claim(&uid).await?;
    let other = api.with_token(&hub.add_specialist("wang", "王医生")?);
    let (status, _) = other.post_raw(&format!("/api/studies/{uid}/claim"), &serde_json::json!({})).await?;
    assert_eq!(status, 409, "a study claimed by one specialist cannot be claimed by another");
    let (status, _) = api.with_token("not-a-token").get_raw("/api/queue").await?;
    assert_eq!(status, 401);

    let report = api.report(&uid, "窦性心律，心率约75次/分。", "未见急性ST段抬高。").await?;
    let report_id = report["report_id"].as_str().context("report id")?.to_string();

    let stats = clinic.stats.clone();
    wait_for("the agent to store the report", WAIT, || {
        let s = stats.clone();
        async move { (AgentStats::get(&s.reports) >= 1).then_some(()) }
    })
    .await?;
    let text = std::fs::read_to_string(clinic.dir.join("reports").join(format!("{report_id}.txt")))?;
    assert!(text.contains("张伟") && text.contains("未见急性ST段抬高"), "{text}");

    let delivered = wait_for("the hub to see the receipt", WAIT, || {
        let (api, uid) = (api.clone(), uid.clone());
        async move { study_row(&api, &uid).await.filter(|r| r["state"] == "delivered") }
    })
    .await?;
    assert_eq!(delivered["report_id"], report_id.as_str());
    assert!(api.queue().await?.iter().all(|s| s["study_uid"] != uid), "a reported study leaves the queue");

    // The printer port's GBK line arrives as UTF-8 device output.
    let printed = wait_for("the printed line at the hub", WAIT, || {
        let (api, device) = (api.clone(), device.clone());
        async move { api.device_output(&device).await.ok().filter(|v| !v.is_empty()) }
    })
    .await?;
    assert_eq!(printed[0]["line"], "病人: 张伟  ID: MZ001000  12导联 10 s 采集完成");
    assert_eq!(printed[0]["port"], "printer");

    // The demo login printed by the county example signs in to the console, which lists the
    // study as reported.
    let http = hub.http_client()?.redirect(reqwest::redirect::Policy::none()).build()?;
    let base = hub.base_url.clone();
    let login = http.get(format!("{base}/login")).send().await?;
    let csrf_cookie = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("yl_login_csrf=").map(|r| r.split(';').next().unwrap_or_default().to_string()))
        .context("login csrf cookie")?;
    let (user, password) = county::DEMO_LOGIN;
    let signed_in = http
        .post(format!("{base}/login"))
        .header("cookie", format!("yl_login_csrf={csrf_cookie}"))
        .form(&[("user", user), ("password", password), ("csrf", csrf_cookie.as_str())])
        .send()
        .await?;
    let session = signed_in
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("yl_session=").map(|r| r.split(';').next().unwrap_or_default().to_string()))
        .context("the demo login signs in")?;
    let page =
        http.get(format!("{base}/studies/{uid}")).header("cookie", format!("yl_session={session}")).send().await?;
    assert_eq!(page.status(), 200);
    let page = page.text().await?;
    assert!(page.contains("张伟") && page.contains("已出报告"), "{page}");

    clinic.wait_drained(WAIT).await?;
    let devices = api.devices().await?;
    let me = devices.iter().find(|d| d["device_id"] == device.as_str()).context("device listed")?;
    assert_eq!(me["state"], "online");
    clinic.shutdown(&hub.broker_url).await?;
    hub.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_study_travels_from_the_cart_to_the_specialist_and_the_report_comes_back() -> anyhow::Result<()> {
    let _one = ONE_AT_A_TIME.lock().await;
    init_logs();
    for (i, broker) in county::test_brokers()?.into_iter().enumerate() {
        let tag = format!("fp{i}");
        full_path(broker.clone(), &tag).await.with_context(|| format!("full path over {broker:?}"))?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_and_truncated_frames_on_the_serial_line_lose_no_good_data() -> anyhow::Result<()> {
    let _one = ONE_AT_A_TIME.lock().await;
    init_logs();
    let tmp = tempfile::tempdir()?;
    let hub = HubHandle::start(&tmp.path().join("hub"), county::test_broker()?).await?;
    let clinic = Clinic::start(&tmp.path().join("clinics"), "xz-noise", "cart-noise", &hub).await?;
    let rec = records::ptb_12_lead()?;
    let acquired = now_ms();
    let (id, sent) = clinic
        .cart(move |c| -> anyhow::Result<_> {
            c.garbage(b"\xff\xfe AT+RESET\r\n random line noise \x01\x02\x03")?;
            // A frame cut off halfway, as when a cable is jiggled.
            let partial = yilian_protocol::frame::encode(
                9,
                &yilian_protocol::frame::Frame::Hello { model: "half".into(), firmware: "x".into() },
            )?;
            c.garbage(&partial[..partial.len() / 2])?;
            let r = c.study(&rec, 0, 5_000, &sim::demo_visit(4), acquired)?;
            c.garbage(&[0x55; 9000])?; // an over-long "frame" with no delimiter
            c.garbage(&[0])?;
            Ok(r)
        })
        .await?;
    let prefix = format!("cart-noise-{acquired}-{id}-");
    let api = hub.api.clone();
    let row = wait_for("the study", WAIT, || {
        let (api, prefix) = (api.clone(), prefix.clone());
        async move { api.studies().await.ok()?.into_iter().find(|s| uid_of(s).starts_with(&prefix)) }
    })
    .await?;
    let uid = uid_of(&row).to_string();
    let detail = api.study(&uid).await?;
    for (lead, sent) in detail["leads"].as_array().context("leads")?.iter().zip(&sent) {
        assert_eq!(ints(&lead["samples"]), sent.iter().map(|v| i32::from(*v)).collect::<Vec<_>>());
    }
    let stats = clinic.stats.clone();
    wait_for("the agent to count the skipped bytes", WAIT, || {
        let s = stats.clone();
        async move { (AgentStats::get(&s.bytes_skipped) >= 9000).then_some(()) }
    })
    .await?;
    assert_eq!(api.studies().await?.len(), 1, "garbage produced no study");
    clinic.wait_drained(WAIT).await?;
    clinic.shutdown(&hub.broker_url).await?;
    hub.stop().await
}

/// A raw MQTT client playing an attacker who holds a device's key and certificate (a stolen
/// cart), or a confused device.
async fn raw_client(hub: &HubHandle, site: &str, device: &str, key: &SigningKey) -> anyhow::Result<AsyncClient> {
    let o = hub.device_mqtt_options(site, device, key)?;
    let (client, mut ev) = AsyncClient::new(o, 64);
    tokio::spawn(async move { while ev.poll().await.is_ok() {} });
    Ok(client)
}

fn output(line: &str) -> Payload {
    Payload::DeviceOutput(DeviceOutput { port: "cart".into(), line: line.into(), received_at_ms: now_ms() })
}

/// Signs bytes exactly as the protocol documents, bypassing `seal`'s size checks.
fn sign_raw(key: &SigningKey, topic: &Topic, header: &Header, body: Vec<u8>) -> anyhow::Result<Vec<u8>> {
    let header_bytes = wire::encode("header", header, limits::HEADER_MAX)?;
    let mut m = b"yilian/v1/up\0".to_vec();
    m.extend_from_slice(topic.to_string().as_bytes());
    m.push(0);
    m.extend_from_slice(&header_bytes);
    m.extend_from_slice(&body);
    let signature = key.sign(&m);
    let env = yilian_protocol::envelope::Envelope { header: header.clone(), body, signature };
    Ok(wire::encode("envelope", &env, usize::MAX)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_messages_are_rejected_with_their_reason_and_change_nothing() -> anyhow::Result<()> {
    let _one = ONE_AT_A_TIME.lock().await;
    init_logs();
    let tmp = tempfile::tempdir()?;
    let broker = county::test_broker()?;
    // Mosquitto's ACL drops a device's publishes on other devices' topics before the hub sees
    // them (security_transport tests that); the embedded broker has no ACL, so the hub counts
    // them as from an unknown device.
    let acl = matches!(broker, Broker::Mosquitto);
    let hub = HubHandle::start(&tmp.path().join("hub"), broker).await?;
    let key = SigningKey::generate()?;
    hub.enroll("xz-h", "cart-h", &key.public_key())?;
    let api = hub.api.clone();
    let topic = Topic::new("xz-h", "cart-h", Channel::Up)?;
    // Mallory holds cart-h's key and certificate (a stolen cart): the broker lets her in, so
    // what follows is the hub's own checks.
    let mallory = raw_client(&hub, "xz-h", "cart-h", &key).await?;
    let send = |t: &Topic, bytes: Vec<u8>| {
        let (m, t) = (mallory.clone(), t.to_string());
        async move { m.publish(t, QoS::AtLeastOnce, false, bytes).await }
    };
    // Let anything already on the broker for this hub (retained statuses) arrive first.
    let mut base = api.stats().await?;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let again = api.stats().await?;
        if again == base {
            break;
        }
        base = again;
    }
    let messages_before = base["studies"]["messages"].as_i64().unwrap_or(0);

    // A good message first, so there is something that must not change.
    let good = seal(&key, Header::new(&key, "cart-h", 1, now_ms(), Lane::Stream), &topic, &output("HR 72 心率"))?;
    send(&topic, good.clone()).await?;
    wait_for("the good message", WAIT, || {
        let api = api.clone();
        async move {
            let s = api.stats().await.ok()?;
            (s["studies"]["messages"].as_i64()? == messages_before + 1).then_some(())
        }
    })
    .await?;

    // Forged: signed by another key in the device's name.
    let forger = SigningKey::generate()?;
    send(&topic, seal(&forger, Header::new(&forger, "cart-h", 2, now_ms(), Lane::Stream), &topic, &output("forged"))?)
        .await?;
    // Tampered: right key id, body changed after signing.
    let mut env = yilian_protocol::envelope::Envelope::decode(&seal(
        &key,
        Header::new(&key, "cart-h", 3, now_ms(), Lane::Stream),
        &topic,
        &output("original"),
    )?)?;
    let last = env.body.len() - 20;
    env.body[last] ^= 1;
    send(&topic, wire::encode("envelope", &env, usize::MAX)?).await?;
    // Replayed: the same envelope again is a duplicate (acked, stored once) ...
    send(&topic, good.clone()).await?;
    // ... and the same seq with other content is refused.
    send(&topic, seal(&key, Header::new(&key, "cart-h", 1, now_ms(), Lane::Stream), &topic, &output("other"))?).await?;
    // Unknown device.
    let stranger_topic = Topic::new("xz-h", "cart-x", Channel::Up)?;
    send(
        &stranger_topic,
        seal(&forger, Header::new(&forger, "cart-x", 1, now_ms(), Lane::Stream), &stranger_topic, &output("hi"))?,
    )
    .await?;
    // Enrolled device on another site's topic.
    let wrong_site = Topic::new("xz-other", "cart-h", Channel::Up)?;
    send(&wrong_site, seal(&key, Header::new(&key, "cart-h", 5, now_ms(), Lane::Stream), &wrong_site, &output("x"))?)
        .await?;
    // Oversized body for its kind, validly signed.
    let big = Payload::DeviceOutput(DeviceOutput {
        port: "p".into(),
        line: "x".repeat(limits::DEVICE_OUTPUT_MAX + 10),
        received_at_ms: 0,
    });
    let mut h = Header::new(&key, "cart-h", 6, now_ms(), Lane::Stream);
    h.kind = big.kind();
    let body = wire::encode(
        "body",
        &match big {
            Payload::DeviceOutput(d) => d,
            _ => unreachable!(),
        },
        usize::MAX,
    )?;
    send(&topic, sign_raw(&key, &topic, &h, body)?).await?;
    // Malformed bincode.
    send(&topic, vec![0xff; 40]).await?;
    send(&topic, good[..good.len() / 2].to_vec()).await?;

    let mut expected = vec![
        ("wrong key", 1),
        ("bad signature", 1),
        ("seq reused", 1),
        ("unknown device", 1),
        ("wrong site", 1),
        ("oversized body", 1),
        ("malformed envelope", 2),
    ];
    if acl {
        // The ACL's `yl/v1/+/%u/up` leaves the site to the hub, which counts a wrong one.
        expected.retain(|(r, _)| *r != "unknown device");
    }
    let expected = &expected[..];
    let stats = wait_for("every hostile message to be counted", WAIT, || {
        let (api, base) = (api.clone(), base.clone());
        async move {
            let s = api.stats().await.ok()?;
            expected
                .iter()
                .all(|(reason, n)| {
                    let before = base["rejected"][reason].as_u64().unwrap_or(0);
                    s["rejected"][reason].as_u64().unwrap_or(0) >= before + n
                })
                .then_some(s)
        }
    })
    .await?;
    // QoS 1 is at-least-once: a redelivered hostile publish is rightly counted again, so each
    // reason must have grown by at least its count, and no other reason may have grown at all.
    let reasons = stats["rejected"].as_object().context("rejected")?;
    for (reason, count) in reasons {
        let before = base["rejected"][reason.as_str()].as_u64().unwrap_or(0);
        let grew = count.as_u64().unwrap_or(0) - before;
        match expected.iter().find(|(r, _)| r == reason) {
            Some((_, n)) => assert!(grew >= *n, "{reason}: {grew} < {n}"),
            None => assert_eq!(grew, 0, "unexpected rejects for {reason}"),
        }
    }
    assert_eq!(stats["studies"]["messages"].as_i64(), Some(messages_before + 1), "only the good message is stored");
    assert!(stats["studies"]["duplicates"].as_i64().unwrap_or(0) >= 1, "the replay was recognised as a duplicate");
    hub.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_hub_restarts_while_the_agent_streams_and_nothing_is_lost_or_duplicated() -> anyhow::Result<()> {
    let _one = ONE_AT_A_TIME.lock().await;
    init_logs();
    let tmp = tempfile::tempdir()?;
    // The broker outlives the hub here (rumqttd cannot be stopped inside one process).
    let hub_dir = tmp.path().join("hub");
    let mut _mosquitto = None;
    let broker = if county::mosquitto_enabled() {
        let m = county::mosquitto_for(&hub_dir).await?;
        let url = m.url();
        _mosquitto = Some(m);
        url
    } else {
        match county::external_test_broker()? {
            Some(url) => url,
            None => county::standalone_broker(&hub_dir)?,
        }
    };
    let hub = HubHandle::start(&hub_dir, Broker::External(broker.clone())).await?;
    let mut clinic = Clinic::start(&tmp.path().join("clinics"), "xz-r", "cart-r", &hub).await?;
    let rec = records::mitdb("100")?;
    let per_frame = 36usize; // 100 ms at 360 Hz
    let mut next = 0u64;
    let t0 = now_ms();
    let send_for = async |frames: usize, next: &mut u64, clinic: &Clinic| -> anyhow::Result<()> {
        for _ in 0..frames {
            let (r, first) = (rec.clone(), *next);
            clinic.cart(move |c| c.stream(0, &r, first, per_frame, t0 + first as i64 * 1000 / 360)).await?;
            *next += per_frame as u64;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    };
    send_for(40, &mut next, &clinic).await?;
    hub.stop().await?;
    send_for(60, &mut next, &clinic).await?; // spooled while the hub is down
    let waiting = clinic.spool_entries();
    assert!(waiting >= 5, "with the hub down nothing is acked, so the spool holds the chunks ({waiting})");
    let hub = HubHandle::start(&hub_dir, Broker::External(broker)).await?;
    send_for(40, &mut next, &clinic).await?;
    clinic.stop_agent().await?; // flushes the last partial chunk into the spool
    clinic.start_agent().await?;
    wait_for("the spool to drain", WAIT, || {
        let s = clinic.stats.clone();
        async move { (AgentStats::get(&s.spool_entries) == 0).then_some(()) }
    })
    .await?;
    let streams = wait_for("all samples at the hub", WAIT, || {
        let api = hub.api.clone();
        async move {
            let s = api.streams("cart-r").await.ok()?;
            (s.first()?["samples_per_lead"].as_u64()? == next).then_some(s)
        }
    })
    .await?;
    let runs = streams[0]["runs"].as_array().context("runs")?;
    assert_eq!(runs.len(), 1, "one continuous run, no gap: {runs:?}");
    assert_eq!((runs[0]["first_sample"].as_u64(), runs[0]["end_sample"].as_u64()), (Some(0), Some(next)));
    let got = hub.api.stream_samples("cart-r", 0, 0, next).await?;
    for (lead, (_, src)) in got.iter().zip(&rec.leads) {
        let expected: Vec<i32> = (0..next as usize).map(|i| i32::from(src[i])).collect();
        assert_eq!(lead, &expected);
    }
    let stats = hub.api.stats().await?;
    assert_eq!(stats["studies"]["samples_received"].as_u64(), Some(next * 2), "each sample stored exactly once");
    clinic.shutdown(&hub.broker_url).await?;
    hub.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wiped_spool_restarts_its_seqs_and_the_hub_makes_it_skip_past_what_it_holds() -> anyhow::Result<()> {
    let _one = ONE_AT_A_TIME.lock().await;
    init_logs();
    let tmp = tempfile::tempdir()?;
    let hub = HubHandle::start(&tmp.path().join("hub"), county::test_broker()?).await?;
    let mut clinic = Clinic::start(&tmp.path().join("clinics"), "xz-w", "cart-w", &hub).await?;
    let rec = records::mitdb("101")?;
    let t0 = now_ms();
    let stream = |first: u64, frames: u64| {
        let rec = rec.clone();
        move |c: &mut sim::Cart| -> anyhow::Result<()> {
            for f in 0..frames {
                let s = first + f * 36;
                c.stream(0, &rec, s, 36, t0 + s as i64 * 1000 / 360)?;
            }
            Ok(())
        }
    };
    clinic.cart(stream(0, 30)).await?;
    clinic.stop_agent().await?;
    clinic.start_agent().await?;
    clinic.wait_drained(WAIT).await?;
    let stored_before = hub.api.stats().await?["studies"]["messages"].as_u64().unwrap_or(0);
    assert!(stored_before >= 3);

    // The clinic PC is reinstalled: the spool (seq lease and epoch) is gone, the key is kept.
    clinic.stop_agent().await?;
    std::fs::remove_dir_all(&clinic.config.spool_dir)?;
    clinic.start_agent().await?;
    clinic.cart(stream(30 * 36, 30)).await?;
    clinic.stop_agent().await?;
    clinic.start_agent().await?;
    clinic.wait_drained(WAIT).await?;

    let total = 60 * 36;
    let streams = wait_for("every sample at the hub", WAIT, || {
        let api = hub.api.clone();
        async move {
            let s = api.streams("cart-w").await.ok()?;
            (s.first()?["samples_per_lead"].as_u64()? == total).then_some(s)
        }
    })
    .await?;
    assert_eq!(streams[0]["runs"].as_array().map(Vec::len), Some(1), "{streams:?}");
    let got = hub.api.stream_samples("cart-w", 0, 0, total).await?;
    assert_eq!(got[0], (0..total as usize).map(|i| i32::from(rec.leads[0].1[i])).collect::<Vec<_>>());
    let stats = hub.api.stats().await?;
    assert!(stats["rejected"]["seq reused"].as_u64().unwrap_or(0) >= 1, "the reused seqs were refused: {stats}");
    clinic.shutdown(&hub.broker_url).await?;
    hub.stop().await
}
