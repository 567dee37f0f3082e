//! The agent's command line, run as the real binary.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_yilian-agent"))
}

#[test]
fn keygen_writes_a_private_key_only_its_owner_can_read_and_refuses_to_overwrite_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let prefix = dir.path().join("keys/cart-01");
    let out = agent().args(["keygen", "--out"]).arg(&prefix).output().expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pk8 = prefix.with_extension("pk8");
    let mode = std::fs::metadata(&pk8).expect("pk8").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let public = std::fs::read_to_string(prefix.with_extension("pub")).expect("pub");
    let key = yilian_protocol::keys::SigningKey::from_pkcs8(&std::fs::read(&pk8).expect("read")).expect("key");
    assert_eq!(public.trim(), key.public_key().to_hex());

    let again = agent().args(["keygen", "--out"]).arg(&prefix).output().expect("run");
    assert!(!again.status.success(), "an existing key must never be overwritten");
    assert_eq!(std::fs::read(&pk8).expect("read"), key.pkcs8());
}

#[test]
fn run_with_a_broken_config_says_what_is_wrong() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("agent.toml");
    std::fs::write(
        &cfg,
        "site = 'qiaotou/wsy'\ndevice = 'c'\nkey = 'k'\nhub_public_key = 'h'\nspool_dir = 's'\nreports_dir = 'r'\n",
    )
    .expect("write");
    let out = agent().args(["run", "--config"]).arg(&cfg).output().expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a slug"), "{err}");
}
