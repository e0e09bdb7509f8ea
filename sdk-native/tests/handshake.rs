//! The WebSocket handshake as the link reads it: the frames a server sends right behind its
//! upgrade answer, in the same write, are the connection's first messages.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;
use tether::{Client, Event, Payload};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// An unmasked text frame (server to client) of `text`, under 126 bytes.
fn text_frame(text: &str) -> Vec<u8> {
    let mut frame = vec![0x81, u8::try_from(text.len()).unwrap()];
    frame.extend_from_slice(text.as_bytes());
    frame
}

/// The link reads the handshake's answer through a recorder, then makes the WebSocket over the
/// stream itself with the bytes that followed the answer's head (`transport/ws.rs`,
/// `upgrade`): frames sent in the same write as the `101` must not be lost with the recorder.
#[tokio::test]
async fn frames_sent_with_the_upgrade_answer_are_the_first_messages() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let head = common::read_request_head(&mut tcp).await.unwrap();
        let mut answer = common::upgrade_answer(&head).into_bytes();
        for n in 0..3 {
            answer.extend(text_frame(&format!("welcome {n}")));
        }
        tcp.write_all(&answer).await.unwrap();
        // Held open until the test ends.
        tokio::time::sleep(Duration::from_secs(10)).await;
    });
    let (client, mut events) = Client::builder(format!("ws://{addr}/")).connect().unwrap();
    let mut got = Vec::new();
    while got.len() < 3 {
        if let Event::Message(m) = common::next_event(&mut events).await {
            let Payload::Text(text) = m.payload else {
                panic!("{:?}", m.payload)
            };
            got.push(text);
        }
    }
    assert_eq!(got, ["welcome 0", "welcome 1", "welcome 2"]);
    server.abort();
    client.shutdown().await;
}
