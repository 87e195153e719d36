//! KSR functions as plain Lua C closures.
//!
//! mlua's Rust callbacks cost ~700 instructions a call on top of the function itself (the
//! arguments gathered into a `MultiValue` of registry references, the app-data lookup, the
//! error wrapper); a route calls a KSR function a dozen times per message. A raw function
//! reads its arguments straight off the Lua stack and returns its integer on it.
//!
//! A body returns `Err(message)` for a Lua error: the trampoline raises it with the
//! caller's `file:line:` in front, as `luaL_error` does, after every Rust value of the call
//! is dropped (a Lua error unwinds with `longjmp`, which must not skip a destructor).

use bytes::Bytes;
use ferrosip_api::Value;
use mlua::{ffi, Lua};
use std::ffi::{c_int, c_void, CStr};
use std::panic::AssertUnwindSafe;

/// What a raw function does: reads its arguments from `l`, pushes its results, gives how
/// many it pushed.
pub(crate) type Body = dyn Fn(*mut ffi::lua_State) -> Result<c_int, String> + Send + 'static;

/// The bodies of a state's raw functions, in its app data: they live exactly as long as
/// the state whose closures point at them. Boxed twice: a closure's upvalue is a thin
/// pointer, to a `Box<Body>` that stays put when the vector grows.
#[allow(clippy::vec_box)]
#[derive(Default)]
pub(crate) struct Bodies(Vec<Box<Box<Body>>>);

/// A Lua function running `body`.
pub(crate) fn function(lua: &Lua, body: Box<Body>) -> mlua::Result<mlua::Function> {
    let boxed = Box::new(body);
    let ptr = &*boxed as *const Box<Body> as *mut c_void;
    lua.app_data_mut::<Bodies>()
        .ok_or_else(|| mlua::Error::runtime("app_lua: a state without its function table"))?
        .0
        .push(boxed);
    // SAFETY: pushes a light userdata and a C closure over it (no Lua error besides memory,
    // which `exec_raw` protects); the pointee is kept in the state's app data above.
    unsafe {
        lua.exec_raw::<mlua::Function>((), |l| {
            ffi::lua_pushlightuserdata(l, ptr);
            ffi::lua_pushcclosure(l, trampoline, 1);
        })
    }
}

unsafe extern "C-unwind" fn trampoline(l: *mut ffi::lua_State) -> c_int {
    // SAFETY: upvalue 1 is the light userdata `function` pushed, pointing into `Bodies`.
    let body = unsafe { &*(ffi::lua_touserdata(l, ffi::lua_upvalueindex(1)) as *const Box<Body>) };
    let message = match std::panic::catch_unwind(AssertUnwindSafe(|| body(l))) {
        Ok(Ok(results)) => return results,
        Ok(Err(message)) => message,
        Err(_) => "KSR: the function panicked (a bug; the panic is on stderr)".to_string(),
    };
    // SAFETY: `l` runs this C function; level 1 is its caller.
    unsafe { raise(l, 1, message) }
}

/// Raises `message` as a Lua error with the `file:line:` of the function at stack `level`
/// in front (as `luaL_error`). `message` is dropped before `lua_error` unwinds, which
/// skips every Rust frame up to the protected call catching it: the caller must hold no
/// value with a destructor.
///
/// # Safety
/// `l` is the running state, in a C function or hook Lua called.
pub(crate) unsafe fn raise(l: *mut ffi::lua_State, level: c_int, message: String) -> ! {
    // SAFETY: plain stack operations on the running state, as the caller promises.
    unsafe {
        ffi::luaL_where(l, level);
        ffi::lua_pushlstring(l, message.as_ptr().cast(), message.len());
        drop(message);
        ffi::lua_concat(l, 2);
        ffi::lua_error(l)
    }
}

/// Argument `i` (1-based) of the running raw function as a registry value: strings and
/// numbers (a float is truncated, a boolean is 0/1, nil is null), as KEMI passes them.
///
/// # Safety
/// `l` is the state running the raw function.
pub(crate) unsafe fn arg(l: *mut ffi::lua_State, i: c_int) -> Result<Value, String> {
    // SAFETY: reads of the caller's stack slot `i`; `lua_tolstring` is only used on a
    // string, so it converts nothing in place.
    unsafe {
        Ok(match ffi::lua_type(l, i) {
            ffi::LUA_TNIL | ffi::LUA_TNONE => Value::Null,
            ffi::LUA_TNUMBER if ffi::lua_isinteger(l, i) != 0 => {
                Value::Int(ffi::lua_tointegerx(l, i, std::ptr::null_mut()))
            }
            ffi::LUA_TNUMBER => Value::Int(ffi::lua_tonumberx(l, i, std::ptr::null_mut()) as i64),
            ffi::LUA_TBOOLEAN => Value::Int(i64::from(ffi::lua_toboolean(l, i))),
            ffi::LUA_TSTRING => {
                let mut len = 0usize;
                let p = ffi::lua_tolstring(l, i, &mut len);
                Value::Str(Bytes::copy_from_slice(std::slice::from_raw_parts(
                    p.cast::<u8>(),
                    len,
                )))
            }
            t => {
                let name = CStr::from_ptr(ffi::lua_typename(l, t)).to_string_lossy();
                return Err(format!(
                    "argument {i} is a {name} (strings and numbers only)"
                ));
            }
        })
    }
}

/// The Lua function calling the running raw function: its file, line and name.
pub(crate) struct Caller {
    pub file: String,
    pub line: i32,
    pub function: String,
}

impl Caller {
    /// # Safety
    /// `l` is the state running the raw function.
    pub(crate) unsafe fn of(l: *mut ffi::lua_State) -> Caller {
        // SAFETY: `lua_Debug` is plain C data (all-zero is its blank state); level 1 is
        // the caller of the running C function.
        unsafe {
            let mut ar: ffi::lua_Debug = std::mem::zeroed();
            if ffi::lua_getstack(l, 1, &mut ar) == 0
                || ffi::lua_getinfo(l, c"Sln".as_ptr(), &mut ar) == 0
            {
                return Caller {
                    file: "?".into(),
                    line: 0,
                    function: "lua".into(),
                };
            }
            Caller {
                file: CStr::from_ptr(ar.short_src.as_ptr())
                    .to_string_lossy()
                    .into_owned(),
                line: ar.currentline,
                function: if ar.name.is_null() {
                    "lua".into()
                } else {
                    CStr::from_ptr(ar.name).to_string_lossy().into_owned()
                },
            }
        }
    }

    /// `file:line`, as the log's location.
    pub(crate) fn location(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}
