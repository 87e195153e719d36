//! The preprocessor proper: a scanner that follows Kamailio's lexer closely
//! enough to know where identifiers, strings, comments and pseudo-variables
//! are, and that executes directives at line starts.

use std::path::{Path, PathBuf};

use crate::expr::{self, Val};
use crate::source_map::{Out, SourceFile, SourceMap};
use crate::subst::SubstRule;
use crate::{Define, DefineOrigin, Defines, Options, PreprocessError, Preprocessed};

/// Guards against runaway expansion of defines whose values name defines.
const MAX_EXPANSION_DEPTH: usize = 64;

/// One open `#!ifdef`/`#!ifndef`/`#!ifexp`.
#[derive(Debug)]
struct Cond {
    /// This level's current branch is selected.
    taking: bool,
    /// Every enclosing level is selected.
    parent_active: bool,
    else_seen: bool,
    file: usize,
    offset: usize,
    directive: String,
}

/// Where scanned text comes from, and so how its output is mapped.
#[derive(Debug, Clone, Copy)]
enum Src {
    /// The file's own text: offsets into it are file offsets.
    File(usize),
    /// A define value being expanded for the token at `anchor` in `file`.
    Value { file: usize, anchor: usize },
}

/// What a line turned out to be.
enum Line {
    /// Not a directive: scan it as text (or skip it).
    Text,
    /// Fully handled up to this offset; newlines in between are re-emitted.
    Consumed(usize),
    /// Handled up to this offset; the rest of the line is ordinary text.
    ContinueAt(usize),
}

#[derive(Clone, Copy, PartialEq)]
enum DefKind {
    Define,
    Try,
    Redefine,
    Exp { quoted: bool },
}

struct Engine<'a> {
    opts: &'a Options,
    files: Vec<SourceFile>,
    out: Out,
    defines: Defines,
    substs: Vec<SubstRule>,
    conds: Vec<Cond>,
    /// File ids of the files being read, outermost first.
    include_stack: Vec<usize>,
    /// Whether the main file lives on disk (its directory anchors includes).
    main_on_disk: bool,
    errors: Vec<PreprocessError>,
}

pub(crate) fn run(
    path: PathBuf,
    text: String,
    on_disk: bool,
    opts: &Options,
) -> Result<Preprocessed, Vec<PreprocessError>> {
    let mut e = Engine {
        opts,
        files: vec![SourceFile::new(path, text)],
        out: Out::default(),
        defines: Defines::default(),
        substs: Vec::new(),
        conds: Vec::new(),
        include_stack: vec![0],
        main_on_disk: on_disk,
        errors: Vec::new(),
    };
    e.command_line_defines();
    e.process_file(0);
    if !e.errors.is_empty() {
        return Err(e.errors);
    }
    Ok(Preprocessed {
        text: e.out.text,
        map: SourceMap {
            files: e.files,
            segments: e.out.segments,
        },
        defines: e.defines,
    })
}

fn is_id_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_id_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Kamailio's EAT_ABLE set: what may separate a directive from its argument.
fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | 0x08)
}

fn skip_blanks(text: &str, mut i: usize, end: usize) -> usize {
    let b = text.as_bytes();
    while i < end && is_blank(b[i]) {
        i += 1;
    }
    i
}

fn id_end(text: &str, start: usize, end: usize) -> usize {
    let b = text.as_bytes();
    if start >= end || !is_id_start(b[start]) {
        return start;
    }
    let mut i = start + 1;
    while i < end && is_id_char(b[i]) {
        i += 1;
    }
    i
}

fn line_end(text: &str, from: usize) -> usize {
    text[from..].find('\n').map_or(text.len(), |i| from + i)
}

/// Whether `text[from..end]` is blank or a comment, i.e. harmless after a
/// directive argument.
fn only_trailing_comment(text: &str, from: usize, end: usize) -> bool {
    let rest = text[from..end].trim_start_matches([' ', '\t', '\r', ';']);
    rest.is_empty() || rest.starts_with('#') || rest.starts_with("//")
}

/// Parses a double-quoted literal at `start` with Kamailio's string escapes;
/// returns the value and the offset after the closing quote.
fn parse_quoted(
    text: &str,
    start: usize,
    end: usize,
    include_escapes: bool,
) -> Option<(String, usize)> {
    let b = text.as_bytes();
    let quote = *b.get(start)?;
    // Include paths must be double-quoted; a `#!subst` argument is any string token.
    let accepted = quote == b'"' || (quote == b'\'' && !include_escapes);
    if !accepted {
        return None;
    }
    let mut val = String::new();
    let mut it = text[start + 1..end].char_indices();
    while let Some((i, c)) = it.next() {
        if c == quote as char {
            return Some((val, start + 1 + i + 1));
        }
        if c != '\\' || quote == b'\'' {
            val.push(c);
            continue;
        }
        let (_, e) = it.next()?;
        match e {
            'n' => val.push('\n'),
            'r' => val.push('\r'),
            't' => val.push('\t'),
            'a' if !include_escapes => val.push('\x07'),
            '"' | '\\' => val.push(e),
            _ if include_escapes => val.push(e),
            // Any other escape stays as written, which is what lets regexes
            // like "\d" through unharmed.
            _ => {
                val.push('\\');
                val.push(e);
            }
        }
    }
    None
}

impl Engine<'_> {
    fn error(&mut self, file: usize, offset: usize, message: impl Into<String>) {
        let f = &self.files[file];
        let (line, column) = f.line_col(offset);
        self.errors.push(PreprocessError {
            file: f.path.clone(),
            line,
            column,
            message: message.into(),
            source_line: f.line(line).unwrap_or_default().to_string(),
        });
    }

    fn active(&self) -> bool {
        match self.conds.last() {
            None => true,
            Some(c) => c.parent_active && c.taking,
        }
    }

    fn command_line_defines(&mut self) {
        for (name, value) in &self.opts.defines {
            let err = |message: String| PreprocessError {
                file: PathBuf::from("<command line>"),
                line: 0,
                column: 0,
                message,
                source_line: String::new(),
            };
            if name.is_empty() {
                self.errors.push(err("-A needs a define name".into()));
            } else if self.defines.is_defined(name) {
                self.errors
                    .push(err(format!("-A {name}: `{name}` is already defined")));
            } else {
                let value = value.clone().filter(|v| !v.is_empty());
                self.defines.insert(
                    name.clone(),
                    Define {
                        value,
                        origin: DefineOrigin::CommandLine,
                    },
                );
            }
        }
    }

    fn origin(&self, file: usize, offset: usize) -> DefineOrigin {
        DefineOrigin::File {
            file: self.files[file].path.clone(),
            line: self.files[file].line_col(offset).0,
        }
    }

    fn describe_origin(origin: &DefineOrigin) -> String {
        match origin {
            DefineOrigin::CommandLine => "on the command line".into(),
            DefineOrigin::File { file, line } => format!("at {}:{line}", file.display()),
        }
    }

    /// Emits the newlines of `text[from..to]` so skipped text keeps its lines.
    fn emit_newlines(&mut self, file: usize, text: &str, from: usize, to: usize) {
        for (i, _) in text[from..to].match_indices('\n') {
            self.out.exact(file, from + i, "\n");
        }
    }

    fn process_file(&mut self, file: usize) {
        let text = self.files[file].text.clone();
        let conds_at_entry = self.conds.len();
        let mut comment_depth = 0u32;
        let mut pos = 0;
        while pos < text.len() {
            let end = line_end(&text, pos);
            let line = if comment_depth == 0 {
                self.directive(file, &text, pos, end)
            } else {
                Line::Text
            };
            match line {
                Line::Consumed(until) => {
                    self.emit_newlines(file, &text, pos, until);
                    pos = until;
                }
                Line::ContinueAt(at) => {
                    pos = self.scan(
                        Src::File(file),
                        &text,
                        at,
                        true,
                        &mut comment_depth,
                        &mut Vec::new(),
                    );
                }
                Line::Text if !self.active() => {
                    let next = (end + 1).min(text.len());
                    self.emit_newlines(file, &text, pos, next);
                    pos = next;
                }
                Line::Text => {
                    pos = self.scan(
                        Src::File(file),
                        &text,
                        pos,
                        true,
                        &mut comment_depth,
                        &mut Vec::new(),
                    );
                }
            }
        }
        // Blocks must close in the file that opens them; Kamailio lets them
        // span files, which only ever happens by mistake.
        for c in self.conds.split_off(conds_at_entry) {
            let msg = format!(
                "`#!{}` is not closed by `#!endif` before the end of the file",
                c.directive
            );
            self.error(c.file, c.offset, msg);
        }
    }

    /// Recognizes and executes a directive on the line `text[start..end]`.
    fn directive(&mut self, file: usize, text: &str, start: usize, end: usize) -> Line {
        let next_line = (end + 1).min(text.len());
        let first = skip_blanks(text, start, end);
        let rest = &text[first..end];
        let (kw_start, bare) = if rest.starts_with("#!") || rest.starts_with("!!") {
            (first + 2, false)
        } else if rest.starts_with("include_file") || rest.starts_with("import_file") {
            (first, true)
        } else {
            return Line::Text;
        };
        let b = text.as_bytes();
        let mut kw_end = kw_start;
        while kw_end < end && (b[kw_end].is_ascii_alphabetic() || b[kw_end] == b'_') {
            kw_end += 1;
        }
        let kw = &text[kw_start..kw_end];
        if bare {
            // `include_filex` is an identifier, not the statement.
            let ok = kw == "include_file" || kw == "import_file";
            let next = b.get(kw_end).copied();
            if !ok || !(next.is_some_and(|c| is_blank(c) || c == b'"')) {
                return Line::Text;
            }
        }
        let directive_at = first;
        match kw {
            "ifdef" | "ifndef" | "ifexp" => {
                let parent_active = self.active();
                let taking = if parent_active {
                    self.condition(file, text, kw, kw_end, end, directive_at)
                } else {
                    false
                };
                self.conds.push(Cond {
                    taking,
                    parent_active,
                    else_seen: false,
                    file,
                    offset: directive_at,
                    directive: kw.to_string(),
                });
                return Line::Consumed(next_line);
            }
            "else" | "endif" => {
                let after = skip_blanks(text, kw_end, end);
                let enclosing_active = self.conds.last().is_some_and(|c| c.parent_active);
                if after < end && enclosing_active {
                    self.error(
                        file,
                        after,
                        format!("unexpected text after `#!{kw}` (Kamailio would not see the directive; put comments on their own line)"),
                    );
                }
                let Some(c) = self.conds.last_mut() else {
                    self.error(
                        file,
                        directive_at,
                        format!("`#!{kw}` without a matching `#!ifdef`"),
                    );
                    return Line::Consumed(next_line);
                };
                if kw == "endif" {
                    self.conds.pop();
                } else if c.else_seen {
                    let (cf, co) = (c.file, c.offset);
                    let (l, _) = self.files[cf].line_col(co);
                    self.error(
                        file,
                        directive_at,
                        format!("second `#!else` for the `#!ifdef` at line {l}"),
                    );
                } else {
                    c.else_seen = true;
                    c.taking = !c.taking;
                }
                return Line::Consumed(next_line);
            }
            _ => {}
        }
        if !self.active() {
            return Line::Text;
        }
        let def = |k| Some(k);
        let def_kind = match kw {
            "define" | "def" => def(DefKind::Define),
            "trydefine" | "trydef" => def(DefKind::Try),
            "redefine" | "redef" => def(DefKind::Redefine),
            "defexp" => def(DefKind::Exp { quoted: false }),
            "defexps" => def(DefKind::Exp { quoted: true }),
            _ => None,
        };
        if let Some(kind) = def_kind {
            return self.define(file, text, kw, kind, kw_end, end);
        }
        match kw {
            "undefine" | "undef" | "tryundefine" | "tryundef" => {
                self.undefine(file, text, kw, kw_end, end);
                Line::Consumed(next_line)
            }
            "defenv" | "defenvs" | "trydefenv" | "trydefenvs" => {
                self.defenv(file, text, kw, kw_end, end)
            }
            "subst" | "substdef" | "substdefs" => {
                self.subst(file, text, kw, kw_end, end);
                Line::Consumed(next_line)
            }
            "include_file" | "import_file" => {
                self.include(file, text, kw == "import_file", kw, kw_end, end)
            }
            // `#!KAMAILIO` and friends are comments to Kamailio's lexer.
            _ => Line::Text,
        }
    }

    /// Evaluates the test of `#!ifdef`/`#!ifndef`/`#!ifexp`.
    fn condition(
        &mut self,
        file: usize,
        text: &str,
        kw: &str,
        kw_end: usize,
        end: usize,
        at: usize,
    ) -> bool {
        let arg = skip_blanks(text, kw_end, end);
        if arg == kw_end || arg == end {
            let what = if kw == "ifexp" {
                "an expression"
            } else {
                "a define name"
            };
            self.error(file, at, format!("`#!{kw}` needs {what}"));
            return false;
        }
        if kw == "ifexp" {
            let src = text[arg..end].trim();
            return match expr::eval(src, &|n| self.expr_lookup(n)) {
                Ok(v) => v.truthy(),
                Err(e) => {
                    self.error(file, arg, format!("in `#!ifexp`: {e}"));
                    false
                }
            };
        }
        let name_end = id_end(text, arg, end);
        if name_end == arg {
            self.error(file, arg, format!("`#!{kw}` needs a define name"));
            return false;
        }
        if text.as_bytes().get(name_end) == Some(&b'-') {
            self.error(file, name_end, "'-' is not allowed in a define name");
            return false;
        }
        let after = skip_blanks(text, name_end, end);
        if after < end {
            self.error(
                file,
                after,
                format!(
                    "unexpected text after the name in `#!{kw}` (put comments on their own line)"
                ),
            );
        }
        self.defines.is_defined(&text[arg..name_end]) == (kw == "ifdef")
    }

    fn expr_lookup(&self, name: &str) -> Val {
        match self.defines.get(name) {
            None => Val::Num(0.0),
            Some(Define { value: None, .. }) => Val::Num(1.0),
            Some(Define { value: Some(v), .. }) => {
                let b = v.as_bytes();
                let quoted =
                    b.len() >= 2 && (b[0] == b'"' || b[0] == b'\'') && b[0] == b[b.len() - 1];
                Val::Str(if quoted {
                    v[1..v.len() - 1].to_string()
                } else {
                    v.clone()
                })
            }
        }
    }

    /// Parses the name after a directive keyword (blank-separated), reporting
    /// an error and returning `None` if there is none.
    fn directive_name(
        &mut self,
        file: usize,
        text: &str,
        kw: &str,
        kw_end: usize,
        end: usize,
    ) -> Option<(usize, usize)> {
        let start = skip_blanks(text, kw_end, end);
        let name_end = id_end(text, start, end);
        if start == kw_end || name_end == start {
            self.error(file, start, format!("`#!{kw}` needs a define name"));
            return None;
        }
        if text.as_bytes().get(name_end) == Some(&b'-') {
            self.error(file, name_end, "'-' is not allowed in a define name");
            return None;
        }
        Some((start, name_end))
    }

    fn define(
        &mut self,
        file: usize,
        text: &str,
        kw: &str,
        kind: DefKind,
        kw_end: usize,
        end: usize,
    ) -> Line {
        let Some((name_start, name_end)) = self.directive_name(file, text, kw, kw_end, end) else {
            return Line::Consumed((end + 1).min(text.len()));
        };
        let name = text[name_start..name_end].to_string();
        // The value runs to the end of the line; a backslash right before the
        // newline joins the next line (without the newline).
        let mut value = String::new();
        let mut seg_start = skip_blanks(text, name_end, end);
        let mut seg_end = end;
        let value_at = seg_start;
        let until = loop {
            let seg = text[seg_start..seg_end].trim_end_matches('\r');
            match seg.strip_suffix('\\') {
                Some(head) if seg_end < text.len() => {
                    value.push_str(head);
                    seg_start = seg_end + 1;
                    seg_end = line_end(text, seg_start);
                }
                _ => {
                    value.push_str(seg);
                    break (seg_end + 1).min(text.len());
                }
            }
        };
        let value = value.trim_end().to_string();
        let mut value = (!value.is_empty()).then_some(value);
        if let DefKind::Exp { quoted } = kind {
            let Some(src) = value.as_deref() else {
                self.error(file, value_at, format!("`#!{kw}` needs an expression"));
                return Line::Consumed(until);
            };
            match expr::eval(src, &|n| self.expr_lookup(n)) {
                Ok(v) => {
                    let s = v.render();
                    value = Some(if quoted { format!("\"{s}\"") } else { s });
                }
                Err(e) => {
                    self.error(file, value_at, format!("in `#!{kw}`: {e}"));
                    return Line::Consumed(until);
                }
            }
        }
        if let Some(prev) = self.defines.get(&name) {
            match kind {
                DefKind::Try => return Line::Consumed(until),
                DefKind::Redefine => {}
                DefKind::Define | DefKind::Exp { .. } => {
                    let msg = format!(
                        "`{name}` is already defined ({}); use #!redefine or #!trydef",
                        Self::describe_origin(&prev.origin)
                    );
                    self.error(file, name_start, msg);
                    return Line::Consumed(until);
                }
            }
        }
        let origin = self.origin(file, name_start);
        self.defines.insert(name, Define { value, origin });
        Line::Consumed(until)
    }

    fn undefine(&mut self, file: usize, text: &str, kw: &str, kw_end: usize, end: usize) {
        let Some((start, name_end)) = self.directive_name(file, text, kw, kw_end, end) else {
            return;
        };
        let after = skip_blanks(text, name_end, end);
        if after < end {
            self.error(
                file,
                after,
                format!("unexpected text after the name in `#!{kw}`"),
            );
            return;
        }
        let name = &text[start..name_end];
        if self.defines.remove(name).is_none() && !kw.starts_with("try") {
            self.error(
                file,
                start,
                format!("`{name}` is not defined, cannot undefine it (use #!tryundef)"),
            );
        }
    }

    fn defenv(&mut self, file: usize, text: &str, kw: &str, kw_end: usize, end: usize) -> Line {
        let start = skip_blanks(text, kw_end, end);
        let b = text.as_bytes();
        let mut tok_end = start;
        while tok_end < end && !matches!(b[tok_end], b' ' | b'\t' | b'\r') {
            tok_end += 1;
        }
        if tok_end == start {
            self.error(file, start, format!("`#!{kw}` needs NAME=ENVVAR or ENVVAR"));
            return Line::Consumed((end + 1).min(text.len()));
        }
        let tok = &text[start..tok_end];
        let (name, var) = match tok.split_once('=') {
            Some((_, "")) | Some(("", _)) => {
                self.error(file, start, format!("invalid `#!{kw}` argument `{tok}`"));
                return Line::ContinueAt(tok_end);
            }
            Some((n, v)) => (n, v),
            None => (tok, tok),
        };
        let value = match &self.opts.env {
            Some(env) => env.get(var).cloned(),
            None => std::env::var(var).ok(),
        };
        let Some(value) = value else {
            if !kw.starts_with("try") {
                self.error(
                    file,
                    start,
                    format!(
                        "environment variable `{var}` is not set (use #!trydefenv to allow that)"
                    ),
                );
            }
            return Line::ContinueAt(tok_end);
        };
        if let Some(prev) = self.defines.get(name) {
            let msg = format!(
                "`{name}` is already defined ({})",
                Self::describe_origin(&prev.origin)
            );
            self.error(file, start, msg);
            return Line::ContinueAt(tok_end);
        }
        let value = if kw.ends_with('s') {
            format!("\"{value}\"")
        } else {
            value
        };
        let origin = self.origin(file, start);
        self.defines.insert(
            name.to_string(),
            Define {
                value: (!value.is_empty()).then_some(value),
                origin,
            },
        );
        // Kamailio goes back to normal lexing after the variable name.
        Line::ContinueAt(tok_end)
    }

    fn run_substs(&self, s: &str) -> Option<String> {
        let mut cur: Option<String> = None;
        for rule in &self.substs {
            if let Some(r) = rule.apply(cur.as_deref().unwrap_or(s)) {
                cur = Some(r);
            }
        }
        cur
    }

    fn subst(&mut self, file: usize, text: &str, kw: &str, kw_end: usize, end: usize) {
        let start = skip_blanks(text, kw_end, end);
        let Some((raw, after)) = parse_quoted(text, start, end, false) else {
            self.error(
                file,
                start,
                format!("`#!{kw}` needs a quoted expression like \"/regex/replacement/flags\""),
            );
            return;
        };
        if !only_trailing_comment(text, after, end) {
            self.error(
                file,
                after,
                format!("unexpected text after the `#!{kw}` expression"),
            );
            return;
        }
        // The expression is a string token, so earlier rules rewrite it first.
        let expr = self.run_substs(&raw).unwrap_or(raw);
        let rule = match SubstRule::parse(&expr) {
            Ok(r) => r,
            Err(e) => {
                self.error(file, start, format!("in `#!{kw}`: {e}"));
                return;
            }
        };
        if kw != "subst" {
            let name = rule.pattern_text.clone();
            if name.is_empty() {
                self.error(
                    file,
                    start,
                    format!("`#!{kw}` needs a non-empty regex to use as the define name"),
                );
                return;
            }
            if let Some(prev) = self.defines.get(&name) {
                let msg = format!(
                    "`{name}` is already defined ({})",
                    Self::describe_origin(&prev.origin)
                );
                self.error(file, start, msg);
                return;
            }
            let value = if kw == "substdefs" {
                Some(format!("\"{}\"", rule.replacement_text))
            } else {
                Some(rule.replacement_text.clone()).filter(|v| !v.is_empty())
            };
            let origin = self.origin(file, start);
            self.defines.insert(name, Define { value, origin });
        }
        self.substs.push(rule);
    }

    fn include(
        &mut self,
        file: usize,
        text: &str,
        import: bool,
        kw: &str,
        kw_end: usize,
        end: usize,
    ) -> Line {
        let start = skip_blanks(text, kw_end, end);
        let Some((raw, after)) = parse_quoted(text, start, end, true) else {
            self.error(
                file,
                start,
                format!("`{kw}` needs a file name between double quotes"),
            );
            return Line::Consumed((end + 1).min(text.len()));
        };
        let name = self.run_substs(&raw).unwrap_or(raw);
        if name.is_empty() {
            self.error(file, start, format!("empty file name in `{kw}`"));
            return Line::ContinueAt(after);
        }
        if self.include_stack.len() > self.opts.max_include_depth {
            let msg = format!(
                "too many nested includes (limit {})",
                self.opts.max_include_depth
            );
            self.error(file, start, msg);
            return Line::ContinueAt(after);
        }
        let candidates = self.include_candidates(file, Path::new(&name));
        let Some(path) = candidates.iter().find(|p| p.is_file()).cloned() else {
            if !import {
                let tried: Vec<String> =
                    candidates.iter().map(|p| p.display().to_string()).collect();
                self.error(
                    file,
                    start,
                    format!(
                        "cannot open included file \"{name}\" (tried {})",
                        tried.join(", ")
                    ),
                );
            }
            return Line::ContinueAt(after);
        };
        let canonical = path.canonicalize().unwrap_or_else(|_| path.clone());
        let cycle = self.include_stack.iter().any(|&f| {
            let p = &self.files[f].path;
            p.canonicalize().unwrap_or_else(|_| p.clone()) == canonical
        });
        if cycle {
            self.error(
                file,
                start,
                format!("\"{name}\" includes itself (through {})", path.display()),
            );
            return Line::ContinueAt(after);
        }
        let content = match std::fs::read(&path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => {
                self.error(
                    file,
                    start,
                    format!("cannot read included file {}: {e}", path.display()),
                );
                return Line::ContinueAt(after);
            }
        };
        let id = self.files.len();
        let needs_newline = !content.is_empty() && !content.ends_with('\n');
        let len = content.len();
        self.files.push(SourceFile::new(path, content));
        self.include_stack.push(id);
        self.process_file(id);
        self.include_stack.pop();
        // Keeps the included file's last line from running into the rest of
        // the including line.
        if needs_newline {
            self.out.synth(id, len, "\n");
        }
        Line::ContinueAt(after)
    }

    fn include_candidates(&self, file: usize, name: &Path) -> Vec<PathBuf> {
        if name.is_absolute() {
            return vec![name.to_path_buf()];
        }
        let mut c = Vec::new();
        let includer_on_disk = file != 0 || self.main_on_disk;
        if includer_on_disk {
            if let Some(dir) = self.files[file].path.parent() {
                c.push(dir.join(name));
            }
        }
        c.push(name.to_path_buf());
        c.extend(self.opts.include_dirs.iter().map(|d| d.join(name)));
        c.dedup();
        c
    }

    fn emit_copy(&mut self, src: Src, at: usize, s: &str) {
        match src {
            Src::File(f) => self.out.exact(f, at, s),
            Src::Value { file, anchor } => self.out.synth(file, anchor, s),
        }
    }

    fn emit_new(&mut self, src: Src, at: usize, s: &str) {
        match src {
            Src::File(f) => self.out.synth(f, at, s),
            Src::Value { file, anchor } => self.out.synth(file, anchor, s),
        }
    }

    fn error_at(&mut self, src: Src, at: usize, msg: String) {
        match src {
            Src::File(f) => self.error(f, at, msg),
            Src::Value { file, anchor } => self.error(file, anchor, msg),
        }
    }

    /// Copies text from `i`, applying defines and subst rules, until the end
    /// of the current line (when `stop_at_newline`) or of `text`. Returns the
    /// offset after the last byte consumed.
    fn scan(
        &mut self,
        src: Src,
        text: &str,
        mut i: usize,
        stop_at_newline: bool,
        comment_depth: &mut u32,
        expanding: &mut Vec<String>,
    ) -> usize {
        let b = text.as_bytes();
        let len = b.len();
        let mut run = i;
        macro_rules! flush {
            () => {
                if run < i {
                    self.emit_copy(src, run, &text[run..i]);
                }
            };
        }
        while i < len {
            let c = b[i];
            if *comment_depth > 0 {
                // Inside a comment `i` steps byte by byte, so it can stop inside a
                // multi-byte character: compare bytes, not `str` slices (found by the
                // `cfg` fuzz target; slicing there panicked).
                if b[i..].starts_with(b"/*") {
                    *comment_depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    *comment_depth -= 1;
                    i += 2;
                } else {
                    i += 1;
                    if c == b'\n' && stop_at_newline {
                        break;
                    }
                }
                continue;
            }
            match c {
                b'\n' => {
                    i += 1;
                    if stop_at_newline {
                        break;
                    }
                }
                b'\\' if text[i + 1..].starts_with('\n') || text[i + 1..].starts_with("\r\n") => {
                    // Kamailio's lexer drops an escaped newline between tokens;
                    // a space keeps the tokens apart and the offsets intact.
                    flush!();
                    self.emit_copy(src, i, " ");
                    i += 1;
                    run = i;
                }
                b'#' => i = line_end(text, i),
                b'/' if text[i..].starts_with("//") => i = line_end(text, i),
                b'/' if text[i..].starts_with("/*") => {
                    *comment_depth = 1;
                    i += 2;
                }
                b'"' | b'\'' => {
                    let Some(close) = string_end(text, i) else {
                        self.error_at(src, i, "unterminated string literal".into());
                        i = len;
                        continue;
                    };
                    if let Some(new) = self.run_substs(&text[i + 1..close]) {
                        flush!();
                        let q = c as char;
                        self.emit_new(src, i, &format!("{q}{new}{q}"));
                        run = close + 1;
                    }
                    i = close + 1;
                }
                b'$' => {
                    let end = pv_end(text, i);
                    if end > i + 1 {
                        if let Some(new) = self.run_substs(&text[i..end]) {
                            flush!();
                            self.emit_new(src, i, &new);
                            run = end;
                        }
                    }
                    i = end;
                }
                _ if is_id_char(c) => {
                    let start = i;
                    while i < len && is_id_char(b[i]) {
                        i += 1;
                    }
                    // A run starting with a digit is a number or Kamailio's
                    // NUM_ID, never a define name.
                    if !is_id_start(c) {
                        continue;
                    }
                    let name = &text[start..i];
                    if let Some(def) = self.defines.get(name) {
                        let value = def.value.clone().unwrap_or_default();
                        let saved = i;
                        i = start;
                        flush!();
                        i = saved;
                        run = i;
                        self.expand(src, start, name, &value, expanding);
                    }
                }
                _ => i += text[i..].chars().next().map_or(1, char::len_utf8),
            }
        }
        flush!();
        i
    }

    fn expand(
        &mut self,
        src: Src,
        at: usize,
        name: &str,
        value: &str,
        expanding: &mut Vec<String>,
    ) {
        let (file, anchor) = match src {
            Src::File(f) => (f, at),
            Src::Value { file, anchor } => (file, anchor),
        };
        if let Some(pos) = expanding.iter().position(|n| n == name) {
            let chain: Vec<&str> = expanding[pos..]
                .iter()
                .map(String::as_str)
                .chain([name])
                .collect();
            self.error(
                file,
                anchor,
                format!("define `{name}` expands to itself ({})", chain.join(" -> ")),
            );
            return;
        }
        if expanding.len() >= MAX_EXPANSION_DEPTH {
            self.error(
                file,
                anchor,
                format!("define expansion nested deeper than {MAX_EXPANSION_DEPTH} levels"),
            );
            return;
        }
        expanding.push(name.to_string());
        // A value is lexed on its own: a string or comment it opens ends with it.
        let mut depth = 0;
        self.scan(
            Src::Value { file, anchor },
            value,
            0,
            false,
            &mut depth,
            expanding,
        );
        expanding.pop();
    }
}

/// Offset of the quote closing the string literal opened at `open`.
/// Double-quoted strings honour backslash escapes; single-quoted ones do not.
fn string_end(text: &str, open: usize) -> Option<usize> {
    let b = text.as_bytes();
    let q = b[open];
    let mut j = open + 1;
    while j < b.len() {
        match b[j] {
            b'\\' if q == b'"' => j += 2,
            c if c == q => return Some(j),
            _ => j += 1,
        }
    }
    None
}

/// End of the pseudo-variable starting with `$` at `start`: `$name`,
/// `$name(...)` or `$(...)`, parentheses balanced within the line.
fn pv_end(text: &str, start: usize) -> usize {
    let b = text.as_bytes();
    let mut j = start + 1;
    while j < b.len() && is_id_char(b[j]) {
        j += 1;
    }
    if j < b.len() && b[j] == b'(' {
        let mut depth = 0usize;
        while j < b.len() && b[j] != b'\n' {
            match b[j] {
                b'(' => depth += 1,
                b')' => {
                    depth -= 1;
                    if depth == 0 {
                        return j + 1;
                    }
                }
                _ => {}
            }
            j += 1;
        }
    }
    j
}
