//! Rollouts end to end: county IT starts a staged rollout with the real `yilian-hub rollout`
//! commands, the running hub opens stages from the devices' own signed fleet reports, and halts
//! by itself when a stage fails. The fleet is 200 simulated agents, each with its own key, TLS
//! certificate and MQTT session, taking the hub's signed assignment with the agent's own
//! verification; one real agent under its supervisor installs only what it is assigned.

use crate::canary::console_session;
use crate::fleet::{Fleet, run, s, supervise, trial_result};
use anyhow::Context;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use yilian::county::{HubHandle, wait_for};
use yilian_protocol::envelope::{Header, seal};
use yilian_protocol::keys::{PublicKey, SigningKey};
use yilian_protocol::message::{FleetReport, Lane, Payload};
use yilian_protocol::topic::{Channel, Topic};

const FLEET: usize = 200;

/// What the simulated fleet saw, for the assertions.
#[derive(Default)]
struct Seen {
    /// (device, version) pairs ever assigned.
    assigned: Mutex<BTreeSet<(String, String)>>,
}

/// One simulated agent: polls its assignment as a managed agent does, verifies it with the
/// agent's own code, and reports each step of installing it in signed fleet reports. It fails
/// the trial of `fails` (a crash loop) and commits every other version.
struct SimAgent {
    site: String,
    device: String,
    key: SigningKey,
    fails: Option<&'static str>,
    dir: PathBuf,
}

struct SimHub {
    base_url: String,
    hub_key: PublicKey,
    http: reqwest::Client,
}

fn report(installed: &str, state: &str, trial: Option<&str>, last: (&str, &str)) -> FleetReport {
    FleetReport {
        installed_version: installed.into(),
        installed_sha256: [0; 32],
        config_version: String::new(),
        trial_version: trial.map(Into::into),
        state: state.into(),
        download_per_mille: if state == "downloading" { 400 } else { 0 },
        last_version: last.0.into(),
        last_reason: last.1.into(),
        last_at_ms: if last.0.is_empty() { 0 } else { yilian_hub::clock::now_ms() },
    }
}

async fn run_sim(
    a: SimAgent,
    opts: rumqttc::MqttOptions,
    hub: Arc<SimHub>,
    seen: Arc<Seen>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let (client, mut ev) = rumqttc::AsyncClient::new(opts, 64);
    let pump = tokio::spawn(async move {
        loop {
            if ev.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    });
    let topic = Topic::new(&a.site, &a.device, Channel::Up)?;
    let mut seq = 0u64;
    let send = |seq: &mut u64, r: FleetReport| -> anyhow::Result<()> {
        *seq += 1;
        let header = Header::new(&a.key, &a.device, *seq, yilian_hub::clock::now_ms(), Lane::Stream);
        let bytes = seal(&a.key, header, &topic, &Payload::FleetReport(r))?;
        client.try_publish(topic.to_string(), rumqttc::QoS::AtLeastOnce, false, bytes)?;
        Ok(())
    };
    let mut installed = "0.1.0".to_string();
    let mut done: BTreeSet<String> = BTreeSet::new();
    send(&mut seq, report(&installed, "idle", None, ("", "")))?;
    // Spread the polls over the second, as real agents' clocks would.
    let jitter = u64::from(a.device.bytes().map(u32::from).sum::<u32>() % 1000);
    tokio::time::sleep(Duration::from_millis(jitter)).await;
    let url = format!("{}/fleet/assignment/{}", hub.base_url, a.device);
    while !stop.is_cancelled() {
        let bytes = hub.http.get(&url).send().await?.error_for_status()?.bytes().await?;
        let assignment = yilian_agent::update::verify_assignment(&bytes, &hub.hub_key, &a.site, &a.device, &a.dir)?;
        for t in assignment.targets {
            if !done.insert(t.version.clone()) {
                continue;
            }
            seen.assigned
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?
                .insert((a.device.clone(), t.version.clone()));
            let v = t.version.as_str();
            send(&mut seq, report(&installed, "downloading", None, ("", "")))?;
            tokio::time::sleep(Duration::from_millis(100)).await;
            send(&mut seq, report(v, "on trial", Some(v), ("", "")))?;
            tokio::time::sleep(Duration::from_millis(100)).await;
            if a.fails == Some(v) {
                send(
                    &mut seq,
                    report(&installed, "rolled back", None, (v, "crashed 3 times on trial (exit status: 3)")),
                )?;
            } else {
                installed = v.to_string();
                send(&mut seq, report(&installed, "committed", None, (v, "")))?;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    pump.abort();
    Ok(())
}

async fn rollouts(hub: &HubHandle) -> anyhow::Result<Vec<Value>> {
    let (status, v) = hub.api.get_raw("/api/rollouts").await?;
    anyhow::ensure!(status == 200, "/api/rollouts: {status} {v}");
    Ok(v.as_array().cloned().unwrap_or_default())
}

async fn rollout_in(
    hub: &HubHandle,
    id: i64,
    states: &'static [&'static str],
    within: Duration,
) -> anyhow::Result<Value> {
    let api = hub.api.clone();
    wait_for(&format!("rollout {id} in {states:?}"), within, || {
        let api = api.clone();
        async move {
            let all = api.get_raw("/api/rollouts").await.ok()?.1;
            all.as_array()?.iter().find(|r| r["rollout_id"] == id && states.iter().any(|s| r["state"] == *s)).cloned()
        }
    })
    .await
}

/// `yilian-hub rollout start` of agent `version` for this platform with `args`; returns the
/// rollout's id and what the command printed.
fn start_rollout(f: &Fleet, version: &str, args: &[&str]) -> anyhow::Result<(i64, String)> {
    let base = ["rollout", "start", "--version", version, "--triple", yilian_agent::update::TRIPLE];
    let out = f.hub_cli(&[&base[..], args].concat())?;
    Ok((started_id(&out)?, out))
}

fn started_id(out: &str) -> anyhow::Result<i64> {
    out.split_whitespace()
        .nth(1)
        .and_then(|w| w.trim_end_matches(':').parse().ok())
        .with_context(|| format!("rollout id in {out:?}"))
}

/// Posts a console form on the rollouts page as county IT.
async fn console_action(hub: &HubHandle, id: i64, action: &str) -> anyhow::Result<()> {
    let http = hub.http_client()?.redirect(reqwest::redirect::Policy::none()).build()?;
    let cookie = console_session(&http, &hub.base_url, yilian::county::DEMO_LOGIN).await?;
    let page =
        http.get(format!("{}/fleet/rollouts", hub.base_url)).header("cookie", &cookie).send().await?.text().await?;
    let csrf = page
        .split(r#"name="csrf" value=""#)
        .nth(1)
        .and_then(|r| r.split('"').next())
        .context("a CSRF token on the rollouts page")?;
    let resp = http
        .post(format!("{}/fleet/rollouts/{id}/{action}", hub.base_url))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf)])
        .send()
        .await?;
    anyhow::ensure!(resp.status().is_redirection(), "{action}: {}", resp.status());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_over_200_agents_halts_on_a_failing_canary_and_leaves_later_stages_untouched() -> anyhow::Result<()> {
    let f = Fleet::start().await?;
    let hub = &f.hub;
    for v in ["0.2.0", "0.3.0", "0.4.0"] {
        f.release_script(v, &format!("echo yilian-agent {v}"))?;
    }
    // 200 agents in 10 township clinics; the first 20 are the canary clinics' carts, and two of
    // them crash on 0.2.0 (10% of the canary stage).
    let sim_hub =
        Arc::new(SimHub { base_url: hub.base_url.clone(), hub_key: hub.hub_key, http: hub.http_client()?.build()? });
    let seen = Arc::new(Seen::default());
    let stop = CancellationToken::new();
    let mut tasks = Vec::new();
    let canary: Vec<String> = (0..20).map(|i| format!("sim-{i:03}")).collect();
    // Enrolled first (the CLI's way, on the database), then started: county IT's steps.
    let mut agents = Vec::new();
    for i in 0..FLEET {
        let (site, device) = (format!("xz-{:02}", i % 10), format!("sim-{i:03}"));
        let key = SigningKey::generate()?;
        hub.enroll(&site, &device, &key.public_key())?;
        let fails = matches!(i, 3 | 11).then_some("0.2.0");
        let dir = f.tmp.path().join("sims").join(&device);
        agents.push(SimAgent { site, device, key, fails, dir });
    }
    for a in agents {
        let opts = hub.device_mqtt_options(&a.site, &a.device, &a.key)?;
        tasks.push(tokio::spawn(run_sim(a, opts, sim_hub.clone(), seen.clone(), stop.clone())));
    }
    let api = hub.api.clone();
    wait_for("every simulated agent's first fleet report", Duration::from_secs(120), || {
        let api = api.clone();
        async move {
            let d = api.devices().await.ok()?;
            (d.iter().filter(|d| d["installed_version"] == "0.1.0").count() == FLEET).then_some(())
        }
    })
    .await?;

    // Canary stage, then half, then all; halt above 5% failures.
    let (first, out) = start_rollout(
        &f,
        "0.2.0",
        &["--canary", &canary.join(","), "--stages", "50,100", "--halt-at", "5", "--stage-timeout", "5m"],
    )?;
    assert!(out.contains("to 200 devices in stages canary (20) → 50% (80) → 100% (100)"), "{out}");
    let halted = rollout_in(hub, first, &["halted"], Duration::from_secs(120)).await?;
    let reason = halted["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("stage canary: 2 of 20 devices failed"), "{halted}");
    // Halted as soon as the threshold was crossed; the canaries already on trial finish theirs,
    // and those not yet started when it halted are withdrawn (how many depends on timing).
    let api = hub.api.clone();
    // The canaries on trial finish theirs at their own pace: generous under a loaded CI machine.
    let settled = wait_for("the canary stage to settle", Duration::from_secs(180), || {
        let api = api.clone();
        async move {
            let d = api.get_raw(&format!("/api/rollouts/{first}/devices")).await.ok()?.1.as_array()?.clone();
            let settled = d
                .iter()
                .filter(|d| d["stage"] == 0)
                .all(|d| ["committed", "rolled back", "withdrawn"].iter().any(|s| d["state"] == *s));
            settled.then_some(d)
        }
    })
    .await;
    let devices = match settled {
        Ok(d) => d,
        Err(e) => {
            // Name the canaries that never settled, so a failure says where to look.
            let (_, d) = api.get_raw(&format!("/api/rollouts/{first}/devices")).await?;
            let open: Vec<String> = d
                .as_array()
                .map(|d| {
                    d.iter()
                        .filter(|d| {
                            d["stage"] == 0
                                && !["committed", "rolled back", "withdrawn"].iter().any(|s| d["state"] == *s)
                        })
                        .map(|d| d.to_string())
                        .collect()
                })
                .unwrap_or_default();
            anyhow::bail!("{e}: {open:?}");
        }
    };
    let summary: Vec<String> =
        devices.iter().map(|d| format!("{}:{}:{}", d["device_id"], d["stage"], d["state"])).collect();
    let by_state =
        |stage: usize, state: &str| devices.iter().filter(|d| d["stage"] == stage && d["state"] == state).count();
    let committed = by_state(0, "committed");
    assert_eq!((committed + by_state(0, "withdrawn"), by_state(0, "rolled back")), (18, 2), "{summary:?}");
    assert!(committed > 0, "{summary:?}");
    let rolled: Vec<&Value> = devices.iter().filter(|d| d["state"] == "rolled back").collect();
    assert!(rolled.iter().all(|d| d["detail"].as_str().is_some_and(|t| t.contains("crashed 3 times"))));
    // Later stages untouched: never opened, never assigned, still on their version.
    assert_eq!((by_state(1, "waiting"), by_state(2, "waiting")), (80, 100), "{summary:?}");
    let assigned = seen.assigned.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    let assigned_02: BTreeSet<&str> = assigned.iter().filter(|(_, v)| v == "0.2.0").map(|(d, _)| d.as_str()).collect();
    // Only canaries were assigned 0.2.0 (a canary withdrawn before it asked never saw it), and
    // every canary that ran the trial was.
    let canaries: BTreeSet<&str> = canary.iter().map(String::as_str).collect();
    assert!(assigned_02.is_subset(&canaries), "only the canaries were assigned 0.2.0: {assigned_02:?}");
    for d in devices.iter().filter(|d| d["stage"] == 0 && d["state"] != "withdrawn") {
        assert!(assigned_02.contains(d["device_id"].as_str().unwrap_or_default()), "{d}");
    }
    let on_old = hub.api.devices().await?.iter().filter(|d| d["installed_version"] == "0.1.0").count();
    assert_eq!(on_old, FLEET - committed, "a withdrawn canary stays on its version");
    // The halted rollout's assignment is withdrawn: a canary now gets an empty one.
    let bytes = sim_hub.http.get(format!("{}/fleet/assignment/sim-000", hub.base_url)).send().await?.bytes().await?;
    let key = hub.hub_key;
    let site = "xz-00";
    let a = yilian_agent::update::verify_assignment(&bytes, &key, site, "sim-000", &f.tmp.path().join("check"))?;
    assert!(a.targets.is_empty(), "{a:?}");
    // County IT's page shows it, in Chinese by default, cart by cart with the reasons.
    let http = hub.http_client()?.redirect(reqwest::redirect::Policy::none()).build()?;
    let cookie = console_session(&http, &hub.base_url, yilian::county::DEMO_LOGIN).await?;
    let page =
        http.get(format!("{}/fleet/rollouts", hub.base_url)).header("cookie", &cookie).send().await?.text().await?;
    assert!(page.contains(&format!(r#"data-rollout="{first}" data-state="halted""#)), "{page}");
    assert!(page.contains("已自动停止") && page.contains("已回退") && page.contains("crashed 3 times"));
    assert_eq!(page.matches(r#"data-state="waiting""#).count(), 180, "later stages shown as not started");
    f.hub_cli(&["rollout", "abort", &first.to_string()])?;
    let err = f.hub_cli(&["rollout", "resume", &first.to_string()]).expect_err("an aborted rollout cannot resume");
    assert!(err.to_string().contains("is aborted; it cannot be resumed"), "{err}");

    // A good release over the whole fleet in 10%, 50%, 100%: the time to roll it across.
    let started = Instant::now();
    let (second, _) = start_rollout(&f, "0.3.0", &["--stages", "10,50,100"])?;
    let done = rollout_in(hub, second, &["completed", "halted"], Duration::from_secs(300)).await?;
    let completed_after = started.elapsed();
    assert_eq!(done["state"], "completed", "{done}");
    // The last stage completes at 95%; the stragglers keep their assignment and finish after.
    let api = hub.api.clone();
    wait_for("every agent committed 0.3.0", Duration::from_secs(60), || {
        let api = api.clone();
        async move {
            let all = api.get_raw("/api/rollouts").await.ok()?.1;
            all.as_array()?.iter().find(|r| r["rollout_id"] == second && r["committed"] == FLEET as i64).map(|_| ())
        }
    })
    .await?;
    let all_after = started.elapsed();
    let on_new = hub.api.devices().await?.iter().filter(|d| d["installed_version"] == "0.3.0").count();
    assert_eq!(on_new, FLEET);
    eprintln!(
        "rollout of 0.3.0 across {FLEET} simulated agents in 3 stages (10%, 50%, 100%): completed after {:.1} s, \
         every agent committed after {:.1} s (hub tick 300 ms, agents poll every 1 s)",
        completed_after.as_secs_f64(),
        all_after.as_secs_f64()
    );

    // With approval: the first stage passes and waits; paused and resumed it waits again; county
    // IT approves on the console page, then from the CLI; nothing opens by itself.
    let (third, _) = start_rollout(&f, "0.4.0", &["--stages", "10,50,100", "--approval"])?;
    let waiting = rollout_in(hub, third, &["waiting"], Duration::from_secs(120)).await?;
    assert!(waiting["reason"].as_str().is_some_and(|r| r.contains("waiting for approval")), "{waiting}");
    f.hub_cli(&["rollout", "pause", &third.to_string()])?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let paused = rollout_in(hub, third, &["paused"], Duration::from_secs(5)).await?;
    assert_eq!(paused["assigned"], 20, "nothing opened while paused: {paused}");
    f.hub_cli(&["rollout", "resume", &third.to_string()])?;
    rollout_in(hub, third, &["waiting"], Duration::from_secs(60)).await?;
    console_action(hub, third, "approve").await?;
    let second_wait = rollout_in(hub, third, &["waiting"], Duration::from_secs(120)).await;
    let r = match second_wait {
        Ok(r) if r["stage"] == 1 => r,
        _ => rollout_in(hub, third, &["waiting"], Duration::from_secs(120)).await?,
    };
    assert_eq!(r["assigned"], 100, "{r}");
    f.hub_cli(&["rollout", "approve", &third.to_string()])?;
    rollout_in(hub, third, &["completed"], Duration::from_secs(120)).await?;
    let listed = rollouts(hub).await?;
    assert_eq!(
        listed.iter().map(|r| r["state"].as_str().unwrap_or_default()).collect::<Vec<_>>(),
        ["completed", "completed", "aborted"]
    );
    // The audit log has county IT's steps and the hub's halt.
    let audit = format!("{:?}", yilian_hub::store::Db::open(&hub.data_dir.join("yilian.db"))?.audit_latest(500)?);
    for action in
        ["rollout-start", "rollout-halt", "rollout-abort", "rollout-pause", "rollout-resume", "rollout-approve"]
    {
        assert!(audit.contains(action), "audit has {action}");
    }

    stop.cancel();
    for t in tasks {
        t.await??;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_managed_agent_installs_only_what_a_rollout_assigns_and_only_as_signed_offline() -> anyhow::Result<()> {
    let f = Fleet::start().await?;
    let hub = &f.hub;
    let agent = yilian::procs::workspace_bin("yilian-agent")?;
    let (site, device) = ("xz-mg", "cart-mg");
    let (mut clinic, cfg, update) = f.clinic(site, device, None)?;
    if let Some(u) = clinic.config.update.as_mut() {
        u.managed = true;
    }
    clinic.write_config()?;
    hub.enroll(site, device, &clinic.public_key)?;
    f.release_script("0.2.0", &format!("exec '{}' \"$@\"", agent.display()))?;

    // Signed and published, but not assigned: a managed agent leaves it alone.
    let out = run("yilian-agent", &["update", "--config", s(&cfg)])?;
    assert!(out.contains("no release is assigned"), "{out}");
    assert!(!update.join("releases/0.2.0").exists());

    let sup = supervise(&cfg, &["--health-window-secs", "15", "--watchdog-secs", "4", "--check-every-secs", "2"])?;
    let (id, _) = start_rollout(&f, "0.2.0", &["--sites", site, "--stages", "100"])?;
    trial_result(&update, "0.2.0", "committed", Duration::from_secs(90))
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", yilian::procs::tail(&sup.log(), 30)))?;
    let done = rollout_in(hub, id, &["completed"], Duration::from_secs(60)).await?;
    assert_eq!(done["committed"], 1, "{done}");
    drop(sup);

    // A compromised hub names a hash of its own for a signed release: the agent refuses it.
    f.release_script("0.3.0", "echo yilian-agent 0.3.0")?;
    let (id, _) = start_rollout(&f, "0.3.0", &["--stages", "100"])?;
    rusqlite::Connection::open(hub.data_dir.join("yilian.db"))?
        .execute("UPDATE rollouts SET sha256 = ?2 WHERE rollout_id = ?1", rusqlite::params![id, "ab".repeat(32)])?;
    let refused = std::process::Command::new(&agent).args(["update", "--config", s(&cfg)]).output()?;
    let text = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && text.contains("hash the signed repository does not give it"), "{text}");
    assert!(!update.join("releases/0.3.0").exists());
    Ok(())
}

/// Configuration bundles take the agent's path: signed offline, assigned by a rollout, checked
/// with `check-config`'s checks before the swap, on trial under the supervisor, rolled back by
/// the device when the agent cannot work with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_bundles_are_checked_tried_and_rolled_back_like_releases() -> anyhow::Result<()> {
    let f = Fleet::start().await?;
    let hub = &f.hub;
    let (site, device) = ("xz-cf", "cart-cf");
    let (mut clinic, cfg, update) = f.clinic(site, device, None)?;
    if let Some(u) = clinic.config.update.as_mut() {
        u.managed = true;
    }
    clinic.write_config()?;
    hub.enroll(site, device, &clinic.public_key)?;
    let usb = f.tmp.path().join("usb");
    let sign = |version: &str, body: &str| -> anyhow::Result<String> {
        let file = f.tmp.path().join(format!("bundle-{version}.toml"));
        std::fs::write(&file, body)?;
        f.hub_cli(&[
            "release",
            "add",
            "--offline-keys",
            s(&usb),
            "--kind",
            "config",
            "--file",
            s(&file),
            "--version",
            version,
        ])
    };
    let roll = |version: &str| -> anyhow::Result<i64> {
        started_id(&f.hub_cli(&[
            "rollout",
            "start",
            "--kind",
            "config",
            "--version",
            version,
            "--sites",
            site,
            "--stages",
            "100",
        ])?)
    };

    // County IT's tool refuses a bundle that would change who the device is or whom it trusts.
    let err = sign("0.9.0", "device = \"someone-else\"\n").expect_err("identity is not configurable");
    assert!(err.to_string().contains("may not set device"), "{err}");

    let sup = supervise(&cfg, &["--health-window-secs", "15", "--watchdog-secs", "4", "--check-every-secs", "2"])?;
    // A good bundle: a shorter heartbeat.
    sign("1.0.0", "heartbeat_secs = 3\n")?;
    let first = roll("1.0.0")?;
    trial_result(&update, "config-1.0.0", "committed", Duration::from_secs(90))
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", yilian::procs::tail(&sup.log(), 30)))?;
    assert_eq!(yilian_agent::install::linked(&update.join("config"), "current").as_deref(), Some("1.0.0"));
    let effective = yilian_agent::config::AgentConfig::load(&cfg)?;
    assert_eq!((effective.heartbeat_secs, effective.bundle_version.as_deref()), (3, Some("1.0.0")));
    let done = rollout_in(hub, first, &["completed"], Duration::from_secs(60)).await?;
    assert_eq!(done["committed"], 1, "{done}");

    // A bundle that would not run here (a plaintext broker): refused before the swap.
    sign("2.0.0", "broker = \"mqtt://127.0.0.1:1883\"\n")?;
    let second = roll("2.0.0")?;
    let r = trial_result(&update, "config-2.0.0", "refused", Duration::from_secs(60)).await?;
    assert!(r.reason.contains("plaintext"), "{r:?}");
    let halted = rollout_in(hub, second, &["halted"], Duration::from_secs(60)).await?;
    assert!(halted["reason"].as_str().is_some_and(|t| t.contains("1 of 1 devices failed")), "{halted}");

    // A bundle that passes the checks but cannot reach the hub: tried, and rolled back by the
    // device when the health window closes.
    let nobody = format!("mqtts://127.0.0.1:{}", yilian_hub::broker::free_port()?);
    sign("3.0.0", &format!("broker = \"{nobody}\"\n"))?;
    roll("3.0.0")?;
    let r = trial_result(&update, "config-3.0.0", "rolled back", Duration::from_secs(90)).await?;
    assert!(r.reason.contains("never reached the hub"), "{r:?}");
    assert_eq!(yilian_agent::install::linked(&update.join("config"), "current").as_deref(), Some("1.0.0"));
    // The hub sees it from the device's signed report: the bundle in effect, and why 3.0.0 went.
    let api = hub.api.clone();
    let row = wait_for("the bundle's rollback at the hub", Duration::from_secs(30), || {
        let api = api.clone();
        async move {
            let d = api.devices().await.ok()?;
            d.into_iter().find(|d| {
                d["device_id"] == device
                    && d["update_detail"].as_str().is_some_and(|t| t.starts_with("config-3.0.0: not healthy"))
            })
        }
    })
    .await?;
    assert_eq!(row["update_state"], "rolled back", "{row}");
    drop(sup);
    Ok(())
}
