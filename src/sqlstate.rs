//! PostgreSQL errors keep their own SQLSTATE on their way through Rust.
//!
//! pgrx 0.18 catches an error PostgreSQL raises inside a call from Rust and
//! carries it up as a panic whose code is its `PgSqlErrorCode` enum. A
//! SQLSTATE the enum does not list (a trigger's own `AF001` or `P0042`)
//! becomes `XX000` there, and pgrx raises it again as `XX000` at the SQL
//! function's boundary; message, DETAIL and HINT survive.
//!
//! PostgreSQL's errfinish() calls every callback on `error_context_stack`
//! while it raises a message, before an ERROR leaves for its handler, and in
//! such a callback `geterrcode()` reads and `errcode()` replaces the code of
//! that message. So:
//! - `kept` links a watch for the duration of its work. The watch notes the
//!   last ERROR raised meanwhile that pgrx would report as `XX000`, with its
//!   real code and its message and HINT.
//! - When the work fails with pgrx's `XX000`, and the error is the noted one
//!   (same message and HINT), `kept` arms the stamper before the panic goes
//!   on. The stamper is a callback in static storage, since the Rust frames
//!   are gone when pgrx raises the error again. At the next ERROR it puts
//!   the noted code back if that ERROR is pgrx's `XX000` with the same
//!   message and HINT, and disarms, whatever the ERROR was. NOTICEs and
//!   WARNINGs leave it armed and untouched.
//!
//! An error that is caught inside the work, then raised again by a bare
//! PL/pgSQL `RAISE` after another ERROR was raised and caught, is not the
//! noted one: it keeps pgrx's `XX000` unless both have the same message and
//! HINT.

use std::any::Any;
use std::cell::{Cell, UnsafeCell};
use std::collections::hash_map::DefaultHasher;
use std::ffi::{c_int, c_void, CStr};
use std::hash::{Hash, Hasher};
use std::panic::{self, AssertUnwindSafe};
use std::ptr;

use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::pg_sys::{self, ErrorContextCallback, ErrorData};

// elog.c's functions, unguarded. They run inside errfinish()'s callbacks,
// where pgrx's guard would turn a nested error into a panic unwinding
// through PostgreSQL's C frames; unguarded, it longjmps over our callback,
// whose frame holds nothing to drop at these calls.
extern "C-unwind" {
    fn geterrcode() -> c_int;
    fn errcode(sqlerrcode: c_int) -> c_int;
    fn CopyErrorData() -> *mut ErrorData;
    fn FreeErrorData(edata: *mut ErrorData);
}

const INTERNAL_ERROR: c_int = PgSqlErrorCode::ERRCODE_INTERNAL_ERROR as c_int;
const ERROR: c_int = pg_sys::PGERROR as c_int;

/// Runs `work`; an error PostgreSQL raises inside it reaches the caller with
/// its own SQLSTATE, even one pgrx does not know.
pub fn kept<T>(work: impl FnOnce() -> T) -> T {
    let watch = Linked::link();
    let outcome = panic::catch_unwind(AssertUnwindSafe(work));
    let noted = watch.unlink();
    match outcome {
        Ok(value) => {
            // An error raised, noted and caught inside the work is no
            // longer on its way out.
            STAMPER.arm(None);
            value
        }
        Err(payload) => {
            STAMPER.arm(noted.filter(|noted| noted.is_lost_in(&*payload)));
            panic::resume_unwind(payload)
        }
    }
}

/// An ERROR as the watch and the stamper recognise it.
#[derive(Clone, Copy)]
struct Raised {
    code: c_int,
    /// Its message and HINT, hashed: what pgrx carries of it unchanged.
    identity: u64,
}

impl Raised {
    /// Whether `payload` is this error as pgrx carries it, with `XX000` in
    /// place of a code pgrx does not know.
    fn is_lost_in(&self, payload: &(dyn Any + Send)) -> bool {
        match payload.downcast_ref::<CaughtError>() {
            Some(CaughtError::PostgresError(report)) => {
                self.code != INTERNAL_ERROR
                    && report.sql_error_code() == PgSqlErrorCode::ERRCODE_INTERNAL_ERROR
                    && self.identity == identity(report.message(), report.hint())
            }
            _ => false,
        }
    }
}

fn identity(message: &str, hint: Option<&str>) -> u64 {
    let mut hasher = DefaultHasher::new();
    message.hash(&mut hasher);
    hint.hash(&mut hasher);
    hasher.finish()
}

/// The level of the message errfinish() is raising, and its identity where
/// it has a message. Called only from a callback inside errfinish().
///
/// # Safety
/// Only inside an error context callback, with the message on elog.c's
/// stack, on the backend's thread.
unsafe fn raising() -> (c_int, Option<u64>) {
    // SAFETY: the caller's promise: elog.c has the message being raised on
    // its stack. CopyErrorData() asks not to copy into ErrorContext, the
    // current context in errfinish(); the copy lives in TopMemoryContext
    // until freed below. An error inside it (out of memory) longjmps over
    // this frame, which holds nothing to drop then.
    unsafe {
        let raising_context = pg_sys::CurrentMemoryContext;
        pg_sys::CurrentMemoryContext = pg_sys::TopMemoryContext;
        let copy = CopyErrorData();
        pg_sys::CurrentMemoryContext = raising_context;
        let level = (*copy).elevel;
        let text = |field: *const std::ffi::c_char| (!field.is_null()).then(|| CStr::from_ptr(field).to_string_lossy());
        let message = text((*copy).message);
        let hint = text((*copy).hint);
        let identity = message.map(|message| identity(&message, hint.as_deref()));
        // The copies' text is borrowed: done with before the copy is freed.
        drop(hint);
        FreeErrorData(copy);
        (level, identity)
    }
}

/// Notes what one `kept` call's work raises, while linked on
/// `error_context_stack`.
struct Watch {
    link: ErrorContextCallback,
    noted: Cell<Option<Raised>>,
}

/// A watch on the heap, linked: PostgreSQL holds its address until `unlink`
/// frees it. Never unlinked, it would leak, never dangle.
struct Linked(*mut Watch);

impl Linked {
    fn link() -> Linked {
        let watch = Box::into_raw(Box::new(Watch {
            link: ErrorContextCallback { previous: ptr::null_mut(), callback: Some(note), arg: ptr::null_mut() },
            noted: Cell::new(None),
        }));
        // SAFETY: `watch` is a fresh allocation; error_context_stack is a
        // backend global, used on the backend's only thread. `kept` unlinks
        // the watch on every path, the work's panics included.
        unsafe {
            (*watch).link.arg = watch.cast();
            (*watch).link.previous = pg_sys::error_context_stack;
            pg_sys::error_context_stack = &raw mut (*watch).link;
        }
        Linked(watch)
    }

    /// Puts `error_context_stack` back as it was when linked, which also
    /// unlinks the stamper if an inner `kept` armed it, and frees the watch.
    fn unlink(self) -> Option<Raised> {
        // SAFETY: the watch `link` allocated, freed only here. pgrx's guard
        // restores the stack after every call into PostgreSQL, and an inner
        // `kept` restores it too, so everything above the watch was linked
        // by the work, and is done with.
        unsafe {
            let watch = Box::from_raw(self.0);
            pg_sys::error_context_stack = watch.link.previous;
            watch.noted.get()
        }
    }
}

/// The watch's callback: notes each ERROR that pgrx would report as `XX000`.
unsafe extern "C-unwind" fn note(arg: *mut c_void) {
    // SAFETY: `arg` is the linked watch, alive while linked; we are inside
    // errfinish(), as `raising` requires.
    unsafe {
        let code = geterrcode();
        if PgSqlErrorCode::from(code) as c_int == code && code != INTERNAL_ERROR {
            // pgrx carries this code: the caller gets it either way.
            return;
        }
        if let (ERROR, Some(identity)) = raising() {
            (*arg.cast::<Watch>()).noted.set(Some(Raised { code, identity }));
        }
    }
}

/// Puts a noted code back on the error pgrx raises again.
struct Stamper {
    link: UnsafeCell<ErrorContextCallback>,
    armed: Cell<Option<Raised>>,
}

// SAFETY: a backend runs PostgreSQL and our Rust on one thread only (pgrx
// checks it at every call into PostgreSQL); nothing else touches STAMPER.
unsafe impl Sync for Stamper {}

static STAMPER: Stamper = Stamper {
    link: UnsafeCell::new(ErrorContextCallback {
        previous: ptr::null_mut(),
        callback: Some(stamp),
        arg: ptr::null_mut(),
    }),
    armed: Cell::new(None),
};

impl Stamper {
    /// Arms the stamper for `raised`, linking it if it is not on the stack
    /// already, or disarms it.
    fn arm(&self, raised: Option<Raised>) {
        self.armed.set(raised);
        if raised.is_none() {
            return;
        }
        let link = self.link.get();
        // SAFETY: backend globals, on the backend's only thread. Linking it
        // twice would make the stack a loop, hence the walk. The stamper is
        // static, so it never dangles; its `previous` is an entry that
        // outlives the error on its way out, and whoever catches that error
        // restores the stack to below the stamper (PG_CATCH, PL/pgSQL's
        // EXCEPTION, the top-level error recovery).
        unsafe {
            let mut entry = pg_sys::error_context_stack;
            while !entry.is_null() {
                if entry == link {
                    return;
                }
                entry = (*entry).previous;
            }
            (*link).previous = pg_sys::error_context_stack;
            pg_sys::error_context_stack = link;
        }
    }
}

/// The stamper's callback: see the module's documentation.
unsafe extern "C-unwind" fn stamp(_arg: *mut c_void) {
    let Some(armed) = STAMPER.armed.get() else { return };
    // SAFETY: we are inside errfinish(), as `raising`, geterrcode() and
    // errcode() require; the stamper is static.
    unsafe {
        let (level, identity) = raising();
        if level < ERROR {
            return;
        }
        STAMPER.armed.set(None);
        if level == ERROR && geterrcode() == INTERNAL_ERROR && identity == Some(armed.identity) {
            errcode(armed.code);
        }
        // Once fired it removes itself; errfinish() goes on to the entry
        // below it, which this leaves unchanged.
        let link = STAMPER.link.get();
        if pg_sys::error_context_stack == link {
            pg_sys::error_context_stack = (*link).previous;
        }
    }
}
