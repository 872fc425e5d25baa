use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = diskette::cli::Cli::parse();
    diskette::cli::init_tracing(cli.quiet);
    match diskette::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", diskette::error::error_line(&e));
            std::process::ExitCode::FAILURE
        }
    }
}
