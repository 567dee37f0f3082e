//! Installing a staged release on the clinic PC, so that a power cut at any step leaves exactly
//! one runnable version.
//!
//! Layout in the update folder:
//! - `releases/<version>/yilian-agent`: releases side by side, never changed once staged;
//! - `current`, `previous`: symlinks to a release folder, each switched by writing a new link
//!   beside it and renaming it over the old one (atomic), then syncing the folder;
//! - `trial.json`: the version on trial and the one before it, written before `current` moves.
//!
//! Order of [`activate`]: `previous` := `current`, then `trial.json`, then `current` := new.
//! Cut before the last rename, `current` is still the old release and [`recover`] drops the
//! trial; cut after it, the new release runs on trial and is committed or rolled back.

use std::path::{Path, PathBuf};

/// An install step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InstallError {
    /// File trouble.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The release to activate is not staged (or not executable).
    #[error("release {0} is not staged")]
    NotStaged(String),
    /// Nothing to go back to.
    #[error("no previous release to roll back to")]
    NoPrevious,
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> InstallError + 'a {
    move |source| InstallError::Io { what, path: path.to_path_buf(), source }
}

/// The release on trial, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Trial {
    /// The version on trial.
    pub version: String,
    /// The version it replaced (`previous`), if any.
    pub previous: Option<String>,
    /// When the trial began, ms since the epoch.
    pub started_ms: i64,
}

/// The binary of a release folder.
pub fn binary(release_dir: &Path) -> PathBuf {
    release_dir.join("yilian-agent")
}

/// The folder of release `version`.
pub fn release_dir(dir: &Path, version: &str) -> PathBuf {
    dir.join("releases").join(version)
}

/// The version a link (`current`, `previous`) points at, if it exists.
pub fn linked(dir: &Path, link: &str) -> Option<String> {
    let target = std::fs::read_link(dir.join(link)).ok()?;
    target.file_name().map(|n| n.to_string_lossy().into_owned())
}

fn sync_dir(dir: &Path) -> Result<(), InstallError> {
    crate::durable::sync_dir(dir).map_err(io("syncing", dir))
}

/// Points `dir/link` at `releases/<version>` atomically (a new link renamed over the old).
fn switch(dir: &Path, link: &str, version: &str) -> Result<(), InstallError> {
    let tmp = dir.join(format!(".{link}.new"));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(Path::new("releases").join(version), &tmp).map_err(io("linking", &tmp))?;
    let path = dir.join(link);
    std::fs::rename(&tmp, &path).map_err(io("switching", &path))?;
    sync_dir(dir)
}

fn trial_path(dir: &Path) -> PathBuf {
    dir.join("trial.json")
}

/// The trial in progress, if any.
pub fn trial(dir: &Path) -> Option<Trial> {
    std::fs::read(trial_path(dir)).ok().and_then(|b| serde_json::from_slice(&b).ok())
}

fn write_trial(dir: &Path, t: &Trial) -> Result<(), InstallError> {
    let path = trial_path(dir);
    crate::durable::write_json(&path, t).map_err(io("writing", &path))
}

fn clear_trial(dir: &Path) -> Result<(), InstallError> {
    match std::fs::remove_file(trial_path(dir)) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("removing", &trial_path(dir))(e)),
    }
}

/// A failpoint for the power-cut tests: `YILIAN_INSTALL_CRASH=<step>` ends the process at once
/// (as a power cut would) just after that step.
fn crash_point(step: &str) {
    if std::env::var("YILIAN_INSTALL_CRASH").is_ok_and(|s| s == step) {
        std::process::abort();
    }
}

/// Switches to staged release `version` on trial (see the module documentation for the order).
pub fn activate(dir: &Path, version: &str, now_ms: i64) -> Result<Trial, InstallError> {
    let bin = binary(&release_dir(dir, version));
    let executable =
        std::fs::metadata(&bin).is_ok_and(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o100 != 0);
    if !executable {
        return Err(InstallError::NotStaged(version.into()));
    }
    switch_on_trial(dir, version, now_ms)
}

/// Switches to staged configuration bundle `version` on trial, in the bundles' own folder
/// ([`crate::config::bundles_dir`]), exactly as [`activate`] does for a binary.
pub fn activate_bundle(dir: &Path, version: &str, now_ms: i64) -> Result<Trial, InstallError> {
    if !release_dir(dir, version).join(crate::config::BUNDLE_FILE).is_file() {
        return Err(InstallError::NotStaged(version.into()));
    }
    switch_on_trial(dir, version, now_ms)
}

fn switch_on_trial(dir: &Path, version: &str, now_ms: i64) -> Result<Trial, InstallError> {
    let before = linked(dir, "current");
    if let Some(v) = &before {
        switch(dir, "previous", v)?;
    }
    crash_point("previous");
    let t = Trial { version: version.into(), previous: before, started_ms: now_ms };
    write_trial(dir, &t)?;
    crash_point("trial");
    switch(dir, "current", version)?;
    crash_point("current");
    Ok(t)
}

/// The trial passed: the release stays, and counts as installed for anti-rollback.
pub fn commit(dir: &Path) -> Result<Option<Trial>, InstallError> {
    let t = trial(dir);
    if let Some(t) = &t
        && let Ok(v) = t.version.parse()
    {
        crate::update::record_installed(dir, v).map_err(io("recording", dir))?;
    }
    clear_trial(dir)?;
    Ok(t)
}

/// The trial failed: `current` goes back to `previous`, or away when the trial was the first
/// install (what ran before it, the supervisor's own binary or no bundle, runs again).
pub fn rollback(dir: &Path) -> Result<Option<Trial>, InstallError> {
    let t = trial(dir);
    match &t {
        Some(Trial { previous: Some(back), .. }) => switch(dir, "current", back)?,
        Some(Trial { previous: None, .. }) => {
            let current = dir.join("current");
            match std::fs::remove_file(&current) {
                Ok(()) => sync_dir(dir)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("removing", &current)(e)),
            }
        }
        None => switch(dir, "current", &linked(dir, "previous").ok_or(InstallError::NoPrevious)?)?,
    }
    crash_point("rollback");
    clear_trial(dir)?;
    Ok(t)
}

/// After a restart (a power cut, a crash of the supervisor): a trial whose release never became
/// `current` is dropped. Returns the trial still in progress, if any.
pub fn recover(dir: &Path) -> Result<Option<Trial>, InstallError> {
    let _ = std::fs::remove_file(dir.join(".current.new"));
    let _ = std::fs::remove_file(dir.join(".previous.new"));
    match trial(dir) {
        Some(t) if linked(dir, "current").as_deref() == Some(t.version.as_str()) => Ok(Some(t)),
        Some(_) => {
            clear_trial(dir)?;
            Ok(None)
        }
        None => Ok(None),
    }
}

/// The binary to run now: `current`'s, if it is there.
pub fn current_binary(dir: &Path) -> Option<PathBuf> {
    let b = binary(&dir.join("current"));
    b.exists().then_some(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(dir: &Path, version: &str) {
        let d = release_dir(dir, version);
        std::fs::create_dir_all(&d).expect("mkdir");
        let b = binary(&d);
        std::fs::write(&b, format!("#!/bin/sh\necho {version}\n")).expect("write");
        std::fs::set_permissions(&b, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    }

    #[test]
    fn activate_commit_and_roll_back_switch_links_and_keep_the_trial_straight() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path();
        stage(dir, "1.0.0");
        stage(dir, "1.1.0");
        assert!(matches!(activate(dir, "9.9.9", 0), Err(InstallError::NotStaged(_))));
        activate(dir, "1.0.0", 1).expect("first");
        commit(dir).expect("commit");
        assert_eq!(linked(dir, "current").as_deref(), Some("1.0.0"));
        assert!(trial(dir).is_none());
        let t = activate(dir, "1.1.0", 2).expect("second");
        assert_eq!(t.previous.as_deref(), Some("1.0.0"));
        assert_eq!(
            (linked(dir, "current").as_deref(), linked(dir, "previous").as_deref()),
            (Some("1.1.0"), Some("1.0.0"))
        );
        assert_eq!(recover(dir).expect("recover"), Some(t.clone()), "a switched trial survives a restart");
        assert_eq!(rollback(dir).expect("rollback"), Some(t));
        assert_eq!(linked(dir, "current").as_deref(), Some("1.0.0"));
        assert!(current_binary(dir).is_some());
        assert_eq!(crate::update::highest_installed(dir, "0.0.1".parse().expect("v")).to_string(), "1.0.0");
    }

    #[test]
    fn a_failed_first_install_leaves_no_current_and_bundles_switch_the_same_way() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path();
        stage(dir, "1.0.0");
        activate(dir, "1.0.0", 1).expect("first");
        rollback(dir).expect("back to what ran before");
        assert_eq!((linked(dir, "current"), trial(dir)), (None, None));
        let bundles = dir.join("config");
        assert!(matches!(activate_bundle(&bundles, "3.0.0", 1), Err(InstallError::NotStaged(_))));
        let d = release_dir(&bundles, "3.0.0");
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(d.join(crate::config::BUNDLE_FILE), "heartbeat_secs = 10\n").expect("write");
        let t = activate_bundle(&bundles, "3.0.0", 2).expect("bundle on trial");
        assert_eq!((t.previous, linked(&bundles, "current").as_deref()), (None, Some("3.0.0")));
        commit(&bundles).expect("commit");
        assert_eq!(linked(&bundles, "current").as_deref(), Some("3.0.0"));
    }

    #[test]
    fn a_trial_whose_release_never_became_current_is_dropped_on_recovery() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path();
        stage(dir, "1.0.0");
        activate(dir, "1.0.0", 1).expect("first");
        commit(dir).expect("commit");
        // As if the power went between writing trial.json and switching current.
        write_trial(dir, &Trial { version: "1.1.0".into(), previous: Some("1.0.0".into()), started_ms: 2 })
            .expect("trial");
        assert_eq!(recover(dir).expect("recover"), None);
        assert!(trial(dir).is_none());
        assert_eq!(linked(dir, "current").as_deref(), Some("1.0.0"));
    }
}
