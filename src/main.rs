use clap::Parser;
use diffrecon::cli::{report, run, Cli};

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        std::process::exit(report(&e));
    }
}
