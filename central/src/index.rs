//! The in-memory route index (to be written).
