//! The transformation framework: `{class.name,args}` applied to a PV's value.

use crate::context::MsgContext;
use crate::pv::{Binder, PvError, PvRef};
use crate::value::Value;
use std::sync::Arc;

/// An argument of a transformation as written: literal text, or a PV read at run time.
#[derive(Clone, Debug)]
pub enum TrArg {
    /// Literal text.
    Lit(String),
    /// A pseudo-variable, read per message.
    Pv(PvRef),
}

impl TrArg {
    /// The argument's value for `ctx`.
    pub fn eval(&self, ctx: &MsgContext) -> Result<Value, PvError> {
        match self {
            TrArg::Lit(s) => Ok(Value::from_string(s.clone())),
            TrArg::Pv(p) => p.get(ctx),
        }
    }

    /// The literal, when the argument is one.
    pub fn literal(&self) -> Option<&str> {
        match self {
            TrArg::Lit(s) => Some(s),
            TrArg::Pv(_) => None,
        }
    }
}

/// A bound transformation.
pub trait Transform: Send + Sync + 'static {
    /// Transforms `value` (read from a PV on `ctx`).
    fn apply(&self, ctx: &MsgContext, value: Value) -> Result<Value, PvError>;
}

/// A family of transformations sharing a class name (`s`, `uri`, `param`, ...).
pub trait TransformClass: Send + Sync + 'static {
    /// Binds `{class.name,args}` once at load time; unknown names and wrong argument counts
    /// are load-time errors.
    fn bind(
        &self,
        name: &str,
        args: &[TrArg],
        binder: &Binder<'_>,
    ) -> Result<Arc<dyn Transform>, String>;

    /// The names this class understands, for docs and suggestions.
    fn names(&self) -> &[&'static str] {
        &[]
    }
}

/// A transformation from a closure.
pub struct FnTransform<F>(
    /// `Fn(&MsgContext, Value) -> Result<Value, PvError>`.
    pub F,
);

impl<F> Transform for FnTransform<F>
where
    F: Fn(&MsgContext, Value) -> Result<Value, PvError> + Send + Sync + 'static,
{
    fn apply(&self, ctx: &MsgContext, value: Value) -> Result<Value, PvError> {
        (self.0)(ctx, value)
    }
}
