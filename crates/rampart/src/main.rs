//! The `rampart` binary: command line, runtime, signals and wiring. No request logic lives here;
//! the request path is `rampart_app::pipeline`.

#[cfg(feature = "mimalloc")]
mod alloc;
mod cli;
mod run;

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::run::Source;

/// mimalloc, called so that ordinary allocations take its fast path (see `alloc`).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: alloc::Mimalloc = alloc::Mimalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => {
            let local = Path::new("rampart.toml");
            let source = if local.exists() {
                Source::File(local.to_path_buf())
            } else {
                Source::Embedded
            };
            run::run(source, &cli.log_level, cli.workers)
        }
        Some(Command::Run(a)) => run::run(Source::File(a.config), &cli.log_level, cli.workers),
        Some(Command::Serve(a)) => run::serve(a, &cli.log_level, cli.workers),
        Some(Command::Proxy(a)) => run::proxy(a, &cli.log_level, cli.workers),
        Some(Command::Check(a)) => return run::check(&a.config),
        Some(Command::Reload(a)) => return run::reload(&a.config),
        Some(Command::Completions { shell }) => {
            // Rendered into memory first: the generator panics on a write error (a closed
            // pipe), printing does not.
            let mut cmd = <cli::Cli as clap::CommandFactory>::command();
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd, "rampart", &mut out);
            return print_out(&out);
        }
        Some(Command::Manpage) => {
            let cmd = <cli::Cli as clap::CommandFactory>::command();
            let mut out = Vec::new();
            return match clap_mangen::Man::new(cmd).render(&mut out) {
                Ok(()) => print_out(&out),
                Err(e) => {
                    eprintln!("rampart: man page: {e}");
                    ExitCode::FAILURE
                }
            };
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rampart: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Writes generated text to stdout; a closed pipe (`| head`) is not an error worth a trace.
fn print_out(out: &[u8]) -> ExitCode {
    use std::io::Write;
    match std::io::stdout().write_all(out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rampart: {e}");
            ExitCode::FAILURE
        }
    }
}
