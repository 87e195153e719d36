//! `my-ferrosip`: Ferrosip with one more module. It takes the same command line as
//! `ferrosip` (`run -f`, `check -f`, `docs`, `db`, `ctl`, ...); a script loads the added
//! module with `loadmodule "numinfo.so"`, as any built-in one.

use std::process::ExitCode;

fn main() -> ExitCode {
    ferrosip::Server::builder()
        .module(ferrosip_mod_numinfo::NuminfoModule)
        .run()
}
