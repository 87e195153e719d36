//! Mapping from offsets in the preprocessed text back to the operator's files.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One file read during preprocessing, kept whole so diagnostics can quote it.
#[derive(Debug, Clone)]
pub(crate) struct SourceFile {
    pub(crate) path: PathBuf,
    pub(crate) text: Arc<str>,
    line_starts: Vec<usize>,
}

impl SourceFile {
    pub(crate) fn new(path: PathBuf, text: String) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        SourceFile {
            path,
            text: text.into(),
            line_starts,
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub(crate) fn line_col(&self, offset: usize) -> (u32, u32) {
        let offset = floor_char_boundary(&self.text, offset.min(self.text.len()));
        let idx = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let col = self.text[self.line_starts[idx]..offset].chars().count() + 1;
        (idx as u32 + 1, col as u32)
    }

    /// Text of a 1-based line without its line terminator.
    pub(crate) fn line(&self, line: u32) -> Option<&str> {
        let idx = (line as usize).checked_sub(1)?;
        let start = *self.line_starts.get(idx)?;
        let end = self
            .line_starts
            .get(idx + 1)
            .map_or(self.text.len(), |&e| e - 1);
        let l = &self.text[start..end];
        Some(l.strip_suffix('\r').unwrap_or(l))
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// A run of output text starting at `out`, tied to `orig` in file `file`.
///
/// Exact segments map byte for byte; synthesized ones (define values, rewritten
/// strings) map every byte to `orig`, the start of the token they replaced.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Segment {
    pub(crate) out: usize,
    pub(crate) file: usize,
    pub(crate) orig: usize,
    pub(crate) exact: bool,
}

/// A position in one of the original files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file as it was opened (include paths are joined, not canonicalized).
    pub file: PathBuf,
    /// 1-based line.
    pub line: u32,
    /// 1-based column, counted in characters (a tab counts as one).
    pub column: u32,
    /// False when the offset falls inside text the preprocessor produced (a
    /// define's value, a string rewritten by `#!subst`): the location is then
    /// the start of the token that was replaced.
    pub exact: bool,
    file_id: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// Maps byte offsets of [`Preprocessed::text`](crate::Preprocessed) back to
/// the files they came from.
#[derive(Debug, Clone)]
pub struct SourceMap {
    pub(crate) files: Vec<SourceFile>,
    pub(crate) segments: Vec<Segment>,
}

impl SourceMap {
    /// Where the output byte at `offset` came from.
    ///
    /// Offsets past the end map to the end of the last segment; an empty output
    /// maps to the start of the main file.
    pub fn locate(&self, offset: usize) -> Location {
        let Some(idx) = self
            .segments
            .partition_point(|s| s.out <= offset)
            .checked_sub(1)
        else {
            return self.location(0, 0, true);
        };
        let seg = self.segments[idx];
        let orig = if seg.exact {
            seg.orig + (offset - seg.out)
        } else {
            seg.orig
        };
        self.location(seg.file, orig, seg.exact)
    }

    /// The original text of the line `loc` points into, for diagnostics.
    pub fn source_line(&self, loc: &Location) -> Option<&str> {
        self.files.get(loc.file_id)?.line(loc.line)
    }

    /// Every file that contributed text, main file first, in the order read.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|f| f.path.as_path())
    }

    fn location(&self, file: usize, orig: usize, exact: bool) -> Location {
        match self.files.get(file) {
            Some(f) => {
                let (line, column) = f.line_col(orig);
                Location {
                    file: f.path.clone(),
                    line,
                    column,
                    exact,
                    file_id: file,
                }
            }
            None => Location {
                file: PathBuf::new(),
                line: 1,
                column: 1,
                exact,
                file_id: usize::MAX,
            },
        }
    }
}

/// Output text under construction plus its segments.
#[derive(Debug, Default)]
pub(crate) struct Out {
    pub(crate) text: String,
    pub(crate) segments: Vec<Segment>,
}

impl Out {
    /// Appends text whose bytes correspond one to one with `file` at `orig`.
    pub(crate) fn exact(&mut self, file: usize, orig: usize, s: &str) {
        if s.is_empty() {
            return;
        }
        let out = self.text.len();
        let contiguous = self.segments.last().is_some_and(|last| {
            last.exact && last.file == file && last.orig + (out - last.out) == orig
        });
        if !contiguous {
            self.segments.push(Segment {
                out,
                file,
                orig,
                exact: true,
            });
        }
        self.text.push_str(s);
    }

    /// Appends produced text, all of it attributed to `file` at `anchor`.
    pub(crate) fn synth(&mut self, file: usize, anchor: usize, s: &str) {
        if s.is_empty() {
            return;
        }
        let same = self
            .segments
            .last()
            .is_some_and(|last| !last.exact && last.file == file && last.orig == anchor);
        if !same {
            self.segments.push(Segment {
                out: self.text.len(),
                file,
                orig: anchor,
                exact: false,
            });
        }
        self.text.push_str(s);
    }
}
