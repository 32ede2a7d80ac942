//! mem backend.
