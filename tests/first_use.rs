//! What a new user sees on a first run with the zero-config global cache
//! and no `tracing` subscriber: a mistyped URL fails loudly, an unreachable
//! server is told once with its address and the cause, and the values are
//! right either way. Each case runs `first-use` (tests/support/first_use.rs)
//! as its own process, with its own environment.

use std::process::{Command, Output};

use redcache_suite::{free_port, RedisServer};

fn first_use(url: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_first-use"))
        .env("REDCACHE_URL", url)
        .env_remove("REDIS_URL")
        .output()
        .expect("first-use runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn an_unreachable_server_is_told_once_with_its_address_and_cause() {
    let port = free_port();
    let output = first_use(&format!("redis://127.0.0.1:{port}"));
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stderr}");
    assert_eq!(stdout.matches("VALUE 144").count(), 3, "{stdout}");
    let told: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("cannot reach Redis"))
        .collect();
    assert_eq!(told.len(), 1, "told once: {stderr}");
    assert!(
        told[0].contains(&format!("127.0.0.1:{port}")),
        "{}",
        told[0]
    );
    assert!(
        told[0].to_lowercase().contains("refused"),
        "the cause: {}",
        told[0]
    );
    let errors: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("ERRORS "))
        .and_then(|n| n.parse().ok())
        .expect("ERRORS line");
    assert!(
        errors >= 1,
        "global().stats() counts the failures: {stdout}"
    );
}

#[test]
fn a_mistyped_url_fails_loudly_and_says_what_to_write() {
    for url in ["memroy", "localhost:6379", "redis://:pa,ss@127.0.0.1:6379"] {
        let output = first_use(url);
        let stderr = text(&output.stderr);
        assert!(
            !output.status.success(),
            "{url}: it ran uncached in silence"
        );
        assert!(stderr.contains("REDCACHE_URL"), "{url}: {stderr}");
        assert!(
            stderr.contains("redis://"),
            "{url}: says what to write: {stderr}"
        );
        assert!(
            !stderr.contains("pa,ss"),
            "{url}: the password is not printed: {stderr}"
        );
    }
    let stderr = text(&first_use("redis://:pa,ss@127.0.0.1:6379").stderr);
    assert!(stderr.contains("%2C"), "{stderr}");
}

#[test]
fn a_reachable_server_is_used_and_nothing_is_told() {
    let server = RedisServer::start();
    let output = first_use(&server.url());
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stderr}");
    assert_eq!(stdout.matches("VALUE 144").count(), 3, "{stdout}");
    assert!(stdout.contains("ERRORS 0"), "{stdout}");
    assert!(!stderr.contains("redcache"), "{stderr}");
    assert_eq!(
        server.command("EXISTS redcache:v:first_use::square:12"),
        ":1\r\n"
    );
}
