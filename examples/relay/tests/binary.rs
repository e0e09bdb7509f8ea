//! The `tether-relay` binary: one ready line on stdout, then a graceful shutdown on SIGTERM.
#![cfg(unix)]
#![allow(clippy::unwrap_used)]

mod common;

use common::{within, Client};
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

#[tokio::test]
async fn the_binary_announces_its_address_and_shuts_down_gracefully_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tether-relay"))
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    within("the ready line", stdout.read_line(&mut line))
        .await
        .unwrap();
    let url = line
        .trim_end()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected ready line {line:?}"))
        .to_owned();
    assert!(url.starts_with("ws://127.0.0.1:"), "{url}");

    let mut client = Client::hello(&url, "c").await;
    client.barrier().await;

    let pid = child.id().unwrap().to_string();
    // The shell's own `kill`: slim images have no kill binary.
    let killed = Command::new("sh")
        .args(["-c", &format!("kill -s TERM {pid}")])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    assert_eq!(u16::from(client.recv_close().await.code), 1012);
    drop(client);
    let status = within("the relay to exit", child.wait()).await.unwrap();
    assert!(status.success(), "{status}");
}
