//! Spans: where each field of the configuration is written, so every
//! error can name its line.

use std::collections::HashMap;
use std::ops::Range;

/// Byte offset to 1-based line.
pub(super) struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    pub(super) fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    pub(super) fn line(&self, offset: usize) -> usize {
        match self.starts.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }
}

/// Every field path of a parsed document with its span and line.
pub(super) struct SpanIndex {
    /// (path, covered byte range, line of the key or header)
    entries: Vec<(String, Range<usize>, usize)>,
    by_path: HashMap<String, usize>,
}

impl SpanIndex {
    pub(super) fn new(root: &toml_edit::Table, lines: &LineIndex) -> SpanIndex {
        let mut idx = SpanIndex {
            entries: Vec::new(),
            by_path: HashMap::new(),
        };
        idx.walk_table(root, "", lines);
        for (i, (p, _, _)) in idx.entries.iter().enumerate() {
            idx.by_path.entry(p.clone()).or_insert(i);
        }
        idx
    }

    fn push(
        &mut self,
        path: String,
        head: Option<Range<usize>>,
        body: Option<Range<usize>>,
        lines: &LineIndex,
    ) {
        let Some(start) = head.as_ref().or(body.as_ref()).map(|r| r.start) else {
            return;
        };
        let end = body.as_ref().or(head.as_ref()).map_or(start, |r| r.end);
        self.entries
            .push((path, start..end.max(start), lines.line(start)));
    }

    fn walk_table(&mut self, t: &dyn toml_edit::TableLike, prefix: &str, lines: &LineIndex) {
        for (k, _) in t.iter() {
            let Some((key, item)) = t.get_key_value(k) else {
                continue;
            };
            let path = if prefix.is_empty() {
                k.to_string()
            } else {
                format!("{prefix}.{k}")
            };
            match item {
                toml_edit::Item::Table(tb) => {
                    self.push(path.clone(), tb.span().or_else(|| key.span()), None, lines);
                    self.walk_table(tb, &path, lines);
                }
                toml_edit::Item::ArrayOfTables(a) => {
                    for (i, tb) in a.iter().enumerate() {
                        let p = format!("{path}[{i}]");
                        self.push(p.clone(), tb.span(), None, lines);
                        self.walk_table(tb, &p, lines);
                    }
                }
                toml_edit::Item::Value(v) => {
                    self.push(path.clone(), key.span(), v.span(), lines);
                    self.walk_value(v, &path, lines);
                }
                toml_edit::Item::None => {}
            }
        }
    }

    fn walk_value(&mut self, v: &toml_edit::Value, path: &str, lines: &LineIndex) {
        match v {
            toml_edit::Value::InlineTable(it) => self.walk_table(it, path, lines),
            toml_edit::Value::Array(arr) => {
                for (i, e) in arr.iter().enumerate() {
                    let p = format!("{path}[{i}]");
                    self.push(p.clone(), e.span(), None, lines);
                    self.walk_value(e, &p, lines);
                }
            }
            _ => {}
        }
    }

    /// Line of `path`, else of its closest written ancestor, else 1.
    pub(super) fn line_of(&self, path: &str) -> usize {
        let mut p = path;
        loop {
            if let Some(&i) = self.by_path.get(p) {
                return self.entries[i].2;
            }
            // An implicit table: the first written child.
            if let Some((_, _, line)) = self
                .entries
                .iter()
                .find(|(e, _, _)| e.strip_prefix(p).is_some_and(|r| r.starts_with(['.', '['])))
            {
                return *line;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => return 1,
            }
        }
    }

    /// The innermost field whose span contains `offset`.
    pub(super) fn field_at(&self, offset: usize) -> Option<String> {
        self.entries
            .iter()
            .filter(|(_, r, _)| r.start <= offset && offset < r.end.max(r.start + 1))
            .min_by_key(|(_, r, _)| r.len())
            .map(|(p, _, _)| p.clone())
    }
}

/// For syntax errors, where no document exists: the `[table]` above `line`
/// joined with the key on `line`, if any.
pub(super) fn guess_field_at_line(text: &str, line: usize) -> String {
    let mut table = String::new();
    let mut key = String::new();
    for (i, l) in text.lines().enumerate().take(line) {
        let l = l.trim();
        if let Some(h) = l.strip_prefix("[[").and_then(|h| h.split("]]").next()) {
            table = h.trim().to_string();
            key.clear();
        } else if let Some(h) = l.strip_prefix('[').and_then(|h| h.split(']').next()) {
            table = h.trim().to_string();
            key.clear();
        } else if i + 1 == line {
            key = l.split('=').next().unwrap_or("").trim().to_string();
        }
    }
    match (table.is_empty(), key.is_empty() || key.starts_with('#')) {
        (true, true) => "(top level)".into(),
        (true, false) => key,
        (false, true) => table,
        (false, false) => format!("{table}.{key}"),
    }
}
