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

fn shared(rel: &str) -> std::path::PathBuf {
    std::env::var_os("YILIAN_SHARED_DATA")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"))
        .join(rel)
}

#[test]
fn inspect_says_what_a_cart_file_holds_lead_by_lead() {
    let out = agent().args(["inspect", "--json"]).arg(shared("scp/ecgtoolkit_Example.scp")).output().expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["format"], "scp-ecg");
    assert_eq!(v["patient"]["name"], "Clark");
    assert_eq!(v["acquired_at"], "2002-11-22T09:10:00");
    let sums: Vec<i64> = v["leads"].as_array().expect("leads").iter().filter_map(|l| l["sum"].as_i64()).collect();
    assert_eq!(sums, [-4921, -4084, -2299, -2648, -3119, -2499, -3009, -1762, 837, 4432, -2721, -1570]);
    assert_eq!(v["leads"][8]["name"], "III");
    assert_eq!(v["leads"][8]["scp_code"], 61);
    assert_eq!(v["leads"][0]["sample_rate_hz"], 500);
    assert_eq!(v["leads"][0]["resolution_nv"], 2500.0);
    assert_eq!(v["median_beat"].as_array().map(Vec::len), Some(12));

    // A WFDB record by its header: the other files are found beside it.
    let out = agent().arg("inspect").arg(shared("wfdb/mitdb/100.hea")).output().expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("annotations: 2274"), "{text}");
    assert!(text.contains("MLII"), "{text}");

    // The truncated export of a Contec cart: read, with the warning the specialist will see.
    let out = agent().arg("inspect").arg(shared("contec/0000050.ECG.scp")).output().expect("run");
    assert!(String::from_utf8_lossy(&out.stdout).contains("declares 37855 samples, holds 32767"));

    // A file no reader takes: what it looks like, and a failure exit.
    let out = agent().arg("inspect").arg(shared("contec/0000050.ECG.csv")).output().expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("text file"));
    let out = agent().arg("inspect").arg(shared("dicom-img/MR_small.dcm")).output().expect("run");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("MR Image Storage"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn analyze_gives_the_same_pre_read_for_one_recording_in_three_formats() {
    let preread = |rel: &str| -> serde_json::Value {
        let out = agent().args(["analyze", "--json"]).arg(shared(rel)).output().expect("run");
        assert!(out.status.success(), "{rel}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("json")
    };
    // The same integer samples in SCP-ECG, DICOM and aECG (lead order differs): one answer.
    let scp = preread("scp/ecgtoolkit_Example.scp");
    for other in ["dicom-ecg/ecgtoolkit_Example.dcm", "aecg/Example_aECG.xml"] {
        assert_eq!(preread(other)["qrs"], scp["qrs"], "{other}");
    }
    let qrs = scp["qrs"].as_array().expect("qrs");
    assert!((10..=14).contains(&qrs.len()), "10 s at about 72/min: {qrs:?}");
    assert_eq!(scp["sample_rate_hz"], 500.0);
    // MIT-BIH 100 by its header: 2273 reference beats in 30 min.
    let mit = preread("wfdb/mitdb/100.hea");
    let n = mit["qrs"].as_array().map_or(0, Vec::len);
    assert!(n.abs_diff(2273) <= 3, "{n} QRS in record 100");
    let text = agent().arg("analyze").arg(shared("wfdb/mitdb/100.hea")).output().expect("run");
    let said = String::from_utf8_lossy(&text.stdout);
    assert!(said.contains("heart rate: 76 /min"), "{said}");
    // Rhythm segments, ectopy and PR are printed; record 100 is sinus rhythm throughout.
    assert!(said.contains("rhythm: samples ") && said.contains("sinus rhythm / 窦性心律"), "{said}");
    assert!(said.contains("ventricular beats: ") && said.contains(" PR "), "{said}");
    assert_eq!(scp["beat_classes"].as_str().map(str::len), Some(qrs.len()));
    let pr = scp["median"]["pr_ms"].as_f64().expect("PR");
    assert!((pr - 148.0).abs() <= 20.0, "PR {pr} ms, the cart said 148");
    assert_eq!(scp["quality"]["messages"], serde_json::json!([]), "a clean recording");
    // The Contec file whose chest electrodes were not connected: said at once.
    let out = agent().arg("analyze").arg(shared("contec/0000050.ECG")).output().expect("run");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("QUALITY: 请重做：缺少胸导联 V1、V2、V3、V4、V5、V6"), "{said}");
}

#[test]
fn send_checks_the_file_then_queues_it_in_the_inbox_with_its_question() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("agent.toml");
    std::fs::write(
        &cfg,
        "site = 'qiaotou'\ndevice = 'cart-1'\nkey = 'k'\nhub_public_key = 'h'\nca_certificate = 'ca.pem'\ncertificate = 'cart-1.crt'\nspool_dir = 's'\nreports_dir = 'r'\n[inbox]\ndir = 'inbox'\n",
    )
    .expect("write");
    let out = agent()
        .args(["send", "--config"])
        .arg(&cfg)
        .arg(shared("aecg/Example_aECG.xml"))
        .args(["--priority", "stat", "--question", "胸痛2小时，请排除急性心梗"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let queued = dir.path().join("inbox/stat/Example_aECG.xml");
    assert_eq!(std::fs::read(&queued).expect("queued"), std::fs::read(shared("aecg/Example_aECG.xml")).expect("src"));
    let q = std::fs::read_to_string(dir.path().join("inbox/stat/Example_aECG.xml.question.txt")).expect("question");
    assert_eq!(q, "胸痛2小时，请排除急性心梗");

    // Unreadable: refused at once, nothing copied.
    let out = agent().args(["send", "--config"]).arg(&cfg).arg(shared("contec/0000050.ECG.csv")).output().expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not sent"));
    assert!(!dir.path().join("inbox/routine/0000050.ECG.csv").exists());
}

#[test]
fn check_config_passes_a_runnable_configuration_and_lists_every_problem_of_another() {
    let dir = tempfile::tempdir().expect("tmp");
    let prefix = dir.path().join("cart-01");
    assert!(agent().args(["keygen", "--out"]).arg(&prefix).status().expect("keygen").success());
    let hub = yilian_protocol::keys::SigningKey::generate().expect("key");
    std::fs::write(dir.path().join("hub.pub"), hub.public_key().to_hex()).expect("hub.pub");
    let base = "site = 'qiaotou-wsy'\ndevice = 'cart-01'\nkey = 'cart-01.pk8'\nhub_public_key = 'hub.pub'\n\
                broker = 'mqtt://127.0.0.1:1883'\ninsecure_plaintext = true\nspool_dir = 'spool'\nreports_dir = 'reports'\n";
    let good = dir.path().join("good.toml");
    std::fs::write(&good, base).expect("write");
    let out = agent().args(["check-config", "--config"]).arg(&good).output().expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK (qiaotou-wsy / cart-01"));

    let bad = dir.path().join("bad.toml");
    let text = base.replace("cart-01.pk8", "missing.pk8")
        + "[update]\nhub = 'https://hub:8443'\nroot = 'nowhere.json'\ndir = 'update'\nmaintenance = '22:00-06:00'\n\
           [[serial]]\nname = 'cart'\npath = '/dev/no-such-cart'\nbaud = 115200\ndriver = 'ylf'\n";
    std::fs::write(&bad, text).expect("write");
    let out = agent().args(["check-config", "--config"]).arg(&bad).output().expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in ["missing.pk8", "nowhere.json", "/dev/no-such-cart"] {
        assert!(err.contains(expected), "{expected} in {err}");
    }
}
