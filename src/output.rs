//! Standard output for commands: a closed pipe (`kith contact list | head`) ends the
//! command quietly with exit 0 instead of a panic; any other write failure is exit 4.

use std::fmt;
use std::io::{self, Write};

use crate::Exit;

/// Writes `args` and a newline to standard output.
pub(crate) fn line(args: fmt::Arguments<'_>) -> Result<(), Exit> {
    let mut out = io::stdout().lock();
    out.write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .map_err(|e| match e.kind() {
            io::ErrorKind::BrokenPipe => Exit::ClosedPipe,
            _ => Exit::Io(format!("standard output: {e}")),
        })
}

/// `println!` for commands: returns from the function with [`Exit::ClosedPipe`] when
/// nobody reads any more.
macro_rules! outln {
    () => {
        $crate::output::line(format_args!(""))?
    };
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))?
    };
}
pub(crate) use outln;
