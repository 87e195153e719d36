//! Prints the preprocessed text of a config: `ppdump FILE [-A NAME[=value]]...`.
use std::path::Path;

fn main() {
    let mut args = std::env::args().skip(1);
    let file = args
        .next()
        .expect("usage: ppdump FILE [-A NAME[=value]]...");
    let mut opts = ferrosip_preprocess::Options::default();
    while let Some(a) = args.next() {
        if a == "-A" {
            opts.define_arg(&args.next().expect("-A needs NAME[=value]"));
        }
    }
    match ferrosip_preprocess::preprocess_file(Path::new(&file), &opts) {
        Ok(p) => print!("{}", p.text),
        Err(errs) => {
            for e in errs {
                eprintln!("{e}");
            }
            std::process::exit(1);
        }
    }
}
