//! The clinic's DICOM node: a C-STORE SCP (and C-ECHO) that modalities push studies to.
//!
//! - [`scp`]: associations, DIMSE, streaming each instance to disk as its fragments arrive.
//! - [`store`]: placement (dedup, conflicts, ECGs to the inbox), study completion, `ready/`.
//! - [`part10`]: the file meta group and the header attributes the node reads.
//!
//! An instance is answered with success only after its Part-10 file (preamble, `DICM`, a meta
//! group naming the command's SOP Class/Instance UID and the presentation context's transfer
//! syntax, then the dataset bytes exactly as received) is fsynced and renamed into place. A study
//! is complete when every association that sent to it has ended and nothing more came for
//! `quiet_secs`, or when `incoming/<study>/.complete` appears ([`mark_complete`]); it then moves
//! to `ready/<study>/` with a `study.json` ([`ReadyStudy`], listed by [`ready_studies`]).
//! 12-lead and General ECG waveforms (and Hemodynamic waveforms whose Modality is ECG) go to the
//! cart-file inbox instead, when there is one.
//!
//! # Example
//! ```no_run
//! # async fn f() -> Result<(), yilian_agent::dicom_node::DicomNodeError> {
//! use yilian_agent::config::DicomNodeConfig;
//! let cfg = DicomNodeConfig::new("/srv/yilian/dicom".into(), "0.0.0.0:11112");
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! yilian_agent::dicom_node::run(cfg, Some("/srv/yilian/inbox".into()), shutdown).await?;
//! # Ok(()) }
//! ```

pub mod part10;
pub mod scp;
pub mod store;

pub use store::{Conflict, ReadyInstance, ReadyStudy, conflicts, mark_complete, ready_studies};

use crate::config::DicomNodeConfig;
use scp::Shared;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::Store;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

/// The DICOM node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DicomNodeError {
    /// The configuration is not usable.
    #[error("dicom config: {0}")]
    Config(#[from] crate::config::ConfigError),
    /// The listening socket could not be bound.
    #[error("listening on {addr}: {source}")]
    Bind {
        /// Address from the configuration.
        addr: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The node's folders could not be prepared.
    #[error("preparing the DICOM folders: {0}")]
    Store(#[from] store::StoreError),
}

/// A bound node, not yet serving (so a test can learn its port first).
#[derive(Debug)]
pub struct Node {
    listener: TcpListener,
    shared: Arc<Shared>,
}

/// Checks the configuration, prepares the folders and binds the listening socket.
pub async fn bind(cfg: DicomNodeConfig, inbox_dir: Option<PathBuf>) -> Result<Node, DicomNodeError> {
    cfg.validate()?;
    let quiet = Duration::from_secs(cfg.quiet_secs);
    let (dir, inbox) = (cfg.dir.clone(), inbox_dir);
    let store = tokio::task::spawn_blocking(move || Store::open(&dir, inbox, quiet))
        .await
        .map_err(|e| DicomNodeError::Bind { addr: String::new(), source: std::io::Error::other(e) })??;
    let listener = TcpListener::bind(&cfg.listen)
        .await
        .map_err(|source| DicomNodeError::Bind { addr: cfg.listen.clone(), source })?;
    Ok(Node { listener, shared: Arc::new(Shared::new(Arc::new(cfg), Arc::new(store))) })
}

/// Binds and serves until `shutdown`.
pub async fn run(
    cfg: DicomNodeConfig,
    inbox_dir: Option<PathBuf>,
    shutdown: CancellationToken,
) -> Result<(), DicomNodeError> {
    bind(cfg, inbox_dir).await?.serve(shutdown).await
}

impl Node {
    /// The address the node listens on (the real port when configured with port 0).
    pub fn local_addr(&self) -> Result<SocketAddr, DicomNodeError> {
        self.listener
            .local_addr()
            .map_err(|source| DicomNodeError::Bind { addr: self.shared.cfg.listen.clone(), source })
    }

    /// Accepts associations (at most `max_associations` at once; more are refused) and completes
    /// studies, until `shutdown`; then aborts open associations and waits for them.
    pub async fn serve(self, shutdown: CancellationToken) -> Result<(), DicomNodeError> {
        let Node { listener, shared } = self;
        let cfg = shared.cfg.clone();
        info!(ae_title = %cfg.ae_title, addr = ?listener.local_addr().ok(), dir = %cfg.dir.display(), "DICOM node listening");
        let tasks = TaskTracker::new();
        tasks.spawn(completion_loop(shared.clone(), shutdown.clone()));
        let slots = Arc::new(Semaphore::new(cfg.max_associations));
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                a = listener.accept() => a,
            };
            match accepted {
                Ok((stream, peer)) => {
                    let permit = slots.clone().try_acquire_owned().ok();
                    tasks.spawn(scp::serve(stream, peer, shared.clone(), permit, shutdown.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    warn!("accepting a DICOM connection: {e}");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    }
                }
            }
        }
        tasks.close();
        tasks.wait().await;
        info!("DICOM node stopped");
        Ok(())
    }
}

/// Looks at `incoming/` a few times per quiet period and completes the studies that are due.
async fn completion_loop(shared: Arc<Shared>, shutdown: CancellationToken) {
    let quiet = Duration::from_secs(shared.cfg.quiet_secs);
    let tick = (quiet / 4).clamp(Duration::from_millis(100), Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        let s = shared.clone();
        let result = tokio::task::spawn_blocking(move || complete_due(&s.store, Instant::now())).await;
        if let Err(e) = result {
            warn!("study completion task failed: {e}");
        }
    }
}

/// One completion pass (blocking): hinted studies now, others when the tracker says so.
fn complete_due(store: &Store, now: Instant) {
    let mut due = Vec::new();
    for (study, hinted) in store.incoming() {
        let mut tracker = store.tracker();
        if hinted {
            due.push(study);
        } else if !tracker.knows(&study) {
            tracker.adopt(&study, now);
        }
    }
    due.extend(store.tracker().due(now));
    due.sort();
    due.dedup();
    for study in due {
        match store.complete(&study) {
            Ok(_) => store.tracker().forget(&study),
            Err(e) => warn!(study, "completing the study: {e}"),
        }
    }
}
