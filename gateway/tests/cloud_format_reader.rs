//! docs/FORMAT.md is complete enough to write a reader: an independent one
//! in Python (tests/format-reader.py, written from the document alone)
//! decodes every chunk the gateway stored to the bytes that went in.

mod cloud_support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use cloud_support::*;
use gateway::cloud::store::{list_all, LocalStoreConfig};
use gateway::cloud::{
    CloudConfig, CloudLayer, MasterKey, Namespace, ObjectStore, StoreConfig, UploadJob,
};

fn sha256_hex(data: &[u8]) -> String {
    let output = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(data)?;
            child.wait_with_output()
        })
        .expect("sha256sum");
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn python_has_reader_modules() -> bool {
    let found = Command::new("python3")
        .args(["-c", "import blake3, zstandard, cryptography"])
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        if std::env::var_os("SGW_REQUIRE_S3_PEERS").is_some() {
            panic!("python3 lacks blake3/zstandard/cryptography; run tests/install-python-deps.sh");
        }
        let message = "\n!!!!!!!! SKIPPING: python3 lacks blake3/zstandard/cryptography (run tests/install-python-deps.sh) !!!!!!!!\n\n";
        let _ = std::io::Write::write_all(&mut std::io::stderr(), message.as_bytes());
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_python_reader_decodes_every_chunk() {
    if !python_has_reader_modules() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = CloudConfig {
        store: StoreConfig::Local(LocalStoreConfig {
            root: dir.path().join("store"),
            restore_delay_secs: 0,
        }),
        prefix: "site/gw".into(),
        retry: Default::default(),
        bandwidth: Default::default(),
        uploader: Default::default(),
        zstd_level: 1,
    };
    let master = MasterKey::generate();
    let (layer, mut completions) =
        CloudLayer::start(&config, master.clone(), &prometheus::Registry::new())
            .await
            .unwrap();
    let inputs = [
        ("vol-1", random_bytes(1, 200_000)),
        ("vol-1", text_bytes(2, 300_000)),
        ("vol-1", vec![0u8; 4096]),
        ("TAPE-7", text_bytes(3, 50_000)),
    ];
    for (index, (namespace, data)) in inputs.iter().enumerate() {
        let job = UploadJob {
            namespace: Namespace::new(namespace).unwrap(),
            chunk_index: index as u64,
            generation: 0,
            data: Bytes::from(data.clone()),
        };
        layer.uploader.submit(job).await.unwrap();
    }
    for _ in 0..inputs.len() {
        completions.recv().await.unwrap().result.unwrap();
    }
    layer.uploader.close().await;

    // Export the bucket as plain files named by key, as `aws s3 sync` would.
    let export = dir.path().join("export");
    for object in list_all(&layer.store, "").await.unwrap() {
        let path = export.join(&object.key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, layer.store.get(&object.key, None).await.unwrap()).unwrap();
    }

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/format-reader.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(&export)
        .arg("site/gw")
        .arg(master.to_recovery_text())
        .output()
        .expect("run the Python reader");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "reader failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let decoded: BTreeSet<(String, String)> = stdout
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            Some((fields.next()?.to_owned(), fields.nth(1)?.to_owned()))
        })
        .collect();
    let expected: BTreeSet<(String, String)> = inputs
        .iter()
        .filter(|(_, data)| data.iter().any(|b| *b != 0))
        .map(|(namespace, data)| (namespace.to_string(), sha256_hex(data)))
        .collect();
    assert_eq!(decoded, expected);
}
