use clap::Parser;

/// The Sparebox marketplace service (settles usage between deployers and hosts).
///
/// Its HTTP service arrives with the marketplace issue; this binary exists so
/// the workspace layout and release artifacts are fixed from the start.
#[derive(Debug, Parser)]
#[command(name = "sparebox-market", version)]
struct Cli {}

fn main() {
    let _ = Cli::parse();
    eprintln!("sparebox-market: no subcommands yet; see `sparebox-market --help`");
}
