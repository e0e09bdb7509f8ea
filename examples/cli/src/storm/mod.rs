//! `tether storm`: reconnect-storm simulator (being written).

use clap::Args;
use std::process::ExitCode;

/// Options of `tether storm`.
#[derive(Debug, Args)]
pub(crate) struct StormArgs {}

pub(crate) fn run(_args: StormArgs) -> ExitCode {
    ExitCode::SUCCESS
}
