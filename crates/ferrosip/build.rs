//! Optimized builds link the functions a running server executes per message next to each
//! other, in the order of `hot-symbols.txt` (`scripts/hot-symbols/generate.sh` makes it).
//! Spread over the whole binary, that code kept ~3.5 MiB of it resident (the kernel maps
//! code in 64 KiB runs around each page touched) for ~155 KiB actually run (the stateless
//! path's 137 functions): most of a stateless server's memory. Names the binary does not
//! define (a stale file, another build's hashes) are skipped, so the file can only change
//! layout, never behaviour.

fn main() {
    println!("cargo:rerun-if-changed=hot-symbols.txt");
    println!("cargo:rerun-if-changed=build.rs");
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let optimized = std::env::var("PROFILE").as_deref() == Ok("release");
    // Rust links this target with its own LLD by default, which knows the option; another
    // linker (chosen by flags or the environment) may not, so the layout is only asked of
    // the default one.
    let default_lld = std::env::var("TARGET").as_deref() == Ok("x86_64-unknown-linux-gnu")
        && std::env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_none()
        && !std::env::var("CARGO_ENCODED_RUSTFLAGS")
            .unwrap_or_default()
            .split('\x1f')
            .any(|flag| flag.contains("linker") || flag.contains("fuse-ld"));
    if optimized && default_lld {
        // The linker reads a copy in OUT_DIR: cargo keys a build script's output by the
        // package's path within the workspace, so a target directory reused from another
        // checkout (a CI cache, a moved tree) would otherwise hand the linker a path into
        // that checkout, gone or different.
        let list = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap())
            .join("hot-symbols.txt");
        let order =
            std::path::Path::new(&std::env::var("OUT_DIR").unwrap()).join("hot-symbols.txt");
        std::fs::copy(&list, &order).expect("copy hot-symbols.txt to OUT_DIR");
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}
