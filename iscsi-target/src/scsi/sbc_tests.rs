//! Disk behaviour without a socket: commands go through
//! [`LogicalUnit::execute`] against an in-memory block device.

use std::io;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;

use super::*;
use crate::scsi::block::FileBlockDevice;
use crate::scsi::sense::SenseKey;
use crate::scsi::spc::testutil::{nexus, request};

/// A block device in memory that tracks which blocks are mapped.
struct MemDisk {
    bs: u32,
    blocks: u64,
    data: Mutex<Vec<u8>>,
    mapped: Mutex<Vec<bool>>,
    /// Reads and writes fail with this.
    fail: Option<io::ErrorKind>,
}

impl MemDisk {
    /// Eight blocks whose reads and writes fail with `kind`.
    fn failing(kind: io::ErrorKind) -> Arc<MemDisk> {
        Arc::new(MemDisk { fail: Some(kind), ..Arc::try_unwrap(MemDisk::new(8)).ok().unwrap() })
    }

    fn new(blocks: u64) -> Arc<MemDisk> {
        Arc::new(MemDisk {
            bs: 512,
            blocks,
            data: Mutex::new(vec![0; blocks as usize * 512]),
            mapped: Mutex::new(vec![false; blocks as usize]),
            fail: None,
        })
    }
}

#[async_trait]
impl BlockDevice for MemDisk {
    fn block_size(&self) -> u32 {
        self.bs
    }
    fn num_blocks(&self) -> u64 {
        self.blocks
    }
    async fn read(&self, lba: Lba, count: BlockCount) -> io::Result<Bytes> {
        if let Some(kind) = self.fail {
            return Err(io::Error::new(kind, "broken"));
        }
        let d = self.data.lock().unwrap();
        Ok(Bytes::copy_from_slice(&d[lba.0 as usize * 512..(lba.0 + count.0) as usize * 512]))
    }
    async fn write(&self, lba: Lba, data: Bytes, _fua: bool) -> io::Result<()> {
        if let Some(kind) = self.fail {
            return Err(io::Error::new(kind, "broken"));
        }
        let start = lba.0 as usize * 512;
        self.data.lock().unwrap()[start..start + data.len()].copy_from_slice(&data);
        for b in lba.0..lba.0 + data.len() as u64 / 512 {
            self.mapped.lock().unwrap()[b as usize] = true;
        }
        Ok(())
    }
    async fn flush(&self) -> io::Result<()> {
        Ok(())
    }
    async fn unmap(&self, lba: Lba, count: BlockCount) -> io::Result<()> {
        let start = lba.0 as usize * 512;
        self.data.lock().unwrap()[start..start + count.0 as usize * 512].fill(0);
        for b in lba.0..lba.0 + count.0 {
            self.mapped.lock().unwrap()[b as usize] = false;
        }
        Ok(())
    }
    async fn provisioning(&self, lba: Lba, max: BlockCount) -> io::Result<(Provisioning, BlockCount)> {
        let m = self.mapped.lock().unwrap();
        let first = m[lba.0 as usize];
        let run = m[lba.0 as usize..(lba.0 + max.0) as usize].iter().take_while(|&&x| x == first).count();
        Ok((if first { Provisioning::Mapped } else { Provisioning::Deallocated }, BlockCount(run as u64)))
    }
}

fn identity() -> DeviceIdentity {
    DeviceIdentity {
        vendor: "SGW".into(),
        product: "Volume".into(),
        revision: "0001".into(),
        serial: "vol-0001".into(),
        naa_id: 0x1234_5678_9ABC_DEF0,
        write_protected: false,
        removable: false,
    }
}

fn disk(blocks: u64) -> (DiskUnit, Arc<MemDisk>) {
    let mem = MemDisk::new(blocks);
    (DiskUnit::new(mem.clone(), identity()), mem)
}

/// Run a command, clearing the POWER ON RESET unit attention first.
async fn run(unit: &DiskUnit, n: &Arc<ItNexus>, cdb: &[u8], out: &[u8]) -> ScsiResponse {
    unit.execute(request(n, cdb, out)).await
}

async fn ready(unit: &DiskUnit, n: &Arc<ItNexus>) {
    let r = run(unit, n, &[0, 0, 0, 0, 0, 0], &[]).await;
    assert_eq!(r.sense, Some(Sense::POWER_ON_RESET));
    assert_eq!(run(unit, n, &[0, 0, 0, 0, 0, 0], &[]).await.status, ScsiStatus::Good);
}

fn cdb16(op: u8, lba: u64, count: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = op;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&count.to_be_bytes());
    c
}

fn cdb10(op: u8, lba: u32, count: u16) -> [u8; 10] {
    let mut c = [0u8; 10];
    c[0] = op;
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[7..9].copy_from_slice(&count.to_be_bytes());
    c
}

fn check(r: &ScsiResponse) -> &Sense {
    assert_eq!(r.status, ScsiStatus::CheckCondition, "{r:?}");
    r.sense.as_ref().unwrap()
}

#[tokio::test]
async fn unit_attention_on_first_command_not_on_inquiry() {
    let (u, _) = disk(64);
    let n = nexus(1);
    let inq = run(&u, &n, &[0x12, 0, 0, 0, 96, 0], &[]).await;
    assert_eq!(inq.status, ScsiStatus::Good);
    assert_eq!(inq.data_in.len(), 96);
    assert_eq!(&inq.data_in[8..11], b"SGW");
    ready(&u, &n).await;
}

#[tokio::test]
async fn write_then_read_back() {
    let (u, _) = disk(64);
    let n = nexus(1);
    ready(&u, &n).await;
    let data = vec![0xA5u8; 1024];
    assert_eq!(run(&u, &n, &cdb10(0x2A, 3, 2), &data).await.status, ScsiStatus::Good);
    let r = run(&u, &n, &cdb16(0x88, 3, 2), &[]).await;
    assert_eq!(r.data_in, data);
    // READ(6) of block 4.
    let r = run(&u, &n, &[0x08, 0, 0, 4, 1, 0], &[]).await;
    assert_eq!(&r.data_in[..], &data[..512]);
}

#[tokio::test]
async fn range_and_length_checks() {
    let (u, _) = disk(64);
    let n = nexus(1);
    ready(&u, &n).await;
    assert_eq!(*check(&run(&u, &n, &cdb10(0x28, 63, 2), &[]).await), Sense::LBA_OUT_OF_RANGE);
    assert_eq!(*check(&run(&u, &n, &cdb10(0x28, 65, 0), &[]).await), Sense::LBA_OUT_OF_RANGE);
    assert_eq!(run(&u, &n, &cdb10(0x28, 0, 0), &[]).await.status, ScsiStatus::Good);
    assert_eq!(*check(&run(&u, &n, &cdb16(0x88, u64::MAX, 1), &[]).await), Sense::LBA_OUT_OF_RANGE);
    let (big, _) = disk(1 << 16);
    ready(&big, &n).await;
    let e = check(&run(&big, &n, &cdb16(0x88, 0, 20000), &[]).await).clone();
    assert_eq!((e.asc, e.field.unwrap().byte), (0x24, 10));
}

#[tokio::test]
async fn short_data_out_writes_the_whole_blocks_sent() {
    let (u, mem) = disk(64);
    let n = nexus(1);
    ready(&u, &n).await;
    let r = run(&u, &n, &cdb10(0x2A, 0, 2), &[1u8; 600]).await;
    assert_eq!(r.status, ScsiStatus::Good);
    assert_eq!(r.data_out_len, Some(1024), "for the transport's residual");
    {
        let d = mem.data.lock().unwrap();
        assert!(d[..512].iter().all(|&b| b == 1));
        assert!(d[512..].iter().all(|&b| b == 0));
    }
    // More data than the CDB asks for: the CDB wins.
    run(&u, &n, &cdb10(0x2A, 4, 1), &[2u8; 1024]).await;
    assert!(mem.data.lock().unwrap()[5 * 512..6 * 512].iter().all(|&b| b == 0));
}

#[tokio::test]
async fn write_protection_from_identity_and_swp() {
    let mem = MemDisk::new(64);
    let u = DiskUnit::new(mem, DeviceIdentity { write_protected: true, ..identity() });
    let n = nexus(1);
    ready(&u, &n).await;
    assert_eq!(*check(&run(&u, &n, &cdb10(0x2A, 0, 1), &[0; 512]).await), Sense::WRITE_PROTECTED);
    let ms = run(&u, &n, &[0x1A, 0, 0x3F, 0, 255, 0], &[]).await;
    assert_eq!(ms.data_in[2] & 0x80, 0x80);

    let (u, _) = disk(64);
    let (a, b) = (nexus(1), nexus(2));
    ready(&u, &a).await;
    ready(&u, &b).await;
    let mut control = run(&u, &a, &[0x1A, 0x08, 0x0A, 0, 255, 0], &[]).await.data_in.to_vec();
    assert_eq!(control[4], 0x0A);
    control[0] = 0;
    control[2] &= 0x7F;
    control[4 + 4] |= 0x08; // SWP
    let r = run(&u, &a, &[0x15, 0x10, 0, 0, control.len() as u8, 0], &control).await;
    assert_eq!(r.status, ScsiStatus::Good, "{r:?}");
    assert_eq!(*check(&run(&u, &a, &cdb10(0x2A, 0, 1), &[0; 512]).await), Sense::WRITE_PROTECTED);
    assert_eq!(*check(&run(&u, &b, &[0, 0, 0, 0, 0, 0], &[]).await), Sense::MODE_PARAMETERS_CHANGED);
    // A bit that is not changeable is refused with a pointer to its byte.
    control[4 + 2] |= 0x04; // D_SENSE
    let r = run(&u, &a, &[0x15, 0x10, 0, 0, control.len() as u8, 0], &control).await;
    let e = check(&r);
    assert_eq!((e.asc, e.field.unwrap().byte), (0x26, 6));
}

#[tokio::test]
async fn mode_sense_page_control_and_block_descriptor() {
    let (u, _) = disk(64);
    let n = nexus(1);
    ready(&u, &n).await;
    let all = run(&u, &n, &[0x1A, 0, 0x3F, 0, 255, 0], &[]).await.data_in;
    assert_eq!(all[0] as usize, all.len() - 1);
    assert_eq!(all[2], 0x10); // DPOFUA, not write protected
    assert_eq!(all[3], 8);
    assert_eq!(&all[4..8], &64u32.to_be_bytes());
    let changeable = run(&u, &n, &[0x1A, 0x08, 0x48, 0, 255, 0], &[]).await.data_in;
    assert_eq!(&changeable[4..7], &[0x08, 0x12, 0x04]);
    assert_eq!(*check(&run(&u, &n, &[0x1A, 0, 0xC8, 0, 255, 0], &[]).await), Sense::SAVING_PARAMETERS_NOT_SUPPORTED);
    assert_eq!(check(&run(&u, &n, &[0x1A, 0, 0x05, 0, 255, 0], &[]).await).asc, 0x24);
    let long = run(&u, &n, &[0x5A, 0x10, 0x08, 0, 0, 0, 0, 1, 0, 0], &[]).await.data_in;
    assert_eq!(long[4] & 1, 1);
    assert_eq!(&long[6..8], &[0, 16]);
    assert_eq!(&long[8..16], &64u64.to_be_bytes());
}

#[tokio::test]
async fn compare_and_write_compares_then_writes() {
    let (u, _) = disk(64);
    let n = nexus(1);
    ready(&u, &n).await;
    let mut caw = [0u8; 16];
    caw[0] = 0x89;
    caw[9] = 5;
    caw[13] = 1;
    let mut buf = vec![0u8; 512];
    buf.extend(vec![7u8; 512]);
    assert_eq!(run(&u, &n, &caw, &buf).await.status, ScsiStatus::Good);
    // Now the block holds 7s: comparing against zeros fails at byte 0.
    let s = check(&run(&u, &n, &caw, &buf).await).clone();
    assert_eq!((s.key, s.asc, s.info), (SenseKey::Miscompare, 0x1D, Some(0)));
    let mut partial = vec![7u8; 512];
    partial[100] = 0;
    partial.extend(vec![9u8; 512]);
    assert_eq!(check(&run(&u, &n, &caw, &partial).await).info, Some(100));
    caw[13] = 0;
    assert_eq!(run(&u, &n, &caw, &[]).await.status, ScsiStatus::Good);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compare_and_write_is_atomic_under_concurrency() {
    let (u, _) = disk(8);
    let u = Arc::new(u);
    let n = nexus(1);
    ready(&u, &n).await;
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (u, n) = (u.clone(), n.clone());
            tokio::spawn(async move {
                for _ in 0..20 {
                    loop {
                        let cur = run(&u, &n, &cdb10(0x28, 0, 1), &[]).await.data_in;
                        let v = u64::from_be_bytes(cur[..8].try_into().unwrap());
                        let mut next = cur.to_vec();
                        next[..8].copy_from_slice(&(v + 1).to_be_bytes());
                        let mut buf = cur.to_vec();
                        buf.extend(next);
                        let mut caw = [0u8; 16];
                        caw[0] = 0x89;
                        caw[13] = 1;
                        if run(&u, &n, &caw, &buf).await.status == ScsiStatus::Good {
                            break;
                        }
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let cur = run(&u, &n, &cdb10(0x28, 0, 1), &[]).await.data_in;
    assert_eq!(u64::from_be_bytes(cur[..8].try_into().unwrap()), 160);
}

#[tokio::test]
async fn verify_byte_check_modes() {
    let (u, _) = disk(64);
    let n = nexus(1);
    ready(&u, &n).await;
    run(&u, &n, &cdb10(0x2A, 0, 2), &[3u8; 1024]).await;
    let mut v = cdb10(0x2F, 0, 2);
    assert_eq!(run(&u, &n, &v, &[]).await.status, ScsiStatus::Good);
    v[1] = 0x02; // BYTCHK 01b
    let mut data = vec![3u8; 1024];
    assert_eq!(run(&u, &n, &v, &data).await.status, ScsiStatus::Good);
    data[700] = 4;
    assert_eq!(check(&run(&u, &n, &v, &data).await).info, Some(700));
    v[1] = 0x06; // BYTCHK 11b: one block against each
    assert_eq!(run(&u, &n, &v, &[3u8; 512]).await.status, ScsiStatus::Good);
}

#[tokio::test]
async fn orwrite_merges() {
    let (u, _) = disk(64);
    let n = nexus(1);
    ready(&u, &n).await;
    run(&u, &n, &cdb10(0x2A, 1, 1), &[0x0Fu8; 512]).await;
    assert_eq!(run(&u, &n, &cdb16(0x8B, 1, 1), &[0xF0u8; 512]).await.status, ScsiStatus::Good);
    assert!(run(&u, &n, &cdb10(0x28, 1, 1), &[]).await.data_in.iter().all(|&b| b == 0xFF));
}

#[tokio::test]
async fn unmap_write_same_and_lba_status_on_a_sparse_file() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Arc::new(FileBlockDevice::open(&dir.path().join("lun"), 1 << 20, 512).unwrap());
    let u = DiskUnit::new(dev, identity());
    let n = nexus(1);
    ready(&u, &n).await;
    run(&u, &n, &cdb10(0x2A, 0, 256), &vec![1u8; 256 * 512]).await;
    let mut status_cdb = cdb16(0x9E, 0, 64);
    status_cdb[1] = 0x12;
    let status = run(&u, &n, &status_cdb, &[]).await;
    assert_eq!(status.data_in[8 + 12], 0, "mapped first");
    // UNMAP blocks 0..128.
    let mut list = vec![0u8; 24];
    list[1] = 22;
    list[3] = 16;
    list[16..20].copy_from_slice(&128u32.to_be_bytes());
    assert_eq!(run(&u, &n, &[0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], &list).await.status, ScsiStatus::Good);
    let status = run(&u, &n, &status_cdb, &[]).await.data_in;
    assert_eq!(&status[8..16], &0u64.to_be_bytes());
    assert_eq!(&status[16..20], &128u32.to_be_bytes());
    assert_eq!(status[20], 1, "deallocated");
    assert!(run(&u, &n, &cdb10(0x28, 0, 128), &[]).await.data_in.iter().all(|&b| b == 0));
    // WRITE SAME(16) with UNMAP and NDOB deallocates the rest.
    let mut ws = cdb16(0x93, 128, 128);
    ws[1] = 0x09;
    assert_eq!(run(&u, &n, &ws, &[]).await.status, ScsiStatus::Good);
    let status = run(&u, &n, &status_cdb, &[]).await.data_in;
    assert_eq!(&status[16..20], &2048u32.to_be_bytes(), "the whole LU is one deallocated run");
    // WRITE SAME(10) without UNMAP writes the pattern.
    assert_eq!(run(&u, &n, &cdb10(0x41, 10, 3), &[6u8; 512]).await.status, ScsiStatus::Good);
    assert!(run(&u, &n, &cdb10(0x28, 10, 3), &[]).await.data_in.iter().all(|&b| b == 6));
    // GET LBA STATUS past the end.
    let mut beyond = cdb16(0x9E, 2048, 64);
    beyond[1] = 0x12;
    assert_eq!(*check(&run(&u, &n, &beyond, &[]).await), Sense::LBA_OUT_OF_RANGE);
}

#[tokio::test]
async fn unmap_parameter_validation() {
    let (u, _) = disk(64);
    let n = nexus(1);
    ready(&u, &n).await;
    assert_eq!(run(&u, &n, &[0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[]).await.status, ScsiStatus::Good);
    assert_eq!(
        *check(&run(&u, &n, &[0x42, 0, 0, 0, 0, 0, 0, 0, 4, 0], &[0; 4]).await),
        Sense::PARAMETER_LIST_LENGTH_ERROR
    );
    let mut list = vec![0u8; 24];
    list[3] = 16;
    list[8..16].copy_from_slice(&60u64.to_be_bytes());
    list[16..20].copy_from_slice(&8u32.to_be_bytes());
    assert_eq!(*check(&run(&u, &n, &[0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], &list).await), Sense::LBA_OUT_OF_RANGE);
    // ANCHOR is not supported.
    assert_eq!(check(&run(&u, &n, &[0x42, 1, 0, 0, 0, 0, 0, 0, 24, 0], &list).await).asc, 0x24);
}

#[tokio::test]
async fn read_capacity_and_vpd() {
    let (u, _) = disk(64);
    let n = nexus(1);
    ready(&u, &n).await;
    let rc10 = run(&u, &n, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[]).await.data_in;
    assert_eq!(&rc10[..], &[0, 0, 0, 63, 0, 0, 2, 0]);
    let mut rc16 = cdb16(0x9E, 0, 32);
    rc16[1] = 0x10;
    let d = run(&u, &n, &rc16, &[]).await.data_in;
    assert_eq!(d.len(), 32);
    assert_eq!(d[14] & 0xC0, 0xC0, "LBPME and LBPRZ");
    let pages = run(&u, &n, &[0x12, 1, 0, 0, 255, 0], &[]).await.data_in;
    assert_eq!(&pages[4..], &[0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2]);
    let id = run(&u, &n, &[0x12, 1, 0x83, 0, 255, 0], &[]).await.data_in;
    assert_eq!(&id[4..8], &[0x01, 0x03, 0x00, 16]);
    assert_eq!(&id[8..24], &identity().naa6());
    assert!(id.windows(13).any(|w| w == b"iqn.test:t,t,"));
    let bl = run(&u, &n, &[0x12, 1, 0xB0, 0, 255, 0], &[]).await.data_in;
    assert_eq!(bl.len(), 64);
    let lbp = run(&u, &n, &[0x12, 1, 0xB2, 0, 255, 0], &[]).await.data_in;
    assert_eq!(lbp[5] & 0xE0, 0xE0);
    assert_eq!(check(&run(&u, &n, &[0x12, 1, 0xC7, 0, 255, 0], &[]).await).field.unwrap().byte, 2);
    let serial = run(&u, &n, &[0x12, 1, 0x80, 0, 255, 0], &[]).await.data_in;
    assert_eq!(&serial[4..], b"vol-0001");
}

#[tokio::test]
async fn read_capacity10_saturates() {
    let mem = Arc::new(MemDisk { blocks: 1 << 33, ..Arc::try_unwrap(MemDisk::new(1)).ok().unwrap() });
    let u = DiskUnit::new(mem, identity());
    let n = nexus(1);
    ready(&u, &n).await;
    let rc10 = run(&u, &n, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[]).await.data_in;
    assert_eq!(&rc10[..4], &[0xFF; 4]);
}

#[tokio::test]
async fn report_luns_and_request_sense() {
    let (u, _) = disk(64);
    let n = nexus(1);
    let luns = run(&u, &n, &[0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0], &[]).await.data_in;
    assert_eq!(&luns[..], &[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let s = run(&u, &n, &[0x03, 0, 0, 0, 18, 0], &[]).await.data_in;
    assert_eq!((s[2], s[12]), (0x06, 0x29), "pending POWER ON RESET");
    let s = run(&u, &n, &[0x03, 1, 0, 0, 18, 0], &[]).await.data_in;
    assert_eq!(&s[..4], &[0x72, 0, 0, 0], "then NO SENSE, descriptor format");
    assert_eq!(run(&u, &n, &[0, 0, 0, 0, 0, 0], &[]).await.status, ScsiStatus::Good);
}

#[tokio::test]
async fn reserve6_blocks_other_nexus() {
    let (u, _) = disk(64);
    let (a, b) = (nexus(1), nexus(2));
    ready(&u, &a).await;
    ready(&u, &b).await;
    assert_eq!(run(&u, &a, &[0x16, 0, 0, 0, 0, 0], &[]).await.status, ScsiStatus::Good);
    assert_eq!(run(&u, &a, &[0x16, 0, 0, 0, 0, 0], &[]).await.status, ScsiStatus::Good);
    assert_eq!(run(&u, &b, &[0x16, 0, 0, 0, 0, 0], &[]).await.status, ScsiStatus::ReservationConflict);
    assert_eq!(run(&u, &b, &[0x17, 0, 0, 0, 0, 0], &[]).await.status, ScsiStatus::Good);
    assert_eq!(run(&u, &b, &[0x1A, 0, 0x3F, 0, 255, 0], &[]).await.status, ScsiStatus::ReservationConflict);
    assert_eq!(run(&u, &b, &cdb10(0x28, 0, 1), &[]).await.status, ScsiStatus::ReservationConflict);
    assert_eq!(run(&u, &b, &[0x12, 0, 0, 0, 36, 0], &[]).await.status, ScsiStatus::Good);
    // The holder's session ends: the reservation goes with it.
    u.nexus_lost(&a);
    assert_eq!(run(&u, &b, &cdb10(0x28, 0, 1), &[]).await.status, ScsiStatus::Good);
}

fn prout(action: u8, kind: u8, key: u64, sa_key: u64) -> ([u8; 10], Vec<u8>) {
    let mut p = vec![0u8; 24];
    p[..8].copy_from_slice(&key.to_be_bytes());
    p[8..16].copy_from_slice(&sa_key.to_be_bytes());
    ([0x5F, action, kind, 0, 0, 0, 0, 0, 24, 0], p)
}

#[tokio::test]
async fn persistent_reservation_through_the_unit() {
    let (u, _) = disk(64);
    let (a, b) = (nexus(1), nexus(2));
    ready(&u, &a).await;
    ready(&u, &b).await;
    let (c, p) = prout(0, 0, 0, 0xA);
    assert_eq!(run(&u, &a, &c, &p).await.status, ScsiStatus::Good);
    let (c, p) = prout(1, 1, 0xA, 0);
    assert_eq!(run(&u, &a, &c, &p).await.status, ScsiStatus::Good);
    assert_eq!(run(&u, &b, &cdb10(0x2A, 0, 1), &[0; 512]).await.status, ScsiStatus::ReservationConflict);
    assert_eq!(run(&u, &b, &cdb10(0x28, 0, 1), &[]).await.status, ScsiStatus::Good);
    let keys = run(&u, &b, &[0x5E, 0, 0, 0, 0, 0, 0, 0, 255, 0], &[]).await.data_in;
    assert_eq!(&keys[4..8], &[0, 0, 0, 8]);
    // RESERVE(6) is refused while persistent reservations exist.
    assert_eq!(run(&u, &b, &[0x16, 0, 0, 0, 0, 0], &[]).await.status, ScsiStatus::ReservationConflict);
    // Invalid PR IN service action.
    assert_eq!(check(&run(&u, &b, &[0x5E, 4, 0, 0, 0, 0, 0, 0, 255, 0], &[]).await).asc, 0x24);
    // B registers and preempts A: A gets REGISTRATIONS PREEMPTED.
    let (c, p) = prout(0, 0, 0, 0xB);
    assert_eq!(run(&u, &b, &c, &p).await.status, ScsiStatus::Good);
    let (c, p) = prout(4, 3, 0xB, 0xA);
    assert_eq!(run(&u, &b, &c, &p).await.status, ScsiStatus::Good);
    assert_eq!(*check(&run(&u, &a, &[0, 0, 0, 0, 0, 0], &[]).await), Sense::REGISTRATIONS_PREEMPTED);
    assert_eq!(run(&u, &a, &cdb10(0x28, 0, 1), &[]).await.status, ScsiStatus::ReservationConflict);
}

#[tokio::test]
async fn lun_reset_sets_unit_attention_for_others() {
    let (u, _) = disk(64);
    let (a, b) = (nexus(1), nexus(2));
    ready(&u, &a).await;
    ready(&u, &b).await;
    u.reset(ResetKind::LogicalUnit, &a);
    assert_eq!(*check(&run(&u, &a, &[0, 0, 0, 0, 0, 0], &[]).await), Sense::BUS_DEVICE_RESET);
    assert_eq!(*check(&run(&u, &b, &[0, 0, 0, 0, 0, 0], &[]).await), Sense::BUS_DEVICE_RESET);
    assert_eq!(run(&u, &b, &[0, 0, 0, 0, 0, 0], &[]).await.status, ScsiStatus::Good);
}

#[tokio::test]
async fn capacity_change_is_announced_to_every_nexus() {
    let (u, _) = disk(64);
    let (a, b) = (nexus(1), nexus(2));
    ready(&u, &a).await;
    ready(&u, &b).await;
    u.capacity_changed();
    assert_eq!(*check(&run(&u, &a, &[0, 0, 0, 0, 0, 0], &[]).await), Sense::CAPACITY_DATA_CHANGED);
    assert_eq!(*check(&run(&u, &b, &[0, 0, 0, 0, 0, 0], &[]).await), Sense::CAPACITY_DATA_CHANGED);
}

#[tokio::test]
async fn report_supported_opcodes_through_the_unit() {
    let (u, _) = disk(64);
    let n = nexus(1);
    ready(&u, &n).await;
    let all = run(&u, &n, &[0xA3, 0x0C, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0], &[]).await.data_in;
    let len = u32::from_be_bytes(all[..4].try_into().unwrap()) as usize;
    assert_eq!(len, all.len() - 4);
    assert_eq!(len % 8, 0);
    let one = run(&u, &n, &[0xA3, 0x0C, 0x82, 0x9E, 0, 0x10, 0, 0, 0xFF, 0xFF, 0, 0], &[]).await.data_in;
    assert_eq!(one[1], 0x83);
}

#[tokio::test]
async fn extended_copy_within_the_unit_and_copy_status() {
    let (u, _) = disk(64);
    let n = nexus(1);
    ready(&u, &n).await;
    run(&u, &n, &cdb10(0x2A, 0, 4), &[0x5Au8; 2048]).await;
    let mut p = vec![0u8; 16 + 32 + 28];
    p[0] = 7; // list id, usage 00b: hold results
    p[3] = 32;
    p[11] = 28;
    let t = &mut p[16..48];
    t[0] = 0xE4;
    t[4] = 0x01;
    t[5] = 0x03;
    t[7] = 16;
    t[8..24].copy_from_slice(&identity().naa6());
    t[29..32].copy_from_slice(&[0, 2, 0]);
    let s = &mut p[48..76];
    s[0] = 0x02;
    s[3] = 0x18;
    s[11] = 4;
    s[27] = 40;
    let mut cdb = [0u8; 16];
    cdb[0] = 0x83;
    cdb[13] = p.len() as u8;
    assert_eq!(run(&u, &n, &cdb, &p).await.status, ScsiStatus::Good);
    assert!(run(&u, &n, &cdb10(0x28, 40, 4), &[]).await.data_in.iter().all(|&b| b == 0x5A));
    let status = run(&u, &n, &[0x84, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0], &[]).await.data_in;
    assert_eq!((status[4], status[6]), (0x01, 1));
    assert_eq!(check(&run(&u, &n, &[0x84, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0], &[]).await).asc, 0x24);
    // A destination index with no target descriptor aborts the copy.
    p[48 + 7] = 1;
    assert_eq!(check(&run(&u, &n, &cdb, &p).await).key, SenseKey::CopyAborted);
    let params = run(&u, &n, &[0x84, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0], &[]).await.data_in;
    assert_eq!(&params[8..10], &[0, 8]);
}

#[tokio::test]
async fn storage_errors_become_medium_errors() {
    let mem = MemDisk::failing(io::ErrorKind::Other);
    let u = DiskUnit::new(mem, identity());
    let n = nexus(1);
    ready(&u, &n).await;
    assert_eq!(check(&run(&u, &n, &cdb10(0x28, 2, 1), &[]).await).key, SenseKey::MediumError);
    let w = run(&u, &n, &cdb10(0x2A, 2, 1), &[0; 512]).await;
    assert_eq!((check(&w).asc, check(&w).info), (0x0C, Some(2)));
}

#[tokio::test]
async fn a_full_device_fails_writes_with_space_allocation_failed() {
    let mem = MemDisk::failing(io::ErrorKind::StorageFull);
    let u = DiskUnit::new(mem, identity());
    let n = nexus(1);
    ready(&u, &n).await;
    let w = run(&u, &n, &cdb10(0x2A, 3, 1), &[0; 512]).await;
    let sense = check(&w);
    assert_eq!((sense.key, sense.asc, sense.ascq, sense.info), (SenseKey::DataProtect, 0x27, 0x07, Some(3)));
}

#[tokio::test]
async fn an_unreachable_backend_aborts_commands_for_a_retry() {
    let mem = MemDisk::failing(io::ErrorKind::TimedOut);
    let u = DiskUnit::new(mem, identity());
    let n = nexus(1);
    ready(&u, &n).await;
    for cdb in [cdb10(0x28, 2, 1), cdb10(0x2A, 2, 1)] {
        let out = if cdb[0] == 0x2A { vec![0; 512] } else { Vec::new() };
        let response = run(&u, &n, &cdb, &out).await;
        let sense = check(&response);
        assert_eq!((sense.key, sense.asc, sense.ascq), (SenseKey::AbortedCommand, 0x08, 0x00), "opcode {:02x}", cdb[0]);
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
    #[test]
    fn random_commands_never_panic(
        cdb in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..17),
        out in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1100),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let (u, _) = disk(16);
            let n = nexus(1);
            let _ = run(&u, &n, &[0, 0, 0, 0, 0, 0], &[]).await;
            let _ = run(&u, &n, &cdb, &out).await;
        });
    }
}

#[tokio::test]
async fn parameter_data_stops_at_allocation_length() {
    let (u, _) = disk(64);
    let n = nexus(1);
    ready(&u, &n).await;
    assert_eq!(run(&u, &n, &[0x1A, 0, 0x3F, 0, 4, 0], &[]).await.data_in.len(), 4);
    assert_eq!(run(&u, &n, &[0x12, 0, 0, 0, 5, 0], &[]).await.data_in.len(), 5);
    let mut rc16 = cdb16(0x9E, 0, 12);
    rc16[1] = 0x10;
    assert_eq!(run(&u, &n, &rc16, &[]).await.data_in.len(), 12);
}

#[tokio::test]
async fn write_atomic_exists_only_with_device_support() {
    let (u, _) = disk(64);
    let n = nexus(1);
    ready(&u, &n).await;
    let mut wa = [0u8; 16];
    wa[0] = 0x9C;
    wa[13] = 1;
    assert_eq!(*check(&run(&u, &n, &wa, &[1; 512]).await), Sense::INVALID_OPCODE);
    let bl = run(&u, &n, &[0x12, 1, 0xB0, 0, 255, 0], &[]).await.data_in;
    assert_eq!(&bl[44..48], &[0; 4], "no atomic transfer length");

    let dir = tempfile::tempdir().unwrap();
    let dev = Arc::new(FileBlockDevice::open(&dir.path().join("lun"), 1 << 20, 512).unwrap());
    let u = DiskUnit::new(dev, identity());
    ready(&u, &n).await;
    wa[13] = 2;
    assert_eq!(run(&u, &n, &wa, &[4; 1024]).await.status, ScsiStatus::Good);
    assert!(run(&u, &n, &cdb10(0x28, 0, 2), &[]).await.data_in.iter().all(|&b| b == 4));
    let bl = run(&u, &n, &[0x12, 1, 0xB0, 0, 255, 0], &[]).await.data_in;
    assert_eq!(&bl[44..48], &2048u32.to_be_bytes());
}

#[tokio::test]
async fn data_out_size_must_match_for_compare_and_write_and_write_same() {
    let (u, _) = disk(64);
    let n = nexus(1);
    ready(&u, &n).await;
    let mut caw = [0u8; 16];
    caw[0] = 0x89;
    caw[13] = 1;
    assert_eq!(check(&run(&u, &n, &caw, &[0; 2048]).await).field.unwrap().byte, 13);
    caw[13] = 0;
    assert_eq!(check(&run(&u, &n, &caw, &[0; 1024]).await).asc, 0x24);
    let mut ws = cdb10(0x41, 0, 1);
    ws[1] = 0x08;
    assert_eq!(check(&run(&u, &n, &ws, &[0; 256]).await).key, SenseKey::IllegalRequest);
    assert_eq!(check(&run(&u, &n, &ws, &[0; 1024]).await).key, SenseKey::IllegalRequest);
    // With UNMAP the blocks are deallocated whatever the pattern.
    run(&u, &n, &cdb10(0x2A, 0, 1), &[0xFF; 512]).await;
    assert_eq!(run(&u, &n, &ws, &[0xFF; 512]).await.status, ScsiStatus::Good);
    assert!(run(&u, &n, &cdb10(0x28, 0, 1), &[]).await.data_in.iter().all(|&b| b == 0));
}

fn removable_disk(blocks: u64) -> DiskUnit {
    DiskUnit::new(MemDisk::new(blocks), DeviceIdentity { removable: true, ..identity() })
}

/// A removable disk that two nexuses have seen ready.
async fn removable_disk_with_two_nexuses() -> (DiskUnit, Arc<ItNexus>, Arc<ItNexus>) {
    let u = removable_disk(64);
    let (a, b) = (nexus(1), nexus(2));
    ready(&u, &a).await;
    ready(&u, &b).await;
    (u, a, b)
}

const EJECT: [u8; 6] = [0x1B, 0, 0, 0, 0x02, 0];
const LOAD: [u8; 6] = [0x1B, 0, 0, 0, 0x03, 0];
const PREVENT: [u8; 6] = [0x1E, 0, 0, 0, 1, 0];
const ALLOW: [u8; 6] = [0x1E, 0, 0, 0, 0, 0];
const TUR: [u8; 6] = [0; 6];

#[tokio::test]
async fn fixed_disk_has_no_medium_to_move() {
    let (u, _) = disk(64);
    let n = nexus(1);
    ready(&u, &n).await;
    let inq = run(&u, &n, &[0x12, 0, 0, 0, 96, 0], &[]).await;
    assert_eq!(inq.data_in[1] & 0x80, 0, "RMB clear");
    assert_eq!(check(&run(&u, &n, &EJECT, &[]).await), &Sense::invalid_cdb_field(4, Some(1)));
    assert_eq!(check(&run(&u, &n, &PREVENT, &[]).await), &Sense::INVALID_OPCODE);
    // Every power condition, the reserved ones included, changes nothing.
    for pc in 0..16u8 {
        let r = run(&u, &n, &[0x1B, 1, 0, 0, pc << 4, 0], &[]).await;
        assert_eq!(r.status, ScsiStatus::Good, "power condition {pc}");
    }
    assert_eq!(run(&u, &n, &TUR, &[]).await.status, ScsiStatus::Good);
}

#[tokio::test]
async fn removable_medium_ejects_and_loads() {
    let u = removable_disk(64);
    let n = nexus(1);
    ready(&u, &n).await;
    let inq = run(&u, &n, &[0x12, 0, 0, 0, 96, 0], &[]).await;
    assert_eq!(inq.data_in[1] & 0x80, 0x80, "RMB set");
    // Stopping and power conditions leave the medium in.
    assert_eq!(run(&u, &n, &[0x1B, 0, 0, 0, 0x00, 0], &[]).await.status, ScsiStatus::Good);
    assert_eq!(run(&u, &n, &[0x1B, 0, 0, 0, 0x32, 0], &[]).await.status, ScsiStatus::Good);
    assert_eq!(run(&u, &n, &TUR, &[]).await.status, ScsiStatus::Good);

    assert_eq!(run(&u, &n, &EJECT, &[]).await.status, ScsiStatus::Good);
    assert_eq!(check(&run(&u, &n, &TUR, &[]).await), &Sense::MEDIUM_NOT_PRESENT);
    assert_eq!(check(&run(&u, &n, &cdb10(0x28, 0, 1), &[]).await), &Sense::MEDIUM_NOT_PRESENT);
    assert_eq!(check(&run(&u, &n, &cdb10(0x2A, 0, 1), &[0; 512]).await), &Sense::MEDIUM_NOT_PRESENT);
    // Checked ahead of the CDB: SYNC_NV is a bit the disk refuses.
    assert_eq!(check(&run(&u, &n, &[0x35, 0x04, 0, 0, 0, 0, 0, 0, 1, 0], &[]).await), &Sense::MEDIUM_NOT_PRESENT);
    assert_eq!(check(&run(&u, &n, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[]).await), &Sense::MEDIUM_NOT_PRESENT);
    // What does not touch the medium still works.
    assert_eq!(run(&u, &n, &[0x12, 0, 0, 0, 96, 0], &[]).await.status, ScsiStatus::Good);
    assert_eq!(run(&u, &n, &[0x1A, 0x08, 0x3F, 0, 255, 0], &[]).await.status, ScsiStatus::Good);
    assert_eq!(run(&u, &n, &EJECT, &[]).await.status, ScsiStatus::Good, "ejecting twice");

    assert_eq!(run(&u, &n, &LOAD, &[]).await.status, ScsiStatus::Good);
    assert_eq!(run(&u, &n, &TUR, &[]).await.status, ScsiStatus::Good, "no unit attention for the loader");
    assert_eq!(run(&u, &n, &cdb10(0x28, 0, 1), &[]).await.status, ScsiStatus::Good);
}

#[tokio::test]
async fn prevent_from_any_nexus_keeps_the_medium_as_it_is() {
    let (u, a, b) = removable_disk_with_two_nexuses().await;
    assert_eq!(run(&u, &a, &PREVENT, &[]).await.status, ScsiStatus::Good);
    assert_eq!(run(&u, &a, &PREVENT, &[]).await.status, ScsiStatus::Good, "preventing twice");
    assert_eq!(check(&run(&u, &a, &EJECT, &[]).await), &Sense::MEDIUM_REMOVAL_PREVENTED);
    assert_eq!(check(&run(&u, &b, &EJECT, &[]).await), &Sense::MEDIUM_REMOVAL_PREVENTED);
    // Another nexus's ALLOW does not lift it.
    assert_eq!(run(&u, &b, &ALLOW, &[]).await.status, ScsiStatus::Good);
    assert_eq!(check(&run(&u, &b, &EJECT, &[]).await), &Sense::MEDIUM_REMOVAL_PREVENTED);
    assert_eq!(run(&u, &a, &TUR, &[]).await.status, ScsiStatus::Good);

    // Nor can a medium that is out be loaded while removal is prevented.
    assert_eq!(run(&u, &a, &ALLOW, &[]).await.status, ScsiStatus::Good);
    assert_eq!(run(&u, &a, &EJECT, &[]).await.status, ScsiStatus::Good);
    assert_eq!(run(&u, &a, &PREVENT, &[]).await.status, ScsiStatus::Good, "prevent with no medium");
    assert_eq!(check(&run(&u, &a, &LOAD, &[]).await), &Sense::MEDIUM_REMOVAL_PREVENTED);
    assert_eq!(run(&u, &a, &ALLOW, &[]).await.status, ScsiStatus::Good);
    assert_eq!(run(&u, &a, &LOAD, &[]).await.status, ScsiStatus::Good);
    assert_eq!(check(&run(&u, &a, &[0x1E, 0, 0, 0, 2, 0], &[]).await), &Sense::invalid_cdb_field(4, Some(1)));
}

#[tokio::test]
async fn resets_and_lost_nexuses_end_prevention() {
    let (u, a, b) = removable_disk_with_two_nexuses().await;
    assert_eq!(run(&u, &a, &PREVENT, &[]).await.status, ScsiStatus::Good);
    u.nexus_lost(&a);
    assert_eq!(run(&u, &b, &EJECT, &[]).await.status, ScsiStatus::Good, "the preventing nexus is gone");
    assert_eq!(run(&u, &b, &LOAD, &[]).await.status, ScsiStatus::Good);

    assert_eq!(run(&u, &b, &PREVENT, &[]).await.status, ScsiStatus::Good);
    u.reset(ResetKind::LogicalUnit, &b);
    assert_eq!(check(&run(&u, &b, &TUR, &[]).await), &Sense::BUS_DEVICE_RESET);
    assert_eq!(run(&u, &b, &TUR, &[]).await.status, ScsiStatus::Good, "a reset leaves the medium in");
    assert_eq!(run(&u, &b, &EJECT, &[]).await.status, ScsiStatus::Good, "a reset ends prevention");
}

/// A device that keeps checksums in 4 KiB granules and records the ones
/// each write brought.
struct ChecksummingDisk {
    mem: Arc<MemDisk>,
    brought: Mutex<Vec<(u64, Option<Vec<u32>>)>>,
}

#[async_trait]
impl BlockDevice for ChecksummingDisk {
    fn block_size(&self) -> u32 {
        self.mem.block_size()
    }
    fn num_blocks(&self) -> u64 {
        self.mem.num_blocks()
    }
    async fn read(&self, lba: Lba, count: BlockCount) -> io::Result<Bytes> {
        self.mem.read(lba, count).await
    }
    async fn write(&self, lba: Lba, data: Bytes, fua: bool) -> io::Result<()> {
        self.brought.lock().unwrap().push((lba.0, None));
        self.mem.write(lba, data, fua).await
    }
    fn checksum_granule(&self) -> Option<u32> {
        Some(4096)
    }
    async fn write_checksummed(&self, lba: Lba, data: Bytes, fua: bool, checksums: &DataOutChecksums) -> io::Result<()> {
        self.brought.lock().unwrap().push((lba.0, Some(checksums.crcs.clone())));
        self.mem.write(lba, data, fua).await
    }
    async fn flush(&self) -> io::Result<()> {
        Ok(())
    }
    async fn unmap(&self, lba: Lba, count: BlockCount) -> io::Result<()> {
        self.mem.unmap(lba, count).await
    }
    async fn provisioning(&self, lba: Lba, max: BlockCount) -> io::Result<(Provisioning, BlockCount)> {
        self.mem.provisioning(lba, max).await
    }
}

/// WRITE asks for the device's checksums and hands the transport's on;
/// other commands neither ask nor pass any, and a device that keeps none
/// is never asked for them.
#[tokio::test]
async fn write_hands_transport_checksums_to_a_device_that_keeps_them() {
    let dev = Arc::new(ChecksummingDisk { mem: MemDisk::new(64), brought: Mutex::new(Vec::new()) });
    let u = DiskUnit::new(dev.clone(), identity());
    let n = nexus(1);
    ready(&u, &n).await;
    assert_eq!(u.data_out_checksum_granule(&cdb10(0x2A, 0, 8)), Some(4096));
    assert_eq!(u.data_out_checksum_granule(&cdb16(0x8A, 0, 8)), Some(4096));
    assert_eq!(u.data_out_checksum_granule(&cdb10(0x28, 0, 8)), None, "READ has no data-out");
    assert_eq!(u.data_out_checksum_granule(&cdb10(0x41, 0, 8)), None, "WRITE SAME writes a pattern");
    assert_eq!(disk(64).0.data_out_checksum_granule(&cdb10(0x2A, 0, 8)), None);

    let data = vec![9u8; 4096];
    let sums = DataOutChecksums { granule: 4096, crcs: vec![crc32c::crc32c(&data)] };
    let mut req = request(&n, &cdb10(0x2A, 8, 8), &data);
    req.data_out_checksums = Some(Arc::new(sums.clone()));
    assert_eq!(u.execute(req).await.status, ScsiStatus::Good);
    assert_eq!(run(&u, &n, &cdb10(0x2A, 16, 8), &data).await.status, ScsiStatus::Good);
    assert_eq!(*dev.brought.lock().unwrap(), vec![(8, Some(sums.crcs)), (16, None)]);
    assert_eq!(&dev.mem.data.lock().unwrap()[8 * 512..16 * 512], &data[..]);
}

/// A [`UnitStateStore`] in memory that records every save, and can be told
/// to fail.
#[derive(Default)]
struct MemStore {
    reservations: Mutex<Vec<Option<crate::scsi::pr::SavedReservations>>>,
    ejections: Mutex<Vec<bool>>,
    fail: std::sync::atomic::AtomicBool,
}

impl UnitStateStore for MemStore {
    fn save_reservations(&self, r: Option<&crate::scsi::pr::SavedReservations>) -> io::Result<()> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(io::Error::other("disk gone"));
        }
        self.reservations.lock().unwrap().push(r.cloned());
        Ok(())
    }
    fn save_medium_ejected(&self, ejected: bool) -> io::Result<()> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(io::Error::other("disk gone"));
        }
        self.ejections.lock().unwrap().push(ejected);
        Ok(())
    }
}

impl MemStore {
    fn last_reservations(&self) -> Option<Option<crate::scsi::pr::SavedReservations>> {
        self.reservations.lock().unwrap().last().cloned()
    }
}

fn stored_disk(store: &Arc<MemStore>, saved: SavedUnitState, removable: bool) -> DiskUnit {
    DiskUnit::new(MemDisk::new(64), DeviceIdentity { removable, ..identity() })
        .with_state_store(store.clone(), saved)
}

/// PERSISTENT RESERVE OUT with the APTPL bit (byte 20, bit 0) as given.
fn prout_aptpl(action: u8, kind: u8, key: u64, sa_key: u64, aptpl: bool) -> ([u8; 10], Vec<u8>) {
    let (c, mut p) = prout(action, kind, key, sa_key);
    p[20] = aptpl as u8;
    (c, p)
}

const REPORT_CAPABILITIES: [u8; 10] = [0x5E, 2, 0, 0, 0, 0, 0, 0, 8, 0];

#[tokio::test]
async fn aptpl_saves_every_change_and_a_reopened_unit_restores_it() {
    let store = Arc::new(MemStore::default());
    let u = stored_disk(&store, SavedUnitState::default(), false);
    let (a, b) = (nexus(1), nexus(2));
    ready(&u, &a).await;
    ready(&u, &b).await;
    let caps = run(&u, &a, &REPORT_CAPABILITIES, &[]).await.data_in;
    assert_eq!((caps[2] & 1, caps[3] & 1), (1, 0), "PTPL_C set, PTPL_A clear before any APTPL");
    // Without APTPL nothing is saved.
    let (c, p) = prout(0, 0, 0, 0xB);
    assert_eq!(run(&u, &b, &c, &p).await.status, ScsiStatus::Good);
    assert!(store.reservations.lock().unwrap().is_empty());
    // A registers with APTPL, then reserves: both are saved.
    let (c, p) = prout_aptpl(0, 0, 0, 0xA, true);
    assert_eq!(run(&u, &a, &c, &p).await.status, ScsiStatus::Good);
    let (c, p) = prout(1, 1, 0xA, 0);
    assert_eq!(run(&u, &a, &c, &p).await.status, ScsiStatus::Good);
    let saved = store.last_reservations().flatten().expect("saved under APTPL");
    assert_eq!(saved.registrations.len(), 2);
    let holder = saved.reservation.clone().expect("the reservation is saved");
    assert!(holder.holder.matches(&a));
    assert_eq!(holder.holder.target_port.as_deref(), Some("iqn.test:t,t,0x0001"));
    assert_eq!(holder.kind, crate::scsi::pr::PrType::WriteExclusive);
    let caps = run(&u, &a, &REPORT_CAPABILITIES, &[]).await.data_in;
    assert_eq!(caps[3] & 1, 1, "PTPL_A set");

    // The gateway restarts: a unit opened from the saved state has the
    // registrations and the reservation, and APTPL stays in force.
    let reopened = stored_disk(&store, SavedUnitState { reservations: Some(saved), medium_ejected: false }, false);
    let (a2, b2) = (nexus(1), nexus(2));
    ready(&reopened, &a2).await;
    ready(&reopened, &b2).await;
    let keys = run(&reopened, &b2, &[0x5E, 0, 0, 0, 0, 0, 0, 0, 255, 0], &[]).await.data_in;
    assert_eq!(&keys[4..8], &[0, 0, 0, 16]);
    let res = run(&reopened, &b2, &[0x5E, 1, 0, 0, 0, 0, 0, 0, 255, 0], &[]).await.data_in;
    assert_eq!(&res[8..16], &0xAu64.to_be_bytes());
    assert_eq!(res[21], 1);
    assert_eq!(run(&reopened, &b2, &cdb10(0x2A, 0, 1), &[0; 512]).await.status, ScsiStatus::ReservationConflict);
    assert_eq!(run(&reopened, &a2, &cdb10(0x2A, 0, 1), &[0; 512]).await.status, ScsiStatus::Good);
    assert_eq!(run(&reopened, &a2, &REPORT_CAPABILITIES, &[]).await.data_in[3] & 1, 1);

    // A registration with APTPL clear ends persistence: the saved state goes.
    let (c, p) = prout_aptpl(0, 0, 0xB, 0xBB, false);
    assert_eq!(run(&reopened, &b2, &c, &p).await.status, ScsiStatus::Good);
    assert_eq!(store.last_reservations(), Some(None));
    assert_eq!(run(&reopened, &a2, &REPORT_CAPABILITIES, &[]).await.data_in[3] & 1, 0);
    let saves = store.reservations.lock().unwrap().len();
    let (c, p) = prout(2, 1, 0xA, 0);
    assert_eq!(run(&reopened, &a2, &c, &p).await.status, ScsiStatus::Good);
    assert_eq!(store.reservations.lock().unwrap().len(), saves, "nothing saved without APTPL");
}

#[tokio::test]
async fn a_failed_save_fails_the_command_and_changes_nothing() {
    let store = Arc::new(MemStore::default());
    let u = stored_disk(&store, SavedUnitState::default(), true);
    let a = nexus(1);
    ready(&u, &a).await;
    store.fail.store(true, std::sync::atomic::Ordering::SeqCst);
    let (c, p) = prout_aptpl(0, 0, 0, 0xA, true);
    assert_eq!(*check(&run(&u, &a, &c, &p).await), Sense::INTERNAL_TARGET_FAILURE);
    let keys = run(&u, &a, &[0x5E, 0, 0, 0, 0, 0, 0, 0, 255, 0], &[]).await.data_in;
    assert_eq!(&keys[4..8], &[0, 0, 0, 0], "the registration was not made");
    assert_eq!(*check(&run(&u, &a, &EJECT, &[]).await), Sense::INTERNAL_TARGET_FAILURE);
    assert_eq!(run(&u, &a, &[0, 0, 0, 0, 0, 0], &[]).await.status, ScsiStatus::Good, "the medium stayed in");
}

#[tokio::test]
async fn a_unit_without_a_store_refuses_aptpl() {
    let (u, _) = disk(64);
    let a = nexus(1);
    ready(&u, &a).await;
    let (c, p) = prout_aptpl(0, 0, 0, 0xA, true);
    assert_eq!(*check(&run(&u, &a, &c, &p).await), Sense::invalid_param_field(20, Some(0)));
    let caps = run(&u, &a, &REPORT_CAPABILITIES, &[]).await.data_in;
    assert_eq!(caps[2] & 1, 0, "PTPL_C clear");
}

#[tokio::test]
async fn an_ejected_medium_stays_out_across_a_restart() {
    let store = Arc::new(MemStore::default());
    let u = stored_disk(&store, SavedUnitState::default(), true);
    let a = nexus(1);
    ready(&u, &a).await;
    assert_eq!(run(&u, &a, &EJECT, &[]).await.status, ScsiStatus::Good);
    assert_eq!(*store.ejections.lock().unwrap(), [true]);
    let reopened = stored_disk(&store, SavedUnitState { reservations: None, medium_ejected: true }, true);
    let a2 = nexus(1);
    assert_eq!(*check(&run(&reopened, &a2, &[0, 0, 0, 0, 0, 0], &[]).await), Sense::POWER_ON_RESET);
    assert_eq!(*check(&run(&reopened, &a2, &[0, 0, 0, 0, 0, 0], &[]).await), Sense::MEDIUM_NOT_PRESENT);
    assert_eq!(run(&reopened, &a2, &LOAD, &[]).await.status, ScsiStatus::Good);
    assert_eq!(*store.ejections.lock().unwrap(), [true, false]);
    assert_eq!(run(&reopened, &a2, &[0, 0, 0, 0, 0, 0], &[]).await.status, ScsiStatus::Good);
}
