//! The local console's two checks: the machine's resources against what
//! the gateway needs, and the path to the configured S3 endpoint, step by
//! step (DNS, TCP, TLS, then auth and the bucket).

use std::net::ToSocketAddrs;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::cloud::store::probe::{probe_s3, ProbeCause};
use crate::cloud::store::StoreConfig;
use crate::config::Config;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
    /// Not run: an earlier step failed, or it does not apply.
    Skipped,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Ok => "OK",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
            Verdict::Skipped => "--",
        }
    }
}

/// One line of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub what: String,
    pub verdict: Verdict,
    pub detail: String,
}

fn finding(what: &str, verdict: Verdict, detail: impl Into<String>) -> Finding {
    Finding { what: what.to_string(), verdict, detail: detail.into() }
}

/// What the resource check looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resources {
    pub cpus: usize,
    pub memory_bytes: u64,
    /// Free and total bytes of the data directory's filesystem.
    pub data_fs: Option<(u64, u64)>,
    pub cache: CacheDisk,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheDisk {
    /// A block device of this many bytes, for a cache of `wanted`.
    Device { path: String, bytes: u64, wanted: u64 },
    /// A file on the system disk (a lab setup).
    File { path: String },
    /// The configured device is not there.
    Missing { path: String },
}

impl Resources {
    /// The machine, and the gateway's configuration.
    pub fn measure(config: &Config) -> Resources {
        use std::os::unix::fs::FileTypeExt;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let memory_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                let kib = m.lines().find_map(|l| l.strip_prefix("MemTotal:"))?.trim().trim_end_matches("kB").trim().parse::<u64>().ok()?;
                Some(kib * 1024)
            })
            .unwrap_or(0);
        let data_fs = crate::files::free_space(nearest(&config.data_dir));
        let disk = config.cache_disk();
        let path = disk.display().to_string();
        let cache = match std::fs::metadata(&disk) {
            Ok(m) if m.file_type().is_block_device() => {
                let bytes = std::fs::File::open(&disk)
                    .and_then(|mut f| std::io::Seek::seek(&mut f, std::io::SeekFrom::End(0)))
                    .unwrap_or(0);
                CacheDisk::Device { path, bytes, wanted: config.cache_size }
            }
            Err(_) if disk.starts_with("/dev") => CacheDisk::Missing { path },
            _ => CacheDisk::File { path },
        };
        Resources { cpus, memory_bytes, data_fs, cache }
    }

    /// OK, WARN or FAIL for each resource, with the reason.
    pub fn assess(&self) -> Vec<Finding> {
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        let mut out = Vec::new();
        out.push(match self.cpus {
            0 | 1 => finding("CPU", Verdict::Warn, "1 vCPU: uploads and iSCSI share it; give the VM 2 or more"),
            n => finding("CPU", Verdict::Ok, format!("{n} vCPUs")),
        });
        let mem = self.memory_bytes;
        out.push(if mem < 1 << 30 {
            finding("Memory", Verdict::Fail, format!("{:.1} GiB: the gateway needs 1 GiB at least, 2 GiB or more to run well", gib(mem)))
        } else if mem < 2 << 30 {
            finding("Memory", Verdict::Warn, format!("{:.1} GiB: enough for a lab; give 2 GiB or more for production", gib(mem)))
        } else {
            finding("Memory", Verdict::Ok, format!("{:.1} GiB", gib(mem)))
        });
        out.push(match self.data_fs {
            None => finding("System disk", Verdict::Fail, "cannot read the data directory's free space"),
            Some((free, total)) if free < total / 20 => {
                finding("System disk", Verdict::Fail, format!("{:.1} GiB free of {:.1}: under 5%, the gateway refuses to grow its files", gib(free), gib(total)))
            }
            Some((free, total)) if free < total / 7 => {
                finding("System disk", Verdict::Warn, format!("{:.1} GiB free of {:.1}: under 15%", gib(free), gib(total)))
            }
            Some((free, total)) => finding("System disk", Verdict::Ok, format!("{:.1} GiB free of {:.1}", gib(free), gib(total))),
        });
        out.push(match &self.cache {
            CacheDisk::Device { path, bytes, wanted } if bytes < wanted => finding(
                "Cache disk",
                Verdict::Fail,
                format!("{path} holds {:.1} GiB, less than the {:.1} GiB cache configured", gib(*bytes), gib(*wanted)),
            ),
            CacheDisk::Device { path, bytes, .. } => finding("Cache disk", Verdict::Ok, format!("{path}, {:.1} GiB", gib(*bytes))),
            CacheDisk::File { path } => finding(
                "Cache disk",
                Verdict::Warn,
                format!("a file on the system disk ({path}): a lab setup; attach a virtual disk for the cache"),
            ),
            CacheDisk::Missing { path } => finding("Cache disk", Verdict::Fail, format!("{path} is configured but not attached")),
        });
        out
    }
}

fn nearest(dir: &Path) -> &Path {
    dir.ancestors().find(|p| p.exists()).unwrap_or(Path::new("/"))
}

/// The connectivity test to the configured store: each step's result.
pub fn connectivity(config: &Config) -> Vec<Finding> {
    let cloud = config.cloud();
    let StoreConfig::S3(s3) = &cloud.store else {
        return vec![finding("Store", Verdict::Ok, "the embedded store on this machine: no network needed")];
    };
    let endpoint = s3.endpoint.clone().unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", s3.region));
    let (tls, rest) = match endpoint.split_once("://") {
        Some(("https", rest)) => (true, rest),
        Some(("http", rest)) => (false, rest),
        _ => return vec![finding("Endpoint", Verdict::Fail, format!("{endpoint} is not an http(s) URL"))],
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    let host_port = if authority.rsplit_once(':').is_some_and(|(h, p)| !h.ends_with(':') && p.parse::<u16>().is_ok()) {
        authority.to_string()
    } else {
        format!("{authority}:{}", if tls { 443 } else { 80 })
    };
    let mut out = Vec::new();
    let proxied = ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"].iter().find_map(|k| std::env::var(k).ok());
    if let Some(p) = &proxied {
        out.push(finding("Proxy", Verdict::Ok, format!("through {p}: DNS and TCP are the proxy's")));
    }
    let t = Instant::now();
    let addrs: Vec<std::net::SocketAddr> = match host_port.to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => {
            out.push(finding("DNS", Verdict::Fail, format!("{authority}: {e}")));
            return skip_rest(out, &["TCP", "TLS", "Auth and bucket"]);
        }
    };
    let shown: Vec<String> = addrs.iter().take(3).map(|a| a.ip().to_string()).collect();
    out.push(finding("DNS", Verdict::Ok, format!("{authority} is {} ({} ms)", shown.join(", "), t.elapsed().as_millis())));
    if proxied.is_none() {
        let t = Instant::now();
        let connected = addrs.iter().find_map(|a| std::net::TcpStream::connect_timeout(a, Duration::from_secs(5)).ok());
        match connected {
            Some(s) => out.push(finding(
                "TCP",
                Verdict::Ok,
                format!("connected to {} ({} ms)", s.peer_addr().map_or(host_port.clone(), |a| a.to_string()), t.elapsed().as_millis()),
            )),
            None => {
                out.push(finding("TCP", Verdict::Fail, format!("nothing answers at {host_port} within 5 s (a firewall, or the wrong port?)")));
                return skip_rest(out, &["TLS", "Auth and bucket"]);
            }
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            out.push(finding("Auth and bucket", Verdict::Fail, format!("cannot start the probe: {e}")));
            return out;
        }
    };
    let limit = Duration::from_secs(s3.connect_timeout_secs.max(1) * 3 + 10);
    let probe = runtime.block_on(async { tokio::time::timeout(limit, probe_s3(s3, &cloud.prefix)).await });
    let tls_step = |ok: bool, detail: String| {
        if tls {
            finding("TLS", if ok { Verdict::Ok } else { Verdict::Fail }, detail)
        } else {
            finding("TLS", Verdict::Skipped, "plain http: no TLS")
        }
    };
    match probe {
        Ok(Ok(())) => {
            out.push(tls_step(true, "the certificate is trusted".into()));
            out.push(finding("Auth and bucket", Verdict::Ok, format!("HEAD, PUT, GET and DELETE in bucket {} succeeded", s3.bucket)));
        }
        Ok(Err(f)) if f.cause == ProbeCause::Tls => {
            out.push(tls_step(false, f.to_string()));
            out = skip_rest(out, &["Auth and bucket"]);
        }
        Ok(Err(f)) if matches!(f.cause, ProbeCause::Connection | ProbeCause::Timeout | ProbeCause::Dns) => {
            out.push(tls_step(false, "not reached".into()));
            out.push(finding("Auth and bucket", Verdict::Fail, f.to_string()));
        }
        Ok(Err(f)) => {
            out.push(tls_step(true, "the certificate is trusted".into()));
            out.push(finding("Auth and bucket", Verdict::Fail, f.to_string()));
        }
        Err(_) => {
            out.push(tls_step(false, "not reached".into()));
            out.push(finding("Auth and bucket", Verdict::Fail, format!("no answer within {} s", limit.as_secs())));
        }
    }
    out
}

fn skip_rest(mut out: Vec<Finding>, steps: &[&str]) -> Vec<Finding> {
    out.extend(steps.iter().map(|s| finding(s, Verdict::Skipped, "not run")));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_are_judged_with_reasons() {
        let r = Resources {
            cpus: 1,
            memory_bytes: 512 << 20,
            data_fs: Some((1 << 30, 40 << 30)),
            cache: CacheDisk::File { path: "/var/lib/sgw/cache/disk0.img".into() },
        };
        let v: Vec<_> = r.assess().into_iter().map(|f| (f.what, f.verdict)).collect();
        assert_eq!(
            v,
            [
                ("CPU".to_string(), Verdict::Warn),
                ("Memory".to_string(), Verdict::Fail),
                ("System disk".to_string(), Verdict::Fail),
                ("Cache disk".to_string(), Verdict::Warn)
            ]
        );
        let r = Resources {
            cpus: 4,
            memory_bytes: 8 << 30,
            data_fs: Some((30 << 30, 40 << 30)),
            cache: CacheDisk::Device { path: "/dev/vdb".into(), bytes: 100 << 30, wanted: 100 << 30 },
        };
        assert!(r.assess().iter().all(|f| f.verdict == Verdict::Ok), "{:?}", r.assess());
        let small = Resources { cache: CacheDisk::Device { path: "/dev/vdb".into(), bytes: 1 << 30, wanted: 2 << 30 }, ..r };
        let f = small.assess().pop().unwrap();
        assert_eq!(f.verdict, Verdict::Fail);
        assert!(f.detail.contains("less than"), "{f:?}");
    }

    #[test]
    fn the_embedded_store_needs_no_network() {
        let f = connectivity(&Config::default());
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].verdict, Verdict::Ok);
    }
}
