//! An S3 peer on loopback for end-to-end tests: `moto_server` with one
//! bucket, killed by its PID when dropped, and the `sgw serve` options that
//! point a gateway at it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, GatewayOptions};

pub const BUCKET: &str = "sgw-e2e";

fn find_binary(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

pub struct Moto {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// Starts moto with an empty bucket; `None` (after a loud message) when
    /// moto is not installed and the run does not require it.
    pub fn start() -> Option<Moto> {
        let Some(program) = find_binary("moto_server") else {
            if std::env::var_os("SGW_REQUIRE_S3_PEERS").is_some() {
                panic!("moto_server not found and SGW_REQUIRE_S3_PEERS is set; run tests/install-python-deps.sh");
            }
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                b"\n!!!!!!!! SKIPPING: moto_server is not installed (run tests/install-python-deps.sh) !!!!!!!!\n\n",
            );
            return None;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("moto.log")).expect("log");
        let child = Command::new(program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start moto");
        let moto = Moto { port, child, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto did not listen on {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        // moto does not check signatures: a bare PUT makes the bucket.
        ureq::put(&format!("http://127.0.0.1:{port}/{BUCKET}")).call().expect("create bucket");
        Some(moto)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Flags and credentials (from the environment, the standard AWS
    /// chain) that make a gateway use this bucket under `prefix`.
    pub fn gateway_options(&self, prefix: &str) -> GatewayOptions {
        let mut o = GatewayOptions::args(&[
            "--s3-bucket",
            BUCKET,
            "--s3-endpoint",
            &self.endpoint(),
            "--s3-path-style",
            "--prefix",
            prefix,
        ]);
        o.env = vec![
            ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
            ("AWS_REGION".into(), "us-east-1".into()),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ];
        o
    }
}
