//! `rediss://`: TLS to a redis-server started with a certificate signed by
//! a CA this test makes with `openssl`, verified by the client (the CA is
//! given to OpenSSL through SSL_CERT_FILE, as an operator would).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use redcache::Cache;
use redcache_suite::{unique_namespace, RedisServer};

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is needed for the TLS test: apt-get install openssl");
    assert!(output.status.success(), "openssl {args:?}: {output:?}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn rediss_urls_connect_over_verified_tls() {
    let dir = std::env::temp_dir().join(unique_namespace("redcache-tls"));
    std::fs::create_dir_all(&dir).unwrap();
    openssl(
        &dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "1",
            "-subj",
            "/CN=redcache test CA",
        ],
    );
    openssl(
        &dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "1",
            "-extfile",
            "san.ext",
        ],
    );
    // Before any TLS connection in this process (this binary has one test).
    std::env::set_var("SSL_CERT_FILE", dir.join("ca.crt"));

    let tls_port = free_port().to_string();
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let (cert, key, ca) = (path("server.crt"), path("server.key"), path("ca.crt"));
    let server = RedisServer::start_with(
        &[
            "--tls-port",
            &tls_port,
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca,
            "--tls-auth-clients",
            "no",
        ],
        free_port,
    );
    let cache = Cache::builder()
        .redis(format!("rediss://127.0.0.1:{tls_port}"))
        .namespace(unique_namespace("tls"))
        .op_timeout(Duration::from_secs(2))
        .build()
        .await
        .unwrap();
    for _ in 0..3 {
        let value = cache
            .get_or_load("k", Duration::from_secs(60), &["t"], || async {
                Ok::<_, String>(7)
            })
            .await;
        assert_eq!(value, Ok(7));
    }
    let stats = cache.stats();
    assert_eq!(
        (stats.errors, stats.loads, stats.hits),
        (0, 1, 2),
        "{stats:?}"
    );
    cache.invalidate_tag("t").await.unwrap();

    // The TLS port does not speak plain RESP: a plain client fails (open).
    let plain = Cache::builder()
        .redis(format!("redis://127.0.0.1:{tls_port}"))
        .namespace(unique_namespace("tls"))
        .op_timeout(Duration::from_millis(300))
        .build()
        .await
        .unwrap();
    assert_eq!(
        plain
            .get_or_load("k", Duration::from_secs(60), &[], || async {
                Ok::<_, String>(8)
            })
            .await,
        Ok(8)
    );
    assert!(plain.stats().errors > 0);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
