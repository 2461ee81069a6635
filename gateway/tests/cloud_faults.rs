//! Faults between the gateway and S3: a loopback proxy in front of moto
//! answers some requests itself with 500 InternalError or 503 SlowDown,
//! resets connections (before or after forwarding the request) and stalls
//! others past the attempt timeout. Every chunk must still end up stored
//! exactly once and read back verified, with the retries in the metrics.

mod cloud_support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cloud_support::*;
use gateway::cloud::store::{list_all, S3Config};
use gateway::cloud::uploader::StoredChunk;
use gateway::cloud::{
    BucketLayout, CloudConfig, CloudLayer, MasterKey, Namespace, RetryPolicy, StoreConfig,
    UploadJob, UploaderConfig,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default, Debug)]
struct Injected {
    internal_errors: AtomicU64,
    slow_downs: AtomicU64,
    resets_before: AtomicU64,
    resets_after: AtomicU64,
    stalls: AtomicU64,
    forwarded: AtomicU64,
}

struct Proxy {
    upstream_port: u16,
    requests: AtomicU64,
    rng: Mutex<StdRng>,
    injected: Injected,
    stall: Duration,
}

enum Fault {
    InternalError,
    SlowDown,
    ResetBefore,
    ResetAfter,
    Stall,
    None,
}

impl Proxy {
    /// The first five requests get one fault of each kind, so that every
    /// kind is exercised whatever the random draw; then faults are random.
    fn pick(&self) -> Fault {
        let roll: f64 = match self.requests.fetch_add(1, Ordering::Relaxed) {
            n @ 0..=4 => [0.0, 0.1, 0.15, 0.2, 0.23][n as usize],
            _ => self.rng.lock().unwrap().gen(),
        };
        match roll {
            r if r < 0.07 => Fault::InternalError,
            r if r < 0.14 => Fault::SlowDown,
            r if r < 0.18 => Fault::ResetBefore,
            r if r < 0.22 => Fault::ResetAfter,
            r if r < 0.25 => Fault::Stall,
            _ => Fault::None,
        }
    }
}

/// Reads one HTTP request: its head (without the final blank line) and body.
async fn read_request(client: &mut TcpStream) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let mut chunk = [0u8; 8192];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let content_length = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse::<usize>().ok())
        .unwrap_or(0);
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "proxy handles sized bodies only"
    );
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < content_length {
        let mut chunk = vec![0u8; 65536];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(Some((head, body)))
}

/// The head with `Connection: close` and without `Expect`, so each
/// connection carries exactly one exchange.
fn one_shot(head: &str) -> String {
    let mut lines = head.split("\r\n");
    let mut out = lines.next().unwrap_or_default().to_owned();
    out.push_str("\r\nConnection: close");
    for line in lines {
        let name = line
            .split(':')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if name != "connection" && name != "expect" && name != "keep-alive" {
            out.push_str("\r\n");
            out.push_str(line);
        }
    }
    out.push_str("\r\n\r\n");
    out
}

async fn error_response(client: &mut TcpStream, status: &str, code: &str) -> std::io::Result<()> {
    let body = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>injected by the test proxy</Message></Error>");
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    client.write_all(response.as_bytes()).await?;
    client.shutdown().await
}

async fn forward(
    proxy: &Proxy,
    client: &mut TcpStream,
    head: &str,
    body: &[u8],
    reset_after: bool,
) -> std::io::Result<()> {
    let mut upstream = TcpStream::connect(("127.0.0.1", proxy.upstream_port)).await?;
    upstream.write_all(one_shot(head).as_bytes()).await?;
    upstream.write_all(body).await?;
    let mut response = Vec::new();
    upstream.read_to_end(&mut response).await?;
    if reset_after {
        // The request took effect upstream but the answer is lost: the
        // client must retry, and a content-addressed PUT makes that safe.
        client.set_zero_linger()?;
        return Ok(());
    }
    let head_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(response.len());
    let head = String::from_utf8_lossy(&response[..head_end]).into_owned();
    client.write_all(one_shot(&head).as_bytes()).await?;
    client
        .write_all(response.get(head_end + 4..).unwrap_or_default())
        .await?;
    client.shutdown().await
}

async fn serve(proxy: Arc<Proxy>, mut client: TcpStream) -> std::io::Result<()> {
    let Some((head, body)) = read_request(&mut client).await? else {
        return Ok(());
    };
    let counters = &proxy.injected;
    match proxy.pick() {
        Fault::InternalError => {
            counters.internal_errors.fetch_add(1, Ordering::Relaxed);
            error_response(&mut client, "500 Internal Server Error", "InternalError").await
        }
        Fault::SlowDown => {
            counters.slow_downs.fetch_add(1, Ordering::Relaxed);
            error_response(&mut client, "503 Slow Down", "SlowDown").await
        }
        Fault::ResetBefore => {
            counters.resets_before.fetch_add(1, Ordering::Relaxed);
            client.set_zero_linger()
        }
        Fault::ResetAfter => {
            counters.resets_after.fetch_add(1, Ordering::Relaxed);
            forward(&proxy, &mut client, &head, &body, true).await
        }
        Fault::Stall => {
            counters.stalls.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(proxy.stall).await;
            Ok(())
        }
        Fault::None => {
            counters.forwarded.fetch_add(1, Ordering::Relaxed);
            forward(&proxy, &mut client, &head, &body, false).await
        }
    }
}

async fn start_proxy(upstream_port: u16) -> (Arc<Proxy>, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let proxy = Arc::new(Proxy {
        upstream_port,
        requests: AtomicU64::new(0),
        rng: Mutex::new(StdRng::seed_from_u64(4)),
        injected: Injected::default(),
        stall: Duration::from_secs(3),
    });
    let serving = proxy.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let proxy = serving.clone();
            tokio::spawn(async move {
                let _ = serve(proxy, client).await;
            });
        }
    });
    (proxy, endpoint)
}

fn chunk_data(i: usize, previous: Option<&Vec<u8>>) -> Vec<u8> {
    match (i % 5, i % 7, i % 3, previous) {
        (0, _, _, Some(previous)) => previous.clone(),
        (_, 0, _, _) => vec![0u8; 256 * 1024],
        (_, _, 0, _) => text_bytes(i as u64, 256 * 1024),
        _ => random_bytes(i as u64, 256 * 1024),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_chunk_stored_once_through_injected_faults() {
    let Some(moto) = start_moto().await else {
        return;
    };
    let started = Instant::now();
    let (proxy, proxy_endpoint) = start_proxy(moto.port).await;
    let config = CloudConfig {
        store: StoreConfig::S3(S3Config::with_endpoint(
            BUCKET,
            &proxy_endpoint,
            "testing",
            "testing",
        )),
        prefix: "faults".into(),
        retry: RetryPolicy {
            max_attempts: 12,
            base_delay_ms: 10,
            max_delay_ms: 200,
            attempt_timeout_ms: 1000,
        },
        bandwidth: Default::default(),
        uploader: UploaderConfig {
            upload_concurrency: 8,
            ..UploaderConfig::default()
        },
        zstd_level: 1,
    };
    let registry = prometheus::Registry::new();
    let master = MasterKey::generate();
    let (layer, mut completions) = CloudLayer::start(&config, master, &registry).await.unwrap();
    let namespace = Namespace::new("vol-faults").unwrap();

    let mut chunks: Vec<Vec<u8>> = Vec::new();
    for i in 0..48 {
        let data = chunk_data(i, chunks.last());
        chunks.push(data);
    }
    for (index, data) in chunks.iter().enumerate() {
        let job = UploadJob {
            namespace: namespace.clone(),
            chunk_index: index as u64,
            generation: 7,
            data: Bytes::from(data.clone()),
        };
        layer.uploader.submit(job).await.unwrap();
    }
    let mut stored = HashMap::new();
    for _ in 0..chunks.len() {
        let completion = completions.recv().await.unwrap();
        let result = completion
            .result
            .unwrap_or_else(|e| panic!("chunk {} failed: {e}", completion.chunk_index));
        stored.insert(completion.chunk_index as usize, result);
    }

    // Read back through the faulty proxy; every byte verified.
    let mut ids = HashSet::new();
    for (index, data) in chunks.iter().enumerate() {
        match &stored[&index] {
            StoredChunk::Zero => assert!(data.iter().all(|b| *b == 0)),
            StoredChunk::Object { id, .. } => {
                ids.insert(*id);
                assert_eq!(
                    layer.reader.read_chunk(&namespace, id).await.unwrap(),
                    &data[..],
                    "chunk {index}"
                );
            }
        }
    }

    // Straight from moto: one object per distinct chunk, nothing else.
    let direct = s3_store(&moto.endpoint).await;
    let layout = BucketLayout::new("faults").unwrap();
    let listed: Vec<String> = list_all(direct.as_ref(), &layout.chunks_prefix(&namespace))
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    let expected: HashSet<String> = ids
        .iter()
        .map(|id| layout.chunk_key(&namespace, id))
        .collect();
    assert_eq!(listed.len(), expected.len());
    assert_eq!(listed.into_iter().collect::<HashSet<_>>(), expected);

    let metrics = layer.store.metrics();
    let injected = &proxy.injected;
    eprintln!(
        "faults: {:?}; retries {}; {} chunks uploaded, {} deduplicated, {} zero; {:.1} s",
        injected,
        metrics.total_retries(),
        metrics.chunks_uploaded.get(),
        metrics.chunks_deduplicated.get(),
        metrics.zero_chunks.get(),
        started.elapsed().as_secs_f64()
    );
    for (name, count) in [
        ("500", &injected.internal_errors),
        ("SlowDown", &injected.slow_downs),
        ("reset before", &injected.resets_before),
        ("reset after", &injected.resets_after),
        ("stall", &injected.stalls),
    ] {
        assert!(count.load(Ordering::Relaxed) > 0, "no {name} was injected");
    }
    assert!(metrics.total_retries() >= injected.internal_errors.load(Ordering::Relaxed));
    assert_eq!(metrics.chunks_uploaded.get() as usize, ids.len());
    let zero_jobs = chunks.iter().filter(|c| c.iter().all(|b| *b == 0)).count();
    assert_eq!(metrics.zero_chunks.get() as usize, zero_jobs);
    assert_eq!(
        (metrics.chunks_deduplicated.get() + metrics.chunks_uploaded.get()) as usize,
        chunks.len() - zero_jobs
    );
    assert_eq!(
        metrics
            .errors
            .with_label_values(&["put", "transient"])
            .get(),
        0
    );
    layer.uploader.close().await;
}
