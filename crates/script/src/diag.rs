//! Diagnostics: errors and warnings with the operator's file, line and column.

use ferrosip_api::Span;
use std::fmt;

/// Maps byte offsets of the preprocessed text back to the operator's files.
pub struct SourceInfo {
    map: Option<ferrosip_preprocess::SourceMap>,
    /// Name used when there is no map (a script given as a string in tests).
    name: String,
    text: String,
}

/// A position in an operator's file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub line: u32,
    pub column: u32,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

impl SourceInfo {
    pub fn new(text: String, map: ferrosip_preprocess::SourceMap) -> SourceInfo {
        SourceInfo {
            map: Some(map),
            name: String::new(),
            text,
        }
    }

    /// Source info for text that was not preprocessed; offsets are lines of `text` itself.
    pub fn plain(name: &str, text: &str) -> SourceInfo {
        SourceInfo {
            map: None,
            name: name.to_string(),
            text: text.to_string(),
        }
    }

    /// The preprocessed text the spans refer to.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn locate(&self, offset: u32) -> Location {
        let offset = (offset as usize).min(self.text.len());
        match &self.map {
            Some(m) => {
                let l = m.locate(offset);
                Location {
                    file: l.file.display().to_string(),
                    line: l.line,
                    column: l.column,
                }
            }
            None => {
                let before = &self.text.as_bytes()[..offset];
                let line = before.iter().filter(|b| **b == b'\n').count() as u32 + 1;
                let col_start = before
                    .iter()
                    .rposition(|b| *b == b'\n')
                    .map_or(0, |p| p + 1);
                Location {
                    file: self.name.clone(),
                    line,
                    column: (offset - col_start) as u32 + 1,
                }
            }
        }
    }

    /// The operator's source line at `offset` (as written, before preprocessing).
    pub fn source_line(&self, offset: u32) -> String {
        let offset = (offset as usize).min(self.text.len());
        if let Some(m) = &self.map {
            let loc = m.locate(offset);
            if let Some(l) = m.source_line(&loc) {
                return l.to_string();
            }
        }
        let bytes = self.text.as_bytes();
        let start = bytes[..offset]
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |p| p + 1);
        let end = bytes[offset..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(bytes.len(), |p| offset + p);
        self.text[start..end].to_string()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One error or warning about the script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub span: Span,
    pub message: String,
    /// Extra lines ("note: reached from failure_route[X]").
    pub notes: Vec<String>,
}

impl Diagnostic {
    pub fn error(span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            span,
            message: message.into(),
            notes: Vec::new(),
        }
    }

    pub fn warning(span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            span,
            message: message.into(),
            notes: Vec::new(),
        }
    }

    pub fn note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(note.into());
        self
    }

    /// `file:line:col: error: message`, the source line and a caret under the column.
    pub fn render(&self, src: &SourceInfo) -> String {
        let loc = src.locate(self.span.start);
        let line = src.source_line(self.span.start);
        let kind = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let width = (self.span.end.saturating_sub(self.span.start) as usize)
            .clamp(1, line.len().saturating_sub(loc.column as usize - 1).max(1));
        let pad: String = line
            .chars()
            .take(loc.column.saturating_sub(1) as usize)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let mut out = format!(
            "{loc}: {kind}: {}\n    | {line}\n    | {pad}{}",
            self.message,
            "^".repeat(width)
        );
        for n in &self.notes {
            out.push_str(&format!("\n    = note: {n}"));
        }
        out
    }
}
