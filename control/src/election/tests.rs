//! Unit tests of the machine driven by hand (the simulator is in
//! `control/tests/election_sim.rs`).
