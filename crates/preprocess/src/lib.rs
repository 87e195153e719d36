//! Kamailio's configuration preprocessor.
//!
//! Turns a `kamailio.cfg` (and everything it includes) into one text for the
//! script grammar, plus a [`SourceMap`] from offsets in that text back to the
//! operator's files, so every later diagnostic can point at `file:line:col`.
//!
//! # What is handled
//!
//! Directives start with `#!` or the legacy `!!`, at the start of a line
//! (after optional blanks) and outside block comments:
//!
//! | directive | effect |
//! |---|---|
//! | `#!define NAME [value]`, `#!def` | define; an error if `NAME` already exists |
//! | `#!trydefine`, `#!trydef` | define unless already defined |
//! | `#!redefine`, `#!redef` | define, replacing any previous value |
//! | `#!undefine`, `#!undef` | remove; an error if not defined |
//! | `#!tryundefine`, `#!tryundef` | remove if defined |
//! | `#!defexp NAME expr`, `#!defexps` | define to the value of an expression (`s`: quoted) |
//! | `#!defenv NAME=VAR`, `#!defenv VAR`, `#!defenvs` | define from the environment (`s`: quoted); an unset variable is an error |
//! | `#!trydefenv`, `#!trydefenvs` | same, but an unset variable is skipped |
//! | `#!ifdef NAME`, `#!ifndef NAME`, `#!ifexp expr`, `#!else`, `#!endif` | conditional blocks, nested |
//! | `#!subst "/re/repl/flags"` | rewrite later string literals and pseudo-variables |
//! | `#!substdef "/re/repl/flags"`, `#!substdefs` | the same, and `#!define re repl` (`s`: value quoted) |
//! | `include_file "f"`, `import_file "f"`, `#!include_file`, `#!import_file` | inline a file; `import` tolerates a missing one |
//!
//! Other `#!word` lines (`#!KAMAILIO`, ...) are ordinary `#` comments and pass
//! through, as in Kamailio.
//!
//! Define values are substituted for whole identifier tokens
//! (`[A-Za-z_][A-Za-z0-9_]*`) in the text, never inside string literals
//! (`"..."`, `'...'`), comments (`#`, `//`, nested `/* */`) or pseudo-variables
//! (`$name`, `$name(...)`, `$(...)`). Values are expanded when used (a value
//! naming another define sees that define's value at the point of use), and
//! a define that expands to itself is an error rather than Kamailio's endless
//! loop. `#!subst` rules apply, in order, to the content of every later
//! string literal, every pseudo-variable and every include path.
//!
//! # Output and source map
//!
//! Text passes through unchanged except that directive lines and skipped
//! blocks become empty lines (their newlines are kept), included files are
//! inlined, defines and subst rules are applied, and a backslash before a
//! newline outside strings (Kamailio's line continuation) becomes a space.
//! [`SourceMap::locate`] is exact for every byte copied from a file; bytes
//! produced by a substitution map to the start of the token they replaced
//! ([`Location::exact`] is then false). Columns count characters.
//!
//! # Differences from Kamailio
//!
//! Deliberate (stricter or friendlier):
//! - text after `#!ifdef NAME`, `#!else`, `#!endif` is an error (Kamailio's
//!   lexer silently fails to see such a directive); a second `#!else` is an
//!   error (Kamailio toggles again); `#!ifdef` blocks must close in the file
//!   that opens them; a define cycle is an error instead of a hang.
//! - relative includes try the including file's directory before the current
//!   directory (Kamailio: current directory first); include paths may
//!   contain blanks.
//! - directives are recognized only at the start of a line; Kamailio also
//!   sees `#!define` after other tokens on a line.
//!
//! Approximations:
//! - subst rules use Rust's `regex` rather than POSIX ERE (same syntax for the
//!   usual cases; leftmost-first instead of leftmost-longest alternation);
//!   `$pv` in a replacement is copied literally (Kamailio evaluates it against
//!   a dummy message) and `\u` is rejected.
//! - subst rules see a string literal's text as written, escapes included,
//!   and each of `"a" "b"` separately (Kamailio: the unescaped, concatenated
//!   value).
//! - define names that are also Kamailio keywords (`route`, `if`, `udp`, ...)
//!   are substituted here; Kamailio's lexer never sees them as identifiers.
//!   Event route names (`event_route[tm:local-request]`) are likewise not
//!   exempt from substitution.
//! - `#!defexp`/`#!ifexp` support the operator subset listed in `expr`, and
//!   `- * / %` accept numeric strings where snexpr would fail.
//! - Kamailio's predefined `KAMAILIO_X_Y`/`OS_NAME` are not added unless the
//!   caller asks ([`Options::kamailio_core_defines`]); `MOD_name` defines are
//!   not produced.

mod engine;
mod expr;
mod source_map;
mod subst;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

pub use source_map::{Location, SourceMap};

/// Kamailio's own limit on nested includes.
pub const DEFAULT_MAX_INCLUDE_DEPTH: usize = 10;

/// How to preprocess.
#[derive(Debug, Clone)]
pub struct Options {
    /// Defines given on the command line (`-A NAME` or `-A NAME=value`), in
    /// order. Values are used verbatim: `-A 'DBURL="sqlite:///x.db"'` keeps the
    /// quotes. An empty value means "defined without a value".
    pub defines: Vec<(String, Option<String>)>,
    /// Directories searched for relative include paths after the including
    /// file's directory and the current directory.
    pub include_dirs: Vec<PathBuf>,
    /// Maximum nesting of `include_file`/`import_file`.
    pub max_include_depth: usize,
    /// Environment for `#!defenv`; `None` reads the process environment.
    pub env: Option<HashMap<String, String>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            defines: Vec::new(),
            include_dirs: Vec::new(),
            max_include_depth: DEFAULT_MAX_INCLUDE_DEPTH,
            env: None,
        }
    }
}

impl Options {
    /// Adds a define written as Kamailio's `-A` argument: `NAME` or `NAME=value`.
    pub fn define_arg(&mut self, arg: &str) -> &mut Self {
        let (name, value) = match arg.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (arg, None),
        };
        self.defines.push((name.to_string(), value));
        self
    }

    /// The defines Kamailio itself predefines, for a given version:
    /// `KAMAILIO_X`, `KAMAILIO_X_Y`, `KAMAILIO_X_Y_Z`, `KAMAILIO_VERSION`
    /// (`XYYZZZ` as a number) and `OS_NAME` (quoted). Not added by default:
    /// push them onto [`Options::defines`] to emulate a given release.
    pub fn kamailio_core_defines(
        major: u32,
        minor: u32,
        patch: u32,
    ) -> Vec<(String, Option<String>)> {
        let version = major * 1_000_000 + minor * 1_000 + patch;
        vec![
            (format!("KAMAILIO_{major}"), None),
            (format!("KAMAILIO_{major}_{minor}"), None),
            (format!("KAMAILIO_{major}_{minor}_{patch}"), None),
            ("KAMAILIO_VERSION".into(), Some(version.to_string())),
            (
                "OS_NAME".into(),
                Some(format!("\"{}\"", std::env::consts::OS)),
            ),
        ]
    }
}

/// Where a define came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefineOrigin {
    /// [`Options::defines`].
    CommandLine,
    /// A directive at this place.
    File { file: PathBuf, line: u32 },
}

/// One entry of the define table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Define {
    /// The raw value text, `None` when defined without one.
    pub value: Option<String>,
    pub origin: DefineOrigin,
}

/// The define table as it stands at the end of preprocessing.
#[derive(Debug, Clone, Default)]
pub struct Defines {
    entries: BTreeMap<String, Define>,
}

impl Defines {
    pub fn is_defined(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    pub fn get(&self, name: &str) -> Option<&Define> {
        self.entries.get(name)
    }

    /// The value of `name`, `None` if undefined or defined without a value.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.entries.get(name)?.value.as_deref()
    }

    /// All defines, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Define)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn insert(&mut self, name: String, def: Define) {
        self.entries.insert(name, def);
    }

    pub(crate) fn remove(&mut self, name: &str) -> Option<Define> {
        self.entries.remove(name)
    }
}

/// The result of preprocessing.
#[derive(Debug, Clone)]
pub struct Preprocessed {
    /// The text to hand to the script grammar.
    pub text: String,
    /// Offsets in `text` back to the original files.
    pub map: SourceMap,
    /// The define table after the last line (for `#!ifdef`-like queries such
    /// as "is WITH_MYSQL on" and for `ferrosip check --defines`).
    pub defines: Defines,
}

/// A preprocessing error at a place in an original file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreprocessError {
    pub file: PathBuf,
    /// 1-based; 0 for errors not tied to a file (command-line defines).
    pub line: u32,
    /// 1-based, in characters.
    pub column: u32,
    pub message: String,
    /// The original line, for display.
    pub source_line: String,
}

impl fmt::Display for PreprocessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: error: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )?;
        if self.line == 0 {
            return Ok(());
        }
        // Tabs are echoed so the caret lines up under tab-indented text.
        let pad: String = self
            .source_line
            .chars()
            .take(self.column.saturating_sub(1) as usize)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        write!(f, "\n  | {}\n  | {pad}^", self.source_line)
    }
}

impl std::error::Error for PreprocessError {}

/// Preprocesses the file at `path` and everything it includes.
///
/// Relative include paths are tried against the including file's directory,
/// then the current directory, then [`Options::include_dirs`]. (Kamailio
/// tries the current directory first; for the usual daemon started from `/`
/// the two orders agree.) All errors found are returned, in file order.
pub fn preprocess_file(path: &Path, opts: &Options) -> Result<Preprocessed, Vec<PreprocessError>> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            engine::run(path.to_path_buf(), text, true, opts)
        }
        Err(e) => Err(vec![PreprocessError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            message: format!("cannot read config file: {e}"),
            source_line: String::new(),
        }]),
    }
}

/// Preprocesses `text` as if read from a file called `name`; relative
/// includes are resolved against the current directory, then
/// [`Options::include_dirs`].
pub fn preprocess_str(
    name: &str,
    text: &str,
    opts: &Options,
) -> Result<Preprocessed, Vec<PreprocessError>> {
    engine::run(PathBuf::from(name), text.to_string(), false, opts)
}

#[cfg(test)]
mod tests;
