//! The log lines of a test run, kept in memory so a step can assert on what it logged
//! (`log`, `no_log`) and a failure can show them.

use std::fmt::Write as _;
use std::sync::Mutex;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Lines kept at most; past it the oldest half goes (a long test cannot grow memory).
const MAX_LINES: usize = 100_000;

fn lines() -> std::sync::MutexGuard<'static, Vec<String>> {
    LINES.lock().unwrap_or_else(|e| e.into_inner())
}

/// Makes this process's log go to the test's buffer (call once, before any test runs).
/// `level` as `ferrosip run -L` takes it.
pub fn install(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(format!("{level},pest=warn"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("debug"));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(Capture)
        .try_init();
}

/// Lines logged so far.
pub fn len() -> usize {
    lines().len()
}

/// Lines logged from index `from` on.
pub fn since(from: usize) -> Vec<String> {
    lines().get(from..).map(<[String]>::to_vec).unwrap_or_default()
}

struct Capture;

struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: tracing_subscriber::layer::Context<'_, S>) {
        let mut line = Line(format!("{} ", event.metadata().level()));
        event.record(&mut line);
        let mut lines = lines();
        if lines.len() >= MAX_LINES {
            lines.drain(..MAX_LINES / 2);
        }
        lines.push(line.0.trim_end().to_string());
    }
}
