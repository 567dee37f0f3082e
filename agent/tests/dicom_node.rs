//! The DICOM node against real peers: dcmtk's `echoscu` and `storescu` (separate processes)
//! talking to the node running in this process on port 0.

use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use yilian_agent::config::DicomNodeConfig;
use yilian_agent::dicom_node::{self, ReadyStudy};
use yilian_protocol::message::Priority;

const AE: &str = "YILIAN";

fn shared_data() -> PathBuf {
    std::env::var_os("YILIAN_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"))
}

fn img(name: &str) -> PathBuf {
    shared_data().join("dicom-img").join(name)
}

fn ecg(name: &str) -> PathBuf {
    shared_data().join("dicom-ecg").join(name)
}

/// A node serving in this process until the token is cancelled.
struct Running {
    addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn start(cfg: DicomNodeConfig, inbox: Option<PathBuf>) -> Self {
        let node = dicom_node::bind(cfg, inbox).await.expect("bind");
        let addr = node.local_addr().expect("addr");
        let stop = CancellationToken::new();
        let token = stop.clone();
        let task = tokio::spawn(async move { node.serve(token).await.expect("serve") });
        Running { addr, stop, task }
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.expect("node task");
    }
}

fn config(dir: &Path, quiet_secs: u64) -> DicomNodeConfig {
    let mut cfg = DicomNodeConfig::new(dir.to_path_buf(), "127.0.0.1:0");
    cfg.quiet_secs = quiet_secs;
    cfg
}

/// `storescu` proposing only the files' SOP classes (`-R`) with the given transfer syntax option
/// (`-xe`, `-xi`, `-xr`, ...), as one association.
async fn storescu(addr: SocketAddr, called: &str, options: &[&str], files: &[PathBuf]) -> Output {
    tokio::process::Command::new("storescu")
        .args(["-R", "-nh", "-aet", "MODALITY", "-aec", called, "-to", "10", "-ta", "10", "-td", "60"])
        .args(options)
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .args(files)
        .output()
        .await
        .expect("storescu runs (dcmtk installed)")
}

async fn echoscu(addr: SocketAddr, called: &str) -> Output {
    tokio::process::Command::new("echoscu")
        .args(["-aet", "MODALITY", "-aec", called, "-to", "10", "-ta", "10"])
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .output()
        .await
        .expect("echoscu runs (dcmtk installed)")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// The bytes after the file meta group: (0002,0000) UL at offset 132 gives the group's length.
fn dataset(file: &[u8]) -> &[u8] {
    assert_eq!(&file[128..132], b"DICM");
    assert_eq!(&file[132..138], &[0x02, 0x00, 0x00, 0x00, b'U', b'L']);
    let len = u32::from_le_bytes(file[140..144].try_into().expect("4 bytes")) as usize;
    &file[144 + len..]
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

async fn wait_ready(dir: &Path, count: usize, within: Duration) -> Vec<ReadyStudy> {
    let start = Instant::now();
    loop {
        let ready = dicom_node::ready_studies(dir);
        if ready.len() >= count || start.elapsed() > within {
            return ready;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Each sample file: name, transfer syntax, the `storescu` option that proposes that syntax (so the
/// file travels as it is), SOP Class, SOP Instance and Study Instance UIDs, Modality.
struct Sample {
    file: &'static str,
    ts: &'static str,
    propose: &'static str,
    class: &'static str,
    sop: &'static str,
    study: &'static str,
    modality: &'static str,
}

const CR: &str = "1.2.840.10008.5.1.4.1.1.1";
const CT: &str = "1.2.840.10008.5.1.4.1.1.2";
const MR: &str = "1.2.840.10008.5.1.4.1.1.4";
const US: &str = "1.2.840.10008.5.1.4.1.1.6.1";
const US_MULTIFRAME: &str = "1.2.840.10008.5.1.4.1.1.3.1";
const SC: &str = "1.2.840.10008.5.1.4.1.1.7";
const EXPLICIT: &str = "1.2.840.10008.1.2.1";
/// Files `storescu` sends exactly as stored (no group lengths to drop, not deflated).
const UNCHANGED_BY_STORESCU: [&str; 2] = ["CR_dicomdirtests_6154.dcm", "JPGLosslessP14SV1_1s_1f_8b.dcm"];
const MR_SOP: &str = "1.3.6.1.4.1.5962.1.1.4.1.1.20040826185059.5457";
const MR_STUDY: &str = "1.3.6.1.4.1.5962.1.2.4.20040826185059.5457";

/// In sending order: `MR_small.dcm` goes first, so its three other encodings (same SOP Instance
/// UID, other bytes) are the conflicts.
const SAMPLES: [Sample; 12] = [
    Sample {
        file: "CR_dicomdirtests_6154.dcm",
        ts: EXPLICIT,
        propose: "-xe",
        class: CR,
        sop: "1.3.6.1.4.1.5962.1.1.0.0.0.1196527414.5534.0.11",
        study: "1.3.6.1.4.1.5962.1.1.0.0.0.1196527414.5534.0.1",
        modality: "CR",
    },
    Sample {
        file: "CT_small.dcm",
        ts: EXPLICIT,
        propose: "-xe",
        class: CT,
        sop: "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322",
        study: "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322",
        modality: "CT",
    },
    Sample {
        file: "MR_small.dcm",
        ts: EXPLICIT,
        propose: "-xe",
        class: MR,
        sop: MR_SOP,
        study: MR_STUDY,
        modality: "MR",
    },
    Sample {
        file: "examples_rgb_color.dcm",
        ts: EXPLICIT,
        propose: "-xe",
        class: US,
        sop: "1.2.826.0.1.3680043.8.498.60462359955763750474035947786807696063",
        study: "1.3.6.1.4.1.5962.1.2.13.20040826185059.5457",
        modality: "US",
    },
    Sample {
        file: "MR_small_implicit.dcm",
        ts: "1.2.840.10008.1.2",
        propose: "-xi",
        class: MR,
        sop: MR_SOP,
        study: MR_STUDY,
        modality: "MR",
    },
    Sample {
        file: "MR_small_RLE.dcm",
        ts: "1.2.840.10008.1.2.5",
        propose: "-xr",
        class: MR,
        sop: MR_SOP,
        study: MR_STUDY,
        modality: "MR",
    },
    Sample {
        file: "OBXXXX1A_rle.dcm",
        ts: "1.2.840.10008.1.2.5",
        propose: "-xr",
        class: US,
        sop: "1.3.46.670589.14.1000.210.2.199999.20110525185628.1.0",
        study: "1.3.46.670589.14.1000.210.4.199999.20110525182825.1.0",
        modality: "US",
    },
    Sample {
        file: "MR_small_jpeg_ls_lossless.dcm",
        ts: "1.2.840.10008.1.2.4.80",
        propose: "-xt",
        class: MR,
        sop: MR_SOP,
        study: MR_STUDY,
        modality: "MR",
    },
    Sample {
        file: "JPGLosslessP14SV1_1s_1f_8b.dcm",
        ts: "1.2.840.10008.1.2.4.70",
        propose: "-xs",
        class: US,
        sop: "1.2.826.0.1.3680043.2.1143.7710860250658251928326281926167748476",
        study: "1.2.826.0.1.3680043.2.1143.536994375713558855009808807549617714",
        modality: "US",
    },
    Sample {
        file: "examples_ybr_color.dcm",
        ts: "1.2.840.10008.1.2.4.50",
        propose: "-xy",
        class: US_MULTIFRAME,
        sop: "1.2.840.114340.3.8251017118051.3.20160503.121539.16117.4",
        study: "1.2.840.114340.3.8251017118051.1.20160503.120850.2171",
        modality: "US",
    },
    Sample {
        file: "RG3_J2KI.dcm",
        ts: "1.2.840.10008.1.2.4.91",
        propose: "-xw",
        class: CR,
        sop: "1.3.6.1.4.1.5962.1.1.11.1.3.20040826185059.5457",
        study: "1.3.6.1.4.1.5962.1.2.11.20040826185059.5457",
        modality: "CR",
    },
    Sample {
        file: "image_dfl.dcm",
        ts: "1.2.840.10008.1.2.1.99",
        propose: "-xd",
        class: SC,
        sop: "1.3.6.1.4.1.5962.1.1.0.0.0.977067309.6001.0",
        study: "1.3.6.1.4.1.5962.1.2.0.977067310.6001.0",
        modality: "OT",
    },
];

/// dcmtk's `storescp` in bit-preserving mode (`+B`): it writes each dataset exactly as it came
/// over the wire. `storescu` re-encodes most files as it sends them (it drops group lengths and
/// re-deflates), so what the node must store byte for byte is what this reference receives from
/// the same `storescu` command, not the file on disk.
struct Reference {
    addr: SocketAddr,
    out: tempfile::TempDir,
    _child: tokio::process::Child,
}

impl Reference {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("probe").local_addr().expect("addr").port();
        let out = tempfile::tempdir().expect("tmp");
        let child = tokio::process::Command::new("storescp")
            .args(["-aet", AE, "+xa", "+B", "-od"])
            .arg(out.path())
            .arg(port.to_string())
            .kill_on_drop(true)
            .spawn()
            .expect("storescp runs (dcmtk installed)");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let start = Instant::now();
        while !echoscu(addr, AE).await.status.success() {
            assert!(start.elapsed() < Duration::from_secs(10), "storescp did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Reference { addr, out, _child: child }
    }

    /// The dataset bytes `storescu` puts on the wire for this file with this option.
    async fn wire_dataset(&self, file: &Path, propose: &str) -> Vec<u8> {
        let out = storescu(self.addr, AE, &[propose], &[file.to_path_buf()]).await;
        assert!(out.status.success() && !text(&out).contains("E: "), "reference: {}", text(&out));
        let stored: Vec<PathBuf> = walk(self.out.path());
        assert_eq!(stored.len(), 1, "reference stored one file");
        let bytes = std::fs::read(&stored[0]).expect("reference file");
        std::fs::remove_file(&stored[0]).expect("remove");
        dataset(&bytes).to_vec()
    }
}

/// `dcmdump` (an independent reader) on a stored file: `(tag, value)` for the given tags.
fn dcmdump(path: &Path, tags: &[&str]) -> Vec<String> {
    let mut cmd = std::process::Command::new("dcmdump");
    cmd.args(["-q", "-Un"]);
    for t in tags {
        cmd.args(["+P", t]);
    }
    let out = cmd.arg(path).output().expect("dcmdump runs");
    assert!(out.status.success(), "dcmdump {}: {}", path.display(), text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| Some(l.split_once('[')?.1.split_once(']')?.0.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sample_file_is_stored_as_received_and_studies_become_ready() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("dicom");
    let inbox = tmp.path().join("inbox");
    let mut cfg = config(&dir, 1);
    cfg.modality_priority.insert("CR".into(), "urgent".into());
    let node = Running::start(cfg, Some(inbox.clone())).await;
    let reference = Reference::start().await;

    let echo = echoscu(node.addr, AE).await;
    assert!(echo.status.success(), "C-ECHO: {}", text(&echo));

    // One association per transfer syntax, each proposing exactly the files' own syntax.
    let mut groups: Vec<(&str, Vec<PathBuf>)> = Vec::new();
    for s in &SAMPLES {
        match groups.iter_mut().find(|(p, _)| *p == s.propose) {
            Some((_, files)) => files.push(img(s.file)),
            None => groups.push((s.propose, vec![img(s.file)])),
        }
    }
    for (propose, files) in &groups {
        let out = storescu(node.addr, AE, &[*propose], files).await;
        assert!(out.status.success() && !text(&out).contains("E: "), "{propose}: {}", text(&out));
    }
    let ecgs = ["waveform_ecg.dcm", "ecg-dicom-web-viewer_test_ecg.dcm"].map(ecg);
    let out = storescu(node.addr, AE, &["-xe"], &ecgs).await;
    assert!(out.status.success() && !text(&out).contains("E: "), "{}", text(&out));
    let out = storescu(node.addr, AE, &["-xi"], &[ecg("ecgtoolkit_Example.dcm")]).await;
    assert!(out.status.success() && !text(&out).contains("E: "), "{}", text(&out));

    // Nine studies (the four MR files are one instance), each ready one quiet second after its
    // association was released.
    let ready = wait_ready(&dir, 9, Duration::from_secs(15)).await;
    assert_eq!(ready.len(), 9, "{ready:#?}");
    assert!(std::fs::read_dir(dir.join("incoming")).expect("incoming").next().is_none(), "incoming is empty");
    for s in SAMPLES.iter().filter(|s| s.sop != MR_SOP || s.file == "MR_small.dcm") {
        let study = ready.iter().find(|r| r.study_uid == s.study).unwrap_or_else(|| panic!("{} ready", s.file));
        assert_eq!(study.instances.len(), 1, "{}", s.file);
        let i = &study.instances[0];
        assert_eq!(
            (i.sop_instance_uid.as_str(), i.sop_class_uid.as_str(), i.transfer_syntax.as_str()),
            (s.sop, s.class, s.ts),
            "{}",
            s.file
        );
        assert_eq!(study.modality, s.modality, "{}", s.file);
        let expected = if s.modality == "CR" { Priority::Urgent } else { Priority::Routine };
        assert_eq!(study.priority, expected, "{}", s.file);
        assert_eq!(study.calling_ae, "MODALITY");
        assert_eq!(study.dir, dir.join("ready").join(s.study));
        let path = study.dir.join(&i.file);
        assert_eq!(i.file, format!("{}.dcm", s.sop));
        let stored = std::fs::read(&path).expect("stored file");
        assert_eq!(i.size, stored.len() as u64, "{}", s.file);
        assert_eq!(i.sha256, sha256(&stored), "{}", s.file);
        let wire = reference.wire_dataset(&img(s.file), s.propose).await;
        assert!(dataset(&stored) == wire.as_slice(), "{}: stored dataset differs from the bytes sent", s.file);
        if UNCHANGED_BY_STORESCU.contains(&s.file) {
            let original = std::fs::read(img(s.file)).expect("original");
            assert!(dataset(&stored) == dataset(&original), "{}: dataset differs from the original", s.file);
        }
        // dcmtk reads our file meta group: the command's UIDs and the context's syntax.
        assert_eq!(dcmdump(&path, &["0002,0002", "0002,0003", "0002,0010"]), vec![s.class, s.sop, s.ts], "{}", s.file);
        assert_eq!(dcmdump(&path, &["0020,000d"]), vec![s.study], "{}", s.file);
    }
    let ct = ready.iter().find(|r| r.modality == "CT").expect("CT study");
    assert_eq!((ct.patient_name.as_str(), ct.patient_id.as_str()), ("CompressedSamples^CT1", "1CT1"));
    assert_eq!(ready[0].priority, Priority::Urgent, "most urgent first");

    // The other three MR encodings carry MR_small's SOP Instance UID with other bytes.
    let conflicts = dicom_node::conflicts(&dir);
    assert_eq!(conflicts.len(), 3, "{conflicts:#?}");
    for (name, propose) in
        [("MR_small_implicit.dcm", "-xi"), ("MR_small_RLE.dcm", "-xr"), ("MR_small_jpeg_ls_lossless.dcm", "-xt")]
    {
        let wire = reference.wire_dataset(&img(name), propose).await;
        let c = conflicts
            .iter()
            .find(|c| std::fs::read(&c.file).is_ok_and(|b| dataset(&b) == wire.as_slice()))
            .unwrap_or_else(|| panic!("{name} set aside byte for byte"));
        assert_eq!(c.sop_instance_uid, MR_SOP);
        assert_eq!(c.received_sha256, sha256(&std::fs::read(&c.file).expect("read")));
        assert_eq!(c.calling_ae, "MODALITY");
        assert!(
            c.file
                .file_name()
                .expect("name")
                .to_string_lossy()
                .starts_with(&format!("{MR_SOP}-{}", &c.received_sha256[..8]))
        );
    }

    // ECGs went to the inbox (routine: MEDIUM and no rule for ECG), bytes as sent.
    for (name, propose, sop) in [
        ("waveform_ecg.dcm", "-xe", "1.3.6.1.4.1.20029.40.20130125105919.5407.1.1"),
        ("ecg-dicom-web-viewer_test_ecg.dcm", "-xe", "1.3.6.1.4.1.6018.3.999"),
        ("ecgtoolkit_Example.dcm", "-xi", "1.2.826.0.1.34471.2.44.6.20021122091000..1"),
    ] {
        let stored = std::fs::read(inbox.join("routine").join(format!("{sop}.dcm"))).expect("ECG in the inbox");
        let wire = reference.wire_dataset(&ecg(name), propose).await;
        assert!(dataset(&stored) == wire.as_slice(), "{name}: stored dataset differs from the bytes sent");
    }
    assert_eq!(std::fs::read_dir(inbox.join("routine")).expect("routine").count(), 3, "no .part left");
    assert!(ready.iter().all(|r| r.modality != "ECG"), "no ECG on the imaging path");
    node.stop().await;
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_instance_is_stored_once_and_a_changed_one_is_set_aside() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("dicom");
    // No quiet-period completion here: the study completes by the hint.
    let node = Running::start(config(&dir, 3600), None).await;
    let ct = img("CT_small.dcm");
    let sop = "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322";
    let study = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322";
    for _ in 0..2 {
        let out = storescu(node.addr, AE, &["-xe"], std::slice::from_ref(&ct)).await;
        assert!(out.status.success() && !text(&out).contains("E: "), "{}", text(&out));
    }
    let incoming = dir.join("incoming").join(study);
    let stored = incoming.join(format!("{sop}.dcm"));
    assert_eq!(
        walk(&dir).iter().filter(|p| p.extension().is_some_and(|e| e == "dcm")).collect::<Vec<_>>(),
        vec![&stored],
        "stored once"
    );
    assert!(dicom_node::conflicts(&dir).is_empty());

    // Same SOP Instance UID, one pixel changed: answered with success, set aside, listed.
    let mut changed = std::fs::read(&ct).expect("ct");
    let pixel = changed.windows(8).rposition(|w| w == PIXEL_DATA_OW).expect("pixel data") + 12;
    changed[pixel + 100] ^= 0x01;
    let changed_path = tmp.path().join("CT_changed.dcm");
    std::fs::write(&changed_path, &changed).expect("write");
    let out = storescu(node.addr, AE, &["-xe"], std::slice::from_ref(&changed_path)).await;
    assert!(out.status.success() && !text(&out).contains("E: "), "{}", text(&out));
    let conflicts = dicom_node::conflicts(&dir);
    assert_eq!(conflicts.len(), 1, "{conflicts:#?}");
    let c = &conflicts[0];
    assert_eq!(c.sop_instance_uid, sop);
    assert_eq!(c.stored_sha256, sha256(&std::fs::read(&stored).expect("stored")));
    assert_eq!(c.received_sha256, sha256(&std::fs::read(&c.file).expect("conflict")));
    assert_ne!(c.stored_sha256, c.received_sha256);
    assert_eq!(c.file, dir.join("conflicts").join(format!("{sop}-{}.dcm", &c.received_sha256[..8])));
    let kept = std::fs::read(&c.file).expect("read");
    let kept_pixel = kept.windows(8).rposition(|w| w == PIXEL_DATA_OW).expect("pixel data") + 12;
    assert_eq!(kept[kept_pixel + 100], changed[pixel + 100], "the changed pixel is kept");

    // The hint completes the study at once.
    assert!(dicom_node::mark_complete(&dir, study).expect("hint"));
    let ready = wait_ready(&dir, 1, Duration::from_secs(10)).await;
    assert_eq!(ready.len(), 1);
    assert_eq!(ready[0].instances.len(), 1);
    assert_eq!(ready[0].instances[0].sha256, c.stored_sha256);
    assert_eq!(ready[0].priority, Priority::Routine);
    assert!(!incoming.exists(), "incoming folder removed");
    let on_disk: ReadyStudy =
        serde_json::from_slice(&std::fs::read(ready[0].dir.join("study.json")).expect("study.json")).expect("json");
    assert_eq!(on_disk.study_uid, study);
    assert_eq!(on_disk.instances, ready[0].instances);

    // Sent again after it became ready: recognised, nothing new.
    let out = storescu(node.addr, AE, &["-xe"], std::slice::from_ref(&ct)).await;
    assert!(out.status.success() && !text(&out).contains("E: "), "{}", text(&out));
    assert!(!incoming.exists(), "a resend of a ready instance starts no new study");
    assert_eq!(dicom_node::conflicts(&dir).len(), 1);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_called_ae_title_is_rejected() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("dicom");
    let node = Running::start(config(&dir, 1), None).await;
    let echo = echoscu(node.addr, "ANY-SCP").await;
    assert!(!echo.status.success());
    assert!(text(&echo).contains("Called AE Title Not Recognized"), "{}", text(&echo));
    let out = storescu(node.addr, "ANY-SCP", &["-xe"], &[img("CT_small.dcm")]).await;
    assert!(text(&out).contains("Called AE Title Not Recognized"), "{}", text(&out));
    assert!(walk(&dir).is_empty(), "nothing stored: {:?}", walk(&dir));
    node.stop().await;
}

/// Where a Part-10 file's dataset starts, and the file's length.
fn meta_end_and_len(path: &Path) -> (u64, u64) {
    let mut head = [0u8; 144];
    std::io::Read::read_exact(&mut std::fs::File::open(path).expect("open"), &mut head).expect("head");
    let meta_end = 144 + u64::from(u32::from_le_bytes(head[140..144].try_into().expect("4 bytes")));
    (meta_end, std::fs::metadata(path).expect("metadata").len())
}

/// (7FE0,0010) Pixel Data, OW, in explicit VR little endian: tag, VR, two reserved bytes.
const PIXEL_DATA_OW: [u8; 8] = [0xE0, 0x7F, 0x10, 0x00, b'O', b'W', 0, 0];

/// Peak resident memory of this process in KiB (`VmHWM`).
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// Writes a CT-like instance of `rows`×`rows` 16-bit pixels (CT_small.dcm's header, Rows and
/// Columns patched) without holding it in memory; returns the SHA-256 of its dataset.
fn write_large_ct(path: &Path, rows: u16) -> String {
    use std::io::Write;
    let mut head = std::fs::read(img("CT_small.dcm")).expect("ct");
    let at = head.windows(8).rposition(|w| w == PIXEL_DATA_OW).expect("pixel data");
    // After the pixels CT_small has 138 bytes of Data Set Trailing Padding (FFFC,FFFC), which
    // storescu drops as it sends; leaving it out makes the wire carry this file's dataset as is.
    assert_eq!(head.len(), at + 12 + 32_768 + 138);
    head.truncate(at);
    for tag in [[0x28, 0x00, 0x10, 0x00, b'U', b'S', 2, 0], [0x28, 0x00, 0x11, 0x00, b'U', b'S', 2, 0]] {
        let p = head.windows(8).position(|w| w == tag).expect("rows/columns") + 8;
        head[p..p + 2].copy_from_slice(&rows.to_le_bytes());
    }
    let len = u32::from(rows) * u32::from(rows) * 2;
    head.extend_from_slice(&PIXEL_DATA_OW);
    head.extend_from_slice(&len.to_le_bytes());
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    f.write_all(&head).expect("write");
    let mut h = Sha256::new();
    h.update(dataset(&head));
    let mut chunk = vec![0u8; 1 << 20];
    let mut left = len as usize;
    let mut n = 0u32;
    while left > 0 {
        for (i, b) in chunk.iter_mut().enumerate() {
            *b = (i as u32).wrapping_mul(31).wrapping_add(n) as u8;
        }
        let take = left.min(chunk.len());
        f.write_all(&chunk[..take]).expect("write");
        h.update(&chunk[..take]);
        left -= take;
        n += 1;
    }
    f.flush().expect("flush");
    hex::encode(h.finalize())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_512_mib_instance_is_streamed_to_disk_with_bounded_memory() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("dicom");
    let big = tmp.path().join("CT_large.dcm");
    let expected = write_large_ct(&big, 16_384);
    assert_eq!(std::fs::metadata(&big).expect("big").len(), 39_206 - 138 - 32_768 + 536_870_912);
    let node = Running::start(config(&dir, 3600), None).await;

    // Reset the high-water mark (Linux 4.0+) so that it measures this transfer alone.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = peak_rss_kib();
    let out = storescu(node.addr, AE, &["-xe"], std::slice::from_ref(&big)).await;
    assert!(out.status.success() && !text(&out).contains("E: "), "{}", text(&out));
    let growth_mib = peak_rss_kib().saturating_sub(before) / 1024;
    println!("peak RSS growth while receiving 512 MiB: {growth_mib} MiB");
    assert!(growth_mib < 64, "peak RSS grew by {growth_mib} MiB while receiving 512 MiB");

    let stored = dir.join(
        "incoming/1.3.6.1.4.1.5962.1.2.1.20040119072730.12322/1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322.dcm",
    );
    let (meta_end, len) = meta_end_and_len(&stored);
    let (big_meta_end, big_len) = meta_end_and_len(&big);
    assert_eq!(len - meta_end, big_len - big_meta_end, "dataset length");
    let mut file = std::fs::File::open(&stored).expect("stored");
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(meta_end)).expect("seek");
    let mut h = Sha256::new();
    std::io::copy(&mut file, &mut h).expect("hash");
    assert_eq!(hex::encode(h.finalize()), expected, "the 512 MiB dataset is stored byte for byte");
    node.stop().await;
}
