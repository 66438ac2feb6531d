//! The few catalog facts the checks read, from the backend's catalog caches
//! rather than through statements: every batch resolves its table and every
//! target's first batch checks its indexes, and a catalog query cost a plan
//! each time, 0.1 to 0.4 ms, far more than the lookup itself.
//!
//! Below `table` and `indexes`, which both read it.

use std::ffi::{CStr, CString};

use pgrx::pg_sys;

/// What `pg_class` says of a relation that cleanup asks about.
pub struct Class {
    pub relkind: u8,
    pub has_subclass: bool,
    pub access_method: pg_sys::Oid,
}

/// Reads a tuple a catalog cache returned, then releases it; None where the
/// cache had none (the object is gone).
///
/// # Safety
/// `tuple` must come from `SearchSysCache*` and not be released yet; `read`
/// must not keep a pointer into it.
pub unsafe fn read_cached<R>(tuple: pg_sys::HeapTuple, read: impl FnOnce(pg_sys::HeapTuple) -> R) -> Option<R> {
    if tuple.is_null() {
        return None;
    }
    let value = read(tuple);
    pg_sys::ReleaseSysCache(tuple);
    Some(value)
}

/// The `pg_class` row of a relation, None if it is gone.
pub fn class(relation: pg_sys::Oid) -> Option<Class> {
    // SAFETY: a cache tuple's fixed part, read while pinned.
    unsafe {
        let tuple = pg_sys::SearchSysCache1(pg_sys::SysCacheIdentifier::RELOID as i32, pg_sys::Datum::from(relation));
        read_cached(tuple, |tuple| {
            let form = &*pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_class>(tuple);
            Class { relkind: form.relkind as u8, has_subclass: form.relhassubclass, access_method: form.relam }
        })
    }
}

/// The attribute number of a column, None if the relation has no such
/// column (or only a dropped one).
pub fn column_number(relation: pg_sys::Oid, column: &str) -> Option<i16> {
    let name = CString::new(column).ok()?;
    // SAFETY: a lookup by NUL-terminated name; get_attnum skips dropped
    // columns.
    let number = unsafe { pg_sys::get_attnum(relation, name.as_ptr()) };
    (number > 0).then_some(number)
}

/// A column's type as `format_type()` writes it.
pub fn column_type(relation: pg_sys::Oid, column: i16) -> String {
    let (mut type_oid, mut typmod, mut collation) = (pg_sys::InvalidOid, -1, pg_sys::InvalidOid);
    // SAFETY: lookups of an existing column; the formatted name is copied.
    unsafe {
        pg_sys::get_atttypetypmodcoll(relation, column, &mut type_oid, &mut typmod, &mut collation);
        CStr::from_ptr(pg_sys::format_type_with_typemod(type_oid, typmod)).to_string_lossy().into_owned()
    }
}

/// Whether a column is NOT NULL.
pub fn not_null(relation: pg_sys::Oid, column: i16) -> bool {
    // SAFETY: a cache tuple's fixed part, read while pinned.
    unsafe {
        let tuple = pg_sys::SearchSysCache2(
            pg_sys::SysCacheIdentifier::ATTNUM as i32,
            pg_sys::Datum::from(relation),
            pg_sys::Datum::from(column),
        );
        read_cached(tuple, |tuple| (*pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_attribute>(tuple)).attnotnull)
            .unwrap_or(false)
    }
}
