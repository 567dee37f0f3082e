//! Staged rollouts of offline-signed releases (Uptane's director, hawkBit's rollout groups):
//! which devices are assigned which repository target, stage by stage, and when a rollout
//! advances, waits for approval or halts itself.
//!
//! A device's progress is read from its own signed fleet reports (`device_updates`), never from
//! anything the hub assumes; an outcome, once seen, is kept in `rollout_devices` so a later report
//! (the device moving on to another release) does not rewrite the rollout's history.

use super::sql::{OptionalExtension, params};
use super::{Db, StoreError};
use serde::Serialize;

/// What a rollout installs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// The agent binary.
    Agent,
    /// A configuration bundle.
    Config,
}

impl TargetKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Agent => "agent",
            TargetKind::Config => "config",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "agent" => Some(TargetKind::Agent),
            "config" => Some(TargetKind::Config),
            _ => None,
        }
    }
}

/// County IT's plan for one rollout.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Agent binary or configuration bundle.
    pub kind: TargetKind,
    /// The repository target (offline-signed).
    pub target_name: String,
    /// The platform of an agent binary (empty for configuration): rollouts of other platforms
    /// go on beside this one.
    pub triple: String,
    /// Its version.
    pub version: String,
    /// Its SHA-256, as the signed targets metadata gives it.
    pub sha256: [u8; 32],
    /// Sites whose active devices take part; empty: every active device.
    pub sites: Vec<String>,
    /// Devices of the first stage, chosen by county IT (clinics that will report problems).
    pub canary: Vec<String>,
    /// The later stages, as cumulative percentages of the group (the last is 100).
    pub stages_pct: Vec<u8>,
    /// Share of a stage's devices that must have committed before the next stage opens.
    pub advance_at_pct: u8,
    /// Share of a stage's devices that failed (rolled back or timed out) above which the whole
    /// rollout halts.
    pub halt_at_pct: u8,
    /// How long a stage's devices have to commit; those that have not count as timed out.
    pub stage_timeout_ms: i64,
    /// Wait for county IT's approval before each next stage.
    pub approval: bool,
}

/// The stages as stored: each stage's name.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
struct StageNames(Vec<String>);

/// A rollout's state.
pub const STATES: &[&str] = &["running", "paused", "waiting", "halted", "aborted", "completed"];

/// One rollout with its figures.
#[derive(Debug, Clone, Serialize)]
pub struct Rollout {
    /// Id.
    pub rollout_id: i64,
    /// `agent` or `config`.
    pub kind: TargetKind,
    /// Repository target.
    pub target_name: String,
    /// Version.
    pub version: String,
    /// `running`, `paused`, `waiting` (for approval), `halted`, `aborted`, `completed`.
    pub state: String,
    /// Why it is in that state (halts, aborts, waits).
    pub reason: String,
    /// The open stage, 0-based.
    pub stage: usize,
    /// Every stage's name (`canary`, `10%`, ...).
    pub stages: Vec<String>,
    /// Devices per stage.
    pub stage_devices: Vec<i64>,
    /// Share committed needed to advance, per cent.
    pub advance_at_pct: u8,
    /// Share failed that halts, per cent.
    pub halt_at_pct: u8,
    /// Stage timeout, ms.
    pub stage_timeout_ms: i64,
    /// Waits for approval between stages.
    pub approval: bool,
    /// Devices assigned so far.
    pub assigned: i64,
    /// Of those, committed.
    pub committed: i64,
    /// Of those, failed (rolled back or timed out).
    pub failed: i64,
    /// Who started it.
    pub created_by: String,
    /// When, Unix ms.
    pub created_at_ms: i64,
    /// When the open stage opened, Unix ms.
    pub stage_started_ms: i64,
    /// Last change of state, Unix ms.
    pub updated_at_ms: i64,
}

/// One device in a rollout, with what its fleet reports say.
#[derive(Debug, Clone, Serialize)]
pub struct RolloutDevice {
    /// Device id.
    pub device_id: String,
    /// Site id.
    pub site_id: String,
    /// Its stage, 0-based.
    pub stage: usize,
    /// `waiting` (stage not open), `assigned`, `downloading`, `deferred`, `on trial`,
    /// `committed`, `rolled back`, `timed out`, `withdrawn`.
    pub state: String,
    /// Download progress, per mille, while downloading.
    pub download_per_mille: i64,
    /// Why (rolled back, deferred).
    pub detail: String,
    /// When its stage opened for it, Unix ms.
    pub assigned_at_ms: Option<i64>,
}

/// A target assigned to a device now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assigned {
    /// The rollout.
    pub rollout_id: i64,
    /// Agent or config.
    pub kind: TargetKind,
    /// Repository target name.
    pub target_name: String,
    /// Version.
    pub version: String,
    /// SHA-256, hex.
    pub sha256: String,
    /// Platform (agent binaries).
    pub triple: String,
}

/// A county IT action on a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Stop opening stages (devices already assigned go on).
    Pause,
    /// Go on after a pause or a halt (the failures seen so far are accepted).
    Resume,
    /// Open the next stage after a stage passed and approval was asked for.
    Approve,
    /// Stop for good and withdraw the assignment from every device that has not installed it.
    Abort,
}

impl Action {
    /// The name, as in the CLI and URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Approve => "approve",
            Action::Abort => "abort",
        }
    }

    /// Parses `pause`, `resume`, `approve`, `abort`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pause" => Action::Pause,
            "resume" => Action::Resume,
            "approve" => Action::Approve,
            "abort" => Action::Abort,
            _ => return None,
        })
    }
}

/// How an open device stands according to its latest fleet report.
fn progress(kind: TargetKind, version: &str, u: &UpdateRow) -> (&'static str, String) {
    // Agents name a bundle `config-<version>` in trials and results (see the agent's
    // `supervise::bundle_label`): agent and bundle versions are separate sequences.
    let (installed, label) = match kind {
        TargetKind::Agent => (u.installed_version == version, version.to_string()),
        TargetKind::Config => (u.config_version == version, format!("config-{version}")),
    };
    let on_trial = u.trial_version.as_deref() == Some(label.as_str());
    let last_is_this = u.last_version == label;
    if (u.state == "rolled back" || u.state == "refused") && last_is_this {
        ("rolled back", u.last_reason.clone())
    } else if on_trial {
        ("on trial", String::new())
    } else if installed {
        ("committed", String::new())
    } else if u.state == "deferred" && last_is_this {
        ("deferred", u.last_reason.clone())
    } else if u.state == "downloading" {
        ("downloading", String::new())
    } else {
        ("assigned", String::new())
    }
}

#[derive(Debug, Default)]
struct UpdateRow {
    installed_version: String,
    config_version: String,
    trial_version: Option<String>,
    state: String,
    download_per_mille: i64,
    last_version: String,
    last_reason: String,
}

fn bad(msg: impl Into<String>) -> StoreError {
    StoreError::Rollout(msg.into())
}

/// Splits `devices` (already ordered) into stages: the canaries first, then the rest by the
/// cumulative percentages of the whole group. Empty stages are dropped.
fn split(devices: &[String], canary: &[String], stages_pct: &[u8]) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let total = devices.len();
    let canaries: Vec<String> = devices.iter().filter(|d| canary.contains(d)).cloned().collect();
    let mut taken = canaries.len();
    if !canaries.is_empty() {
        out.push(("canary".to_string(), canaries));
    }
    let rest: Vec<&String> = devices.iter().filter(|d| !canary.contains(d)).collect();
    let mut next = 0;
    for (i, pct) in stages_pct.iter().enumerate() {
        let upto = if i + 1 == stages_pct.len() { total } else { (total * usize::from(*pct)).div_ceil(100) };
        let want = upto.saturating_sub(taken).min(rest.len() - next);
        if want > 0 {
            out.push((format!("{pct}%"), rest[next..next + want].iter().map(|d| (*d).clone()).collect()));
            next += want;
            taken += want;
        }
    }
    out
}

/// Orders devices by a hash of rollout and device, so the early stages of successive rollouts
/// fall on different clinics instead of always the same alphabetical few.
fn shuffled(mut devices: Vec<String>, salt: &str) -> Vec<String> {
    use sha2::{Digest, Sha256};
    devices.sort_by_cached_key(|d| Sha256::digest(format!("{salt}\0{d}").as_bytes()));
    devices
}

impl Db {
    /// Starts a rollout of `plan` and opens its first stage. An earlier rollout of the same kind
    /// that is still going is aborted (superseded): a device follows one plan at a time.
    pub fn start_rollout(&mut self, plan: &Plan, by: &str, now_ms: i64) -> Result<i64, StoreError> {
        if plan.stages_pct.last() != Some(&100) || plan.stages_pct.windows(2).any(|w| w[0] >= w[1]) {
            return Err(bad("stages must be rising percentages ending at 100, e.g. 10,50,100"));
        }
        if plan.stages_pct.first() == Some(&0) {
            return Err(bad("a stage of 0% holds no device"));
        }
        if plan.advance_at_pct == 0 || plan.advance_at_pct > 100 || plan.halt_at_pct > 100 {
            return Err(bad("thresholds are percentages: advance 1-100, halt 0-100"));
        }
        if plan.stage_timeout_ms <= 0 {
            return Err(bad("the stage timeout must be positive"));
        }
        let tx = self.conn.transaction()?;
        let devices: Vec<String> = {
            let mut stmt =
                tx.prepare("SELECT device_id, site_id FROM devices WHERE state = 'active' ORDER BY device_id")?;
            stmt.query_map([], |r| Ok((r.get::<String>(0)?, r.get::<String>(1)?)))?
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .filter(|(d, s)| plan.sites.is_empty() || plan.sites.contains(s) || plan.canary.contains(d))
                .map(|(d, _)| d)
                .collect()
        };
        if let Some(missing) = plan.canary.iter().find(|c| !devices.contains(c)) {
            return Err(bad(format!("canary {missing} is not an active device of the group")));
        }
        if devices.is_empty() {
            return Err(bad("the group has no active device"));
        }
        let superseded: Vec<i64> = {
            let mut stmt = tx.prepare(
                "SELECT rollout_id FROM rollouts
                 WHERE kind = ?1 AND triple = ?2 AND state IN ('running', 'paused', 'waiting', 'halted')",
            )?;
            stmt.query_map([plan.kind.as_str(), plan.triple.as_str()], |r| r.get(0))?.collect::<Result<_, _>>()?
        };
        let id: i64 = tx.query_row(
            "INSERT INTO rollouts (kind, target_name, version, sha256, stages, advance_at_pct, halt_at_pct,
                 stage_timeout_ms, approval, state, stage, stage_started_ms, reason, accepted_failures,
                 created_by, created_at_ms, updated_at_ms, triple)
             VALUES (?1, ?2, ?3, ?4, '[]', ?5, ?6, ?7, ?8, 'running', 0, ?9, '', 0, ?10, ?9, ?9, ?11) RETURNING rollout_id",
            params![
                plan.kind.as_str(),
                plan.target_name,
                plan.version,
                hex::encode(plan.sha256),
                plan.advance_at_pct,
                plan.halt_at_pct,
                plan.stage_timeout_ms,
                plan.approval,
                now_ms,
                by,
                plan.triple
            ],
            |r| r.get(0),
        )?;
        let stages = split(&shuffled(devices, &id.to_string()), &plan.canary, &plan.stages_pct);
        let names = StageNames(stages.iter().map(|(n, _)| n.clone()).collect());
        let names = serde_json::to_string(&names).map_err(|e| StoreError::Damaged(e.to_string()))?;
        tx.execute("UPDATE rollouts SET stages = ?2 WHERE rollout_id = ?1", params![id, names])?;
        for (i, (_, devs)) in stages.iter().enumerate() {
            for d in devs {
                tx.execute(
                    "INSERT INTO rollout_devices (rollout_id, device_id, stage, assigned_at_ms) VALUES (?1, ?2, ?3, ?4)",
                    params![id, d, i as i64, (i == 0).then_some(now_ms)],
                )?;
            }
        }
        for old in superseded {
            tx.execute(
                "UPDATE rollouts SET state = 'aborted', reason = ?2, updated_at_ms = ?3 WHERE rollout_id = ?1",
                params![old, format!("superseded by rollout {id}"), now_ms],
            )?;
        }
        tx.commit()?;
        let detail = format!(
            "{} {} to {} devices{}",
            plan.kind.as_str(),
            plan.version,
            stages.iter().map(|(_, d)| d.len()).sum::<usize>(),
            if plan.sites.is_empty() { String::new() } else { format!(" of {}", plan.sites.join(",")) }
        );
        self.audit(by, "rollout-start", &format!("rollout {id}"), &detail, now_ms)?;
        Ok(id)
    }

    /// Every rollout, newest first.
    pub fn rollouts(&self) -> Result<Vec<Rollout>, StoreError> {
        let ids: Vec<i64> = {
            let mut stmt = self.conn.prepare("SELECT rollout_id FROM rollouts ORDER BY rollout_id DESC")?;
            stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?
        };
        ids.into_iter().filter_map(|id| self.rollout(id).transpose()).collect()
    }

    /// One rollout with its figures.
    pub fn rollout(&self, id: i64) -> Result<Option<Rollout>, StoreError> {
        let found = self
            .conn
            .query_row(
                "SELECT kind, target_name, version, state, reason, stage, stages, advance_at_pct, halt_at_pct,
                        stage_timeout_ms, approval, created_by, created_at_ms, stage_started_ms, updated_at_ms
                 FROM rollouts WHERE rollout_id = ?1",
                [id],
                |r| {
                    let rollout = Rollout {
                        rollout_id: id,
                        kind: TargetKind::Agent,
                        target_name: r.get(1)?,
                        version: r.get(2)?,
                        state: r.get(3)?,
                        reason: r.get(4)?,
                        stage: usize::try_from(r.get::<i64>(5)?).unwrap_or(0),
                        stages: Vec::new(),
                        stage_devices: Vec::new(),
                        advance_at_pct: r.get(7)?,
                        halt_at_pct: r.get(8)?,
                        stage_timeout_ms: r.get(9)?,
                        approval: r.get(10)?,
                        assigned: 0,
                        committed: 0,
                        failed: 0,
                        created_by: r.get(11)?,
                        created_at_ms: r.get(12)?,
                        stage_started_ms: r.get(13)?,
                        updated_at_ms: r.get(14)?,
                    };
                    Ok((rollout, r.get::<String>(0)?, r.get::<String>(6)?))
                },
            )
            .optional()?;
        let Some((mut rollout, kind, stages)) = found else { return Ok(None) };
        rollout.kind = TargetKind::parse(&kind).ok_or_else(|| StoreError::Damaged(format!("rollout kind {kind}")))?;
        rollout.stages = serde_json::from_str::<StageNames>(&stages).map_err(|e| StoreError::Damaged(e.to_string()))?.0;
        let devices = self.rollout_devices(id)?;
        rollout.stage_devices = vec![0; rollout.stages.len()];
        for d in &devices {
            if let Some(n) = rollout.stage_devices.get_mut(d.stage) {
                *n += 1;
            }
        }
        rollout.assigned = devices.iter().filter(|d| d.assigned_at_ms.is_some()).count() as i64;
        rollout.committed = devices.iter().filter(|d| d.state == "committed").count() as i64;
        rollout.failed = devices.iter().filter(|d| d.state == "rolled back" || d.state == "timed out").count() as i64;
        Ok(Some(rollout))
    }

    /// A rollout's devices and where each stands.
    pub fn rollout_devices(&self, id: i64) -> Result<Vec<RolloutDevice>, StoreError> {
        let (kind, version, state): (String, String, String) = match self
            .conn
            .query_row("SELECT kind, version, state FROM rollouts WHERE rollout_id = ?1", [id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?
        {
            Some(v) => v,
            None => return Ok(Vec::new()),
        };
        let kind = TargetKind::parse(&kind).ok_or_else(|| StoreError::Damaged(format!("rollout kind {kind}")))?;
        let withdrawn = state == "aborted" || state == "halted";
        let mut stmt = self.conn.prepare(
            "SELECT rd.device_id, COALESCE(d.site_id, ''), rd.stage, rd.assigned_at_ms, rd.outcome, rd.detail,
                    u.installed_version, u.config_version, u.trial_version, u.state, u.download_per_mille,
                    u.last_version, u.last_reason
             FROM rollout_devices rd LEFT JOIN devices d ON d.device_id = rd.device_id
                  LEFT JOIN device_updates u ON u.device_id = rd.device_id
             WHERE rd.rollout_id = ?1 ORDER BY rd.stage, rd.device_id",
        )?;
        let rows = stmt.query_map([id], |r| {
            let assigned_at_ms: Option<i64> = r.get(3)?;
            let outcome: Option<String> = r.get(4)?;
            let detail: String = r.get(5)?;
            let update = r.get::<Option<String>>(6)?.map(|installed_version| -> super::sql::Result<UpdateRow> {
                Ok(UpdateRow {
                    installed_version,
                    config_version: r.get(7)?,
                    trial_version: r.get(8)?,
                    state: r.get(9)?,
                    download_per_mille: r.get(10)?,
                    last_version: r.get(11)?,
                    last_reason: r.get(12)?,
                })
            });
            let update = update.transpose()?.unwrap_or_default();
            let (state, detail, per_mille) = match (&outcome, assigned_at_ms) {
                (Some(o), _) => (o.clone(), detail, 0),
                (None, None) => ("waiting".to_string(), String::new(), 0),
                (None, Some(_)) => {
                    let (s, why) = progress(kind, &version, &update);
                    let s = if withdrawn && (s == "assigned" || s == "deferred") { "withdrawn" } else { s };
                    let pm = if s == "downloading" { update.download_per_mille } else { 0 };
                    (s.to_string(), why, pm)
                }
            };
            Ok(RolloutDevice {
                device_id: r.get(0)?,
                site_id: r.get(1)?,
                stage: usize::try_from(r.get::<i64>(2)?).unwrap_or(0),
                state,
                download_per_mille: per_mille,
                detail,
                assigned_at_ms,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// What `device` is assigned now: per kind and platform, the newest rollout that opened its
    /// stage for it and still stands (not halted or aborted).
    pub fn assignments(&self, device: &str) -> Result<Vec<Assigned>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT r.rollout_id, r.kind, r.target_name, r.version, r.sha256, r.triple
             FROM rollout_devices rd JOIN rollouts r ON r.rollout_id = rd.rollout_id
             WHERE rd.device_id = ?1 AND rd.assigned_at_ms IS NOT NULL
               AND r.state IN ('running', 'paused', 'waiting', 'completed')
             ORDER BY r.rollout_id DESC",
        )?;
        let rows = stmt
            .query_map([device], |r| {
                Ok((r.get::<i64>(0)?, r.get::<String>(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
            })?
            .collect::<Result<Vec<(i64, String, String, String, String, String)>, _>>()?;
        let mut out: Vec<Assigned> = Vec::new();
        for (rollout_id, kind, target_name, version, sha256, triple) in rows {
            let Some(kind) = TargetKind::parse(&kind) else { continue };
            if out.iter().all(|a| a.kind != kind || a.triple != triple) {
                out.push(Assigned { rollout_id, kind, target_name, version, sha256, triple });
            }
        }
        Ok(out)
    }

    /// County IT acts on a rollout. Returns its new state.
    pub fn rollout_action(&mut self, id: i64, action: Action, by: &str, now_ms: i64) -> Result<String, StoreError> {
        self.in_transaction(|db| {
            let r = db.rollout(id)?.ok_or_else(|| bad(format!("no rollout {id}")))?;
            let refuse = || bad(format!("rollout {id} is {}; it cannot be {}", r.state, verb(action)));
            match action {
                Action::Pause if matches!(r.state.as_str(), "running" | "waiting") => {
                    db.set_rollout_state(id, "paused", "paused by county IT", now_ms)?;
                }
                Action::Resume if matches!(r.state.as_str(), "paused" | "halted") => {
                    // The failures that halted it are accepted; new ones count from here.
                    let failed = db.stage_figures(id, r.stage)?.failed;
                    db.conn.execute(
                        "UPDATE rollouts SET state = 'running', reason = '', accepted_failures = ?2,
                             stage_started_ms = ?3, updated_at_ms = ?3 WHERE rollout_id = ?1",
                        params![id, failed, now_ms],
                    )?;
                }
                Action::Approve if r.state == "waiting" => db.open_next_stage(id, r.stage, r.stages.len(), now_ms)?,
                Action::Abort if !matches!(r.state.as_str(), "aborted" | "completed") => {
                    db.set_rollout_state(id, "aborted", "aborted by county IT", now_ms)?;
                }
                _ => return Err(refuse()),
            }
            let state = db.rollout(id)?.map(|r| r.state).unwrap_or_default();
            db.audit(by, &format!("rollout-{}", action.as_str()), &format!("rollout {id}"), &state, now_ms)?;
            Ok(state)
        })
    }

    fn set_rollout_state(&self, id: i64, state: &str, reason: &str, now_ms: i64) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE rollouts SET state = ?2, reason = ?3, updated_at_ms = ?4 WHERE rollout_id = ?1",
            params![id, state, reason, now_ms],
        )?;
        Ok(())
    }

    fn open_next_stage(&self, id: i64, stage: usize, stages: usize, now_ms: i64) -> Result<(), StoreError> {
        let next = stage + 1;
        if next >= stages {
            return self.set_rollout_state(id, "completed", "", now_ms);
        }
        self.conn.execute(
            "UPDATE rollout_devices SET assigned_at_ms = ?3 WHERE rollout_id = ?1 AND stage = ?2",
            params![id, next as i64, now_ms],
        )?;
        self.conn.execute(
            "UPDATE rollouts SET state = 'running', reason = '', stage = ?2, stage_started_ms = ?3,
                 accepted_failures = 0, updated_at_ms = ?3 WHERE rollout_id = ?1",
            params![id, next as i64, now_ms],
        )?;
        Ok(())
    }

    fn stage_figures(&self, id: i64, stage: usize) -> Result<StageFigures, StoreError> {
        let devs = self.rollout_devices(id)?;
        let of_stage: Vec<&RolloutDevice> = devs.iter().filter(|d| d.stage == stage).collect();
        Ok(StageFigures {
            devices: of_stage.len() as i64,
            committed: of_stage.iter().filter(|d| d.state == "committed").count() as i64,
            failed: of_stage.iter().filter(|d| d.state == "rolled back" || d.state == "timed out").count() as i64,
        })
    }

    /// Moves every running rollout on: records outcomes the devices reported, halts on too many
    /// failures, times a stage out, and opens the next stage (or waits for approval) once enough
    /// devices committed. Returns what changed, for the log.
    pub fn rollout_tick(&mut self, now_ms: i64) -> Result<Vec<String>, StoreError> {
        self.in_transaction(|db| {
            let running: Vec<Running> = {
                let mut stmt = db.conn.prepare(
                    "SELECT rollout_id, stage, stage_started_ms, stage_timeout_ms, advance_at_pct, halt_at_pct,
                            approval, stages, accepted_failures
                     FROM rollouts WHERE state = 'running'",
                )?;
                stmt.query_map([], |r| {
                    Ok(Running {
                        id: r.get(0)?,
                        stage: usize::try_from(r.get::<i64>(1)?).unwrap_or(0),
                        started: r.get(2)?,
                        timeout: r.get(3)?,
                        advance_at: r.get(4)?,
                        halt_at: r.get(5)?,
                        approval: r.get(6)?,
                        stages: r.get(7)?,
                        accepted: r.get(8)?,
                    })
                })?
                .collect::<Result<_, _>>()?
            };
            let mut changes = Vec::new();
            for Running { id, stage, started, timeout, advance_at, halt_at, approval, stages, accepted } in running {
                let names: StageNames =
                    serde_json::from_str(&stages).map_err(|e| StoreError::Damaged(e.to_string()))?;
                let name = names.0.get(stage).cloned().unwrap_or_default();
                // Keep outcomes as first seen: a device that committed and later moved on still
                // committed in this rollout.
                for d in db.rollout_devices(id)? {
                    if d.stage <= stage && matches!(d.state.as_str(), "committed" | "rolled back") {
                        db.conn.execute(
                            "UPDATE rollout_devices SET outcome = ?3, detail = ?4, finished_at_ms = ?5
                             WHERE rollout_id = ?1 AND device_id = ?2 AND outcome IS NULL",
                            params![id, d.device_id, d.state, d.detail, now_ms],
                        )?;
                    }
                }
                let timed_out = now_ms - started > timeout;
                if timed_out {
                    db.conn.execute(
                        "UPDATE rollout_devices SET outcome = 'timed out', detail = ?3, finished_at_ms = ?4
                         WHERE rollout_id = ?1 AND stage = ?2 AND outcome IS NULL",
                        params![id, stage as i64, format!("not committed within {} s", timeout / 1000), now_ms],
                    )?;
                }
                let f = db.stage_figures(id, stage)?;
                let failed = (f.failed - accepted).max(0);
                if failed * 100 > i64::from(halt_at) * f.devices {
                    let why = format!(
                        "stage {name}: {failed} of {} devices failed, over the {halt_at}% error threshold",
                        f.devices
                    );
                    db.set_rollout_state(id, "halted", &why, now_ms)?;
                    db.audit("hub", "rollout-halt", &format!("rollout {id}"), &why, now_ms)?;
                    changes.push(format!("rollout {id} halted: {why}"));
                } else if (f.committed + accepted.min(f.failed)) * 100 >= i64::from(advance_at) * f.devices {
                    // Failures county IT accepted on resuming count as done, or the stage could
                    // never pass.
                    if approval && stage + 1 < names.0.len() {
                        let why = format!(
                            "stage {name} passed ({} of {} committed); waiting for approval",
                            f.committed, f.devices
                        );
                        db.set_rollout_state(id, "waiting", &why, now_ms)?;
                        changes.push(format!("rollout {id}: {why}"));
                    } else {
                        db.open_next_stage(id, stage, names.0.len(), now_ms)?;
                        changes.push(format!("rollout {id}: stage {name} passed"));
                    }
                } else if timed_out {
                    let why = format!(
                        "stage {name} timed out: {} of {} committed, {advance_at}% needed",
                        f.committed, f.devices
                    );
                    db.set_rollout_state(id, "halted", &why, now_ms)?;
                    db.audit("hub", "rollout-halt", &format!("rollout {id}"), &why, now_ms)?;
                    changes.push(format!("rollout {id} halted: {why}"));
                }
            }
            Ok(changes)
        })
    }
}

/// A running rollout as the tick needs it.
struct Running {
    id: i64,
    stage: usize,
    started: i64,
    timeout: i64,
    advance_at: u8,
    halt_at: u8,
    approval: bool,
    stages: String,
    accepted: i64,
}

struct StageFigures {
    devices: i64,
    committed: i64,
    failed: i64,
}

fn verb(a: Action) -> &'static str {
    match a {
        Action::Pause => "paused",
        Action::Resume => "resumed",
        Action::Approve => "approved",
        Action::Abort => "aborted",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("cart-{i:03}")).collect()
    }

    #[test]
    fn stages_split_the_group_by_cumulative_share_after_the_canaries() {
        let devs = ids(200);
        let canary: Vec<String> = devs[..20].to_vec();
        let s = split(&devs, &canary, &[10, 50, 100]);
        let sizes: Vec<(String, usize)> = s.iter().map(|(n, d)| (n.clone(), d.len())).collect();
        // The canaries already make up 10%, so that stage is empty and dropped.
        assert_eq!(sizes, [("canary".into(), 20), ("50%".into(), 80), ("100%".into(), 100)]);
        let all: std::collections::BTreeSet<&String> = s.iter().flat_map(|(_, d)| d).collect();
        assert_eq!(all.len(), 200);
        let s = split(&ids(3), &[], &[10, 50, 100]);
        let sizes: Vec<usize> = s.iter().map(|(_, d)| d.len()).collect();
        assert_eq!(sizes, [1, 1, 1]);
    }

    fn db_with(devices: usize) -> (tempfile::TempDir, Db) {
        let tmp = tempfile::tempdir().expect("tmp");
        let mut db = Db::open_test(tmp.path()).expect("db");
        for d in ids(devices) {
            let key = yilian_protocol::keys::SigningKey::generate().expect("key");
            db.enroll("xz", &d, &key.public_key(), false, 0).expect("enrol");
        }
        (tmp, db)
    }

    fn plan(stages: &[u8], advance: u8, halt: u8, timeout_ms: i64) -> Plan {
        Plan {
            kind: TargetKind::Agent,
            target_name: "agent-x-2.0.0".into(),
            triple: "x".into(),
            version: "2.0.0".into(),
            sha256: [7; 32],
            sites: Vec::new(),
            canary: Vec::new(),
            stages_pct: stages.to_vec(),
            advance_at_pct: advance,
            halt_at_pct: halt,
            stage_timeout_ms: timeout_ms,
            approval: false,
        }
    }

    fn reports(db: &Db, devices: &[String], version: &str) {
        for (seq, d) in devices.iter().enumerate() {
            db.conn
                .execute(
                    "INSERT INTO device_updates (device_id, seq, installed_version, installed_sha256, config_version,
                         state, download_per_mille, last_version, last_reason, last_at_ms, received_at_ms)
                     VALUES (?1, ?2, ?3, '', '', 'committed', 0, ?3, '', 0, 0)
                     ON CONFLICT (device_id) DO UPDATE SET installed_version = excluded.installed_version",
                    params![d, seq as i64 + 1, version],
                )
                .expect("report");
        }
    }

    fn stage_of(db: &Db, id: i64, stage: usize) -> Vec<String> {
        let devs = db.rollout_devices(id).expect("devices");
        devs.into_iter().filter(|d| d.stage == stage).map(|d| d.device_id).collect()
    }

    #[test]
    fn a_stage_that_times_out_halts_and_a_resume_accepts_its_failures() {
        let (_tmp, mut db) = db_with(10);
        assert!(matches!(db.start_rollout(&plan(&[50, 90], 100, 20, 1000), "it", 0), Err(StoreError::Rollout(_))));
        let id = db.start_rollout(&plan(&[50, 100], 100, 20, 1000), "it", 0).expect("start");
        let (first, second) = (stage_of(&db, id, 0), stage_of(&db, id, 1));
        assert_eq!((first.len(), second.len()), (5, 5));
        assert_eq!(db.assignments(&first[0]).expect("a").len(), 1);
        assert!(db.assignments(&second[0]).expect("a").is_empty(), "the second stage is not open");

        reports(&db, &first[..4], "2.0.0");
        assert!(db.rollout_tick(500).expect("tick").is_empty(), "4 of 5 committed, not yet timed out");
        let halted = db.rollout_tick(1500).expect("tick");
        assert!(halted[0].contains("timed out: 4 of 5 committed, 100% needed"), "{halted:?}");
        let r = db.rollout(id).expect("r").expect("some");
        assert_eq!((r.state.as_str(), r.failed), ("halted", 1));
        assert!(db.assignments(&first[0]).expect("a").is_empty(), "a halted rollout's assignment is withdrawn");

        // Paused, nothing moves; resumed, the timed-out cart is accepted and the next stage opens.
        assert!(db.rollout_action(id, Action::Approve, "it", 1600).is_err(), "nothing waits for approval");
        assert_eq!(db.rollout_action(id, Action::Resume, "it", 1600).expect("resume"), "running");
        assert_eq!(db.rollout_action(id, Action::Pause, "it", 1700).expect("pause"), "paused");
        assert!(db.rollout_tick(1800).expect("tick").is_empty());
        db.rollout_action(id, Action::Resume, "it", 1900).expect("resume");
        db.rollout_tick(2000).expect("tick");
        assert_eq!(db.rollout(id).expect("r").expect("some").stage, 1);
        assert_eq!(db.assignments(&second[0]).expect("a").len(), 1);

        reports(&db, &second, "2.0.0");
        db.rollout_tick(2100).expect("tick");
        assert_eq!(db.rollout(id).expect("r").expect("some").state, "completed");
        assert_eq!(db.assignments(&second[0]).expect("a").len(), 1, "a completed rollout still assigns");

        // A new rollout of the same kind and platform ends the one before; abort withdraws it.
        let next = db.start_rollout(&plan(&[100], 95, 5, 1000), "it", 3000).expect("start");
        assert_eq!(db.rollout(id).expect("r").expect("some").state, "completed");
        db.rollout_action(next, Action::Abort, "it", 3100).expect("abort");
        assert_eq!(db.assignments(&second[0]).expect("a")[0].rollout_id, id, "the completed one stands");
        assert!(db.rollout_action(next, Action::Resume, "it", 3200).is_err());
    }

    #[test]
    fn a_device_report_reads_as_rollout_progress() {
        let u = |installed: &str, trial: Option<&str>, state: &str, last: &str| UpdateRow {
            installed_version: installed.into(),
            trial_version: trial.map(Into::into),
            state: state.into(),
            last_version: last.into(),
            last_reason: "why".into(),
            ..Default::default()
        };
        let a = TargetKind::Agent;
        assert_eq!(progress(a, "2.0.0", &u("1.0.0", None, "idle", "")).0, "assigned");
        assert_eq!(progress(a, "2.0.0", &u("1.0.0", None, "downloading", "")).0, "downloading");
        assert_eq!(progress(a, "2.0.0", &u("2.0.0", Some("2.0.0"), "on trial", "")).0, "on trial");
        assert_eq!(progress(a, "2.0.0", &u("2.0.0", None, "committed", "2.0.0")).0, "committed");
        assert_eq!(progress(a, "2.0.0", &u("1.0.0", None, "rolled back", "2.0.0")), ("rolled back", "why".into()));
        assert_eq!(progress(a, "2.0.0", &u("1.0.0", None, "deferred", "2.0.0")).0, "deferred");
        // A rollback of another version says nothing about this one.
        assert_eq!(progress(a, "2.0.0", &u("1.0.0", None, "rolled back", "1.5.0")).0, "assigned");
        // Bundles go by `config-<version>` in trials and results, and by their version once in effect.
        let c = TargetKind::Config;
        let mut r = u("2.0.0", Some("config-2.0.0"), "on trial", "");
        assert_eq!(progress(c, "2.0.0", &r).0, "on trial");
        r = UpdateRow { config_version: "2.0.0".into(), ..u("2.0.0", None, "committed", "config-2.0.0") };
        assert_eq!(progress(c, "2.0.0", &r).0, "committed");
        assert_eq!(progress(c, "2.0.0", &u("2.0.0", None, "refused", "config-2.0.0")).0, "rolled back");
        assert_eq!(progress(c, "2.0.0", &u("2.0.0", None, "committed", "2.0.0")).0, "assigned");
    }
}
