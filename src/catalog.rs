//! The few catalog facts the checks read, from the backend's catalog caches
//! rather than through statements: every batch resolves its table and every
//! target's first batch checks its indexes, and a catalog query cost a plan
//! each time, 0.1 to 0.4 ms, far more than the lookup itself. Every run of
//! the procedure is a new session under pg_cron, so these add up.
//!
//! Below `table`, `indexes`, `run` and `run_log`, which read it.

use std::ffi::{CStr, CString};

use pgrx::pg_sys;
use pgrx::spi::quote_identifier;
use pgrx::PgList;

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

/// A table's size in blocks now, and the rows per block VACUUM or ANALYZE
/// last counted (None before either has run): what `pg_relation_size()` and
/// `pg_class` say, read with the ACCESS SHARE lock the former takes.
pub fn blocks_and_density(relation: pg_sys::Oid) -> (u32, Option<f64>) {
    // SAFETY: the relation is opened and closed here, and its relcache
    // entry read while open.
    unsafe {
        let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
        let opened = pg_sys::relation_open(relation, lock);
        let blocks = pg_sys::RelationGetNumberOfBlocksInFork(opened, pg_sys::ForkNumber::MAIN_FORKNUM);
        let class = &*(*opened).rd_rel;
        let density = (class.relpages > 0 && class.reltuples > 0.0)
            .then(|| f64::from(class.reltuples) / f64::from(class.relpages));
        pg_sys::relation_close(opened, lock);
        (blocks, density)
    }
}

/// A privilege, as GRANT spells it, on a table or (USAGE) a sequence.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Privilege {
    Select,
    Insert,
    Update,
    Delete,
    Usage,
}

impl Privilege {
    pub fn name(self) -> &'static str {
        match self {
            Privilege::Select => "SELECT",
            Privilege::Insert => "INSERT",
            Privilege::Update => "UPDATE",
            Privilege::Delete => "DELETE",
            Privilege::Usage => "USAGE",
        }
    }

    fn acl_mode(self) -> pg_sys::AclMode {
        pg_sys::AclMode::from(match self {
            Privilege::Select => pg_sys::ACL_SELECT,
            Privilege::Insert => pg_sys::ACL_INSERT,
            Privilege::Update => pg_sys::ACL_UPDATE,
            Privilege::Delete => pg_sys::ACL_DELETE,
            Privilege::Usage => pg_sys::ACL_USAGE,
        })
    }
}

/// The privileges among `privileges` the current role lacks on a relation:
/// `has_table_privilege()`'s answer, asked of the ACL directly.
pub fn missing_privileges(relation: pg_sys::Oid, privileges: &[Privilege]) -> Vec<Privilege> {
    privileges
        .iter()
        .copied()
        .filter(|privilege| {
            // SAFETY: an ACL check of an existing relation for the current
            // role, on the backend's only thread.
            let result = unsafe { pg_sys::pg_class_aclcheck(relation, pg_sys::GetUserId(), privilege.acl_mode()) };
            result != pg_sys::AclResult::ACLCHECK_OK
        })
        .collect()
}

/// Whether the current role may call a function.
pub fn may_execute(function: pg_sys::Oid) -> bool {
    let execute = pg_sys::AclMode::from(pg_sys::ACL_EXECUTE);
    // SAFETY: an ACL check of an existing function for the current role.
    #[cfg(feature = "pg15")]
    let result = unsafe { pg_sys::pg_proc_aclcheck(function, pg_sys::GetUserId(), execute) };
    // SAFETY: as above; PostgreSQL 16 folded the per-kind checks into one.
    #[cfg(not(feature = "pg15"))]
    let result =
        unsafe { pg_sys::object_aclcheck(pg_sys::ProcedureRelationId, function, pg_sys::GetUserId(), execute) };
    result == pg_sys::AclResult::ACLCHECK_OK
}

/// The current role, quoted as an identifier, as a GRANT names it.
pub fn current_role() -> String {
    // SAFETY: the name of the role the backend runs as, copied at once.
    let name = unsafe { CStr::from_ptr(pg_sys::GetUserNameFromId(pg_sys::GetUserId(), false)) };
    quote_identifier(name.to_string_lossy().as_ref())
}

/// The schema of the extension's function that `fcinfo` calls. The
/// extension is not relocatable and creates its objects in one schema, so
/// its run log is there too: read from the call, where a query of
/// `pg_extension` cost every new session half a millisecond.
pub fn calling_namespace(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Oid {
    // SAFETY: fmgr fills flinfo for every SQL call, and the function it
    // names is the one running. A call with none finds no schema.
    unsafe {
        let flinfo = fcinfo.as_ref().map_or(std::ptr::null_mut(), |call| call.flinfo);
        match flinfo.as_ref() {
            Some(flinfo) => pg_sys::get_func_namespace(flinfo.fn_oid),
            None => pg_sys::InvalidOid,
        }
    }
}

/// `schema.name`, each part quoted as an identifier.
pub fn qualified_name(namespace: pg_sys::Oid, name: &str) -> String {
    // SAFETY: a lookup by OID; the name is copied at once. A schema dropped
    // meanwhile has no name.
    let schema = unsafe {
        let schema = pg_sys::get_namespace_name(namespace);
        if schema.is_null() {
            String::new()
        } else {
            CStr::from_ptr(schema).to_string_lossy().into_owned()
        }
    };
    format!("{}.{}", quote_identifier(schema), quote_identifier(name))
}

/// The relation called `name` in a schema, if there is one.
pub fn relation_in(namespace: pg_sys::Oid, name: &str) -> Option<pg_sys::Oid> {
    let name = CString::new(name).ok()?;
    // SAFETY: a lookup by NUL-terminated name in the catalog caches.
    let oid = unsafe { pg_sys::get_relname_relid(name.as_ptr(), namespace) };
    (oid != pg_sys::InvalidOid).then_some(oid)
}

/// The one function called `name` in a schema, if there is exactly one.
pub fn function_in(namespace: pg_sys::Oid, name: &str) -> Option<pg_sys::Oid> {
    // SAFETY: the schema's name is copied into the list, which, like the
    // names in it, lives in the current memory context; missing_ok, so no
    // function (or several) is InvalidOid, not an error.
    let oid = unsafe {
        let schema = pg_sys::get_namespace_name(namespace);
        let name = CString::new(name).ok()?;
        if schema.is_null() {
            return None;
        }
        let mut qualified = PgList::<pg_sys::String>::new();
        qualified.push(pg_sys::makeString(schema));
        qualified.push(pg_sys::makeString(pg_sys::pstrdup(name.as_ptr())));
        pg_sys::LookupFuncName(qualified.into_pg(), -1, std::ptr::null(), true)
    };
    (oid != pg_sys::InvalidOid).then_some(oid)
}

/// A function as `regprocedure` writes it: its name, qualified where the
/// search_path does not find it, and its argument types.
pub fn function_signature(function: pg_sys::Oid) -> String {
    // SAFETY: a lookup by OID; the text is copied at once.
    unsafe { CStr::from_ptr(pg_sys::format_procedure(function)).to_string_lossy().into_owned() }
}
