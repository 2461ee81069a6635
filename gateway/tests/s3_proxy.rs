//! The S3 client goes through the proxy the environment names, as the
//! appliance's console sets it for the service (HTTPS_PROXY and
//! HTTP_PROXY). Its own test binary: the environment is the process's.
//! A stand-in proxy on loopback records the request line it gets and
//! answers 502, which the probe reports as the service refusing.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use gateway::cloud::store::probe::probe_s3;
use gateway::cloud::store::S3Config;

#[tokio::test]
async fn s3_requests_go_through_the_configured_proxy() {
    let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_port = proxy.local_addr().unwrap().port();
    let (seen, requests) = mpsc::channel();
    std::thread::spawn(move || {
        // Bounded: the probe's first request fails, and it stops.
        for stream in proxy.incoming().take(4).flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_ok() {
                let _ = seen.send(line.trim_end().to_string());
            }
            let mut stream = stream;
            let _ = stream.write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    // SAFETY of the test: this binary has one test, so no other thread
    // reads the environment while it changes.
    std::env::set_var("HTTP_PROXY", format!("http://127.0.0.1:{proxy_port}"));
    // The "endpoint" has nothing listening: only the proxy can answer.
    let unused = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = S3Config {
        bucket: "through-proxy".into(),
        region: "us-east-1".into(),
        endpoint: Some(format!("http://127.0.0.1:{unused}")),
        path_style: true,
        access_key_id: Some("testing".into()),
        secret_access_key: Some("testing".into()),
        connect_timeout_secs: 2,
    };
    let failure = tokio::time::timeout(Duration::from_secs(30), probe_s3(&config, "p")).await.expect("probe bounded").unwrap_err();
    let line = requests.recv_timeout(Duration::from_secs(5)).expect("the proxy saw no request");
    assert!(
        line.starts_with("HEAD http://127.0.0.1:") && line.contains(&format!(":{unused}/through-proxy")),
        "the proxy got {line:?}"
    );
    assert_eq!(failure.step, "HEAD bucket", "{failure}");
}
