//! Snapshot of the election's full state x input transition table, so that
//! every behaviour change shows up in review as a diff of
//! `election_table.txt`. Regenerate with
//! `UPDATE_SNAPSHOTS=1 cargo test -p ftfw-control --test election_table`.

use ftfw_control::election::state::{render_table, transition, Input, State};

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/election_table.txt");

#[test]
fn transition_table_matches_snapshot() {
    let got = render_table();
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(PATH, &got).expect("write snapshot");
        return;
    }
    let want = std::fs::read_to_string(PATH)
        .expect("snapshot missing: run with UPDATE_SNAPSHOTS=1 to create it");
    if got != want {
        let diff: Vec<String> = got
            .lines()
            .zip(want.lines())
            .filter(|(g, w)| g != w)
            .take(20)
            .map(|(g, w)| format!("- {w}\n+ {g}"))
            .collect();
        panic!(
            "transition table changed ({} vs {} lines); first differences:\n{}\n\
             review, then regenerate with UPDATE_SNAPSHOTS=1",
            got.lines().count(),
            want.lines().count(),
            diff.join("\n")
        );
    }
}

#[test]
fn table_is_total() {
    // Every cell is defined (an outcome or an explicit invalid), and the
    // snapshot has one line per cell.
    let cells = State::all().len() * Input::all().len();
    let lines = render_table()
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains(" => "))
        .count();
    assert_eq!(lines, cells);
    for s in State::all() {
        for i in Input::all() {
            let _ = transition(s, i);
        }
    }
}
