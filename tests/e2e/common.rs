//! Shared helpers of the end-to-end tests.

use serde_json::Value;
use std::time::Duration;

/// The tests run one at a time: they share the machine's two cores and, with Mosquitto, one
/// broker whose topics every hub subscribes to.
pub static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
/// How long any single wait may take before a test fails.
pub const WAIT: Duration = Duration::from_secs(60);

pub fn now_ms() -> i64 {
    yilian_hub::clock::now_ms()
}

pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn,rumqttd=off".into()))
        .with_test_writer()
        .try_init();
}

pub async fn study_row(api: &yilian::client::Api, uid: &str) -> Option<Value> {
    api.studies().await.ok()?.into_iter().find(|s| s["study_uid"] == uid)
}

pub fn uid_of(study: &Value) -> &str {
    study["study_uid"].as_str().unwrap_or_default()
}

pub fn ints(v: &Value) -> Vec<i32> {
    v.as_array().map(|a| a.iter().filter_map(Value::as_i64).map(|x| x as i32).collect()).unwrap_or_default()
}
