//! kodo-access: parse the command line, run the command, turn the outcome into an exit status.

use std::process::ExitCode;

use clap::Parser;
use kodo_access::cli::{self, Cli};

// The system allocator spent a sixth of a check sweep's CPU in malloc and free (measured
// with perf during `bench sweep`); mimalloc is a well-kept drop-in that does not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Every command may hold the master key, secrets or tokens: no core dump of it, and no
    // other user's debugger attaches (systemd's LimitCORE=0 is the second line).
    if let Err(error) =
        rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
    {
        eprintln!("warning: cannot switch core dumps off: {error}");
    }
    let cli = Cli::parse();
    #[cfg(feature = "failpoints")]
    let _failpoints = kodo_access::failpoint::setup();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        kodo_access::failpoint::hit(kodo_access::failpoint::COMMAND_STARTED).await;
        cli::execute(cli).await
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(cli::exit_code(&error))
        }
    }
}
