//! Fleet updates at the hub: keeps the county repository's snapshot and timestamp fresh with
//! the hub's online keys, so agents never see them lapse (which they would report as a suspected
//! freeze attack), and moves rollouts on. Releases themselves are signed offline
//! (`yilian-hub release add`); rollouts only assign them.

use crate::store::Store;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use yilian_update::repo::{self, Lifetimes, RepoDir};

/// How often the hub looks at the timestamp's expiry.
pub const REFRESH_EVERY: Duration = Duration::from_secs(3600);

/// Refreshes `repo` whenever its timestamp is past half its life, until `shutdown`.
pub async fn refresh_loop(repo: RepoDir, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(REFRESH_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if !repo.exists() {
            continue;
        }
        match repo::refresh(&repo, Lifetimes::default(), repo::now(), false).await {
            Ok(true) => info!("update repository: snapshot and timestamp re-signed"),
            Ok(false) => {}
            Err(e) => {
                warn!(error = %e, "update repository: cannot refresh the timestamp; agents will report a freeze when it lapses")
            }
        }
    }
}

/// How often rollouts are moved on by default.
pub const ROLLOUT_TICK: Duration = Duration::from_secs(10);

/// Moves every running rollout on each `every` (see [`crate::store::Db::rollout_tick`]), until
/// `shutdown`.
pub async fn rollout_loop(store: Store, every: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match store.call(|db| db.rollout_tick(crate::clock::now_ms())).await {
            Ok(Ok(changes)) => {
                for c in changes {
                    info!("{c}");
                }
            }
            Ok(Err(e)) => warn!(error = %e, "rollouts: cannot move on"),
            Err(_) => return,
        }
    }
}
