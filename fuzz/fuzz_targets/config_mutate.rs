//! Structure-aware configuration fuzzing: starts from one of the example
//! files in configs/ and replaces the values of chosen lines (or inserts
//! lines), so most inputs are well-formed TOML that reaches the semantic
//! checks. The input is `base selector byte`, then edits separated by
//! newlines: `line byte, mode byte, replacement text`. Like `config`:
//! `config::parse` returns a configuration or an error with diagnostics
//! naming a line of the edited text, and never panics.
//!
//! Run with `fuzz/run.sh 60 config_mutate`.

#![no_main]

use ftfw_control::config::{self, ConfigError};
use libfuzzer_sys::fuzz_target;

const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/fuzz.toml");
const BASES: [&str; 4] = [
    include_str!("../../configs/standalone.toml"),
    include_str!("../../configs/replicated.toml"),
    include_str!("../../configs/routed.toml"),
    include_str!("../../configs/cluster.toml"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, edits)) = data.split_first() else {
        return;
    };
    let Ok(edits) = std::str::from_utf8(edits) else {
        return;
    };
    let base = BASES[usize::from(pick) % BASES.len()];
    // Only the lines that are not comments or blank: the ones that matter.
    let mut lines: Vec<String> = base
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            !t.is_empty() && !t.starts_with('#')
        })
        .map(str::to_string)
        .collect();
    for edit in edits.split('\n') {
        let mut chars = edit.chars();
        let (Some(at), Some(mode)) = (chars.next(), chars.next()) else {
            continue;
        };
        let new = chars.as_str();
        if lines.is_empty() {
            lines.push(new.to_string());
            continue;
        }
        let at = at as usize % lines.len().max(1);
        match mode as u32 % 4 {
            // The value after `=` (or the whole line when it has none).
            0 | 1 => {
                let line = &mut lines[at];
                match line.find('=') {
                    Some(eq) => {
                        line.truncate(eq + 1);
                        line.push(' ');
                        line.push_str(new);
                    }
                    None => *line = new.to_string(),
                }
            }
            // A new line before this one.
            2 => lines.insert(at, new.to_string()),
            // Drop the line.
            _ => {
                if !lines.is_empty() {
                    lines.remove(at);
                }
            }
        }
    }
    let text = lines.join("\n");
    match config::parse(&text, FILE) {
        Ok(_) => {}
        Err(ConfigError::Invalid(diags)) => {
            assert!(!diags.is_empty(), "an error without diagnostics");
            let count = text.lines().count().max(1) + 1;
            for d in &diags {
                assert!(
                    d.line >= 1 && d.line <= count,
                    "line {} of {count}: {d:?}",
                    d.line
                );
            }
        }
        Err(ConfigError::Io { .. }) => {}
    }
});
