//! Set-up shared by the hub's router-level tests.

use std::path::Path;
use std::sync::Arc;
use yilian_hub::http::AppState;
use yilian_hub::ingest::Rejects;
use yilian_hub::publish::Publisher;
use yilian_hub::store::Store;
use yilian_protocol::keys::SigningKey;

/// The state of a hub over `store`, signing with `key`, its images under `dir/images`, with no
/// broker behind its publisher and no county CA.
pub fn app_state(dir: &Path, store: Store, key: SigningKey) -> AppState {
    let (client, _eventloop) = rumqttc::AsyncClient::new(rumqttc::MqttOptions::new("test", "127.0.0.1", 1), 16);
    let key_id = key.key_id().to_string();
    AppState {
        store,
        publisher: Publisher::new(client, Arc::new(key), "hub"),
        rejects: Arc::new(Rejects::default()),
        claim_ttl_ms: 60_000,
        wait_targets_ms: [600_000, 1_800_000, 86_400_000],
        images: Arc::new(yilian_hub::images::ImageStore::open(&dir.join("images")).expect("image store")),
        ca: None,
        tuf: Some(yilian_update::repo::RepoDir(dir.join("tuf"))),
        printer: yilian_hub::report_pdf::load_font(None).ok().map(|font| yilian_hub::report_pdf::Printer {
            font,
            centre: "hub".into(),
            hub_key_id: key_id.clone(),
        }),
    }
}
