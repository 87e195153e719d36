//! The `ferrosip` binary: the command line of the `ferrosip` library with the built-in
//! modules (a custom binary adds its own: see `ferrosip::Server`).

fn main() -> std::process::ExitCode {
    ferrosip::main()
}
