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

/// Where this test process's own logs (in-process hubs and agents) are also written, in full
/// detail, so the canary test can read every line they wrote.
pub fn inprocess_log_path() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("yilian-e2e-{}.log", std::process::id()))
}

pub fn init_logs() {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let console = tracing_subscriber::fmt::layer().with_test_writer().with_filter(tracing_subscriber::EnvFilter::new(
        std::env::var("RUST_LOG").unwrap_or_else(|_| "warn,rumqttd=off".into()),
    ));
    let file = std::fs::OpenOptions::new().create(true).append(true).open(inprocess_log_path()).ok().map(|f| {
        tracing_subscriber::fmt::layer().with_ansi(false).with_writer(std::sync::Mutex::new(f)).with_filter(
            tracing_subscriber::EnvFilter::new(
                "info,yilian=debug,yilian_hub=debug,yilian_agent=debug,yilian_formats=debug",
            ),
        )
    });
    let _ = tracing_subscriber::registry().with(console).with(file).try_init();
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

/// Records the PTB 12-lead study on the clinic's cart as visit `visit` and returns the prefix of
/// the study uid the agent gives it (`{device}-{acquired}-{id}-`).
pub async fn record_ptb_study(clinic: &yilian::county::Clinic, device: &str, visit: usize) -> anyhow::Result<String> {
    let rec = yilian::records::ptb_12_lead()?;
    let visit = yilian::sim::demo_visit(visit);
    let acquired = now_ms();
    let (id, _) = clinic
        .cart(move |c| -> anyhow::Result<_> {
            c.hello()?;
            c.study(&rec, 1234, 10_000, &visit, acquired)
        })
        .await?;
    Ok(format!("{device}-{acquired}-{id}-"))
}

/// The workspace root and `target/browser` (where browser tests leave screenshots), once
/// playwright-core is installed.
pub fn browser_dirs() -> anyhow::Result<(&'static std::path::Path, std::path::PathBuf)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    anyhow::ensure!(
        root.join("tests/browser/node_modules/playwright-core").exists(),
        "run `npm ci --prefix tests/browser` first (scripts/test does)"
    );
    Ok((root, root.join("target/browser")))
}

/// Runs `tests/browser/<script>` in Chromium against the hub's console: base URL, the demo
/// login, `args`, then the screenshot folder, trusting exactly the hub's key. Returns what it
/// printed; fails with its output when it fails or takes over two minutes.
pub async fn console_browser(hub: &yilian::county::HubHandle, script: &str, args: &[&str]) -> anyhow::Result<String> {
    use anyhow::Context;
    let (root, out) = browser_dirs()?;
    let run = tokio::process::Command::new("node")
        .arg(root.join("tests/browser").join(script))
        .args([hub.base_url.as_str(), yilian::county::DEMO_LOGIN.0, yilian::county::DEMO_LOGIN.1])
        .args(args)
        .arg(&out)
        .env("YILIAN_SPKI", yilian_hub::ca::server_spki_sha256_base64(&hub.data_dir)?)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(120), run)
        .await
        .with_context(|| format!("{script} took over two minutes"))??;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    anyhow::ensure!(
        output.status.success(),
        "{script} failed:\n{stdout}\n{}\n(see {})",
        String::from_utf8_lossy(&output.stderr),
        out.display()
    );
    Ok(stdout)
}
