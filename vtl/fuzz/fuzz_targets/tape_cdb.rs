//! The tape drive: `TAPE_OPCODES` parsing, then up to twelve commands
//! through `TapeDrive::execute` against a small tape in memory (1 MiB,
//! early warning 256 KiB before its end), reaching reads, writes,
//! filemarks, SPACE, LOCATE, ERASE, LOAD UNLOAD, MODE SELECT, LOG SENSE
//! and the rest.
//!
//! Input: one configuration byte (bit 0: write protected, bit 1: WORM,
//! bit 2: start with three 100-byte records and a filemark), then commands,
//! each a header byte (bits 0-4: CDB length, bit 5: which of two nexuses
//! sends it, bit 6: the changer unloads and reloads the tape first), a
//! big-endian u16 data-out length, the CDB and the data-out.

#![no_main]

use std::cell::RefCell;
use std::sync::Arc;

use bytes::Bytes;
use iscsi_target::scsi::opcodes::Features;
use iscsi_target::scsi::{ItNexus, LogicalUnit, ScsiRequest, ScsiStatus};
use libfuzzer_sys::fuzz_target;
use vtl::format::TapeIndex;
use vtl::media::{DataTransferElement, LoadedMedium, TapeStream};
use vtl::ssc::cdb::TAPE_OPCODES;
use vtl::ssc::{lto5_identity, DriveConfig, TapeDrive};
use vtl::stream::MemTapeStream;

fn nexus(id: u64) -> Arc<ItNexus> {
    Arc::new(ItNexus::without_transport(id, "iqn.t:tape"))
}

thread_local! {
    static RUNTIME: RefCell<tokio::runtime::Runtime> =
        RefCell::new(tokio::runtime::Builder::new_current_thread().build().unwrap());
}

struct Command {
    reload: bool,
    req: ScsiRequest,
}

fuzz_target!(|input: &[u8]| {
    let Some((&config, mut rest)) = input.split_first() else { return };
    let nexuses = [nexus(1), nexus(2)];
    let mut commands = Vec::new();
    while commands.len() < 12 && rest.len() >= 3 {
        let header = rest[0];
        let data_len = u16::from_be_bytes([rest[1], rest[2]]) as usize;
        rest = &rest[3..];
        let (cdb, after) = rest.split_at(((header & 0x1F) as usize).min(rest.len()));
        let (data, after) = after.split_at(data_len.min(after.len()));
        rest = after;
        if let Ok((desc, cmd)) = TAPE_OPCODES.parse(Features::default(), cdb) {
            assert_eq!(Some(&desc.opcode), cdb.first());
            let _ = (cmd.allocation_length(), cmd.data_out_length(512));
        }
        commands.push(Command {
            reload: header & 0x40 != 0,
            req: ScsiRequest {
                nexus: nexuses[(header >> 5 & 1) as usize].clone(),
                lun: 0,
                cdb: Bytes::copy_from_slice(cdb),
                data_out: Bytes::copy_from_slice(data),
                data_out_checksums: None,
            },
        });
    }

    RUNTIME.with(|rt| {
        rt.borrow().block_on(async {
            let drive = TapeDrive::new(
                lto5_identity("FUZZ000001", 1),
                DriveConfig { early_warning_percent: 0, early_warning_min_bytes: 256 << 10 },
            );
            let stream = Arc::new(MemTapeStream::new());
            let mut index = TapeIndex::new();
            if config & 4 != 0 {
                stream.write_at(0, Bytes::from(vec![0x5A; 300])).await.unwrap();
                index.append_records(100, 3).unwrap();
                index.append_filemarks(1).unwrap();
            }
            let medium = LoadedMedium {
                barcode: "FUZZ01L5".into(),
                capacity: 1 << 20,
                write_protected: config & 1 != 0,
                worm: config & 2 != 0,
                index,
                stream: stream.clone() as Arc<dyn TapeStream>,
            };
            drive.load(medium.clone()).await.unwrap();
            for Command { reload, req } in commands {
                if reload {
                    if let Ok(barcode) = drive.unload().await {
                        assert_eq!(barcode, "FUZZ01L5");
                        let index = stream.committed_index();
                        drive.load(LoadedMedium { index, ..medium.clone() }).await.unwrap();
                    }
                }
                let resp = drive.execute(req).await;
                assert_eq!(resp.status == ScsiStatus::CheckCondition, resp.sense.is_some());
                if let Some(sense) = &resp.sense {
                    let _ = sense.encode(false);
                    let _ = sense.encode(true);
                }
                // The committed index never points past the stream.
                assert!(stream.committed_index().data_end() <= stream.len());
            }
            drive.flush().await.unwrap();
        })
    });
});
