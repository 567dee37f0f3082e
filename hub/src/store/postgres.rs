//! The PostgreSQL backend: the store shared by several hub processes.
//!
//! Statements are written in SQLite's dialect where the two agree; this backend rewrites the
//! placeholders (`?1` → `$1`) and caches each prepared statement. Values adapt to the type
//! PostgreSQL inferred for a parameter (an integer bound where a boolean is expected, say), so
//! the store's SQL needs no casts for the common cases.

use super::sql::{Backend, Dialect, Result, Row, SqlError, Value};
use bytes::BytesMut;
use postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};
use std::collections::HashMap;
use std::error::Error;

/// The advisory lock a write transaction holds to its end (see [`Backend::begin`]).
const WRITE_LOCK: i64 = 0x5969_6c69_616e; // "Yilian"
/// The advisory lock held while the schema migrates, so that hubs starting together migrate once.
pub const MIGRATE_LOCK: i64 = 0x5969_6c69_616f;

/// A PostgreSQL connection with its statement cache.
pub struct Postgres {
    /// Always `Some` until dropped (see the `Drop` impl).
    client: Option<postgres::Client>,
    statements: HashMap<String, postgres::Statement>,
}

impl Postgres {
    /// Connects to `url` (`postgres://user@host:port/db`).
    pub fn connect(url: &str) -> Result<Self> {
        let client = off_runtime(|| postgres::Client::connect(url, postgres::NoTls))?;
        Ok(Self { client: Some(client), statements: HashMap::new() })
    }

    fn client(&mut self) -> Result<&mut postgres::Client> {
        self.client.as_mut().ok_or_else(|| SqlError::Param("connection closed".into()))
    }

    fn statement(&mut self, sql: &str) -> Result<postgres::Statement> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let translated = dialect(sql);
        let client = self.client()?;
        let s = off_runtime(|| client.prepare(&translated))?;
        self.statements.insert(sql.to_string(), s.clone());
        Ok(s)
    }
}

/// Runs a blocking call of the synchronous client. It drives its own runtime, which may not be
/// entered from a thread that is already inside tokio (CLI commands and tests call the store
/// from async code), so there it runs on a scoped thread.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| s.spawn(f).join()).unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// SQLite's `?N` placeholders as PostgreSQL's `$N`, outside quoted text; `CAST(x AS INTEGER)`
/// as a 64-bit integer (PostgreSQL's INTEGER is 32 bits).
pub fn dialect(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    let (mut quoted, mut next) = (false, 1);
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted => {
                out.push('$');
                if chars.peek().is_some_and(char::is_ascii_digit) {
                    while let Some(d) = chars.next_if(char::is_ascii_digit) {
                        out.push(d);
                    }
                } else {
                    out.push_str(&next.to_string());
                    next += 1;
                }
            }
            _ => out.push(c),
        }
    }
    out.replace(" AS INTEGER)", " AS BIGINT)")
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Closing blocks on the client's runtime too.
        if let Some(client) = self.client.take() {
            off_runtime(move || drop(client));
        }
    }
}

impl Backend for Postgres {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<usize> {
        let stmt = self.statement(sql)?;
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        let client = self.client()?;
        let n = off_runtime(|| client.execute(&stmt, &refs))?;
        Ok(n as usize)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        let stmt = self.statement(sql)?;
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        let client = self.client()?;
        let rows = off_runtime(|| client.query(&stmt, &refs))?;
        rows.iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| r.try_get::<_, Value>(i).map_err(SqlError::from))
                    .collect::<Result<Vec<_>>>()
                    .map(Row)
            })
            .collect()
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        let client = self.client()?;
        Ok(off_runtime(|| client.batch_execute(sql))?)
    }

    fn begin(&mut self) -> Result<()> {
        self.batch(&format!("BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})"))
    }
}

type BoxError = Box<dyn Error + Sync + Send>;

impl ToSql for Value {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match (self, ty) {
            (Value::Null, _) => Ok(IsNull::Yes),
            (Value::Int(i), &Type::INT8) => i.to_sql(ty, out),
            (Value::Int(i), &Type::INT4) => i32::try_from(*i)?.to_sql(ty, out),
            (Value::Int(i), &Type::INT2) => i16::try_from(*i)?.to_sql(ty, out),
            (Value::Int(i), &Type::BOOL) => (*i != 0).to_sql(ty, out),
            (Value::Int(i), &Type::FLOAT8) => (*i as f64).to_sql(ty, out),
            (Value::Int(i), &Type::TEXT | &Type::VARCHAR | &Type::UNKNOWN) => i.to_string().to_sql(&Type::TEXT, out),
            (Value::Real(f), &Type::FLOAT8) => f.to_sql(ty, out),
            (Value::Real(f), &Type::FLOAT4) => (*f as f32).to_sql(ty, out),
            (Value::Real(f), &Type::INT8) if f.fract() == 0.0 => (*f as i64).to_sql(ty, out),
            (Value::Text(s), &Type::TEXT | &Type::VARCHAR | &Type::BPCHAR | &Type::NAME | &Type::UNKNOWN) => {
                s.as_str().to_sql(&Type::TEXT, out)
            }
            (Value::Text(s), &Type::BYTEA) => s.as_bytes().to_sql(ty, out),
            (Value::Blob(b), &Type::BYTEA) => b.as_slice().to_sql(ty, out),
            (v, ty) => Err(format!("cannot bind {v:?} as {ty}").into()),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for Value {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(match *ty {
            Type::INT8 => Value::Int(i64::from_sql(ty, raw)?),
            Type::INT4 => Value::Int(i32::from_sql(ty, raw)?.into()),
            Type::INT2 => Value::Int(i16::from_sql(ty, raw)?.into()),
            Type::OID => Value::Int(u32::from_sql(ty, raw)?.into()),
            Type::BOOL => Value::Int(bool::from_sql(ty, raw)?.into()),
            Type::FLOAT8 => Value::Real(f64::from_sql(ty, raw)?),
            Type::FLOAT4 => Value::Real(f32::from_sql(ty, raw)?.into()),
            Type::NUMERIC => numeric(raw)?,
            Type::BYTEA => Value::Blob(raw.to_vec()),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                Value::Text(<&str>::from_sql(ty, raw)?.to_string())
            }
            ref other => return Err(format!("column type {other} is not one the store reads").into()),
        })
    }

    fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
        Ok(Value::Null)
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// A NUMERIC in PostgreSQL's binary form (what `SUM` of a BIGINT returns): an integer when it
/// has no fraction and fits, a double otherwise.
fn numeric(raw: &[u8]) -> Result<Value, BoxError> {
    let word = |i: usize| -> Result<u16, BoxError> {
        raw.get(i * 2..i * 2 + 2).map(|b| u16::from_be_bytes([b[0], b[1]])).ok_or_else(|| "numeric: truncated".into())
    };
    let (ndigits, weight, sign, dscale) = (word(0)? as usize, word(1)? as i16, word(2)?, word(3)?);
    if sign == 0xC000 {
        return Ok(Value::Real(f64::NAN));
    }
    let mut int: i128 = 0;
    let mut real = 0.0f64;
    let mut fits = dscale == 0;
    for i in 0..ndigits {
        let d = word(4 + i)?;
        let power = i32::from(weight) - i as i32;
        real += f64::from(d) * 10000f64.powi(power);
        if power < 0 {
            fits &= d == 0;
        } else if fits {
            int = 10000i128
                .checked_pow(power as u32)
                .and_then(|p| int.checked_add(i128::from(d) * p))
                .unwrap_or(i128::MAX);
        }
    }
    let negative = sign == 0x4000;
    match i64::try_from(int) {
        Ok(i) if fits => Ok(Value::Int(if negative { -i } else { i })),
        _ => Ok(Value::Real(if negative { -real } else { real })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_rewritten_outside_quotes() {
        assert_eq!(
            dialect("SELECT a FROM t WHERE b = ?1 AND c = '?2' AND d = ?12"),
            "SELECT a FROM t WHERE b = $1 AND c = '?2' AND d = $12"
        );
        assert_eq!(dialect("VALUES (?, ?)"), "VALUES ($1, $2)");
        assert_eq!(dialect("SELECT CAST(x AS INTEGER) FROM t"), "SELECT CAST(x AS BIGINT) FROM t");
    }

    #[test]
    fn numerics_decode() {
        // 123456789 = 1·10000² + 2345·10000 + 6789
        let raw: Vec<u8> = [3u16, 2, 0, 0, 1, 2345, 6789].iter().flat_map(|w| w.to_be_bytes()).collect();
        assert_eq!(numeric(&raw).expect("numeric"), Value::Int(123_456_789));
        let neg: Vec<u8> = [1u16, 0, 0x4000, 0, 42].iter().flat_map(|w| w.to_be_bytes()).collect();
        assert_eq!(numeric(&neg).expect("numeric"), Value::Int(-42));
        let zero: Vec<u8> = [0u16, 0, 0, 0].iter().flat_map(|w| w.to_be_bytes()).collect();
        assert_eq!(numeric(&zero).expect("numeric"), Value::Int(0));
        // 1.5 = 1 + 5000·10000⁻¹, dscale 1
        let frac: Vec<u8> = [2u16, 0, 0, 1, 1, 5000].iter().flat_map(|w| w.to_be_bytes()).collect();
        assert_eq!(numeric(&frac).expect("numeric"), Value::Real(1.5));
        assert!(numeric(&[0, 1]).is_err());
    }
}
