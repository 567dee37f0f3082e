//! The county repository and the agent's client on real files: releases signed offline and
//! verified, and every way the trust chain must refuse.

use std::path::{Path, PathBuf};
use yilian_update::client::{self, CountyTransport, Decision, Source};
use yilian_update::repo::{self, Lifetimes, RepoDir};
use yilian_update::{Kind, ReleaseMeta, UpdateError, Version};

const TRIPLE: &str = "x86_64-unknown-linux-gnu";

struct County {
    _tmp: tempfile::TempDir,
    repo: RepoDir,
    offline: PathBuf,
    dir: PathBuf,
}

async fn county() -> County {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().canonicalize().expect("canonical");
    let repo = RepoDir(dir.join("hub/tuf"));
    let offline = dir.join("usb");
    repo::init(&repo, &offline, 3, 2, Lifetimes::default(), repo::now()).await.expect("init");
    County { _tmp: tmp, repo, offline, dir }
}

fn v(s: &str) -> Version {
    s.parse().expect("version")
}

fn agent(version: &str, min: &str, allow_downgrade: bool) -> ReleaseMeta {
    ReleaseMeta {
        kind: Kind::Agent,
        version: v(version),
        min_version: v(min),
        allow_downgrade,
        triple: TRIPLE.into(),
        base_version: None,
        base_sha256: String::new(),
        full: String::new(),
    }
}

/// A release file: a script standing in for an agent binary.
fn release_file(c: &County, version: &str) -> PathBuf {
    let p = c.dir.join(format!("build/yilian-agent-{version}"));
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(&p, format!("#!/bin/sh\necho yilian-agent {version}\n")).expect("write");
    p
}

async fn release(c: &County, version: &str, min: &str, allow_downgrade: bool) -> String {
    let file = release_file(c, version);
    repo::add_target(
        &c.repo,
        &c.offline,
        &file,
        &agent(version, min, allow_downgrade),
        Lifetimes::default(),
        repo::now(),
    )
    .await
    .expect("add target")
}

/// An agent's view: its own datastore, the shipped root, the repository by `file://` (an
/// offline bundle; HTTPS goes through the same transport in the end-to-end tests).
fn source(c: &County, agent: &str) -> Source {
    let url = |p: &Path| url::Url::from_directory_path(p).expect("url");
    Source {
        shipped_root: c.repo.root(),
        datastore: c.dir.join(agent).join("tuf"),
        metadata_url: url(&c.repo.metadata()),
        targets_url: url(&c.repo.targets()),
    }
}

fn transport() -> CountyTransport {
    CountyTransport::new(reqwest::Client::new())
}

async fn load(c: &County, agent: &str) -> Result<tough::Repository, UpdateError> {
    client::load(&source(c, agent), transport()).await
}

#[tokio::test]
async fn a_signed_release_is_found_decided_and_fetched_byte_for_byte() {
    let c = county().await;
    let name = release(&c, "1.2.0", "1.0.0", false).await;
    assert_eq!(name, format!("agent-{TRIPLE}-1.2.0"));
    let repo = load(&c, "cart").await.expect("load");
    assert_eq!(client::latest_agent(&repo, TRIPLE).as_deref(), Some(name.as_str()));
    assert_eq!(client::latest_agent(&repo, "aarch64-unknown-linux-gnu"), None);
    let d = client::decide(&repo, &name, v("1.1.0"), v("1.1.0")).expect("decide");
    let Decision::Install { meta, length, .. } = d else { panic!("{d:?}") };
    assert_eq!(meta, agent("1.2.0", "1.0.0", false));
    let dest = c.dir.join("cart/releases/1.2.0/yilian-agent");
    assert_eq!(client::fetch(&repo, &name, &dest, true).await.expect("fetch"), length);
    assert_eq!(std::fs::read(&dest).expect("staged"), std::fs::read(release_file(&c, "1.2.0")).expect("built"));
    assert_eq!(client::decide(&repo, &name, v("1.2.0"), v("1.2.0")).expect("decide"), Decision::UpToDate);
    // A release is never replaced under its name.
    let again = repo::add_target(
        &c.repo,
        &c.offline,
        &release_file(&c, "1.2.0"),
        &agent("1.2.0", "1.0.0", false),
        Lifetimes::default(),
        repo::now(),
    )
    .await;
    assert!(again.is_err());
}

#[tokio::test]
async fn a_tampered_release_file_is_refused_and_nothing_is_staged() {
    let c = county().await;
    let name = release(&c, "1.2.0", "1.0.0", false).await;
    let stored: Vec<PathBuf> =
        std::fs::read_dir(c.repo.targets()).expect("targets").flatten().map(|e| e.path()).collect();
    assert_eq!(stored.len(), 1);
    let mut bytes = std::fs::read(&stored[0]).expect("read");
    bytes[12] ^= 0x20;
    std::fs::write(&stored[0], &bytes).expect("write");
    let repo = load(&c, "cart").await.expect("metadata still verifies");
    let dest = c.dir.join("cart/releases/1.2.0/yilian-agent");
    let err = client::fetch(&repo, &name, &dest, true).await.expect_err("tampered");
    assert!(matches!(err, UpdateError::Tampered(_)), "{err}");
    assert!(!dest.exists() && !dest.with_extension("part").exists());
}

/// A hub that is broken into has the snapshot and timestamp keys but not the targets key: a
/// release it signs itself is refused. So is a new root signed by fewer root keys than the
/// threshold.
#[tokio::test]
async fn a_release_or_root_signed_by_too_few_or_the_wrong_keys_is_refused() {
    let c = county().await;
    release(&c, "1.2.0", "1.0.0", false).await;
    load(&c, "cart").await.expect("the honest repository loads");

    // The hub's own keys, posing as the targets key: a fake root naming the snapshot key for
    // targets lets tough's editor sign; the real root does not list that key.
    let real: serde_json::Value = serde_json::from_slice(&std::fs::read(c.repo.root()).expect("root")).expect("json");
    let mut fake = real.clone();
    let snapshot_ids = fake["signed"]["roles"]["snapshot"]["keyids"].clone();
    fake["signed"]["roles"]["targets"]["keyids"] = snapshot_ids;
    let fake_path = c.dir.join("fake-root.json");
    std::fs::write(&fake_path, serde_json::to_vec(&fake).expect("json")).expect("write");
    let evil = release_file(&c, "6.6.6");
    let mut target = tough::schema::Target::from_path(&evil).await.expect("target");
    target.custom = agent("6.6.6", "0.0.0", true).to_custom();
    let mut editor = tough::editor::RepositoryEditor::new(&fake_path).await.expect("editor");
    let n = |x: u64| std::num::NonZeroU64::new(x).expect("nonzero");
    let later = repo::now().checked_add(jiff02::SignedDuration::from_hours(48)).expect("time");
    editor
        .add_target(format!("agent-{TRIPLE}-6.6.6").as_str(), target)
        .expect("add")
        .targets_version(n(10))
        .expect("v")
        .targets_expires(later)
        .expect("e")
        .snapshot_version(n(10))
        .snapshot_expires(later)
        .timestamp_version(n(10))
        .timestamp_expires(later);
    let keys = [
        yilian_update::keys::source(&c.repo.snapshot_key()).expect("key"),
        yilian_update::keys::source(&c.repo.timestamp_key()).expect("key"),
    ];
    let signed = editor.sign(&keys).await.expect("the hub can sign with its own keys");
    let out = c.dir.join("evil");
    signed.write(&out).await.expect("write");
    for f in ["10.targets.json", "10.snapshot.json", "timestamp.json"] {
        std::fs::copy(out.join(f), c.repo.metadata().join(f)).expect("plant");
    }
    let err = load(&c, "cart").await.expect_err("a release the hub signed itself");
    assert!(matches!(err, UpdateError::BadSignature(_)), "{err}");
    let err = load(&c, "fresh-cart").await.expect_err("also for an agent that never saw the repository");
    assert!(matches!(err, UpdateError::BadSignature(_)), "{err}");

    // A root version 2 signed by one root key of the two required.
    let c = county().await;
    let mut root: tough::schema::Signed<tough::schema::Root> =
        serde_json::from_slice(&std::fs::read(c.repo.root()).expect("root")).expect("root json");
    root.signed.version = n(2);
    let one = [yilian_update::keys::source(&c.offline.join("root-1.pk8")).expect("key")];
    let holder = tough::schema::KeyHolder::Root(root.signed.clone());
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let signed = tough::editor::signed::SignedRole::new(root.signed.clone(), &holder, &one, &rng).await.expect("sign");
    signed.write(c.repo.metadata(), true).await.expect("write 2.root.json");
    let err = load(&c, "cart").await.expect_err("root signed below its threshold");
    assert!(matches!(err, UpdateError::BadSignature(_)), "{err}");
}

#[tokio::test]
async fn an_old_timestamp_replayed_after_a_restart_is_refused() {
    let c = county().await;
    release(&c, "1.2.0", "1.0.0", false).await;
    let old = std::fs::read(c.repo.metadata().join("timestamp.json")).expect("timestamp");
    // The hub refreshes with its online keys alone; the agent sees the new timestamp.
    assert!(repo::refresh(&c.repo, Lifetimes::default(), repo::now(), true).await.expect("refresh"));
    assert!(!repo::refresh(&c.repo, Lifetimes::default(), repo::now(), false).await.expect("not due"));
    load(&c, "cart").await.expect("load the fresh timestamp");
    // Someone serves yesterday's files; the agent restarts (a new load, the same datastore).
    std::fs::write(c.repo.metadata().join("timestamp.json"), &old).expect("replay");
    let err = load(&c, "cart").await.expect_err("replayed timestamp");
    assert!(matches!(err, UpdateError::Rollback(_)), "{err}");
    // An agent that never saw the newer one cannot tell: that is what the datastore is for.
    load(&c, "new-cart").await.expect("no history, no rollback to see");
}

#[tokio::test]
async fn expired_metadata_is_reported_as_a_suspected_freeze() {
    let c = county().await;
    release(&c, "1.2.0", "1.0.0", false).await;
    let ten_days_ago = repo::now().checked_sub(jiff02::SignedDuration::from_hours(240)).expect("time");
    repo::refresh(&c.repo, Lifetimes::default(), ten_days_ago, true).await.expect("refresh");
    let err = load(&c, "cart").await.expect_err("expired timestamp");
    assert!(matches!(&err, UpdateError::SuspectedFreeze { role } if role == "timestamp"), "{err}");
    assert!(err.to_string().contains("freeze"));
}

#[tokio::test]
async fn a_downgrade_is_refused_unless_the_signed_release_allows_it() {
    let c = county().await;
    release(&c, "1.2.0", "1.0.0", false).await;
    let older = release(&c, "1.1.0", "1.0.0", false).await;
    let sanctioned = release(&c, "1.0.5", "1.0.0", true).await;
    let needs_new = release(&c, "2.0.0", "1.5.0", false).await;
    let repo = load(&c, "cart").await.expect("load");
    let err = client::decide(&repo, &older, v("1.2.0"), v("1.2.0")).expect_err("downgrade");
    assert!(
        matches!(err, UpdateError::Downgrade { offered, installed } if offered == v("1.1.0") && installed == v("1.2.0"))
    );
    // Highest ever installed counts, not the running one (a rollback to 1.1.0 happened).
    assert!(client::decide(&repo, &older, v("1.0.0"), v("1.2.0")).is_err());
    assert!(matches!(client::decide(&repo, &sanctioned, v("1.2.0"), v("1.2.0")), Ok(Decision::Install { .. })));
    let err = client::decide(&repo, &needs_new, v("1.2.0"), v("1.2.0")).expect_err("min version");
    assert!(matches!(err, UpdateError::TooOld { .. }), "{err}");
    assert_eq!(client::latest_agent(&repo, TRIPLE).as_deref(), Some(needs_new.as_str()));
    assert!(matches!(client::decide(&repo, "agent-nope", v("1.0.0"), v("1.0.0")), Err(UpdateError::NoSuchRelease(_))));
}

/// County IT replaces a root key (a lost USB key): agents follow the new root by themselves, both
/// one that has seen the repository and one shipped the old root; the retired key alone can no
/// longer sign a root.
#[tokio::test]
async fn a_rotated_root_key_is_followed_and_the_retired_one_is_powerless() {
    let c = county().await;
    release(&c, "1.2.0", "1.0.0", false).await;
    load(&c, "cart").await.expect("load v1");
    let v = repo::rotate_root_key(&c.repo, &c.offline, 1, Lifetimes::default(), repo::now()).await.expect("rotate");
    assert_eq!(v, 2);
    let retired = c.offline.join("root-1.retired-1.pk8");
    assert!(retired.exists() && c.offline.join("root-1.pk8").exists());
    let repo = load(&c, "cart").await.expect("an agent with history follows");
    assert_eq!(repo.root().signed.version.get(), 2);
    let fresh = load(&c, "new-cart").await.expect("an agent shipped root v1 follows");
    assert_eq!(fresh.root().signed.version.get(), 2);
    // Releases still verify after the rotation.
    release(&c, "1.3.0", "1.0.0", false).await;
    load(&c, "cart").await.expect("a release after the rotation");

    // Root v3 signed by the retired key and one current key: one valid signature of two needed.
    let mut root: tough::schema::Signed<tough::schema::Root> =
        serde_json::from_slice(&std::fs::read(c.repo.root()).expect("root")).expect("root json");
    root.signed.version = std::num::NonZeroU64::new(3).expect("3");
    let mut old_view = root.signed.clone();
    // Let the editor sign with the retired key by listing it (the agents' root does not).
    let retired_id = yilian_update::keys::source(&retired).expect("key").as_sign().await.expect("sign").tuf_key();
    let id = retired_id.key_id().expect("id");
    old_view.keys.insert(id.clone(), retired_id);
    old_view.roles.get_mut(&tough::schema::RoleType::Root).expect("root role").keyids.push(id);
    let keys = [
        yilian_update::keys::source(&retired).expect("key"),
        yilian_update::keys::source(&c.offline.join("root-2.pk8")).expect("key"),
    ];
    let holder = tough::schema::KeyHolder::Root(old_view.clone());
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let signed = tough::editor::signed::SignedRole::new(old_view, &holder, &keys, &rng).await.expect("sign");
    signed.write(c.repo.metadata(), true).await.expect("write 3.root.json");
    let err = load(&c, "cart").await.expect_err("root v3 with the retired key");
    assert!(matches!(err, UpdateError::BadSignature(_)), "{err}");
}
