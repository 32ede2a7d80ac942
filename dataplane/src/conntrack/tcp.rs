//! TCP tracker.
