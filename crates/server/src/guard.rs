//! The panic guard for work that runs as a task (a TCP connection, a route run finished on
//! the runtime): a panic there is a bug of ours, and like one while handling a datagram it
//! is caught, counted (the caller's `on_panic`: the server's `panics` statistic) and
//! logged, instead of ending the task silently with nothing counted. It uses nothing of the
//! crate, so every layer (transports included) can wrap its tasks in it.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

/// `fut`, with a panic while it is polled caught and reported to `on_panic`; the task then
/// ends.
pub fn guarded<F, P>(on_panic: P, what: &'static str, fut: F) -> Guarded<F, P>
where
    F: Future<Output = ()>,
    P: Fn(),
{
    Guarded {
        inner: Box::pin(fut),
        on_panic,
        what,
    }
}

pub struct Guarded<F, P> {
    inner: Pin<Box<F>>,
    on_panic: P,
    what: &'static str,
}

impl<F: Future<Output = ()>, P: Fn() + Unpin> Future for Guarded<F, P> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        match catch_unwind(AssertUnwindSafe(|| this.inner.as_mut().poll(cx))) {
            Ok(poll) => poll,
            Err(_) => {
                (this.on_panic)();
                tracing::error!(task = this.what, "a task panicked; the server goes on");
                Poll::Ready(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn a_panicking_task_is_counted_and_ends() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let panics = AtomicU64::new(0);
        let count = || {
            panics.fetch_add(1, Ordering::Relaxed);
        };
        runtime.block_on(guarded(&count, "test", async {
            tokio::task::yield_now().await;
            panic!("a bug");
        }));
        assert_eq!(panics.load(Ordering::Relaxed), 1);
        runtime.block_on(guarded(&count, "test", async {}));
        assert_eq!(panics.load(Ordering::Relaxed), 1);
    }
}
