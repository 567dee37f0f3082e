//! County IT's command line, run as the real binary.

use std::process::{Command, Output};

fn hub(data: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_yilian-hub")).arg("--data").arg(data).args(args).output().expect("run yilian-hub")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn county_it_enrols_devices_adds_specialists_and_reads_the_hub_key() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let key = yilian_protocol::keys::SigningKey::generate().expect("key");
    let pub_path = dir.path().join("cart-01.pub");
    std::fs::write(&pub_path, format!("{}\n", key.public_key().to_hex())).expect("write");
    let p = pub_path.to_str().expect("utf-8 path");

    let o = hub(&data, &["enroll", "--site", "qiaotou-wsy", "--device", "cart-01", "--public-key", p]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains(&key.key_id().to_string()));
    // Same key again: fine. Another key: refused unless --replace.
    assert!(
        hub(&data, &["enroll", "--site", "qiaotou-wsy", "--device", "cart-01", "--public-key", p]).status.success()
    );
    let other = yilian_protocol::keys::SigningKey::generate().expect("key");
    std::fs::write(&pub_path, other.public_key().to_hex()).expect("write");
    let o = hub(&data, &["enroll", "--site", "qiaotou-wsy", "--device", "cart-01", "--public-key", p]);
    assert!(!o.status.success());
    assert!(text(&o).contains("already enrolled with another key"), "{}", text(&o));
    let o = hub(&data, &["enroll", "--site", "qiaotou-wsy", "--device", "cart-01", "--public-key", p, "--replace"]);
    assert!(o.status.success(), "{}", text(&o));

    let o = hub(&data, &["enroll", "--site", "bad site", "--device", "cart-02", "--public-key", p]);
    assert!(!o.status.success());
    assert!(text(&o).contains("not a slug"), "{}", text(&o));
    std::fs::write(&pub_path, "not hex").expect("write");
    let o = hub(&data, &["enroll", "--site", "s", "--device", "cart-02", "--public-key", p]);
    assert!(!o.status.success());
    assert!(text(&o).contains("64 hex digits"), "{}", text(&o));

    let o = hub(&data, &["specialist", "add", "--id", "li.na", "--name", "李娜"]);
    assert!(o.status.success(), "{}", text(&o));
    let token = String::from_utf8_lossy(&o.stdout).lines().last().expect("token line").trim().to_string();
    assert_eq!(token.len(), 64);

    let o = hub(&data, &["key"]);
    assert!(o.status.success(), "{}", text(&o));
    let printed = String::from_utf8_lossy(&o.stdout).lines().last().expect("key line").to_string();
    let file = std::fs::read_to_string(data.join("hub.pub")).expect("hub.pub");
    assert_eq!(printed.trim(), file.trim());
    // The key is made once and kept.
    let o2 = hub(&data, &["key"]);
    assert_eq!(String::from_utf8_lossy(&o2.stdout), String::from_utf8_lossy(&o.stdout));
}

#[test]
fn the_store_key_can_live_elsewhere_and_without_it_the_hub_refuses_the_database() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let key_file = dir.path().join("vault/store.key");
    let key_arg = key_file.to_str().expect("utf-8 path");
    let key = yilian_protocol::keys::SigningKey::generate().expect("key");
    let pub_path = dir.path().join("cart-01.pub");
    std::fs::write(&pub_path, format!("{}\n", key.public_key().to_hex())).expect("write");
    let p = pub_path.to_str().expect("utf-8 path");
    let enroll = ["enroll", "--site", "qiaotou-wsy", "--device", "cart-01", "--public-key", p];

    let o = hub(&data, &[&["--store-key", key_arg][..], &enroll[..]].concat());
    assert!(o.status.success(), "{}", text(&o));
    assert!(key_file.exists() && !data.join("keys/store.key").exists(), "the key is made where --store-key says");
    let o = hub(&data, &enroll);
    assert!(!o.status.success(), "without its key the database must be refused");
    assert!(text(&o).contains("missing"), "{}", text(&o));
    assert!(hub(&data, &[&["--store-key", key_arg][..], &enroll[..]].concat()).status.success());
}
