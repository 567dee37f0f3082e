//! The schema, written for SQLite and translated for PostgreSQL. Applied on open; SQLite's
//! `user_version` (PostgreSQL: the `schema_version` table) records which migrations ran.

use super::sql::{Conn, Dialect, Result};

/// Migrations in order; index + 1 is the `user_version` after each.
pub const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE devices (
    device_id      TEXT PRIMARY KEY,
    site_id        TEXT NOT NULL,
    public_key     TEXT NOT NULL,
    key_id         TEXT NOT NULL,
    enrolled_at_ms INTEGER NOT NULL
);
-- Every accepted uplink envelope, exactly as signed: the evidence record, and the dedupe key.
CREATE TABLE messages (
    device_id      TEXT NOT NULL,
    seq            INTEGER NOT NULL,
    kind           INTEGER NOT NULL,
    digest         BLOB NOT NULL,
    created_at_ms  INTEGER NOT NULL,
    received_at_ms INTEGER NOT NULL,
    envelope       BLOB NOT NULL,
    PRIMARY KEY (device_id, seq)
) WITHOUT ROWID;
CREATE TABLE study_parts (
    study_uid  TEXT NOT NULL,
    idx        INTEGER NOT NULL,
    count      INTEGER NOT NULL,
    device_id  TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    part       BLOB NOT NULL,
    PRIMARY KEY (study_uid, idx)
);
CREATE TABLE studies (
    study_uid        TEXT PRIMARY KEY,
    device_id        TEXT NOT NULL,
    site_id          TEXT NOT NULL,
    patient_id       TEXT NOT NULL,
    patient_name     TEXT NOT NULL,
    sex              TEXT NOT NULL,
    birth_date       TEXT,
    question         TEXT NOT NULL,
    priority         INTEGER NOT NULL,
    acquired_at_ms   INTEGER NOT NULL,
    received_at_ms   INTEGER NOT NULL,
    sample_rate_hz   INTEGER NOT NULL,
    resolution_nv    INTEGER NOT NULL,
    leads            TEXT NOT NULL,
    samples_per_lead INTEGER NOT NULL,
    body             BLOB NOT NULL,
    claimed_by       TEXT,
    claim_expires_ms INTEGER,
    report_id        TEXT,
    reported_at_ms   INTEGER,
    delivered_at_ms  INTEGER
);
CREATE INDEX studies_queue ON studies (reported_at_ms, priority, received_at_ms);
CREATE TABLE stream_chunks (
    device_id        TEXT NOT NULL,
    seq              INTEGER NOT NULL,
    stream_id        INTEGER NOT NULL,
    first_sample     INTEGER NOT NULL,
    samples_per_lead INTEGER NOT NULL,
    leads            INTEGER NOT NULL,
    sample_rate_hz   INTEGER NOT NULL,
    start_time_ms    INTEGER NOT NULL,
    PRIMARY KEY (device_id, seq)
) WITHOUT ROWID;
CREATE INDEX stream_chunks_order ON stream_chunks (device_id, stream_id, first_sample);
CREATE TABLE device_output (
    device_id      TEXT NOT NULL,
    seq            INTEGER NOT NULL,
    port           TEXT NOT NULL,
    line           TEXT NOT NULL,
    received_at_ms INTEGER NOT NULL,
    PRIMARY KEY (device_id, seq)
) WITHOUT ROWID;
CREATE TABLE reports (
    report_id       TEXT PRIMARY KEY,
    study_uid       TEXT NOT NULL UNIQUE,
    device_id       TEXT NOT NULL,
    site_id         TEXT NOT NULL,
    specialist_id   TEXT NOT NULL,
    findings        TEXT NOT NULL,
    conclusion      TEXT NOT NULL,
    reported_at_ms  INTEGER NOT NULL,
    envelope        BLOB NOT NULL,
    published_at_ms INTEGER,
    receipt_at_ms   INTEGER
);
CREATE TABLE specialists (
    specialist_id TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    token_sha256  TEXT NOT NULL UNIQUE
);
CREATE TABLE device_status (
    device_id      TEXT PRIMARY KEY,
    state          TEXT NOT NULL,
    status_at_ms   INTEGER NOT NULL,
    spool_entries  INTEGER NOT NULL,
    agent_version  TEXT NOT NULL,
    detail         TEXT NOT NULL
);
CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"#,
    // Gaps an agent declared in a monitoring stream (it had to drop data: spool full).
    r#"
CREATE TABLE stream_gaps (
    device_id      TEXT NOT NULL,
    seq            INTEGER NOT NULL,
    stream_id      INTEGER NOT NULL,
    first_sample   INTEGER NOT NULL,
    end_sample     INTEGER NOT NULL,
    reason         TEXT NOT NULL,
    received_at_ms INTEGER NOT NULL,
    PRIMARY KEY (device_id, seq)
) WITHOUT ROWID;
"#,
    // The last problem a device reported stays visible after it clears.
    r#"
ALTER TABLE device_status ADD COLUMN last_problem TEXT;
ALTER TABLE device_status ADD COLUMN last_problem_at_ms INTEGER;
"#,
    // Console sign-in, sessions and the audit log.
    r#"
CREATE TABLE users (
    user_id       TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('specialist', 'admin')),
    password_hash TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE TABLE sessions (
    token_sha256  TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    csrf          TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
CREATE TABLE audit (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms   INTEGER NOT NULL,
    user_id TEXT NOT NULL,
    action  TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail  TEXT NOT NULL
);
"#,
    // Image studies: the signed manifest's parts, its instances, and the chunks until each
    // instance is rebuilt, checked and handed to the image store.
    r#"
CREATE TABLE image_studies (
    study_uid        TEXT PRIMARY KEY,
    device_id        TEXT NOT NULL,
    site_id          TEXT NOT NULL,
    priority         INTEGER NOT NULL,
    modality         TEXT NOT NULL,
    patient_name     TEXT NOT NULL,
    patient_id       TEXT NOT NULL,
    calling_ae       TEXT NOT NULL,
    parts            INTEGER NOT NULL,
    first_seen_ms    INTEGER NOT NULL,
    last_seen_ms     INTEGER NOT NULL,
    state            TEXT NOT NULL DEFAULT 'receiving' CHECK (state IN ('receiving', 'complete', 'partial')),
    completed_at_ms  INTEGER,
    missing          TEXT,
    claimed_by       TEXT,
    claim_expires_ms INTEGER,
    report_id        TEXT,
    reported_at_ms   INTEGER,
    delivered_at_ms  INTEGER
);
CREATE TABLE image_manifest_parts (
    study_uid TEXT NOT NULL,
    part      INTEGER NOT NULL,
    device_id TEXT NOT NULL,
    PRIMARY KEY (study_uid, part)
) WITHOUT ROWID;
CREATE TABLE image_instances (
    study_uid       TEXT NOT NULL,
    sop_uid         TEXT NOT NULL,
    series_uid      TEXT NOT NULL,
    sop_class_uid   TEXT NOT NULL,
    transfer_syntax TEXT NOT NULL,
    size            INTEGER NOT NULL,
    sha256          BLOB NOT NULL,
    chunks          INTEGER NOT NULL,
    stored_at_ms    INTEGER,
    PRIMARY KEY (study_uid, sop_uid)
) WITHOUT ROWID;
CREATE TABLE image_chunks (
    study_uid TEXT NOT NULL,
    sop_uid   TEXT NOT NULL,
    idx       INTEGER NOT NULL,
    device_id TEXT NOT NULL,
    bytes     BLOB NOT NULL,
    PRIMARY KEY (study_uid, sop_uid, idx)
);
"#,
    // Tamper-evident audit log (role, result, source address; each entry hash-chained, the head
    // kept beside it) and the auditor role. The users table is rebuilt for its CHECK constraint;
    // dropping it ends open sessions (everyone signs in again once).
    r#"
ALTER TABLE audit ADD COLUMN role TEXT NOT NULL DEFAULT '';
ALTER TABLE audit ADD COLUMN result TEXT NOT NULL DEFAULT 'ok';
ALTER TABLE audit ADD COLUMN source TEXT NOT NULL DEFAULT '';
ALTER TABLE audit ADD COLUMN alg TEXT;
ALTER TABLE audit ADD COLUMN prev TEXT;
ALTER TABLE audit ADD COLUMN hash TEXT;
CREATE TABLE audit_head (
    one     INTEGER PRIMARY KEY CHECK (one = 1),
    entries INTEGER NOT NULL,
    last_id INTEGER NOT NULL,
    hash    TEXT NOT NULL
);
CREATE TABLE users_new (
    user_id       TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('specialist', 'admin', 'auditor')),
    password_hash TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);
INSERT INTO users_new SELECT user_id, name, role, password_hash, created_at_ms FROM users;
DROP TABLE users;
ALTER TABLE users_new RENAME TO users;
"#,
    // Patient data sealed at rest (see `store::sealed`): the check value of the store key, kept
    // outside the database. The values themselves are sealed by `sealed::seal_existing` on open,
    // which needs the key and so cannot be SQL.
    r#"
CREATE TABLE store_key (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    check_value BLOB NOT NULL
);
"#,
    // Device lifecycle: enrolment with a bootstrap token and approval, quarantine of a pending
    // device's messages, key rotation with an overlap, revocation. Devices enrolled before this
    // (pre-provisioned from the CLI) are active.
    r#"
ALTER TABLE devices ADD COLUMN state TEXT NOT NULL DEFAULT 'active'
    CHECK (state IN ('pending', 'active', 'rejected', 'revoked'));
ALTER TABLE devices ADD COLUMN state_reason TEXT;
ALTER TABLE devices ADD COLUMN state_at_ms INTEGER;
ALTER TABLE devices ADD COLUMN enrol_addr TEXT;
ALTER TABLE devices ADD COLUMN old_public_key TEXT;
ALTER TABLE devices ADD COLUMN old_key_until_ms INTEGER;
ALTER TABLE devices ADD COLUMN kicked_at_ms INTEGER;
CREATE TABLE enrol_tokens (
    token_id       TEXT PRIMARY KEY,
    secret_sha256  BLOB NOT NULL,
    site_id        TEXT NOT NULL,
    created_by     TEXT NOT NULL,
    created_at_ms  INTEGER NOT NULL,
    expires_at_ms  INTEGER NOT NULL,
    used_at_ms     INTEGER,
    used_by_device TEXT
);
CREATE TABLE quarantine (
    device_id      TEXT NOT NULL,
    seq            INTEGER NOT NULL,
    digest         BLOB NOT NULL,
    kind           INTEGER NOT NULL,
    reason         TEXT NOT NULL,
    received_at_ms INTEGER NOT NULL,
    envelope       BLOB NOT NULL,
    PRIMARY KEY (device_id, seq, digest)
) WITHOUT ROWID;
"#,
    // Every key a device ever had, so that the broker's CRL can name each one no longer valid
    // (revoked devices, keys rotated or replaced away), however many rotations ago. Triggers
    // keep it whatever path changes a device's key. (Not `INSERT OR IGNORE`: inside a trigger
    // the outer statement's conflict clause wins, and the enrolment upsert has none for this
    // table, so a re-enrolment with the same key failed.)
    r#"
CREATE TABLE device_key_history (
    device_id   TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    PRIMARY KEY (device_id, public_key)
) WITHOUT ROWID;
INSERT OR IGNORE INTO device_key_history (device_id, public_key) SELECT device_id, public_key FROM devices;
INSERT OR IGNORE INTO device_key_history (device_id, public_key)
    SELECT device_id, old_public_key FROM devices WHERE old_public_key IS NOT NULL;
CREATE TRIGGER device_key_history_insert AFTER INSERT ON devices BEGIN
    INSERT INTO device_key_history (device_id, public_key) SELECT NEW.device_id, NEW.public_key
    WHERE NOT EXISTS (SELECT 1 FROM device_key_history WHERE device_id = NEW.device_id AND public_key = NEW.public_key);
END;
CREATE TRIGGER device_key_history_update AFTER UPDATE OF public_key ON devices BEGIN
    INSERT INTO device_key_history (device_id, public_key) SELECT NEW.device_id, NEW.public_key
    WHERE NOT EXISTS (SELECT 1 FROM device_key_history WHERE device_id = NEW.device_id AND public_key = NEW.public_key);
END;
"#,
    // Each device's update state, from its latest signed fleet report (kind 13).
    r#"
CREATE TABLE device_updates (
    device_id          TEXT PRIMARY KEY,
    seq                INTEGER NOT NULL,
    installed_version  TEXT NOT NULL,
    installed_sha256   TEXT NOT NULL,
    config_version     TEXT NOT NULL,
    trial_version      TEXT,
    state              TEXT NOT NULL,
    download_per_mille INTEGER NOT NULL,
    last_version       TEXT NOT NULL,
    last_reason        TEXT NOT NULL,
    last_at_ms         INTEGER NOT NULL,
    received_at_ms     INTEGER NOT NULL
);
"#,
    // Staged rollouts of offline-signed releases, and which device is in which stage.
    r#"
CREATE TABLE rollouts (
    rollout_id        INTEGER PRIMARY KEY,
    kind              TEXT NOT NULL CHECK (kind IN ('agent', 'config')),
    target_name       TEXT NOT NULL,
    triple            TEXT NOT NULL,
    version           TEXT NOT NULL,
    sha256            TEXT NOT NULL,
    stages            TEXT NOT NULL,
    advance_at_pct    INTEGER NOT NULL,
    halt_at_pct       INTEGER NOT NULL,
    stage_timeout_ms  INTEGER NOT NULL,
    approval          INTEGER NOT NULL,
    state             TEXT NOT NULL
        CHECK (state IN ('running', 'paused', 'waiting', 'halted', 'aborted', 'completed')),
    stage             INTEGER NOT NULL,
    stage_started_ms  INTEGER NOT NULL,
    reason            TEXT NOT NULL,
    accepted_failures INTEGER NOT NULL,
    created_by        TEXT NOT NULL,
    created_at_ms     INTEGER NOT NULL,
    updated_at_ms     INTEGER NOT NULL
);
CREATE TABLE rollout_devices (
    rollout_id     INTEGER NOT NULL REFERENCES rollouts (rollout_id),
    device_id      TEXT NOT NULL,
    stage          INTEGER NOT NULL,
    assigned_at_ms INTEGER,
    outcome        TEXT,
    detail         TEXT NOT NULL DEFAULT '',
    finished_at_ms INTEGER,
    PRIMARY KEY (rollout_id, device_id)
);
CREATE INDEX rollout_devices_by_device ON rollout_devices (device_id);
"#,
    // HL7 v2 messages to the hospital HIS, one per report (the message sealed at rest).
    r#"
CREATE TABLE hl7_outbox (
    report_id       TEXT PRIMARY KEY,
    control_id      TEXT NOT NULL UNIQUE,
    message         BLOB NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered')),
    attempts        INTEGER NOT NULL,
    last_error      TEXT NOT NULL,
    ack_code        TEXT,
    next_attempt_ms INTEGER NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    delivered_at_ms INTEGER
);
CREATE INDEX hl7_outbox_due ON hl7_outbox (state, next_attempt_ms);
"#,
    // Reported studies for the hospital PACS (DICOM C-STORE).
    r#"
CREATE TABLE pacs_outbox (
    study_uid        TEXT PRIMARY KEY,
    state            TEXT NOT NULL CHECK (state IN ('pending', 'stored')),
    attempts         INTEGER NOT NULL,
    last_error       TEXT NOT NULL,
    sop_instance_uid TEXT,
    status           INTEGER,
    next_attempt_ms  INTEGER NOT NULL,
    created_at_ms    INTEGER NOT NULL,
    stored_at_ms     INTEGER
);
"#,
    // Reports marked critical: who at the clinic acknowledged them, and when they were escalated.
    r#"
CREATE TABLE critical_results (
    report_id          TEXT PRIMARY KEY REFERENCES reports (report_id),
    study_uid          TEXT NOT NULL,
    site_id            TEXT NOT NULL,
    device_id          TEXT NOT NULL,
    marked_at_ms       INTEGER NOT NULL,
    acknowledged_by    TEXT,
    acknowledged_at_ms INTEGER,
    escalated_at_ms    INTEGER
);
"#,
    // The hub's pre-read of each ECG study: its flags (JSON), and the priority the clinic sent
    // when a flag raised it.
    r#"
ALTER TABLE studies ADD COLUMN preread_at_ms INTEGER;
ALTER TABLE studies ADD COLUMN preread_flags TEXT;
ALTER TABLE studies ADD COLUMN priority_sent INTEGER;
"#,
    // Finding a patient's earlier ECGs without opening every sealed row: keyed hashes of the
    // patient identifier and of name with birth date ('' when the study has none), and the
    // pre-read's summary (JSON) to say what is new since the last ECG.
    r#"
ALTER TABLE studies ADD COLUMN patient_index TEXT;
ALTER TABLE studies ADD COLUMN person_index TEXT;
ALTER TABLE studies ADD COLUMN preread_summary TEXT;
CREATE INDEX studies_by_patient ON studies (patient_index);
CREATE INDEX studies_by_person ON studies (person_index);
"#,
    // The clinic's decisions to send a study the cart's quality gate flagged without a retake.
    // Keyed by study alone: the decision can arrive before the study (it travels in the STAT
    // lane), and is shown only beside a study from the same device.
    r#"
CREATE TABLE quality_overrides (
    study_uid         TEXT PRIMARY KEY,
    device_id         TEXT NOT NULL,
    clinician         TEXT NOT NULL,
    reason            TEXT NOT NULL,
    overridden_at_ms  INTEGER NOT NULL,
    received_at_ms    INTEGER NOT NULL
);
"#,
];

/// Columns declared TEXT that hold sealed bytes (see [`super::sealed`]): SQLite keeps whatever
/// it is given, PostgreSQL needs them as BYTEA.
const SEALED_TEXT: &[(&str, &str)] = &[
    ("studies", "patient_id"),
    ("studies", "patient_name"),
    ("studies", "birth_date"),
    ("studies", "question"),
    ("device_output", "line"),
    ("reports", "findings"),
    ("reports", "conclusion"),
    ("image_studies", "patient_name"),
    ("image_studies", "patient_id"),
];

/// Runs the migrations the database has not had yet.
pub fn migrate(conn: &Conn) -> Result<()> {
    match conn.dialect() {
        Dialect::Sqlite => {
            let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            for (i, m) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
                let tx = conn.transaction()?;
                tx.execute_batch(m)?;
                tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
                tx.commit()?;
            }
        }
        Dialect::Postgres => {
            // Hubs starting together: one migrates, the others wait for it and find nothing to do.
            let lock = super::postgres::MIGRATE_LOCK;
            conn.execute_batch(&format!("SELECT pg_advisory_lock({lock})"))?;
            let done = migrate_postgres(conn);
            conn.execute_batch(&format!("SELECT pg_advisory_unlock({lock})"))?;
            done?;
        }
    }
    Ok(())
}

fn migrate_postgres(conn: &Conn) -> Result<()> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")?;
    let version: Option<i64> = conn.query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))?;
    for (i, m) in MIGRATIONS.iter().enumerate().skip(version.unwrap_or(0).max(0) as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(&postgres_ddl(i, m))?;
        for (table, column) in SEALED_TEXT {
            let text: bool = tx.query_row(
                "SELECT COUNT(*) > 0 FROM information_schema.columns
                 WHERE table_schema = current_schema() AND table_name = ?1 AND column_name = ?2 AND data_type = 'text'",
                [table, column],
                |r| r.get(0),
            )?;
            if text {
                tx.execute_batch(&format!(
                    "ALTER TABLE {table} ALTER COLUMN {column} TYPE BYTEA USING convert_to({column}, 'UTF8')"
                ))?;
            }
        }
        tx.execute("INSERT INTO schema_version (version) VALUES (?1)", [(i + 1) as i64])?;
        tx.commit()?;
    }
    Ok(())
}

/// Migration `index` in PostgreSQL's dialect: 64-bit integers, BYTEA for BLOB, identity columns
/// for SQLite's rowid keys, and the two statements SQLite writes its own way.
pub fn postgres_ddl(index: usize, sqlite: &str) -> String {
    let mut s = sqlite
        .replace(") WITHOUT ROWID;", ");")
        .replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY")
        .replace(
            "rollout_id        INTEGER PRIMARY KEY,",
            "rollout_id        BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,",
        )
        .replace("INTEGER", "BIGINT")
        .replace("BLOB", "BYTEA")
        .replace(" REAL", " DOUBLE PRECISION");
    if s.contains("DROP TABLE users;") {
        // PostgreSQL will not drop a table another one references: drop the reference with it
        // and make it again against the rebuilt table, as SQLite's rename does by name.
        s = s.replace(
            "DROP TABLE users;\nALTER TABLE users_new RENAME TO users;",
            "DROP TABLE users CASCADE;\nALTER TABLE users_new RENAME TO users;\n\
             ALTER TABLE sessions ADD FOREIGN KEY (user_id) REFERENCES users(user_id) ON DELETE CASCADE;",
        );
    }
    if s.contains("CREATE TRIGGER device_key_history_insert") {
        let start = s.find("INSERT OR IGNORE INTO device_key_history").unwrap_or(s.len());
        s.truncate(start);
        s.push_str(
            "INSERT INTO device_key_history (device_id, public_key) SELECT device_id, public_key FROM devices
    ON CONFLICT DO NOTHING;
INSERT INTO device_key_history (device_id, public_key)
    SELECT device_id, old_public_key FROM devices WHERE old_public_key IS NOT NULL ON CONFLICT DO NOTHING;
CREATE FUNCTION device_key_history_keep() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO device_key_history (device_id, public_key) VALUES (NEW.device_id, NEW.public_key)
        ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER device_key_history_insert AFTER INSERT ON devices
    FOR EACH ROW EXECUTE FUNCTION device_key_history_keep();
CREATE TRIGGER device_key_history_update AFTER UPDATE OF public_key ON devices
    FOR EACH ROW EXECUTE FUNCTION device_key_history_keep();
",
        );
    }
    debug_assert!(!s.contains("INSERT OR"), "migration {index} needs a PostgreSQL form");
    s
}
