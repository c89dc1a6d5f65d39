//! Third-party parsers run on peer input without letting a panic in them take the
//! device down: sequoia 2.4 has at least one reachable `unwrap` on malformed packets
//! (found by the `openpgp` fuzz target). A panic there becomes the caller's error.

use std::panic::{AssertUnwindSafe, catch_unwind};

/// Runs `f`; a panic inside it becomes `on_panic()`.
pub(crate) fn contained<T, E>(
    f: impl FnOnce() -> Result<T, E>,
    on_panic: impl FnOnce() -> E,
) -> Result<T, E> {
    // `f` only reads its input and builds fresh values: nothing it could leave half
    // changed is observed after a panic.
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| Err(on_panic()))
}
