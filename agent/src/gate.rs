//! The signal-quality gate at the cart, within seconds of the recording: every study is checked
//! before it is sent (lead off, clipping, mains, wander, muscle noise, limb-lead reversal,
//! missing chest leads; see `yilian_analysis::quality`). What it finds goes into the study's own
//! warnings, so it travels signed with the study: the clinic page shows "retake: V4 lead off" at
//! once and the specialist sees the same line. It never stops a study from being sent.

use yilian_analysis::quality::Quality;
use yilian_protocol::message::Study;

/// The prefix of the gate's lines among a study's warnings.
pub const PREFIX: &str = "质控 Quality: ";

/// Checks `study` and adds each finding to its warnings (once, however often it is checked).
/// Leads whose samples do not decode are left out (the hub refuses such a study anyway).
pub fn check(study: &mut Study) -> Quality {
    let leads = study.leads_uv();
    let views: Vec<(&str, &[f64])> = leads.iter().map(|(n, x)| (n.as_str(), x.as_slice())).collect();
    let quality = yilian_analysis::preread::analyze(&views, f64::from(study.sample_rate_hz)).quality;
    for (zh, en) in &quality.messages {
        let line = format!("{PREFIX}{zh} / {en}");
        if !study.warnings.contains(&line) {
            study.warnings.push(line);
        }
    }
    quality
}
