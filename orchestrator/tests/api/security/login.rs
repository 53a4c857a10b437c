//! Password guessing is counted before the password is checked, so a burst of concurrent guesses gets no
//! more tries than a sequence; an attacker's failures lock only the attacker's address, and a crowd of
//! addresses is stopped without locking the owner out of a device they signed in from before. With Redis,
//! the counts are shared by every node.

use std::net::{IpAddr, Ipv4Addr};

use futures::future::join_all;
use orchestrator::config::{Config, Secret};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp};

/// A client whose connections come from `127.0.0.<last>` (all of 127.0.0.0/8 is this machine).
fn from(last: u8) -> reqwest::Client {
    reqwest::Client::builder().local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))).build().unwrap()
}

async fn login(app: &TestApp, client: &reqwest::Client, body: &Value) -> StatusCode {
    client.post(format!("{}/api/v1/auth/login", app.base)).json(body).send().await.unwrap().status()
}

fn limits(c: &mut Config) {
    c.login_max_failures_per_account = 5;
    c.login_max_failures_per_account_any_ip = 12;
    c.login_max_attempts_per_ip = 1000;
}

fn bodies(slug: &str) -> (Value, Value) {
    let email = format!("admin@{slug}.test");
    (
        json!({"tenant": slug, "email": email, "password": "wrong-password"}),
        json!({"tenant": slug, "email": email, "password": PASSWORD}),
    )
}

/// 50 wrong passwords at once, from one address: at most the limit are checked (401), the rest refused (429).
async fn burst(app: &TestApp, client: &reqwest::Client, wrong: &Value) -> (usize, usize) {
    let results = join_all((0..50).map(|_| login(app, client, wrong))).await;
    let unauthorized = results.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    let limited = results.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    (unauthorized, limited)
}

#[tokio::test]
async fn concurrent_guesses_get_no_more_tries_than_the_limit_and_lock_only_their_address() {
    let app = TestApp::spawn_with(limits).await;
    app.tenant("bf").await;
    let (wrong, right) = bodies("bf");
    let attacker = from(66);
    let (unauthorized, limited) = burst(&app, &attacker, &wrong).await;
    assert_eq!((unauthorized, limited), (5, 45), "checked and refused of 50 concurrent guesses");
    // The attacker's address stays locked, even with the right password …
    assert_eq!(login(&app, &attacker, &right).await, StatusCode::TOO_MANY_REQUESTS);
    // … but the owner, elsewhere, is not locked out.
    assert_eq!(login(&app, &from(7), &right).await, StatusCode::OK);
}

#[tokio::test]
async fn many_addresses_are_stopped_but_the_owners_known_device_gets_in() {
    let app = TestApp::spawn_with(limits).await;
    app.tenant("ma").await;
    let (wrong, right) = bodies("ma");
    let owner = from(8);
    assert_eq!(login(&app, &owner, &right).await, StatusCode::OK, "the owner's device becomes known");
    // Three addresses, five guesses each: 12 are checked in all, then strangers are refused.
    let mut checked = 0;
    for last in 100..103 {
        let (unauthorized, _) = burst(&app, &from(last), &wrong).await;
        checked += unauthorized;
    }
    assert_eq!(checked, 12, "the account's limit over every address");
    assert_eq!(login(&app, &from(120), &right).await, StatusCode::TOO_MANY_REQUESTS, "a new address");
    assert_eq!(login(&app, &owner, &right).await, StatusCode::OK, "the owner's known device");
}

#[tokio::test]
async fn the_limit_holds_across_nodes_through_redis() {
    let Some(redis) = super::test_redis() else { return };
    let r = redis.clone();
    let a = TestApp::spawn_with(|c| {
        limits(c);
        c.redis_url = Some(Secret::new(r));
    })
    .await;
    let b = TestApp::spawn_on(&a.database_url, |c| {
        limits(c);
        c.redis_url = Some(Secret::new(redis));
    })
    .await;
    let slug = super::unique_slug("rl");
    a.tenant(&slug).await;
    let (wrong, right) = bodies(&slug);
    let attacker = from(77);
    // Half the burst at each node, at once.
    let results = join_all((0..50).map(|i| {
        let node = if i % 2 == 0 { &a } else { &b };
        login(node, &attacker, &wrong)
    }))
    .await;
    let unauthorized = results.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    assert_eq!(unauthorized, 5, "{results:?}");
    assert_eq!(login(&b, &attacker, &right).await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(login(&a, &from(9), &right).await, StatusCode::OK);
}
