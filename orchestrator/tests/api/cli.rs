//! The `liveclass` binary as a user runs it: help, migrate, seed-demo (idempotent), serve + SIGTERM.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::Value;

use crate::helpers::test_db;

const BIN: &str = env!("CARGO_BIN_EXE_liveclass");

fn run(args: &[&str], db_url: &str) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env("DATABASE_URL", db_url)
        .env("LIVECLASS_LOG_FILTER", "warn")
        .env_remove("LIVECLASS_CONFIG")
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run liveclass")
}

#[test]
fn help_documents_every_subcommand() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for word in ["serve", "migrate", "seed-demo", "--config", "--database-url", "LIVECLASS_"] {
        assert!(text.contains(word), "--help lacks {word}:\n{text}");
    }
    let out = Command::new(BIN).args(["serve", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("--addr"));
    let out = Command::new(BIN).arg("frobnicate").output().unwrap();
    assert!(!out.status.success());
}

#[tokio::test]
async fn migrate_seed_demo_and_serve() {
    let (_db, url) = test_db().await;
    let out = run(&["migrate"], &url);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let first = run(&["seed-demo", "--json"], &url);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let first: Value = serde_json::from_slice(&first.stdout).expect("JSON on stdout");
    let second: Value = serde_json::from_slice(&run(&["seed-demo", "--json"], &url).stdout).unwrap();
    for who in ["admin", "tutor", "student", "minor", "parent"] {
        assert_eq!(first[who]["id"], second[who]["id"], "{who} reused");
        assert!(first[who]["access_token"].as_str().unwrap().len() > 40);
    }
    assert_eq!(first["tenant_id"], second["tenant_id"]);
    assert_eq!(first["minor"]["minor"], true);
    assert_eq!(first["student"]["minor"], false);

    // Start the real binary on the same database; the printed token works against it.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = Command::new(BIN)
        .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
        .env("LIVECLASS_RTC_UDP_PORT", "0")
        .env("DATABASE_URL", &url)
        .env("LIVECLASS_LOG_FORMAT", "json")
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let mut ready = false;
    for _ in 0..100 {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await
            && r.status().is_success()
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "server became ready");
    let me: Value = http
        .get(format!("{base}/api/v1/me"))
        .bearer_auth(second["parent"]["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], "parent@demo.liveclass.test");
    assert_eq!(me["children"][0]["id"], second["minor"]["id"]);
    let login = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({"tenant":"demo","email":"admin@demo.liveclass.test","password":"demo-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);

    // SIGTERM: a clean exit.
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || {
        let status = child.wait().unwrap();
        let mut log = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut log).unwrap();
        (status, log)
    })
    .await
    .unwrap();
    assert!(status.0.success(), "exit {:?}", status.0);
    // JSON logs, with the effective config logged at start and its secrets redacted.
    let first_line: Value = serde_json::from_str(status.1.lines().next().unwrap()).expect("JSON log line");
    assert!(first_line["fields"]["config"].as_str().unwrap().contains("database_url"), "{first_line}");
    assert!(status.1.contains("stopped"), "{}", status.1);
}
