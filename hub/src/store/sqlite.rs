//! The embedded SQLite backend: one file in WAL mode, committed with a full fsync.

use super::sql::{Backend, Dialect, Result, Row, SqlError, Value};
use rusqlite::types::{ToSqlOutput, ValueRef};
use std::path::Path;

/// SQLite through rusqlite, with its prepared-statement cache.
pub struct Sqlite {
    conn: rusqlite::Connection,
}

impl Sqlite {
    /// Opens (or creates) the database at `path` with the settings the store relies on.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = rusqlite::Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.set_prepared_statement_cache_capacity(256);
        // WAL with synchronous=FULL: a commit is on disk when it returns, because the hub acks
        // right after it and the agent then deletes its copy.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Deleted and overwritten content is zeroed, so neither retention nor sealing old rows
        // leaves patient data behind in free pages.
        conn.pragma_update(None, "secure_delete", "ON")?;
        Ok(Self { conn })
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Value::Real(f) => ToSqlOutput::Borrowed(ValueRef::Real(*f)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        })
    }
}

fn value_of(v: ValueRef<'_>, index: usize) -> Result<Value> {
    Ok(match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) => {
            Value::Text(String::from_utf8(t.to_vec()).map_err(|e| SqlError::column(index, format!("text: {e}")))?)
        }
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    })
}

impl Backend for Sqlite {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<usize> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        Ok(stmt.execute(rusqlite::params_from_iter(params))?)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let columns = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let values = (0..columns).map(|i| value_of(r.get_ref(i)?, i)).collect::<Result<Vec<_>>>()?;
            out.push(Row(values));
        }
        Ok(out)
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        Ok(self.conn.execute_batch(sql)?)
    }

    fn begin(&mut self) -> Result<()> {
        // The write lock at once: a transaction that read first and wrote later would fail at
        // once ("database is locked") whenever the running hub and a CLI command (enrol,
        // rollout) wrote in between, instead of waiting for the busy timeout.
        Ok(self.conn.execute_batch("BEGIN IMMEDIATE")?)
    }
}
