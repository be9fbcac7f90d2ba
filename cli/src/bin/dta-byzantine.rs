//! `dta` built with the `byzantine` feature: the same command, whose `dta run --misbehave`
//! plays a role dishonestly. For tests only; never shipped.

fn main() -> std::process::ExitCode {
    dta_cli::main(|| {})
}
