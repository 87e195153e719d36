//! The `ferrosip` command.

mod catalog;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "ferrosip",
    version,
    about = "SIP routing engine with Kamailio-compatible scripts"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Preprocess, parse and compile a config; report every error with its location.
    Check {
        /// The config file.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Define NAME (or NAME=value) for #!ifdef, like `kamailio -A`.
        #[arg(short = 'A', value_name = "NAME[=VALUE]")]
        defines: Vec<String>,
        /// Print the compiled bytecode of each route.
        #[arg(long)]
        dump: bool,
    },
    /// Write the operator docs of every module (parameters, functions, PVs) to a directory.
    Docs {
        #[arg(long, default_value = "docs/modules")]
        out: PathBuf,
    },
}

fn parse_defines(defs: &[String]) -> Vec<(String, Option<String>)> {
    defs.iter()
        .map(|d| match d.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (d.clone(), None),
        })
        .collect()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check {
            file,
            defines,
            dump,
        } => check(&file, &defines, dump),
        Command::Docs { out } => match catalog::write_docs(&out) {
            Ok(n) => {
                println!("wrote {n} module pages to {}", out.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn check(file: &std::path::Path, defines: &[String], dump: bool) -> ExitCode {
    let registry = catalog::registry();
    let opts = ferrosip_script::LoadOptions {
        defines: parse_defines(defines),
    };
    match ferrosip_script::load_file(file, &opts, &registry) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("{w}");
            }
            if dump {
                print!("{}", loaded.program.dump());
            }
            eprintln!(
                "{}: OK ({} routes, {} modules loaded)",
                file.display(),
                loaded.program.routes.len(),
                loaded.modules.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors.messages {
                eprintln!("{e}\n");
            }
            eprintln!("{}: {} error(s)", file.display(), errors.messages.len());
            ExitCode::FAILURE
        }
    }
}
