//! Snapshot of the election's full state x input transition table, so that
//! every behaviour change shows up in review as a diff of
//! `snapshots/election_table__transition_table.snap` (insta). After a
//! deliberate change: `cargo insta test -p ftfw-control --test
//! election_table --review` (or `INSTA_UPDATE=always cargo test ...`, then
//! read the diff before committing).

use ftfw_control::election::state::{render_table, transition, Input, State};

#[test]
fn transition_table_matches_snapshot() {
    insta::assert_snapshot!("transition_table", render_table());
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
