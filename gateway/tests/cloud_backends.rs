//! One suite, three backends: the embedded local store, moto and
//! `rclone serve s3` (both started here on loopback). Each backend runs the
//! same scenarios; the archive scenarios adapt to what each can emulate.

mod cloud_support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cloud_support::*;
use gateway::cloud::inspect::{inspect, InspectArgs, InspectOptions};
use gateway::cloud::store::{
    list_all, put_multipart, ByteRange, CompletedPart, ListPage, LocalStoreConfig, ObjectMeta,
    RestoreStatus, RestoreTier, S3Config, StorageClass,
};
use gateway::cloud::uploader::StoredChunk;
use gateway::cloud::{
    open_store, BucketLayout, CloudConfig, CloudLayer, CloudMetrics, CloudStore, ErrorKind,
    Keyring, MasterKey, Namespace, ObjectStore, RetryPolicy, StoreConfig, StoreError, UploadJob,
    Uploader, UploaderConfig,
};

/// How far a backend emulates archive storage classes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Archive {
    /// GET refused until restored; restores take this long (local store).
    Delayed(Duration),
    /// GET refused until restored; restores finish at once (moto).
    Instant,
    /// The class is stored as a label only (rclone).
    LabelOnly,
}

async fn run_suite(name: &str, config: StoreConfig, archive: Archive) {
    let started = Instant::now();
    let store = open_store(&config).await.expect("open store");
    object_round_trips(store.as_ref()).await;
    ranged_reads(store.as_ref()).await;
    multipart_uploads(store.as_ref()).await;
    storage_class_changes(store.as_ref(), archive).await;
    archived_objects_need_a_restore(store.as_ref(), archive).await;
    chunk_round_trips(config).await;
    eprintln!(
        "{name}: suite passed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

async fn object_round_trips(store: &dyn ObjectStore) {
    let key = "objects/one";
    let body = Bytes::from(random_bytes(1, 70_000));
    store
        .put(key, body.clone(), &StorageClass::Standard)
        .await
        .unwrap();
    assert_eq!(store.get(key, None).await.unwrap(), body);
    let meta = store.head(key).await.unwrap();
    assert_eq!(meta.size, 70_000);
    assert_eq!(meta.restore, RestoreStatus::NotArchived);
    // Overwrite, then list and delete.
    store
        .put(key, Bytes::from_static(b"second"), &StorageClass::Standard)
        .await
        .unwrap();
    assert_eq!(
        store.get(key, None).await.unwrap(),
        Bytes::from_static(b"second")
    );
    store
        .put(
            "objects/two",
            Bytes::from_static(b"2"),
            &StorageClass::Standard,
        )
        .await
        .unwrap();
    let listed: Vec<String> = list_all(store, "objects/")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(listed, ["objects/one", "objects/two"]);
    store.delete(key).await.unwrap();
    store.delete(key).await.unwrap();
    assert_eq!(
        store.get(key, None).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        store.head(key).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

async fn ranged_reads(store: &dyn ObjectStore) {
    let key = "ranges/object";
    let data = random_bytes(2, 1000);
    store
        .put(key, Bytes::from(data.clone()), &StorageClass::Standard)
        .await
        .unwrap();
    for (offset, len, expect) in [
        (0u64, 1u64, &data[0..1]),
        (10, 100, &data[10..110]),
        (990, 100, &data[990..]),
    ] {
        let got = store
            .get(key, Some(ByteRange { offset, len }))
            .await
            .unwrap();
        assert_eq!(&got[..], expect, "range {offset}+{len}");
    }
    assert!(store
        .get(
            key,
            Some(ByteRange {
                offset: 5000,
                len: 10
            })
        )
        .await
        .is_err());
}

async fn multipart_uploads(store: &dyn ObjectStore) {
    let key = "multipart/object";
    let parts: Vec<Bytes> = [(3, 5 << 20), (4, 5 << 20), (5, 1 << 20)]
        .iter()
        .map(|&(seed, len)| Bytes::from(random_bytes(seed, len)))
        .collect();
    let whole: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
    put_multipart(store, key, parts, &StorageClass::Standard)
        .await
        .unwrap();
    assert_eq!(store.head(key).await.unwrap().size, whole.len() as u64);
    assert_eq!(store.get(key, None).await.unwrap(), whole);
    let across = ByteRange {
        offset: (5 << 20) - 10,
        len: 20,
    };
    assert_eq!(
        &store.get(key, Some(across)).await.unwrap()[..],
        &whole[(5 << 20) - 10..(5 << 20) + 10]
    );

    // An aborted upload leaves nothing and cannot be completed.
    let aborted = "multipart/aborted";
    let upload = store
        .create_multipart(aborted, &StorageClass::Standard)
        .await
        .unwrap();
    let part = store
        .upload_part(aborted, &upload, 1, Bytes::from(random_bytes(6, 1000)))
        .await
        .unwrap();
    store.abort_multipart(aborted, &upload).await.unwrap();
    assert!(store
        .complete_multipart(aborted, &upload, vec![part])
        .await
        .is_err());
    assert_eq!(
        store.head(aborted).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

async fn storage_class_changes(store: &dyn ObjectStore, archive: Archive) {
    let key = "classes/object";
    let body = Bytes::from(random_bytes(7, 3000));
    store
        .put(key, body.clone(), &StorageClass::Standard)
        .await
        .unwrap();
    assert_eq!(
        store.head(key).await.unwrap().storage_class,
        StorageClass::Standard
    );
    store
        .copy_to_storage_class(key, &StorageClass::StandardIa)
        .await
        .unwrap();
    if archive != Archive::LabelOnly {
        assert_eq!(
            store.head(key).await.unwrap().storage_class,
            StorageClass::StandardIa
        );
    }
    assert_eq!(store.get(key, None).await.unwrap(), body);
}

async fn archived_objects_need_a_restore(store: &dyn ObjectStore, archive: Archive) {
    let key = "archive/segment";
    let body = Bytes::from(random_bytes(8, 4000));
    store
        .put(key, body.clone(), &StorageClass::Standard)
        .await
        .unwrap();
    // The archive flow: a written object moves to GLACIER in place.
    store
        .copy_to_storage_class(key, &StorageClass::Glacier)
        .await
        .unwrap();
    if archive == Archive::LabelOnly {
        eprintln!("note: this backend stores GLACIER as a label only; archive semantics are covered by moto and the local store");
        assert_eq!(store.get(key, None).await.unwrap(), body);
        return;
    }
    let meta = store.head(key).await.unwrap();
    assert_eq!(meta.storage_class, StorageClass::Glacier);
    assert_eq!(meta.restore, RestoreStatus::Archived);
    assert_eq!(
        store.get(key, None).await.unwrap_err().kind(),
        ErrorKind::NotRestored
    );
    assert_eq!(
        store.restore_status(key).await.unwrap(),
        RestoreStatus::Archived
    );

    let requested = Instant::now();
    store.restore(key, RestoreTier::Bulk, 1).await.unwrap();
    if let Archive::Delayed(delay) = archive {
        assert_eq!(
            store.restore_status(key).await.unwrap(),
            RestoreStatus::InProgress
        );
        assert_eq!(
            store.get(key, None).await.unwrap_err().kind(),
            ErrorKind::NotRestored
        );
        // Asking again while it runs is not an error.
        store.restore(key, RestoreTier::Bulk, 1).await.unwrap();
        let mut polls = 0;
        while store.restore_status(key).await.unwrap() == RestoreStatus::InProgress {
            assert!(
                requested.elapsed() < delay + Duration::from_secs(10),
                "restore never finished"
            );
            polls += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(polls > 0 && requested.elapsed() >= delay);
    }
    assert!(matches!(
        store.restore_status(key).await.unwrap(),
        RestoreStatus::Restored { .. }
    ));
    assert_eq!(store.get(key, None).await.unwrap(), body);
    // Restoring a restored copy extends it.
    store.restore(key, RestoreTier::Standard, 2).await.unwrap();
    assert_eq!(store.get(key, None).await.unwrap(), body);
}

/// Chunks through the whole layer: uploader in, reader out, inspect over it.
async fn chunk_round_trips(store: StoreConfig) {
    let config = CloudConfig {
        store,
        prefix: "site-a/gw1".into(),
        retry: Default::default(),
        bandwidth: Default::default(),
        uploader: Default::default(),
        zstd_level: 1,
    };
    let master = MasterKey::generate();
    let registry = prometheus::Registry::new();
    let (layer, mut completions) = CloudLayer::start(&config, master.clone(), &registry)
        .await
        .unwrap();
    let vol = Namespace::new("vol-1").unwrap();
    let tape = Namespace::new("TAPE01").unwrap();
    let random = random_bytes(10, 1 << 20);
    let text = text_bytes(11, 1 << 20);
    let jobs: Vec<(Namespace, u64, Vec<u8>)> = vec![
        (vol.clone(), 0, random.clone()),
        (vol.clone(), 1, text.clone()),
        (vol.clone(), 2, vec![0u8; 1 << 20]),
        (vol.clone(), 3, random.clone()),
        (vol.clone(), 4, random_bytes(12, 1000)),
        (tape.clone(), 0, random_bytes(13, 300_000)),
    ];
    for (namespace, chunk_index, data) in &jobs {
        let job = UploadJob {
            namespace: namespace.clone(),
            chunk_index: *chunk_index,
            generation: 1,
            data: Bytes::from(data.clone()),
        };
        layer.uploader.submit(job).await.unwrap();
    }
    let mut done = HashMap::new();
    for _ in 0..jobs.len() {
        let completion = completions.recv().await.expect("a completion per job");
        assert_eq!(completion.generation, 1);
        done.insert(
            (completion.namespace.clone(), completion.chunk_index),
            completion.result.expect("stored"),
        );
    }
    assert_eq!(done[&(vol.clone(), 2)], StoredChunk::Zero);
    let (
        StoredChunk::Object {
            id: a,
            deduplicated: dup_a,
            ..
        },
        StoredChunk::Object {
            id: b,
            deduplicated: dup_b,
            ..
        },
    ) = (&done[&(vol.clone(), 0)], &done[&(vol.clone(), 3)])
    else {
        panic!("random chunks must be stored")
    };
    assert_eq!(a, b, "same content, same id");
    assert!(
        dup_a ^ dup_b,
        "exactly one of two identical chunks is uploaded"
    );
    let StoredChunk::Object { stored_size, .. } = done[&(vol.clone(), 1)] else {
        panic!("text chunk stored")
    };
    assert!(
        (text.len() as f64) / (stored_size as f64) >= 2.5,
        "text compresses: {stored_size}"
    );

    for (namespace, chunk_index, data) in &jobs {
        match &done[&(namespace.clone(), *chunk_index)] {
            StoredChunk::Zero => assert!(data.iter().all(|b| *b == 0)),
            StoredChunk::Object { id, .. } => {
                assert_eq!(
                    layer.reader.read_chunk(namespace, id).await.unwrap(),
                    &data[..]
                );
            }
        }
    }
    let metrics = layer.store.metrics();
    assert_eq!(metrics.chunks_uploaded.get(), 4);
    assert_eq!(metrics.chunks_deduplicated.get(), 1);
    assert_eq!(metrics.zero_chunks.get(), 1);
    assert!(metrics.bytes_uploaded.get() > (1 << 20) && metrics.bytes_downloaded.get() > (1 << 20));
    assert_eq!(metrics.queued_bytes.get(), 0);

    let options = InspectOptions {
        layout: BucketLayout::new("site-a/gw1").unwrap(),
        master_key: Some(master),
        namespace: None,
    };
    let mut lines = Vec::new();
    let summary = inspect(&layer.store, &options, |report| {
        lines.push(report.to_string())
    })
    .await
    .unwrap();
    assert_eq!(
        (summary.verified, summary.failed, summary.unknown),
        (7, 0, 0),
        "{lines:#?}"
    );
    assert_eq!(summary.plain_bytes, (2 << 20) + 1000 + 300_000);
    layer.uploader.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_local_store() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::Local(LocalStoreConfig {
        root: dir.path().to_owned(),
        restore_delay_secs: 2,
    });
    run_suite("local", config, Archive::Delayed(Duration::from_secs(2))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_server() {
    let Some(moto) = start_moto().await else {
        return;
    };
    let config = StoreConfig::S3(S3Config::with_endpoint(
        BUCKET,
        &moto.endpoint,
        "testing",
        "testing",
    ));
    run_suite("moto", config, Archive::Instant).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rclone_serve_s3() {
    let Some(rclone) = start_rclone() else { return };
    let config = StoreConfig::S3(S3Config::with_endpoint(
        BUCKET,
        &rclone.endpoint,
        "testing",
        "testing",
    ));
    run_suite("rclone", config, Archive::LabelOnly).await;
}

/// Listing pages and ordering, where a thousand objects are cheap.
#[tokio::test]
async fn local_store_lists_in_key_order_across_pages() {
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path(), Duration::ZERO);
    let mut keys: Vec<String> = (0..1003).map(|i| format!("p/{:x}/k{i}", i % 7)).collect();
    keys.extend([
        "p/a-b".to_owned(),
        "p/a".to_owned(),
        "p/a/b".to_owned(),
        "q/other".to_owned(),
    ]);
    for key in &keys {
        store
            .put(key, Bytes::from_static(b"x"), &StorageClass::Standard)
            .await
            .unwrap();
    }
    let first = store.list_page("p/", None).await.unwrap();
    assert_eq!(first.objects.len(), 1000);
    assert!(first.next.is_some());
    let listed: Vec<String> = list_all(store.as_ref(), "p/")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    let mut expected: Vec<String> = keys.into_iter().filter(|k| k.starts_with("p/")).collect();
    expected.sort();
    assert_eq!(listed, expected);
}

/// A local store whose chunk PUTs wait until the test lets them through.
#[derive(Debug)]
struct GatedStore {
    inner: Arc<dyn ObjectStore>,
    gate: Arc<tokio::sync::Semaphore>,
}

#[async_trait::async_trait]
impl ObjectStore for GatedStore {
    fn describe(&self) -> String {
        format!("gated {}", self.inner.describe())
    }
    async fn put(&self, key: &str, body: Bytes, class: &StorageClass) -> Result<(), StoreError> {
        if key.contains("/chunks/") {
            self.gate.acquire().await.expect("gate open").forget();
        }
        self.inner.put(key, body, class).await
    }
    async fn get(&self, key: &str, range: Option<ByteRange>) -> Result<Bytes, StoreError> {
        self.inner.get(key, range).await
    }
    async fn head(&self, key: &str) -> Result<ObjectMeta, StoreError> {
        self.inner.head(key).await
    }
    async fn list_page(
        &self,
        prefix: &str,
        continuation: Option<String>,
    ) -> Result<ListPage, StoreError> {
        self.inner.list_page(prefix, continuation).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
    async fn copy_to_storage_class(
        &self,
        key: &str,
        class: &StorageClass,
    ) -> Result<(), StoreError> {
        self.inner.copy_to_storage_class(key, class).await
    }
    async fn restore(&self, key: &str, tier: RestoreTier, days: u32) -> Result<(), StoreError> {
        self.inner.restore(key, tier, days).await
    }
    async fn create_multipart(
        &self,
        key: &str,
        class: &StorageClass,
    ) -> Result<String, StoreError> {
        self.inner.create_multipart(key, class).await
    }
    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part: u32,
        body: Bytes,
    ) -> Result<CompletedPart, StoreError> {
        self.inner.upload_part(key, upload_id, part, body).await
    }
    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<(), StoreError> {
        self.inner.complete_multipart(key, upload_id, parts).await
    }
    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        self.inner.abort_multipart(key, upload_id).await
    }
}

/// When uploads cannot keep up, `submit` waits instead of buffering
/// without bound or dropping data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploader_applies_back_pressure() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let backend: Arc<dyn ObjectStore> = Arc::new(GatedStore {
        inner: local_store(dir.path(), Duration::ZERO),
        gate: gate.clone(),
    });
    let metrics = CloudMetrics::register(&prometheus::Registry::new()).unwrap();
    let store = CloudStore::new(
        backend,
        RetryPolicy::default(),
        gateway::cloud::ScheduleHandle::new(Default::default()),
        metrics,
    );
    let shared: Arc<dyn ObjectStore> = Arc::new(store.clone());
    let keyring = Arc::new(Keyring::new(
        shared,
        BucketLayout::new("bp").unwrap(),
        MasterKey::generate(),
        1,
    ));
    let config = UploaderConfig {
        max_queued_bytes: 3 << 20,
        ..UploaderConfig::default()
    };
    let (uploader, mut completions) = Uploader::start(&config, store.clone(), keyring).expect("encoder threads");
    let namespace = Namespace::new("vol-1").unwrap();
    let job = |i: u64| UploadJob {
        namespace: namespace.clone(),
        chunk_index: i,
        generation: 0,
        data: Bytes::from(random_bytes(30 + i, 1 << 20)),
    };

    for i in 0..3 {
        uploader.submit(job(i)).await.unwrap();
    }
    assert_eq!(store.metrics().queued_bytes.get(), 3 << 20);
    let fourth = tokio::time::timeout(Duration::from_millis(500), uploader.submit(job(3))).await;
    assert!(fourth.is_err(), "submit must wait while 3 MiB are queued");

    gate.add_permits(100);
    uploader.submit(job(3)).await.unwrap();
    for _ in 0..4 {
        completions.recv().await.unwrap().result.unwrap();
    }
    assert_eq!(store.metrics().queued_bytes.get(), 0);
    assert_eq!(store.metrics().chunks_uploaded.get(), 4);
    uploader.close().await;
}

/// Garbage collection claims objects before deleting them: content that
/// hashes to a claimed object is neither deduplicated against it nor PUT
/// until the claim ends, so a PUT never races the DELETE of its key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_of_content_claimed_for_deletion_wait_for_the_delete() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = CloudMetrics::register(&prometheus::Registry::new()).unwrap();
    let store = CloudStore::new(
        local_store(dir.path(), Duration::ZERO),
        RetryPolicy::default(),
        gateway::cloud::ScheduleHandle::new(Default::default()),
        metrics,
    );
    let shared: Arc<dyn ObjectStore> = Arc::new(store.clone());
    let layout = BucketLayout::new("gc").unwrap();
    let keyring = Arc::new(Keyring::new(shared, layout.clone(), MasterKey::generate(), 1));
    let (uploader, mut completions) =
        Uploader::start(&UploaderConfig::default(), store.clone(), keyring).expect("encoder threads");
    let namespace = Namespace::new("vol-1").unwrap();
    let data = Bytes::from(random_bytes(77, 1 << 20));
    let job = |generation: u64| UploadJob { namespace: namespace.clone(), chunk_index: 0, generation, data: data.clone() };
    uploader.submit(job(1)).await.unwrap();
    let Ok(StoredChunk::Object { id, deduplicated: false, .. }) = completions.recv().await.unwrap().result else {
        panic!("first upload stores the object");
    };
    let key = layout.chunk_key(&namespace, &id);

    let claim = uploader.claim_for_delete(&namespace, &[id]);
    assert_eq!(claim.ids(), &[id]);
    uploader.submit(job(2)).await.unwrap();
    let early = tokio::time::timeout(Duration::from_millis(500), completions.recv()).await;
    assert!(early.is_err(), "the upload must wait while its object is being deleted");
    store.delete(&key).await.unwrap();
    drop(claim);
    let done = tokio::time::timeout(Duration::from_secs(30), completions.recv()).await.expect("upload after the claim");
    assert_eq!(done.unwrap().generation, 2);
    // Not deduplicated against the deleted object: stored again.
    store.head(&key).await.expect("the object exists again after the delete");
    uploader.close().await;
}

/// `sgw inspect` as the CLI will call it: a store directory, a prefix and
/// a key file; a wrong key file makes every chunk fail, nothing printed
/// but the verdicts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_command_reads_a_directory_without_a_gateway() {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        inspect: InspectArgs,
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("objects");
    let master = MasterKey::generate();
    let config = CloudConfig {
        store: StoreConfig::Local(LocalStoreConfig {
            root: root.clone(),
            restore_delay_secs: 0,
        }),
        prefix: "gw".into(),
        retry: Default::default(),
        bandwidth: Default::default(),
        uploader: Default::default(),
        zstd_level: 1,
    };
    let (layer, mut completions) =
        CloudLayer::start(&config, master.clone(), &prometheus::Registry::new())
            .await
            .unwrap();
    let namespace = Namespace::new("vol-9").unwrap();
    for i in 0..3 {
        let data = Bytes::from(text_bytes(40 + i, 100_000));
        layer
            .uploader
            .submit(UploadJob {
                namespace: namespace.clone(),
                chunk_index: i,
                generation: 0,
                data,
            })
            .await
            .unwrap();
    }
    for _ in 0..3 {
        completions.recv().await.unwrap().result.unwrap();
    }
    layer.uploader.close().await;

    let good_key = dir.path().join("recovery.key");
    std::fs::write(&good_key, master.to_recovery_text()).unwrap();
    let bad_key = dir.path().join("other.key");
    std::fs::write(&bad_key, MasterKey::generate().to_recovery_text()).unwrap();
    let run = |key: &std::path::Path| {
        let argv = [
            "inspect",
            "--dir",
            root.to_str().unwrap(),
            "--prefix",
            "gw",
            "--master-key-file",
            key.to_str().unwrap(),
        ];
        <Cli as clap::Parser>::try_parse_from(argv).unwrap().inspect
    };

    let mut out = Vec::new();
    let summary = run(&good_key).run(&mut out).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!((summary.verified, summary.failed), (5, 0), "{text}");
    assert_eq!(summary.plain_bytes, 300_000);
    assert_eq!(
        text.lines().filter(|l| l.starts_with("OK ")).count(),
        5,
        "{text}"
    );

    let mut out = Vec::new();
    let summary = run(&bad_key).run(&mut out).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!((summary.verified, summary.failed), (1, 4), "{text}");
    assert!(!text.contains("2026-11-"), "no plaintext in the report");

    assert!(
        <Cli as clap::Parser>::try_parse_from(["inspect", "--prefix", "gw"]).is_err(),
        "a store is required"
    );
}
