//! `tether demo`: the main job a newcomer runs first (filled in below).

use clap::Args;
use std::process::ExitCode;

/// Options of `tether demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {}

pub(crate) async fn run(_args: DemoArgs) -> ExitCode {
    ExitCode::SUCCESS
}
