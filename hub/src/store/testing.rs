//! A fresh store for a test, on the database the test run asks for: PostgreSQL when
//! `YILIAN_TEST_POSTGRES` names a server (each store gets its own new database there), SQLite
//! in the test's directory otherwise. The same tests thus run against both backends.

use super::{Db, Location, Store, StoreError, sealed};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

/// The environment variable naming the PostgreSQL server tests use (`postgres://user@host:port/db`).
pub const POSTGRES_ENV: &str = "YILIAN_TEST_POSTGRES";

/// The PostgreSQL server the tests should use, if any.
pub fn postgres_server() -> Option<String> {
    std::env::var(POSTGRES_ENV).ok().filter(|u| !u.is_empty())
}

/// A new, empty database on the PostgreSQL server at `server_url`; returns its URL.
pub fn fresh_postgres_database(server_url: &str) -> Result<String, StoreError> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let name = format!("yl_test_{}_{}_{nanos}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    let conn = super::sql::Conn::new(Box::new(super::postgres::Postgres::connect(server_url)?));
    drop_databases_of_ended_runs(&conn);
    // C collation: text sorts by bytes, as in SQLite.
    conn.execute_batch(&format!(
        "CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
    ))?;
    let base = server_url.split_once('?').map_or(server_url, |(b, _)| b);
    let prefix = base.rsplit_once('/').filter(|(p, _)| p.contains("//") && !p.ends_with('/')).map_or(base, |(p, _)| p);
    Ok(format!("{prefix}/{name}"))
}

/// Drops the test databases whose test process has ended. Each costs about 8 MB (a copy of
/// `template0`) and a workspace test run makes about thirty: kept, run after run fills the disk,
/// and a PostgreSQL that cannot write its WAL stops. Best effort: a database another process
/// drops first, or one still open, is left to a later run.
fn drop_databases_of_ended_runs(conn: &super::sql::Conn) {
    let Ok(rows) = conn.query_all("SELECT datname FROM pg_database WHERE datname LIKE 'yl_test_%'", ()) else {
        return;
    };
    let names = rows.iter().filter_map(|r| r.get::<String>(0).ok());
    // Only names this module makes, which need no quoting.
    for name in names.filter(|n| n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')) {
        let pid = name.strip_prefix("yl_test_").and_then(|rest| rest.split('_').next()?.parse::<u32>().ok());
        if pid.is_some_and(|pid| !process_alive(pid)) {
            let _ = conn.execute_batch(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

/// Whether a process with this id runs on this machine (where `/proc` can tell; else assumed).
fn process_alive(pid: u32) -> bool {
    let proc_fs = Path::new("/proc");
    !proc_fs.join("self").exists() || proc_fs.join(pid.to_string()).exists()
}

/// Where a test's store goes: a fresh PostgreSQL database, or `dir/y.db`.
pub fn location(dir: &Path) -> Result<Location, StoreError> {
    Ok(match postgres_server() {
        Some(server) => Location::Postgres(fresh_postgres_database(&server)?),
        None => Location::Sqlite(dir.join("y.db")),
    })
}

impl Db {
    /// A fresh store for a test (see the module docs); its key goes in `dir/keys`.
    pub fn open_test(dir: &Path) -> Result<Self, StoreError> {
        Self::open_at(&location(dir)?, &sealed::default_key_path(&dir.join("y.db")))
    }
}

impl Store {
    /// A fresh store for a test (see the module docs); its key goes in `dir/keys`.
    pub fn open_test(dir: &Path) -> Result<Self, StoreError> {
        Self::open_at(&location(dir)?, &sealed::default_key_path(&dir.join("y.db")))
    }
}
