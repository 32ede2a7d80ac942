//! No import circle between the modules of `control/src`.
//!
//! Builds the module graph from the `crate::` and `super::` paths in the
//! sources (test code left out: `tests.rs` files and everything from a
//! `#[cfg(test)]` module on), projects every reference onto the two sibling
//! modules where the paths of the user and the used item part (so a child
//! using its parent's items is hierarchy, not an edge), and fails on a
//! cycle, naming it. `cargo test -p ftfw-control --test module_layering --
//! --nocapture` prints the graph.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type ModPath = Vec<String>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "bin") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `appliance/mod.rs` -> `[appliance]`, `lib.rs` -> `[]`.
fn module_of(root: &Path, file: &Path) -> ModPath {
    let rel = file.strip_prefix(root).unwrap().with_extension("");
    let mut parts: ModPath = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'
}

/// The module paths `line` refers to through `crate::` or `super::`,
/// resolved against the module `me`; a path ends at its first segment
/// that is not a module name (a type, a trait, a constant).
fn references(me: &ModPath, line: &str) -> Vec<ModPath> {
    let bytes = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &line[i..];
        let at_word = i == 0 || !is_ident_byte(bytes[i - 1]);
        let (mut base, skip) = if at_word && rest.starts_with("crate::") {
            (Vec::new(), "crate::".len())
        } else if at_word && rest.starts_with("super::") {
            (me[..me.len().saturating_sub(1)].to_vec(), "super::".len())
        } else {
            i += 1;
            continue;
        };
        let mut j = i + skip;
        while line[j..].starts_with("super::") {
            base.pop();
            j += "super::".len();
        }
        loop {
            let start = j;
            while j < bytes.len() && is_ident_byte(bytes[j]) {
                j += 1;
            }
            if start == j {
                break;
            }
            base.push(line[start..j].to_string());
            if line[j..].starts_with("::") {
                j += 2;
            } else {
                break;
            }
        }
        out.push(base);
        i = j.max(i + 1);
    }
    out
}

fn is_module(root: &Path, m: &[String]) -> bool {
    let p: PathBuf = m.iter().collect();
    let p = root.join(p);
    p.is_dir() || p.with_extension("rs").is_file()
}

fn find_cycle(graph: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Option<Vec<ModPath>> {
    fn visit(
        v: &ModPath,
        graph: &BTreeMap<ModPath, BTreeSet<ModPath>>,
        state: &mut BTreeMap<ModPath, bool>,
        stack: &mut Vec<ModPath>,
    ) -> Option<Vec<ModPath>> {
        match state.get(v) {
            Some(true) => return None,
            Some(false) => {
                let at = stack.iter().position(|s| s == v).unwrap_or(0);
                let mut cycle = stack[at..].to_vec();
                cycle.push(v.clone());
                return Some(cycle);
            }
            None => {}
        }
        state.insert(v.clone(), false);
        stack.push(v.clone());
        for w in graph.get(v).into_iter().flatten() {
            if let Some(c) = visit(w, graph, state, stack) {
                return Some(c);
            }
        }
        stack.pop();
        state.insert(v.clone(), true);
        None
    }
    let mut state = BTreeMap::new();
    for v in graph.keys() {
        if let Some(c) = visit(v, graph, &mut state, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

#[test]
fn control_modules_import_each_other_without_circles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut graph: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
    for file in &files {
        if file.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let me = module_of(&root, file);
        let text = std::fs::read_to_string(file).unwrap();
        let code = text.split("#[cfg(test)]\nmod ").next().unwrap_or("");
        for line in code.lines() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for target in references(&me, line) {
                let common = me.iter().zip(&target).take_while(|(a, b)| a == b).count();
                if common >= me.len() || common >= target.len() {
                    continue; // an ancestor or a descendant: hierarchy
                }
                let (from, to) = (me[..=common].to_vec(), target[..=common].to_vec());
                if is_module(&root, &from) && is_module(&root, &to) {
                    graph.entry(from).or_default().insert(to);
                }
            }
        }
    }
    assert!(
        graph.contains_key(&vec!["appliance".to_string()]),
        "the graph missed the appliance's imports: {graph:?}"
    );
    // `-- --nocapture` shows the graph.
    for (from, to) in &graph {
        let to: Vec<String> = to.iter().map(|m| m.join("::")).collect();
        println!("{} -> {}", from.join("::"), to.join(", "));
    }
    if let Some(cycle) = find_cycle(&graph) {
        let names: Vec<String> = cycle.iter().map(|m| m.join("::")).collect();
        panic!("import circle: {}", names.join(" -> "));
    }
}

#[test]
fn references_resolve_crate_and_super_paths() {
    let me: ModPath = vec!["election".into(), "machine".into(), "guards".into()];
    assert_eq!(
        references(&me, "use crate::election::msg::{Body, Message};"),
        [vec!["election", "msg"]]
    );
    assert_eq!(
        references(&me, "use super::super::state::Rel;"),
        [vec!["election", "state"]]
    );
    assert_eq!(
        references(&me, "let x = supercrate::y;"),
        Vec::<ModPath>::new()
    );
}

#[test]
fn a_circle_is_found_and_a_layering_is_not() {
    let m = |s: &str| -> ModPath { vec![s.to_string()] };
    let mut graph: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
    graph.entry(m("a")).or_default().insert(m("b"));
    graph.entry(m("b")).or_default().insert(m("c"));
    assert_eq!(find_cycle(&graph), None);
    graph.entry(m("c")).or_default().insert(m("a"));
    assert_eq!(
        find_cycle(&graph),
        Some(vec![m("a"), m("b"), m("c"), m("a")])
    );
}
