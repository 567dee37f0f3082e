//! One connection API over the two databases the hub runs on: embedded SQLite (one county on one
//! machine) and PostgreSQL (several hub processes sharing one database).
//!
//! The store's operations are written once, in SQL both databases accept, against [`Conn`]; a
//! [`Backend`] is what differs. The API mirrors the slice of rusqlite the store used (`execute`,
//! `query_row`, `prepare`/`query_map`, `optional`, transactions and savepoints) so the operations
//! read as before; values cross it as plain [`Value`]s, so neither backend's types leak out.
//!
//! Placeholders are SQLite's `?1`, `?2`…; the PostgreSQL backend rewrites them to `$1`, `$2`….

use std::cell::{Cell, RefCell};
use std::fmt;

/// A database operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SqlError {
    /// A query that must return a row returned none.
    #[error("query returned no rows")]
    NoRows,
    /// SQLite said no.
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL said no.
    #[error("{0}")]
    Postgres(#[from] postgres::Error),
    /// A column's value does not convert to the type asked for.
    #[error("column {index}: {reason}")]
    Column {
        /// Zero-based column index.
        index: usize,
        /// What did not fit.
        reason: String,
    },
    /// A parameter cannot be represented (an unsigned value past `i64::MAX`).
    #[error("parameter: {0}")]
    Param(String),
}

impl SqlError {
    /// A conversion failure of column `index`.
    pub fn column(index: usize, reason: impl fmt::Display) -> Self {
        Self::Column { index, reason: reason.to_string() }
    }
}

/// Result of a database operation.
pub type Result<T, E = SqlError> = std::result::Result<T, E>;

/// One value in a row or a parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A 64-bit integer (booleans are 0 and 1).
    Int(i64),
    /// A double.
    Real(f64),
    /// UTF-8 text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

/// Converts a Rust value to a parameter.
pub trait ToValue {
    /// The parameter.
    fn to_value(&self) -> Result<Value>;
}

/// Converts a column's value to a Rust value.
pub trait FromValue: Sized {
    /// The Rust value; `index` names the column in an error.
    fn from_value(v: &Value, index: usize) -> Result<Self>;
}

macro_rules! int_to_value {
    ($($t:ty),*) => {$(
        impl ToValue for $t {
            fn to_value(&self) -> Result<Value> {
                i64::try_from(*self).map(Value::Int).map_err(|_| SqlError::Param(format!("{self} does not fit a 64-bit integer")))
            }
        }
        impl FromValue for $t {
            fn from_value(v: &Value, index: usize) -> Result<Self> {
                match v {
                    Value::Int(i) => <$t>::try_from(*i).map_err(|_| SqlError::column(index, format!("{i} out of range for {}", stringify!($t)))),
                    other => Err(SqlError::column(index, format!("expected an integer, found {}", other.kind()))),
                }
            }
        }
    )*};
}
int_to_value!(i8, i16, i32, i64, u8, u16, u32, u64, usize);

impl ToValue for bool {
    fn to_value(&self) -> Result<Value> {
        Ok(Value::Int(i64::from(*self)))
    }
}
impl FromValue for bool {
    fn from_value(v: &Value, index: usize) -> Result<Self> {
        match v {
            Value::Int(i) => Ok(*i != 0),
            other => Err(SqlError::column(index, format!("expected a boolean, found {}", other.kind()))),
        }
    }
}
impl ToValue for f64 {
    fn to_value(&self) -> Result<Value> {
        Ok(Value::Real(*self))
    }
}
impl ToValue for f32 {
    fn to_value(&self) -> Result<Value> {
        Ok(Value::Real(f64::from(*self)))
    }
}
impl FromValue for f64 {
    fn from_value(v: &Value, index: usize) -> Result<Self> {
        match v {
            Value::Real(f) => Ok(*f),
            Value::Int(i) => Ok(*i as f64),
            other => Err(SqlError::column(index, format!("expected a number, found {}", other.kind()))),
        }
    }
}
impl ToValue for str {
    fn to_value(&self) -> Result<Value> {
        Ok(Value::Text(self.to_string()))
    }
}
impl ToValue for String {
    fn to_value(&self) -> Result<Value> {
        Ok(Value::Text(self.clone()))
    }
}
impl FromValue for String {
    fn from_value(v: &Value, index: usize) -> Result<Self> {
        match v {
            Value::Text(s) => Ok(s.clone()),
            other => Err(SqlError::column(index, format!("expected text, found {}", other.kind()))),
        }
    }
}
impl ToValue for [u8] {
    fn to_value(&self) -> Result<Value> {
        Ok(Value::Blob(self.to_vec()))
    }
}
impl ToValue for Vec<u8> {
    fn to_value(&self) -> Result<Value> {
        Ok(Value::Blob(self.clone()))
    }
}
impl<const N: usize> ToValue for [u8; N] {
    fn to_value(&self) -> Result<Value> {
        Ok(Value::Blob(self.to_vec()))
    }
}
impl FromValue for Vec<u8> {
    fn from_value(v: &Value, index: usize) -> Result<Self> {
        match v {
            Value::Blob(b) => Ok(b.clone()),
            // SQLite hands back whatever was stored; text written into a bytes column reads as
            // its UTF-8 bytes, as rusqlite did.
            Value::Text(s) => Ok(s.as_bytes().to_vec()),
            other => Err(SqlError::column(index, format!("expected bytes, found {}", other.kind()))),
        }
    }
}
impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Result<Value> {
        self.as_ref().map_or(Ok(Value::Null), ToValue::to_value)
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value, index: usize) -> Result<Self> {
        match v {
            Value::Null => Ok(None),
            v => T::from_value(v, index).map(Some),
        }
    }
}
impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Result<Value> {
        (**self).to_value()
    }
}
impl ToValue for Value {
    fn to_value(&self) -> Result<Value> {
        Ok(self.clone())
    }
}
impl FromValue for Value {
    fn from_value(v: &Value, _: usize) -> Result<Self> {
        Ok(v.clone())
    }
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::Null => "NULL",
            Value::Int(_) => "an integer",
            Value::Real(_) => "a real",
            Value::Text(_) => "text",
            Value::Blob(_) => "bytes",
        }
    }

    /// The value as text or bytes (for a column that may hold either).
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Text(s) => Some(s.as_bytes()),
            Value::Blob(b) => Some(b),
            _ => None,
        }
    }
}

/// Parameters of one statement: `params![a, b]`, `[a]`, `[]` or `()`.
pub trait Params {
    /// The values, in order.
    fn values(&self) -> Result<Vec<Value>>;
}

impl Params for () {
    fn values(&self) -> Result<Vec<Value>> {
        Ok(Vec::new())
    }
}
impl Params for &[&dyn ToValue] {
    fn values(&self) -> Result<Vec<Value>> {
        self.iter().map(|v| v.to_value()).collect()
    }
}
impl Params for [&dyn ToValue; 0] {
    fn values(&self) -> Result<Vec<Value>> {
        Ok(Vec::new())
    }
}
macro_rules! array_params {
    ($($n:literal),*) => {$(
        impl<T: ToValue> Params for [T; $n] {
            fn values(&self) -> Result<Vec<Value>> {
                self.iter().map(ToValue::to_value).collect()
            }
        }
        impl<T: ToValue> Params for &[T; $n] {
            fn values(&self) -> Result<Vec<Value>> {
                self.iter().map(ToValue::to_value).collect()
            }
        }
    )*};
}
array_params!(1, 2, 3, 4, 5, 6, 7, 8);

/// Statement parameters of mixed types, as rusqlite's macro of the same name.
#[macro_export]
macro_rules! sql_params {
    () => { &[] as &[&dyn $crate::store::sql::ToValue] };
    ($($p:expr),+ $(,)?) => { &[$(&$p as &dyn $crate::store::sql::ToValue),+] as &[&dyn $crate::store::sql::ToValue] };
}
pub use crate::sql_params as params;

/// One result row, owned.
#[derive(Debug, Clone)]
pub struct Row(pub Vec<Value>);

impl Row {
    /// Column `index` as `T`.
    pub fn get<T: FromValue>(&self, index: usize) -> Result<T> {
        let v = self.0.get(index).ok_or_else(|| SqlError::column(index, "no such column"))?;
        T::from_value(v, index)
    }

    /// Column `index` as it is.
    pub fn value(&self, index: usize) -> Result<&Value> {
        self.0.get(index).ok_or_else(|| SqlError::column(index, "no such column"))
    }
}

/// Which database a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Embedded SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// A database the store can run on: SQLite or PostgreSQL.
pub trait Backend: Send {
    /// Which one.
    fn dialect(&self) -> Dialect;
    /// Runs one statement; returns the rows it changed.
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<usize>;
    /// Runs one query; returns every row.
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>>;
    /// Runs several statements without parameters (schema, transaction control).
    fn batch(&mut self, sql: &str) -> Result<()>;
    /// Starts a write transaction. SQLite takes its write lock at once (`BEGIN IMMEDIATE`), so
    /// a transaction that reads and then writes never fails on a lock taken between; PostgreSQL
    /// takes the store's write lock (an advisory lock held to commit), which serialises the
    /// store's writers across hub processes the same way, while reads never wait.
    fn begin(&mut self) -> Result<()>;
}

/// A connection to the store's database (used on one thread).
pub struct Conn {
    backend: RefCell<Box<dyn Backend>>,
    depth: Cell<u32>,
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn").field("dialect", &self.dialect()).field("depth", &self.depth.get()).finish()
    }
}

/// rusqlite's `optional()`: a missing row becomes `None`.
pub trait OptionalExtension<T> {
    /// `Ok(None)` for [`SqlError::NoRows`].
    fn optional(self) -> Result<Option<T>>;
}

impl<T> OptionalExtension<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(SqlError::NoRows) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl Conn {
    /// A connection over `backend`.
    pub fn new(backend: Box<dyn Backend>) -> Self {
        Self { backend: RefCell::new(backend), depth: Cell::new(0) }
    }

    /// Which database this is.
    pub fn dialect(&self) -> Dialect {
        self.backend.borrow().dialect()
    }

    /// Runs one statement; returns the rows it changed.
    pub fn execute(&self, sql: &str, params: impl Params) -> Result<usize> {
        let values = params.values()?;
        self.backend.borrow_mut().execute(sql, &values)
    }

    /// Runs several statements without parameters.
    pub fn execute_batch(&self, sql: &str) -> Result<()> {
        self.backend.borrow_mut().batch(sql)
    }

    /// Every row of a query.
    pub fn query_all(&self, sql: &str, params: impl Params) -> Result<Vec<Row>> {
        let values = params.values()?;
        self.backend.borrow_mut().query(sql, &values)
    }

    /// The first row of a query through `f`; [`SqlError::NoRows`] when there is none.
    pub fn query_row<T>(&self, sql: &str, params: impl Params, f: impl FnOnce(&Row) -> Result<T>) -> Result<T> {
        let rows = self.query_all(sql, params)?;
        rows.first().map_or(Err(SqlError::NoRows), f)
    }

    /// A statement to run with parameters (kept for the shape of the code that uses it; the
    /// backends cache prepared statements themselves).
    pub fn prepare(&self, sql: &str) -> Result<Stmt<'_>> {
        Ok(Stmt { conn: self, sql: sql.to_string() })
    }

    /// Same as [`Conn::prepare`].
    pub fn prepare_cached(&self, sql: &str) -> Result<Stmt<'_>> {
        self.prepare(sql)
    }

    /// Starts a transaction, or a savepoint inside one; it rolls back unless committed.
    pub fn transaction(&self) -> Result<Tx<'_>> {
        let depth = self.begin_nested()?;
        Ok(Tx { conn: self, depth, done: false })
    }

    /// Starts a transaction (or a savepoint inside one) without a guard; returns its depth, to
    /// pass to [`Conn::finish`]. For callers that need `&mut` access to their owner meanwhile.
    pub fn begin_nested(&self) -> Result<u32> {
        let depth = self.depth.get();
        if depth == 0 {
            self.backend.borrow_mut().begin()?;
        } else {
            self.execute_batch(&format!("SAVEPOINT sp{depth}"))?;
        }
        self.depth.set(depth + 1);
        Ok(depth)
    }

    /// Commits or rolls back what [`Conn::begin_nested`] started at `depth`.
    pub fn finish(&self, depth: u32, commit: bool) -> Result<()> {
        self.depth.set(depth);
        match (depth, commit) {
            (0, true) => self.execute_batch("COMMIT").inspect_err(|_| {
                let _ = self.execute_batch("ROLLBACK");
            }),
            (0, false) => self.execute_batch("ROLLBACK"),
            (d, true) => self.execute_batch(&format!("RELEASE SAVEPOINT sp{d}")),
            (d, false) => self.execute_batch(&format!("ROLLBACK TO SAVEPOINT sp{d}; RELEASE SAVEPOINT sp{d}")),
        }
    }

    /// Rolls back a transaction a panic left open, so the next operation starts clean.
    pub fn abandon(&self) {
        if self.depth.get() > 0
            && let Err(e) = self.finish(0, false)
        {
            tracing::error!(error = %e, "rollback after a panic failed");
        }
    }

    /// Same as [`Conn::transaction`] (inside a transaction it is a savepoint).
    pub fn savepoint(&self) -> Result<Tx<'_>> {
        self.transaction()
    }
}

/// A prepared statement.
pub struct Stmt<'c> {
    conn: &'c Conn,
    sql: String,
}

impl Stmt<'_> {
    /// Maps every row through `f`.
    pub fn query_map<T>(
        &mut self,
        params: impl Params,
        f: impl FnMut(&Row) -> Result<T>,
    ) -> Result<std::vec::IntoIter<Result<T>>> {
        let rows = self.conn.query_all(&self.sql, params)?;
        Ok(rows.iter().map(f).collect::<Vec<_>>().into_iter())
    }

    /// The rows, to walk with [`Rows::next`].
    pub fn query(&mut self, params: impl Params) -> Result<Rows> {
        Ok(Rows { rows: self.conn.query_all(&self.sql, params)?.into_iter(), current: None })
    }

    /// Whether the query returns any row.
    pub fn exists(&mut self, params: impl Params) -> Result<bool> {
        Ok(!self.conn.query_all(&self.sql, params)?.is_empty())
    }

    /// Runs the statement.
    pub fn execute(&mut self, params: impl Params) -> Result<usize> {
        self.conn.execute(&self.sql, params)
    }
}

/// Rows of a query, walked one at a time.
pub struct Rows {
    rows: std::vec::IntoIter<Row>,
    current: Option<Row>,
}

impl Rows {
    /// The next row, if any.
    #[allow(clippy::should_implement_trait)] // rusqlite's shape: a fallible `next`
    pub fn next(&mut self) -> Result<Option<&Row>> {
        self.current = self.rows.next();
        Ok(self.current.as_ref())
    }
}

/// A transaction (or a savepoint inside one); dropped uncommitted, it rolls back.
pub struct Tx<'c> {
    conn: &'c Conn,
    depth: u32,
    done: bool,
}

impl Tx<'_> {
    /// Commits (or releases the savepoint).
    pub fn commit(mut self) -> Result<()> {
        self.done = true;
        self.conn.finish(self.depth, true)
    }
}

impl std::ops::Deref for Tx<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.conn
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Err(e) = self.conn.finish(self.depth, false) {
            tracing::error!(error = %e, "rollback failed");
        }
    }
}
