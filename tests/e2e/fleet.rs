//! Fleet updates end to end: county IT signs a release offline with the real `yilian-hub
//! release` commands, the running hub serves the repository over HTTPS, and the clinic's real
//! `yilian-agent update` verifies and stages it; an offline bundle goes through the same checks.

use crate::common::*;
use std::path::Path;
use yilian::county::{Broker, Clinic, HubHandle};
use yilian::procs::workspace_bin;

fn run(bin: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new(workspace_bin(bin)?).args(args).output()?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    anyhow::ensure!(out.status.success(), "{bin} {args:?}: {text}");
    Ok(text)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_signed_offline_is_served_by_the_hub_verified_and_staged_by_the_agent() -> anyhow::Result<()> {
    init_logs();
    let tmp = tempfile::tempdir()?;
    let hub = HubHandle::start(&tmp.path().join("hub"), Broker::Embedded).await?;
    let usb = tmp.path().join("usb");
    let data = s(&hub.data_dir);
    run("yilian-hub", &["--data", data, "release", "init", "--offline-keys", s(&usb)])?;
    // The "new release": a script standing in for the agent binary (a debug agent is ~270 MB,
    // over the agent's download limit; a release build is ~20 MB), padded to a realistic 2 MB.
    let release = tmp.path().join("yilian-agent-0.2.0");
    let pad: String = (0..2_000_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    std::fs::write(&release, format!("#!/bin/sh\necho yilian-agent 0.2.0\nexit 0\n# {pad}\n"))?;
    let triple = yilian_agent::update::TRIPLE;
    let added = run(
        "yilian-hub",
        &[
            "--data",
            data,
            "release",
            "add",
            "--offline-keys",
            s(&usb),
            "--file",
            s(&release),
            "--triple",
            triple,
            "--version",
            "0.2.0",
            "--min-version",
            "0.1.0",
        ],
    )?;
    assert!(added.contains(&format!("agent-{triple}-0.2.0")), "{added}");
    let listed = run("yilian-hub", &["--data", data, "release", "list"])?;
    assert!(listed.contains("0.2.0") && listed.contains("over 0.1.0"), "{listed}");

    // The clinic: its shipped root is the county's, its CA the county CA.
    let mut clinic = Clinic::prepare(&tmp.path().join("clinic"), "xz-up", "cart-up", &hub.hub_key, &hub.broker_url)?;
    let root = clinic.dir.join("update-root.json");
    std::fs::copy(hub.data_dir.join("tuf/root.json"), &root)?;
    clinic.config.update =
        Some(yilian_agent::config::UpdateConfig { hub: hub.base_url.clone(), root, dir: clinic.dir.join("update") });
    let cfg = clinic.write_config()?;
    let out = run("yilian-agent", &["update", "--config", s(&cfg)])?;
    let staged = clinic.dir.join("update/releases/0.2.0/yilian-agent");
    assert!(out.contains("staged 0.2.0"), "{out}");
    assert_eq!(std::fs::read(&staged)?, std::fs::read(&release)?, "staged byte for byte");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&staged)?.permissions());
    assert_eq!(mode & 0o111, 0o111, "staged executable");

    // The hub refreshes the timestamp with its online keys alone; the agent accepts it.
    run("yilian-hub", &["--data", data, "release", "refresh"])?;
    std::fs::remove_file(&staged)?;
    run("yilian-agent", &["update", "--config", s(&cfg)])?;
    assert!(staged.exists());

    // A target file altered at the hub is refused, and nothing is staged.
    std::fs::remove_file(&staged)?;
    let targets = hub.data_dir.join("tuf/targets");
    let file =
        std::fs::read_dir(&targets)?.flatten().next().map(|e| e.path()).ok_or_else(|| anyhow::anyhow!("no target"))?;
    let good = std::fs::read(&file)?;
    let mut bad = good.clone();
    let at = bad.len() / 3;
    bad[at] ^= 0x01;
    std::fs::write(&file, &bad)?;
    let refused =
        std::process::Command::new(workspace_bin("yilian-agent")?).args(["update", "--config", s(&cfg)]).output()?;
    let text = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && text.contains("tampered"), "{text}");
    assert!(!staged.exists());
    std::fs::write(&file, &good)?;

    // An offline bundle (the repository copied to a USB stick) passes the same checks; the hub
    // can be unreachable.
    let bundle = tmp.path().join("usb-bundle");
    run("yilian-hub", &["--data", data, "release", "bundle", "--out", s(&bundle)])?;
    hub.stop().await?;
    let out = run("yilian-agent", &["update", "--config", s(&cfg), "--bundle", s(&bundle)])?;
    assert!(out.contains("staged 0.2.0"), "{out}");
    assert_eq!(std::fs::read(&staged)?, std::fs::read(&release)?);
    Ok(())
}
