//! Whiteboards grew without bound (issue 17, item 4): "Five sockets drawing 60 KB objects with new keys at
//! the allowed rate took the node from 144 MB to 671 MB in 20 s." A board now holds at most
//! `board_max_objects` objects and `board_max_bytes` bytes (keys plus objects' JSON), each object at most
//! `board_max_object_bytes`. Past them a `put` gets `board_full` or `object_too_large`, is neither stored
//! nor published nor given an offset, and the connection carries on. With the default limits, in-process
//! and on Redis.

use std::collections::BTreeSet;

use orchestrator::config::Secret;
use serde_json::{Value, json};

use crate::{
    helpers::TestApp,
    realtime::{Client, live_class},
};

/// The defaults (`board_max_bytes`, `board_max_object_bytes`): the test is of what a deployment has.
const MAX_BOARD_BYTES: usize = 2 * 1024 * 1024;
const MAX_OBJECT_BYTES: usize = 16 * 1024;

/// A stroke whose JSON, as the server stores it, is exactly `n` bytes.
fn stroke(n: usize) -> Value {
    let object = json!({"shape": "line", "points": "x".repeat(n)});
    let overhead = object.to_string().len() - n;
    json!({"shape": "line", "points": "x".repeat(n - overhead)})
}

fn put(room: &str, key: &str, object: &Value) -> Value {
    json!({"type": "draw", "room": room, "op": {"action": "put", "key": key, "object": object}})
}

/// Puts objects of `size` bytes under new keys `<prefix>-00000`, `-00001`, … until the board is full, then
/// a few more, which must all be refused the same way. Returns the accepted keys with their offsets.
async fn draw_until_full(c: &mut Client, room: &str, prefix: &str, size: usize) -> Vec<(String, u64)> {
    let object = stroke(size);
    let mut accepted = Vec::new();
    let mut refused = 0;
    for i in 0.. {
        let key = format!("{prefix}-{i:05}");
        let reply = c.request(put(room, &key, &object)).await;
        match reply["type"].as_str() {
            Some("ack") if refused == 0 => accepted.push((key, reply["offset"].as_u64().unwrap())),
            Some("error") => {
                assert_eq!(reply["code"], "board_full", "{reply}");
                let message = reply["message"].as_str().unwrap();
                assert!(message.contains(&MAX_BOARD_BYTES.to_string()), "the limit is named: {message}");
                refused += 1;
                if refused == 5 {
                    return accepted;
                }
            }
            _ => panic!("after {} puts of {size} bytes: {reply}", accepted.len()),
        }
        assert!(i < 1000, "{prefix}: the board never filled up");
    }
    unreachable!()
}

async fn a_board_is_bounded_and_the_connection_carries_on(app: &TestApp, slug: &str) {
    let (s, _class, room) = live_class(app, slug, 2).await;
    let mut tutor = Client::connect(app, &s.tutor.access).await;
    let mut student = Client::connect(app, &s.students[0].access).await;
    assert_eq!(tutor.join(&room).await["type"], "joined");
    assert_eq!(student.join(&room).await["type"], "joined");

    // An object over the limit is refused whatever the board holds (the frame itself is well under 64 KiB).
    let huge = tutor.request(put(&room, "huge", &stroke(20_000))).await;
    assert_eq!((huge["type"].as_str(), huge["code"].as_str()), (Some("error"), Some("object_too_large")), "{huge}");
    let message = huge["message"].as_str().unwrap();
    assert!(message.contains(&MAX_OBJECT_BYTES.to_string()) && message.contains("20000"), "{message}");

    // Two sockets fill the board at once with objects just under the object limit, under new keys.
    let size = 15_000;
    let entry = "t-00000".len() + size;
    let (t, st) =
        tokio::join!(draw_until_full(&mut tutor, &room, "t", size), draw_until_full(&mut student, &room, "s", size));
    let fits = MAX_BOARD_BYTES / entry;
    assert_eq!(t.len() + st.len(), fits, "exactly what fits in the board's bytes: {} + {}", t.len(), st.len());
    let keys: BTreeSet<&str> = t.iter().chain(&st).map(|(k, _)| k.as_str()).collect();
    let last = t.iter().chain(&st).map(|(_, o)| *o).max().unwrap();

    // A late joiner's snapshot holds exactly the accepted objects, within the limit; nothing refused is in
    // its history either.
    let mut late = Client::connect(app, &s.students[1].access).await;
    let joined = late.join(&room).await;
    let objects = joined["board"]["objects"].as_array().unwrap();
    let stored: BTreeSet<&str> = objects.iter().map(|o| o["key"].as_str().unwrap()).collect();
    assert_eq!(stored, keys);
    let bytes: usize = objects.iter().map(|o| o["key"].as_str().unwrap().len() + o["object"].to_string().len()).sum();
    assert!(bytes <= MAX_BOARD_BYTES, "{bytes} bytes stored");
    assert_eq!(joined["board"]["offset"].as_u64(), Some(last));
    for h in joined["history"].as_array().unwrap() {
        if h["data"]["kind"] == "draw" {
            assert!(keys.contains(h["data"]["op"]["key"].as_str().unwrap()), "refused op in history: {h}");
        }
    }

    // The connection still works: refused puts took no offset, a delete makes room for one more object.
    let delete = json!({"type": "draw", "room": room, "op": {"action": "delete", "key": t[0].0}});
    let ack = tutor.request(delete).await;
    assert_eq!((ack["type"].as_str(), ack["offset"].as_u64()), (Some("ack"), Some(last + 1)), "{ack}");
    let ack = tutor.request(put(&room, "t-after", &stroke(size))).await;
    assert_eq!((ack["type"].as_str(), ack["offset"].as_u64()), (Some("ack"), Some(last + 2)), "{ack}");
    assert_eq!(tutor.request(json!({"type": "ping"})).await["type"], "pong");
    let seen = late.message(&room, "draw").await;
    assert_eq!((seen["offset"].as_u64(), seen["data"]["op"]["action"].as_str()), (Some(last + 1), Some("delete")));
    let seen = late.message(&room, "draw").await;
    assert_eq!((seen["offset"].as_u64(), seen["data"]["op"]["key"].as_str()), (Some(last + 2), Some("t-after")));
}

/// The rate limit is a separate defence: raised here so that only the board's limits refuse anything.
fn fast(c: &mut orchestrator::config::Config) {
    c.ws_messages_per_sec = 2_000;
}

#[tokio::test]
async fn a_whiteboard_is_bounded_in_process() {
    let app = TestApp::spawn_with(fast).await;
    a_board_is_bounded_and_the_connection_carries_on(&app, &super::unique_slug("wb")).await;
}

#[tokio::test]
async fn a_whiteboard_is_bounded_on_redis() {
    let Some(redis) = super::test_redis() else { return };
    let app = TestApp::spawn_with(|c| {
        fast(c);
        c.redis_url = Some(Secret::new(redis));
    })
    .await;
    a_board_is_bounded_and_the_connection_carries_on(&app, &super::unique_slug("wbr")).await;
}
