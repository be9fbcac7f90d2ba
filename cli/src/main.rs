//! The `dta` command (see the `dta_cli` library).

fn main() -> std::process::ExitCode {
    dta_cli::main()
}
