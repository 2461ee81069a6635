//! Security properties of what lands in the bucket: no plaintext, no key
//! material, wrong keys and tampering refused cleanly, and a master-key
//! rotation that keeps every old chunk readable.

mod cloud_support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cloud_support::*;
use gateway::cloud::chunk::{ChunkHeader, HEADER_LEN};
use gateway::cloud::inspect::{inspect, InspectOptions, ObjectStatus};
use gateway::cloud::store::{list_all, StorageClass};
use gateway::cloud::uploader::StoredChunk;
use gateway::cloud::{
    rotate_master_key, BucketLayout, ChunkId, ChunkReader, CloudMetrics, CloudStore, ErrorKind,
    Keyring, MasterKey, Namespace, ObjectStore, RetryPolicy, UploadJob, Uploader, UploaderConfig,
};

const PATTERN: &[u8] = b"CONFIDENTIAL-PAYROLL-RECORD-7f3a";
const PREFIX: &str = "secure";

fn cloud_store(backend: Arc<dyn ObjectStore>) -> CloudStore {
    let metrics = CloudMetrics::register(&prometheus::Registry::new()).unwrap();
    CloudStore::new(
        backend,
        RetryPolicy::default(),
        gateway::cloud::ScheduleHandle::new(Default::default()),
        metrics,
    )
}

fn keyring(store: &CloudStore, master: &MasterKey) -> Arc<Keyring> {
    let shared: Arc<dyn ObjectStore> = Arc::new(store.clone());
    Arc::new(Keyring::new(
        shared,
        BucketLayout::new(PREFIX).unwrap(),
        master.clone(),
        1,
    ))
}

fn reader(store: &CloudStore, master: &MasterKey) -> ChunkReader {
    ChunkReader::new(Arc::new(store.clone()), keyring(store, master))
}

/// Chunks full of the pattern: as text (compressed), mixed into random
/// bytes (stored raw), and once at a single odd offset.
fn secret_chunks() -> Vec<Vec<u8>> {
    let text: Vec<u8> = PATTERN
        .iter()
        .chain(b" salary=123456\n")
        .copied()
        .cycle()
        .take(256 * 1024)
        .collect();
    let mut mixed = random_bytes(21, 256 * 1024);
    for offset in (0..mixed.len() - PATTERN.len()).step_by(4096) {
        mixed[offset..offset + PATTERN.len()].copy_from_slice(PATTERN);
    }
    let mut single = random_bytes(22, 100_000);
    single[12_345..12_345 + PATTERN.len()].copy_from_slice(PATTERN);
    vec![text, mixed, single]
}

async fn upload(
    store: &CloudStore,
    master: &MasterKey,
    namespace: &Namespace,
    chunks: &[Vec<u8>],
) -> Vec<ChunkId> {
    let (uploader, mut completions) = Uploader::start(
        &UploaderConfig::default(),
        store.clone(),
        keyring(store, master),
    )
    .expect("encoder threads");
    for (index, data) in chunks.iter().enumerate() {
        let job = UploadJob {
            namespace: namespace.clone(),
            chunk_index: index as u64,
            generation: 0,
            data: Bytes::from(data.clone()),
        };
        uploader.submit(job).await.unwrap();
    }
    let mut ids = vec![None; chunks.len()];
    for _ in 0..chunks.len() {
        let completion = completions.recv().await.unwrap();
        let StoredChunk::Object { id, .. } = completion.result.unwrap() else {
            panic!("no zero chunks here")
        };
        ids[completion.chunk_index as usize] = Some(id);
    }
    uploader.close().await;
    ids.into_iter().map(|id| id.unwrap()).collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_plaintext_or_key_material_reaches_storage() {
    let dir = tempfile::tempdir().unwrap();
    let store = cloud_store(local_store(dir.path(), Duration::ZERO));
    let master = MasterKey::generate();
    let namespace = Namespace::new("vol-payroll").unwrap();
    let chunks = secret_chunks();
    let ids = upload(&store, &master, &namespace, &chunks).await;

    let recovery = master.to_recovery_text();
    let master_hex = recovery.replace('-', "");
    let master_bytes = hex::decode(&master_hex).unwrap();
    // Every byte on disk, not just what the store API returns.
    let files = files_under(dir.path());
    assert!(
        files.len() >= chunks.len() + 2,
        "chunks, key record and marker are on disk"
    );
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        for needle in [
            PATTERN,
            &PATTERN[..12],
            b"salary=",
            master_hex.as_bytes(),
            &master_bytes,
        ] {
            assert!(
                !contains(&bytes, needle),
                "{} contains {:?}",
                file.display(),
                String::from_utf8_lossy(needle)
            );
        }
    }
    // And the chunks still decode to the secrets.
    let reader = reader(&store, &master);
    for (id, data) in ids.iter().zip(&chunks) {
        assert_eq!(reader.read_chunk(&namespace, id).await.unwrap(), &data[..]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_is_a_clean_auth_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = cloud_store(local_store(dir.path(), Duration::ZERO));
    let master = MasterKey::generate();
    let namespace = Namespace::new("vol-1").unwrap();
    let ids = upload(&store, &master, &namespace, &secret_chunks()).await;

    let impostor = reader(&store, &MasterKey::generate());
    for id in &ids {
        let err = impostor.read_chunk(&namespace, id).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
        assert!(
            err.to_string().contains("master key"),
            "says what is wrong: {err}"
        );
    }
    // A chunk of one namespace presented as another's: its data key differs.
    let other = Namespace::new("vol-2").unwrap();
    upload(&store, &master, &other, &[random_bytes(5, 1000)]).await;
    let layout = BucketLayout::new(PREFIX).unwrap();
    let object = store
        .get(&layout.chunk_key(&namespace, &ids[0]), None)
        .await
        .unwrap();
    store
        .put(
            &layout.chunk_key(&other, &ids[0]),
            object,
            &StorageClass::Standard,
        )
        .await
        .unwrap();
    let err = reader(&store, &master)
        .read_chunk(&other, &ids[0])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");

    // The offline reader reports the same, for every object, and no more.
    let options = InspectOptions {
        layout,
        master_key: Some(MasterKey::generate()),
        namespace: Some(namespace),
    };
    let summary = inspect(&store, &options, |report| {
        if report.key.contains("/chunks/") || report.key.contains("/keys/") {
            assert!(
                matches!(
                    report.status,
                    ObjectStatus::Failed {
                        kind: ErrorKind::Auth,
                        ..
                    }
                ),
                "{report}"
            );
        }
    })
    .await
    .unwrap();
    assert_eq!(summary.failed, ids.len() + 1);
    assert_eq!(summary.verified, 1, "only the bucket marker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_objects_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let store = cloud_store(local_store(dir.path(), Duration::ZERO));
    let master = MasterKey::generate();
    let namespace = Namespace::new("vol-1").unwrap();
    let chunks = secret_chunks();
    let ids = upload(&store, &master, &namespace, &chunks).await;
    let layout = BucketLayout::new(PREFIX).unwrap();
    let reader = reader(&store, &master);

    for (id, data) in ids.iter().zip(&chunks) {
        let key = layout.chunk_key(&namespace, id);
        let original = store.get(&key, None).await.unwrap();

        // Damage without fixing the checksum: detected as corruption.
        let mut damaged = original.to_vec();
        damaged[HEADER_LEN + 10] ^= 0x01;
        store
            .put(&key, Bytes::from(damaged.clone()), &StorageClass::Standard)
            .await
            .unwrap();
        assert_eq!(
            reader.read_chunk(&namespace, id).await.unwrap_err().kind(),
            ErrorKind::Corrupt
        );

        // A deliberate change with the checksum recomputed: authentication fails.
        let crc = crc32c::crc32c_append(crc32c::crc32c(&damaged[..32]), &damaged[HEADER_LEN..]);
        damaged[32..36].copy_from_slice(&crc.to_le_bytes());
        assert!(ChunkHeader::parse(&damaged).is_ok());
        store
            .put(&key, Bytes::from(damaged), &StorageClass::Standard)
            .await
            .unwrap();
        assert_eq!(
            reader.read_chunk(&namespace, id).await.unwrap_err().kind(),
            ErrorKind::Auth
        );

        // Flipping the compression flag is caught the same way.
        let mut flipped = original.to_vec();
        flipped[5] ^= 0x01;
        let crc = crc32c::crc32c_append(crc32c::crc32c(&flipped[..32]), &flipped[HEADER_LEN..]);
        flipped[32..36].copy_from_slice(&crc.to_le_bytes());
        store
            .put(&key, Bytes::from(flipped), &StorageClass::Standard)
            .await
            .unwrap();
        assert_eq!(
            reader.read_chunk(&namespace, id).await.unwrap_err().kind(),
            ErrorKind::Auth
        );

        store
            .put(&key, original, &StorageClass::Standard)
            .await
            .unwrap();
        assert_eq!(reader.read_chunk(&namespace, id).await.unwrap(), &data[..]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_key_rotation_keeps_old_chunks_readable() {
    let dir = tempfile::tempdir().unwrap();
    let store = cloud_store(local_store(dir.path(), Duration::ZERO));
    let (old, new) = (MasterKey::generate(), MasterKey::generate());
    let layout = BucketLayout::new(PREFIX).unwrap();
    let volumes = [
        Namespace::new("vol-a").unwrap(),
        Namespace::new("vol-b").unwrap(),
    ];
    let chunks = secret_chunks();
    let mut written = Vec::new();
    for namespace in &volumes {
        written.push(upload(&store, &old, namespace, &chunks).await);
    }
    let mut chunk_objects_before = Vec::new();
    for object in list_all(&store, &layout.root()).await.unwrap() {
        if object.key.contains("/chunks/") {
            let bytes = store.get(&object.key, None).await.unwrap();
            chunk_objects_before.push((object.key, bytes));
        }
    }
    assert_eq!(chunk_objects_before.len(), 2 * chunks.len());

    let report = rotate_master_key(&store, &layout, &old, &new)
        .await
        .unwrap();
    assert_eq!((report.rewrapped, report.already_current), (2, 0));
    // Running it again (as after an interruption) finds nothing to do.
    let again = rotate_master_key(&store, &layout, &old, &new)
        .await
        .unwrap();
    assert_eq!((again.rewrapped, again.already_current), (0, 2));

    let with_new = reader(&store, &new);
    let with_old = reader(&store, &old);
    for (namespace, ids) in volumes.iter().zip(&written) {
        for (id, data) in ids.iter().zip(&chunks) {
            assert_eq!(with_new.read_chunk(namespace, id).await.unwrap(), &data[..]);
            assert_eq!(
                with_old.read_chunk(namespace, id).await.unwrap_err().kind(),
                ErrorKind::Auth
            );
        }
    }
    // Data was never rewritten: every chunk object is byte-for-byte the same.
    for (key, before) in &chunk_objects_before {
        assert_eq!(
            &store.get(key, None).await.unwrap(),
            before,
            "{key} was rewritten"
        );
    }
    let new_writes = upload(&store, &new, &volumes[0], &[random_bytes(99, 5000)]).await;
    assert_eq!(
        with_new
            .read_chunk(&volumes[0], &new_writes[0])
            .await
            .unwrap(),
        &random_bytes(99, 5000)[..]
    );
}
