//! `custos`: the agent (`custos run`) and its command-line client, one binary.

mod cli;
mod commands;
mod daemon;
mod db;
mod events;
mod fileinfo;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("custos: {e:#}");
            ExitCode::FAILURE
        }
    }
}
