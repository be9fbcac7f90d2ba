//! Standard output for the commands' reports. Rust's `println!` panics when the reader has
//! gone (`dta order list | head -1`); here a closed pipe ends the command quietly and
//! successfully, as `head` asked for no more. Other write errors are reported once.

use std::io::Write;

/// Writes to standard output; on a closed pipe, exits 0 at once.
pub fn write(bytes: &[u8]) {
    let mut stdout = std::io::stdout().lock();
    let written = stdout.write_all(bytes).and_then(|()| stdout.flush());
    match written {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(err) => {
            eprintln!("error: cannot write to standard output: {err}");
            std::process::exit(1);
        }
    }
}

/// `println!` that ends the command quietly when the reader has gone.
macro_rules! outln {
    () => {
        $crate::output::write(b"\n")
    };
    ($($arg:tt)*) => {
        $crate::output::write(format!("{}\n", format_args!($($arg)*)).as_bytes())
    };
}

/// `print!` that ends the command quietly when the reader has gone.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write(format!($($arg)*).as_bytes())
    };
}

pub(crate) use {out, outln};
