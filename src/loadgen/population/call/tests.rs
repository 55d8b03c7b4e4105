//! The calls on a fake clock.
