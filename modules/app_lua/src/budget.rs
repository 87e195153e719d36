//! The instruction budget (`max_instructions`) without a hook on every run.
//!
//! While a count hook is set, Lua 5.4 traps on every VM instruction (`luaG_traceexec`):
//! ~7,000 machine instructions of each stateful call through the bench script, 3.5 % of
//! it. So a route runs with no hook. A watchdog thread looks every [`SCAN_EVERY`] at the
//! threads that are inside a Lua resume; one that has been in the same resume that long
//! gets a signal, and its handler sets the count hook on the coroutine the thread runs, as
//! lua.c's Ctrl-C handler does (`lua_sethook` is made to be called from a signal handler).
//! From then on the run's instructions count against its budget. A route that does not
//! run Lua for [`SCAN_EVERY`] in one go is never counted.
//!
//! Process-wide (a static registry, a signal number): a signal reaches a thread, not a
//! module instance, and its handler can only find what a static points it to.

use crate::ksr::StateData;
use mlua::ffi;
use std::cell::Cell;
use std::ffi::c_int;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Instructions between two calls of the count hook once it is set.
pub(crate) const HOOK_EVERY: u32 = 10_000;

/// How often the watchdog looks, and how long a resume runs before it is counted.
const SCAN_EVERY: Duration = Duration::from_millis(50);

/// A thread that runs Lua resumes, as the watchdog sees it.
struct Resumer {
    thread: libc::pthread_t,
    /// Milliseconds since [`epoch`] when the current resume began; 0 between resumes.
    since_ms: AtomicU64,
    /// The watchdog signalled the current resume already.
    signalled: AtomicBool,
}

/// Unregisters its thread's [`Resumer`] when the thread ends, before its id can be reused.
struct Registration(Arc<Resumer>);

impl Drop for Registration {
    fn drop(&mut self) {
        resumers().retain(|r| !Arc::ptr_eq(r, &self.0));
    }
}

/// The coroutine this thread is resuming and its state's data, for the signal handler and
/// the hook. `const`-initialized and without a destructor, so reading it in a signal handler
/// allocates nothing.
#[derive(Clone, Copy)]
struct Current {
    coroutine: *mut ffi::lua_State,
    data: *const StateData,
}

thread_local! {
    static CURRENT: Cell<Current> = const {
        Cell::new(Current {
            coroutine: std::ptr::null_mut(),
            data: std::ptr::null(),
        })
    };
    static REGISTRATION: Registration = Registration(register());
}

static RESUMERS: Mutex<Vec<Arc<Resumer>>> = Mutex::new(Vec::new());
static START: Once = Once::new();

fn resumers() -> std::sync::MutexGuard<'static, Vec<Arc<Resumer>>> {
    RESUMERS.lock().unwrap_or_else(|e| e.into_inner())
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64 + 1
}

/// The signal the watchdog sends (a real-time one glibc leaves free; nothing else here
/// uses them).
fn signal_number() -> c_int {
    libc::SIGRTMIN() + 6
}

fn register() -> Arc<Resumer> {
    START.call_once(start_watchdog);
    let resumer = Arc::new(Resumer {
        // SAFETY: no preconditions.
        thread: unsafe { libc::pthread_self() },
        since_ms: AtomicU64::new(0),
        signalled: AtomicBool::new(false),
    });
    resumers().push(resumer.clone());
    resumer
}

fn start_watchdog() {
    // SAFETY: installs a handler that only reads a thread-local and calls `lua_sethook`,
    // both safe in a signal handler; SA_RESTART resumes an interrupted system call.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_signal as extern "C" fn(c_int) as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(signal_number(), &action, std::ptr::null_mut()) != 0 {
            tracing::error!(
                "app_lua: no signal for the instruction budget ({}); max_instructions is not enforced",
                std::io::Error::last_os_error()
            );
            return;
        }
    }
    let spawned = std::thread::Builder::new()
        .name("lua-budget".into())
        .spawn(|| loop {
            std::thread::sleep(SCAN_EVERY);
            let now = now_ms();
            // Holding the lock keeps each listed thread alive while it is signalled: a
            // thread unregisters (under this lock) before it ends.
            for r in resumers().iter() {
                let since = r.since_ms.load(Ordering::Acquire);
                if since != 0
                    && now.saturating_sub(since) >= SCAN_EVERY.as_millis() as u64
                    && !r.signalled.swap(true, Ordering::AcqRel)
                {
                    // SAFETY: the thread is registered, so alive (see above).
                    unsafe { libc::pthread_kill(r.thread, signal_number()) };
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!("app_lua: no watchdog for the instruction budget ({e}); max_instructions is not enforced");
    }
}

extern "C" fn on_signal(_: c_int) {
    let current = CURRENT.with(Cell::get);
    if current.coroutine.is_null() {
        return;
    }
    // SAFETY: the coroutine is the one this thread is resuming (set and cleared around
    // each resume on this thread); setting a hook from a signal handler is what Lua
    // allows `lua_sethook` for.
    unsafe {
        if ffi::lua_gethookmask(current.coroutine) == 0 {
            ffi::lua_sethook(
                current.coroutine,
                Some(count_hook),
                ffi::LUA_MASKCOUNT,
                HOOK_EVERY as c_int,
            );
        }
    }
}

unsafe extern "C-unwind" fn count_hook(l: *mut ffi::lua_State, _: *mut ffi::lua_Debug) {
    let current = CURRENT.with(Cell::get);
    if current.data.is_null() {
        return;
    }
    // SAFETY: set with the coroutine for the resume this hook runs in; the state's data
    // lives as long as the state.
    if let Err(message) = unsafe { &*current.data }.charge_hook_period() {
        // SAFETY: a hook may raise an error; level 0 is the Lua function running.
        unsafe { crate::raw::raise(l, 0, message) }
    }
}

/// Takes the count hook off `coroutine` (set by the watchdog in an earlier run), so a new
/// run starts uncounted.
///
/// # Safety
/// `coroutine` is a live Lua thread no other thread is running.
pub(crate) unsafe fn clear(coroutine: *mut ffi::lua_State) {
    // SAFETY: as the caller promises.
    unsafe {
        if ffi::lua_gethookmask(coroutine) != 0 {
            ffi::lua_sethook(coroutine, None, 0, 0);
        }
    }
}

/// A run's resumes, each marked for the watchdog while it polls.
pub(crate) struct Watched<F> {
    pub inner: F,
    pub coroutine: *mut ffi::lua_State,
    pub data: *const StateData,
}

// SAFETY: the pointers belong to the state the run owns; they move with it and are only
// used by the thread polling the run.
unsafe impl<F: Send> Send for Watched<F> {}

impl<F: Future + Unpin> Future for Watched<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let current = Current {
            coroutine: self.coroutine,
            data: self.data,
        };
        REGISTRATION.with(|registration| {
            let resumer = &registration.0;
            CURRENT.with(|c| c.set(current));
            resumer.signalled.store(false, Ordering::Release);
            resumer.since_ms.store(now_ms(), Ordering::Release);
            let polled = Pin::new(&mut self.inner).poll(cx);
            resumer.since_ms.store(0, Ordering::Release);
            CURRENT.with(|c| {
                c.set(Current {
                    coroutine: std::ptr::null_mut(),
                    data: std::ptr::null(),
                })
            });
            polled
        })
    }
}
