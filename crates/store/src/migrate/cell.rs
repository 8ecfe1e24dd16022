//! One value on its way from SQLite to PostgreSQL: typed as the
//! PostgreSQL column it goes into, converted from what SQLite stored
//! (INTEGER 0/1 → BOOLEAN, BLOB → BYTEA, INTEGER → INT4 with a range
//! check, …), and encoded canonically for the digests both sides are
//! compared by.

use rusqlite::types::ValueRef;
use sha2::{Digest, Sha256};
use tokio_postgres::types::{ToSql, Type};

/// The PostgreSQL column types a facteur schema uses, and a few more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Bool,
    I16,
    I32,
    I64,
    F32,
    F64,
    Text,
    Bytes,
}

impl Kind {
    /// `None`: a type migrate does not know how to fill from SQLite.
    pub(crate) fn of(ty: &Type) -> Option<Kind> {
        Some(match *ty {
            Type::BOOL => Kind::Bool,
            Type::INT2 => Kind::I16,
            Type::INT4 => Kind::I32,
            Type::INT8 => Kind::I64,
            Type::FLOAT4 => Kind::F32,
            Type::FLOAT8 => Kind::F64,
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => Kind::Text,
            Type::BYTEA => Kind::Bytes,
            _ => return None,
        })
    }

    /// Text sorts by collation in PostgreSQL; byte order (`COLLATE "C"`)
    /// is SQLite's BINARY order.
    pub(crate) fn is_text(self) -> bool {
        self == Kind::Text
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Bool(Option<bool>),
    I16(Option<i16>),
    I32(Option<i32>),
    I64(Option<i64>),
    F32(Option<f32>),
    F64(Option<f64>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
}

impl Cell {
    pub(crate) fn null(kind: Kind) -> Cell {
        match kind {
            Kind::Bool => Cell::Bool(None),
            Kind::I16 => Cell::I16(None),
            Kind::I32 => Cell::I32(None),
            Kind::I64 => Cell::I64(None),
            Kind::F32 => Cell::F32(None),
            Kind::F64 => Cell::F64(None),
            Kind::Text => Cell::Text(None),
            Kind::Bytes => Cell::Bytes(None),
        }
    }

    /// What SQLite stored, as a value of `kind`; the error says why not.
    pub(crate) fn from_sqlite(kind: Kind, v: ValueRef<'_>) -> Result<Cell, String> {
        let int_range = |i: i64| format!("{i} does not fit the PostgreSQL column ({kind:?})");
        Ok(match (kind, v) {
            (_, ValueRef::Null) => Cell::null(kind),
            (Kind::Bool, ValueRef::Integer(0)) => Cell::Bool(Some(false)),
            (Kind::Bool, ValueRef::Integer(1)) => Cell::Bool(Some(true)),
            (Kind::I16, ValueRef::Integer(i)) => Cell::I16(Some(i16::try_from(i).map_err(|_| int_range(i))?)),
            (Kind::I32, ValueRef::Integer(i)) => Cell::I32(Some(i32::try_from(i).map_err(|_| int_range(i))?)),
            (Kind::I64, ValueRef::Integer(i)) => Cell::I64(Some(i)),
            (Kind::F32, ValueRef::Integer(i)) => Cell::F32(Some(i as f32)),
            (Kind::F64, ValueRef::Integer(i)) => Cell::F64(Some(i as f64)),
            (Kind::F32, ValueRef::Real(f)) => Cell::F32(Some(f as f32)),
            (Kind::F64, ValueRef::Real(f)) => Cell::F64(Some(f)),
            // SQLite's own CAST to TEXT of a number.
            (Kind::Text, ValueRef::Integer(i)) => Cell::Text(Some(i.to_string())),
            (Kind::Text, ValueRef::Real(f)) => Cell::Text(Some(f.to_string())),
            (Kind::Text, ValueRef::Text(t) | ValueRef::Blob(t)) => Cell::Text(Some(
                String::from_utf8(t.to_vec()).map_err(|_| "text that is not UTF-8 (PostgreSQL takes only UTF-8)")?,
            )),
            (Kind::Bytes, ValueRef::Blob(b) | ValueRef::Text(b)) => Cell::Bytes(Some(b.to_vec())),
            (kind, v) => return Err(format!("a {:?} value where PostgreSQL expects {kind:?}: {v:?}", v.data_type())),
        })
    }

    /// Column `i` of a PostgreSQL row, read as `kind`.
    pub(crate) fn from_pg(kind: Kind, row: &tokio_postgres::Row, i: usize) -> Result<Cell, tokio_postgres::Error> {
        Ok(match kind {
            Kind::Bool => Cell::Bool(row.try_get(i)?),
            Kind::I16 => Cell::I16(row.try_get(i)?),
            Kind::I32 => Cell::I32(row.try_get(i)?),
            Kind::I64 => Cell::I64(row.try_get(i)?),
            Kind::F32 => Cell::F32(row.try_get(i)?),
            Kind::F64 => Cell::F64(row.try_get(i)?),
            Kind::Text => Cell::Text(row.try_get(i)?),
            Kind::Bytes => Cell::Bytes(row.try_get(i)?),
        })
    }

    pub(crate) fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Cell::Bool(v) => v,
            Cell::I16(v) => v,
            Cell::I32(v) => v,
            Cell::I64(v) => v,
            Cell::F32(v) => v,
            Cell::F64(v) => v,
            Cell::Text(v) => v,
            Cell::Bytes(v) => v,
        }
    }

    /// Octets it weighs in a chunk (bodies count, the rest barely).
    pub(crate) fn size(&self) -> usize {
        match self {
            Cell::Text(Some(t)) => t.len(),
            Cell::Bytes(Some(b)) => b.len(),
            _ => 8,
        }
    }

    /// The canonical encoding: a tag, then the value. Integers of every
    /// width are one tag (a value is equal whatever column width holds it);
    /// text and octets carry their length, so no two rows encode alike.
    fn encode(&self, h: &mut Sha256) {
        let int = |h: &mut Sha256, i: i64| {
            h.update([2]);
            h.update(i.to_be_bytes());
        };
        let float = |h: &mut Sha256, f: f64| {
            h.update([3]);
            h.update(f.to_bits().to_be_bytes());
        };
        let octets = |h: &mut Sha256, tag: u8, b: &[u8]| {
            h.update([tag]);
            h.update((b.len() as u64).to_be_bytes());
            h.update(b);
        };
        match self {
            Cell::Bool(None)
            | Cell::I16(None)
            | Cell::I32(None)
            | Cell::I64(None)
            | Cell::F32(None)
            | Cell::F64(None)
            | Cell::Text(None)
            | Cell::Bytes(None) => h.update([0]),
            Cell::Bool(Some(b)) => h.update([1, u8::from(*b)]),
            Cell::I16(Some(i)) => int(h, i64::from(*i)),
            Cell::I32(Some(i)) => int(h, i64::from(*i)),
            Cell::I64(Some(i)) => int(h, *i),
            Cell::F32(Some(f)) => float(h, f64::from(*f)),
            Cell::F64(Some(f)) => float(h, *f),
            Cell::Text(Some(t)) => octets(h, 4, t.as_bytes()),
            Cell::Bytes(Some(b)) => octets(h, 5, b),
        }
    }
}

/// SHA-256 over a table's rows in key order, and how many there were.
pub(crate) struct TableDigest {
    h: Sha256,
    rows: u64,
}

impl TableDigest {
    pub(crate) fn new(table: &str, columns: &[&str]) -> TableDigest {
        let mut h = Sha256::new();
        // The table and its columns are part of what is compared.
        h.update(b"facteur-migrate-table-v1\0");
        h.update(table.as_bytes());
        for c in columns {
            h.update(b"\0");
            h.update(c.as_bytes());
        }
        h.update(b"\n");
        TableDigest { h, rows: 0 }
    }

    pub(crate) fn add(&mut self, row: &[Cell]) {
        for c in row {
            c.encode(&mut self.h);
        }
        self.rows += 1;
    }

    /// (rows, hex digest).
    pub(crate) fn finish(mut self) -> (u64, String) {
        self.h.update(self.rows.to_be_bytes());
        (self.rows, hex(&self.h.finalize()))
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_values_become_postgres_ones_or_say_why_not() {
        assert_eq!(Cell::from_sqlite(Kind::Bool, ValueRef::Integer(1)), Ok(Cell::Bool(Some(true))));
        assert_eq!(Cell::from_sqlite(Kind::Bool, ValueRef::Integer(0)), Ok(Cell::Bool(Some(false))));
        assert!(Cell::from_sqlite(Kind::Bool, ValueRef::Integer(2)).is_err());
        assert_eq!(Cell::from_sqlite(Kind::I32, ValueRef::Integer(7)), Ok(Cell::I32(Some(7))));
        assert!(Cell::from_sqlite(Kind::I32, ValueRef::Integer(1 << 40)).unwrap_err().contains("does not fit"));
        assert_eq!(Cell::from_sqlite(Kind::Bytes, ValueRef::Blob(b"\0\xff")), Ok(Cell::Bytes(Some(vec![0, 255]))));
        assert_eq!(Cell::from_sqlite(Kind::Text, ValueRef::Null), Ok(Cell::Text(None)));
        assert!(Cell::from_sqlite(Kind::Text, ValueRef::Text(b"\xff")).unwrap_err().contains("UTF-8"));
        assert!(Cell::from_sqlite(Kind::I64, ValueRef::Text(b"x")).is_err());
    }

    #[test]
    fn digests_see_values_not_column_widths_and_tell_rows_apart() {
        let digest = |rows: &[&[Cell]]| {
            let mut d = TableDigest::new("t", &["a", "b"]);
            for r in rows {
                d.add(r);
            }
            d.finish()
        };
        let a = digest(&[&[Cell::I32(Some(5)), Cell::Text(Some("x".into()))]]);
        assert_eq!(a, digest(&[&[Cell::I64(Some(5)), Cell::Text(Some("x".into()))]]));
        assert_ne!(a, digest(&[&[Cell::I64(Some(5)), Cell::Bytes(Some(b"x".to_vec()))]]));
        assert_ne!(a.1, digest(&[&[Cell::I64(Some(5)), Cell::Text(Some("y".into()))]]).1);
        // "ab","" and "a","b" differ: lengths are encoded.
        let split = |x: &str, y: &str| digest(&[&[Cell::Text(Some(x.into())), Cell::Text(Some(y.into()))]]);
        assert_ne!(split("ab", ""), split("a", "b"));
        assert_eq!(digest(&[]).0, 0);
    }
}
