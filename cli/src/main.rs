//! `roomtoken`: run the broker locally, try it with a simulated Microsoft
//! sign-in, and administer connections, device keys and consent links.

use clap::Parser;
use roomtoken_cli::{Cli, init_logging, run};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let _logs = init_logging(&cli);
    let stdin = std::io::stdin();
    match run(cli, &mut stdin.lock(), &mut std::io::stdout()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // `status` printed its table; the exit code is for cron and CI.
        Err(error) if error.downcast_ref::<roomtoken_cli::NeedsHuman>().is_some() => {
            eprintln!("{error}");
            std::process::ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
