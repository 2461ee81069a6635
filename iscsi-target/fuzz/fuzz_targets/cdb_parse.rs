//! SCSI CDB parsing and the disk behind it: the opcode table's
//! `parse`/`lookup` (typed CDBs), REPORT SUPPORTED OPERATION CODES, and
//! `DiskUnit::execute` over an in-memory block device, with the data-out
//! parsers behind it (UNMAP, MODE SELECT, PERSISTENT RESERVE OUT,
//! EXTENDED COPY, COMPARE AND WRITE...).
//!
//! Input: one configuration byte (bit 0: 4096-byte blocks, bit 1: atomic
//! writes, bit 2: write protected, bit 3: removable medium), then up to
//! eight commands, each a header byte (bits 0-4: CDB length, bit 5: which
//! of two nexuses sends it), a big-endian u16 data-out length, the CDB and
//! the data-out.

#![no_main]

use std::cell::RefCell;
use std::io;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use iscsi_target::scsi::block::{BlockDevice, Provisioning};
use iscsi_target::scsi::cdb::ReportingOptions;
use iscsi_target::scsi::opcodes::{Features, DISK_OPCODES};
use iscsi_target::scsi::{BlockCount, DeviceIdentity, DiskUnit, ItNexus, Lba, LogicalUnit, ScsiRequest, ScsiStatus};
use libfuzzer_sys::fuzz_target;

const BLOCKS: u64 = 64;

/// A small disk in memory that holds `DiskUnit` to the `BlockDevice`
/// contract: every range it is given lies on the medium.
struct MemDisk {
    bs: u32,
    atomic: u64,
    data: Mutex<Vec<u8>>,
    mapped: Mutex<Vec<bool>>,
}

impl MemDisk {
    fn range(&self, lba: Lba, count: BlockCount) -> std::ops::Range<usize> {
        let end = lba.0.checked_add(count.0).expect("range overflows");
        assert!(end <= BLOCKS, "range {}+{} beyond the medium", lba.0, count.0);
        lba.0 as usize * self.bs as usize..end as usize * self.bs as usize
    }

    fn store(&self, lba: Lba, data: &[u8]) {
        assert_eq!(data.len() % self.bs as usize, 0, "partial block written");
        let count = BlockCount((data.len() / self.bs as usize) as u64);
        let r = self.range(lba, count);
        self.data.lock().unwrap()[r].copy_from_slice(data);
        self.mapped.lock().unwrap()[lba.0 as usize..(lba.0 + count.0) as usize].fill(true);
    }
}

#[async_trait]
impl BlockDevice for MemDisk {
    fn block_size(&self) -> u32 {
        self.bs
    }
    fn num_blocks(&self) -> u64 {
        BLOCKS
    }
    async fn read(&self, lba: Lba, count: BlockCount) -> io::Result<Bytes> {
        let r = self.range(lba, count);
        Ok(Bytes::copy_from_slice(&self.data.lock().unwrap()[r]))
    }
    async fn write(&self, lba: Lba, data: Bytes, _fua: bool) -> io::Result<()> {
        self.store(lba, &data);
        Ok(())
    }
    fn atomic_write_limit(&self) -> BlockCount {
        BlockCount(self.atomic)
    }
    async fn write_atomic(&self, lba: Lba, data: Bytes) -> io::Result<()> {
        assert!(data.len() as u64 <= self.atomic * self.bs as u64, "atomic write over the limit");
        self.store(lba, &data);
        Ok(())
    }
    async fn flush(&self) -> io::Result<()> {
        Ok(())
    }
    async fn unmap(&self, lba: Lba, count: BlockCount) -> io::Result<()> {
        let r = self.range(lba, count);
        self.data.lock().unwrap()[r].fill(0);
        self.mapped.lock().unwrap()[lba.0 as usize..(lba.0 + count.0) as usize].fill(false);
        Ok(())
    }
    async fn provisioning(&self, lba: Lba, max: BlockCount) -> io::Result<(Provisioning, BlockCount)> {
        self.range(lba, max);
        let m = self.mapped.lock().unwrap();
        let first = m[lba.0 as usize];
        let run = m[lba.0 as usize..(lba.0 + max.0) as usize].iter().take_while(|&&x| x == first).count();
        Ok((if first { Provisioning::Mapped } else { Provisioning::Deallocated }, BlockCount(run as u64)))
    }
}

fn nexus(id: u64) -> Arc<ItNexus> {
    Arc::new(ItNexus::without_transport(id, "iqn.t:disk"))
}

/// The typed-CDB layer alone: pure, for both feature sets.
fn parse_only(cdb: &[u8]) {
    for features in [Features::default(), Features::ALL] {
        let looked_up = DISK_OPCODES.lookup(features, cdb);
        match DISK_OPCODES.parse(features, cdb) {
            Ok((desc, cmd)) => {
                assert_eq!(Some(&desc.opcode), cdb.first());
                assert!(cdb.len() >= desc.usage.len(), "{} shorter than its usage data", desc.name);
                assert!(looked_up.is_ok_and(|d| std::ptr::eq(d, desc)));
                let _ = cmd.allocation_length();
                for bs in [512, 4096] {
                    let _ = cmd.data_out_length(bs);
                }
            }
            Err(sense) => {
                let _ = sense.encode(false);
                let _ = sense.encode(true);
            }
        }
    }
    // REPORT SUPPORTED OPERATION CODES for whatever the CDB bytes name.
    let byte = |i: usize| cdb.get(i).copied().unwrap_or(0);
    let options = match byte(1) & 3 {
        0 => ReportingOptions::All,
        1 => ReportingOptions::Opcode,
        2 => ReportingOptions::OpcodeAndServiceAction,
        _ => ReportingOptions::OpcodeOptionalServiceAction,
    };
    let sa = u16::from_be_bytes([byte(3), byte(4)]);
    let _ = DISK_OPCODES.report_supported(Features::default(), byte(1) & 4 != 0, options, byte(2), sa);
}

thread_local! {
    static RUNTIME: RefCell<tokio::runtime::Runtime> =
        RefCell::new(tokio::runtime::Builder::new_current_thread().build().unwrap());
}

fuzz_target!(|input: &[u8]| {
    let Some((&config, mut rest)) = input.split_first() else { return };
    let bs: u32 = if config & 1 != 0 { 4096 } else { 512 };
    let dev = Arc::new(MemDisk {
        bs,
        atomic: if config & 2 != 0 { 8 } else { 0 },
        data: Mutex::new(vec![0; (BLOCKS * bs as u64) as usize]),
        mapped: Mutex::new(vec![false; BLOCKS as usize]),
    });
    let identity = DeviceIdentity {
        vendor: "SGW".into(),
        product: "Volume".into(),
        revision: "0001".into(),
        serial: "vol-0001".into(),
        naa_id: 0x1234_5678_9ABC_DEF0,
        write_protected: config & 4 != 0,
        removable: config & 8 != 0,
    };
    let unit = DiskUnit::new(dev, identity);
    let nexuses = [nexus(1), nexus(2)];

    let mut commands = Vec::new();
    while commands.len() < 8 && rest.len() >= 3 {
        let header = rest[0];
        let data_len = u16::from_be_bytes([rest[1], rest[2]]) as usize;
        rest = &rest[3..];
        let cdb_len = (header & 0x1F) as usize;
        let (cdb, after) = rest.split_at(cdb_len.min(rest.len()));
        let (data, after) = after.split_at(data_len.min(after.len()));
        rest = after;
        parse_only(cdb);
        commands.push(ScsiRequest {
            nexus: nexuses[(header >> 5 & 1) as usize].clone(),
            lun: 0,
            cdb: Bytes::copy_from_slice(cdb),
            data_out: Bytes::copy_from_slice(data),
            data_out_checksums: None,
        });
    }

    RUNTIME.with(|rt| {
        rt.borrow().block_on(async {
            for req in commands {
                let resp = unit.execute(req).await;
                assert_eq!(resp.status == ScsiStatus::CheckCondition, resp.sense.is_some());
                if let Some(sense) = &resp.sense {
                    let _ = sense.encode(false);
                    let _ = sense.encode(true);
                }
            }
        })
    });
});
