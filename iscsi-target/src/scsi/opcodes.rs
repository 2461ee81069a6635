//! The opcode table: the single source for dispatch (which commands exist,
//! their CDB length, which bits may be set, how reservations restrict them,
//! which parser types them) and for REPORT SUPPORTED OPERATION CODES.
//!
//! A table is a list of groups so that device types can share the SPC group
//! ([`spc_opcodes`]) and add their own commands.

use bytes::{BufMut, BytesMut};

use super::cdb::{self, Cdb, DiskCommand, Parser, ReportingOptions, SpcCommand};
use super::sense::Sense;

/// How reservations held by another I_T nexus restrict a command
/// (SPC-4 5.9.1 and SBC-3 4.17 tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Allowed under every kind of reservation (INQUIRY, REPORT LUNS…).
    Unrestricted,
    /// The command's own handler applies the reservation rules (RESERVE,
    /// RELEASE, PERSISTENT RESERVE IN/OUT).
    SelfChecked,
    /// Reads: allowed under Write Exclusive types, conflict under Exclusive
    /// Access types and RESERVE(6/10).
    Read,
    /// Writes: conflict under every reservation type.
    Write,
}

/// What a command needs from the unit beyond the basics of its device type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    Base,
    /// WRITE ATOMIC: the storage makes multi-block writes crash-atomic.
    AtomicWrite,
    /// PREVENT ALLOW MEDIUM REMOVAL: the medium can be removed.
    RemovableMedium,
}

/// The optional features one logical unit has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Features {
    pub atomic_write: bool,
    pub removable_medium: bool,
}

impl Features {
    /// Every feature: what the table lists at most.
    pub const ALL: Features = Features { atomic_write: true, removable_medium: true };

    pub fn has(&self, f: Feature) -> bool {
        match f {
            Feature::Base => true,
            Feature::AtomicWrite => self.atomic_write,
            Feature::RemovableMedium => self.removable_medium,
        }
    }
}

/// One supported command.
pub struct OpDesc<C: 'static> {
    pub opcode: u8,
    pub service_action: Option<u16>,
    pub name: &'static str,
    /// CDB USAGE DATA: byte 0 is the opcode, each further byte has a one for
    /// every bit the device server looks at. Its length is the CDB length.
    /// Dispatch refuses a CDB with any other bit set.
    pub usage: &'static [u8],
    pub access: Access,
    pub parse: Parser<C>,
    /// Commands whose feature the unit lacks do not exist for it.
    pub feature: Feature,
}

impl<C> OpDesc<C> {
    /// Check the CDB's length and reserved bits against the usage data, then
    /// type it.
    pub fn parse_cdb(&self, raw: &[u8]) -> Result<C, Sense> {
        if raw.len() < self.usage.len() {
            return Err(Sense::invalid_cdb_field(0, None));
        }
        for (i, (&b, &mask)) in raw.iter().zip(self.usage).enumerate().skip(1) {
            let stray = b & !mask;
            if stray != 0 {
                let bit = 7 - stray.leading_zeros() as u8;
                return Err(Sense::invalid_cdb_field(i as u16, Some(bit)));
            }
        }
        (self.parse)(Cdb(raw))
    }
}

/// The timeouts descriptor values (seconds) reported with RCTD: commands run
/// against local storage, the recommendation allows for a slow backend.
const NOMINAL_TIMEOUT_SECS: u32 = 1;
const RECOMMENDED_TIMEOUT_SECS: u32 = 60;

/// A device type's commands.
pub struct OpcodeTable<C: 'static> {
    pub groups: &'static [&'static [OpDesc<C>]],
}

impl<C> OpcodeTable<C> {
    fn entries(&self, features: Features) -> impl Iterator<Item = &'static OpDesc<C>> + '_ {
        self.groups.iter().flat_map(|g| g.iter()).filter(move |d| features.has(d.feature))
    }

    fn has_service_actions(&self, features: Features, opcode: u8) -> bool {
        self.entries(features).any(|d| d.opcode == opcode && d.service_action.is_some())
    }

    fn find(&self, features: Features, opcode: u8, sa: Option<u16>) -> Option<&'static OpDesc<C>> {
        self.entries(features).find(|d| d.opcode == opcode && d.service_action == sa)
    }

    /// Every distinct opcode in the table.
    pub fn opcodes(&self) -> Vec<u8> {
        let mut v: Vec<u8> = self.entries(Features::ALL).map(|d| d.opcode).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Look a CDB up, check its length and reserved bits, and type it.
    pub fn parse(&self, features: Features, raw: &[u8]) -> Result<(&'static OpDesc<C>, C), Sense> {
        let desc = self.lookup(features, raw)?;
        Ok((desc, desc.parse_cdb(raw)?))
    }

    /// The table entry for a CDB's opcode (and service action).
    pub fn lookup(&self, features: Features, raw: &[u8]) -> Result<&'static OpDesc<C>, Sense> {
        let opcode = *raw.first().ok_or(Sense::INVALID_OPCODE)?;
        if self.has_service_actions(features, opcode) {
            self.find(features, opcode, Some(Cdb(raw).service_action())).ok_or(Sense::invalid_cdb_field(1, Some(4)))
        } else {
            self.find(features, opcode, None).ok_or(Sense::INVALID_OPCODE)
        }
    }

    /// REPORT SUPPORTED OPERATION CODES parameter data (SPC-4 6.35).
    pub fn report_supported(
        &self,
        features: Features,
        rctd: bool,
        options: ReportingOptions,
        opcode: u8,
        sa: u16,
    ) -> Result<BytesMut, Sense> {
        let mut out = BytesMut::new();
        if options == ReportingOptions::All {
            let mut body = BytesMut::new();
            for d in self.entries(features) {
                body.put_u8(d.opcode);
                body.put_u8(0);
                body.put_u16(d.service_action.unwrap_or(0));
                body.put_u8(0);
                body.put_u8((rctd as u8) << 1 | d.service_action.is_some() as u8);
                body.put_u16(d.usage.len() as u16);
                if rctd {
                    put_timeouts(&mut body);
                }
            }
            out.put_u32(body.len() as u32);
            out.put_slice(&body);
            return Ok(out);
        }
        let with_sa = self.has_service_actions(features, opcode);
        let desc = match options {
            ReportingOptions::Opcode if with_sa => return Err(Sense::invalid_cdb_field(2, Some(2))),
            ReportingOptions::OpcodeAndServiceAction if !with_sa => return Err(Sense::invalid_cdb_field(2, Some(2))),
            _ if with_sa => self.find(features, opcode, Some(sa)),
            _ => self.find(features, opcode, None),
        };
        match desc {
            Some(d) => {
                // SUPPORT 011b: supported as the standard describes.
                out.put_u8(0);
                out.put_u8((rctd as u8) << 7 | 0x03);
                out.put_u16(d.usage.len() as u16);
                out.put_slice(d.usage);
                if rctd {
                    put_timeouts(&mut out);
                }
            }
            None => {
                // SUPPORT 001b: not supported; no usage data follows.
                out.put_slice(&[0, 0x01, 0, 0]);
            }
        }
        Ok(out)
    }
}

fn put_timeouts(b: &mut BytesMut) {
    b.put_u16(0x000A);
    b.put_u8(0);
    b.put_u8(0);
    b.put_u32(NOMINAL_TIMEOUT_SECS);
    b.put_u32(RECOMMENDED_TIMEOUT_SECS);
}

/// The SPC-4 commands every device type implements through
/// [`SpcCore`](super::spc::SpcCore).
pub const fn spc_opcodes<C: From<SpcCommand>>() -> [OpDesc<C>; 13] {
    use Access::*;
    [
        OpDesc {
            opcode: 0x00,
            service_action: None,
            name: "TEST UNIT READY",
            usage: &[0x00, 0, 0, 0, 0, 0],
            access: Unrestricted,
            parse: cdb::test_unit_ready::<C>,
            feature: Feature::Base,
        },
        OpDesc {
            opcode: 0x03,
            service_action: None,
            name: "REQUEST SENSE",
            usage: &[0x03, 0x01, 0, 0, 0xFF, 0],
            access: Unrestricted,
            parse: cdb::request_sense::<C>,
            feature: Feature::Base,
        },
        OpDesc {
            opcode: 0x12,
            service_action: None,
            name: "INQUIRY",
            usage: &[0x12, 0x01, 0xFF, 0xFF, 0xFF, 0],
            access: Unrestricted,
            parse: cdb::inquiry::<C>,
            feature: Feature::Base,
        },
        OpDesc {
            opcode: 0x15,
            service_action: None,
            name: "MODE SELECT(6)",
            usage: &[0x15, 0x11, 0, 0, 0xFF, 0],
            access: Write,
            parse: cdb::mode_select6::<C>,
            feature: Feature::Base,
        },
        OpDesc {
            opcode: 0x16,
            service_action: None,
            name: "RESERVE(6)",
            usage: &[0x16, 0, 0, 0, 0, 0],
            access: SelfChecked,
            parse: cdb::reserve::<C>,
            feature: Feature::Base,
        },
        OpDesc {
            opcode: 0x17,
            service_action: None,
            name: "RELEASE(6)",
            usage: &[0x17, 0, 0, 0, 0, 0],
            access: SelfChecked,
            parse: cdb::release::<C>,
            feature: Feature::Base,
        },
        OpDesc {
            opcode: 0x1A,
            service_action: None,
            name: "MODE SENSE(6)",
            usage: &[0x1A, 0x08, 0xFF, 0xFF, 0xFF, 0],
            access: Read,
            parse: cdb::mode_sense6::<C>,
            feature: Feature::Base,
        },
        OpDesc {
            opcode: 0x55,
            service_action: None,
            name: "MODE SELECT(10)",
            usage: &[0x55, 0x11, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0],
            access: Write,
            parse: cdb::mode_select10::<C>,
            feature: Feature::Base,
        },
        OpDesc {
            opcode: 0x56,
            service_action: None,
            name: "RESERVE(10)",
            usage: &[0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            access: SelfChecked,
            parse: cdb::reserve::<C>,
            feature: Feature::Base,
        },
        OpDesc {
            opcode: 0x57,
            service_action: None,
            name: "RELEASE(10)",
            usage: &[0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            access: SelfChecked,
            parse: cdb::release::<C>,
            feature: Feature::Base,
        },
        OpDesc {
            opcode: 0x5A,
            service_action: None,
            name: "MODE SENSE(10)",
            usage: &[0x5A, 0x18, 0xFF, 0xFF, 0, 0, 0, 0xFF, 0xFF, 0],
            access: Read,
            parse: cdb::mode_sense10::<C>,
            feature: Feature::Base,
        },
        OpDesc {
            opcode: 0xA0,
            service_action: None,
            name: "REPORT LUNS",
            usage: &[0xA0, 0, 0xFF, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0],
            access: Unrestricted,
            parse: cdb::report_luns::<C>,
            feature: Feature::Base,
        },
        OpDesc {
            opcode: 0xA3,
            service_action: Some(0x0C),
            name: "REPORT SUPPORTED OPERATION CODES",
            usage: &[0xA3, 0x1F, 0x87, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0],
            access: Unrestricted,
            parse: cdb::report_supported_opcodes::<C>,
            feature: Feature::Base,
        },
    ]
}

/// PERSISTENT RESERVE IN/OUT, for device types that support persistent
/// reservations.
pub const fn pr_opcodes<C: From<SpcCommand>>() -> [OpDesc<C>; 2] {
    [
        OpDesc {
            opcode: 0x5E,
            service_action: None,
            name: "PERSISTENT RESERVE IN",
            usage: &[0x5E, 0x1F, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0],
            access: Access::SelfChecked,
            parse: cdb::persistent_reserve_in::<C>,
            feature: Feature::Base,
        },
        OpDesc {
            opcode: 0x5F,
            service_action: None,
            name: "PERSISTENT RESERVE OUT",
            usage: &[0x5F, 0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0],
            access: Access::SelfChecked,
            parse: cdb::persistent_reserve_out::<C>,
            feature: Feature::Base,
        },
    ]
}

/// PREVENT ALLOW MEDIUM REMOVAL, which the SPC core runs for device types
/// with removable media.
pub const fn removal_opcodes<C: From<SpcCommand>>() -> [OpDesc<C>; 1] {
    [OpDesc {
        opcode: 0x1E,
        service_action: None,
        name: "PREVENT ALLOW MEDIUM REMOVAL",
        usage: &[0x1E, 0, 0, 0, 0x03, 0],
        access: Access::Read,
        parse: cdb::prevent_allow_medium_removal::<C>,
        feature: Feature::RemovableMedium,
    }]
}

static DISK_SPC: [OpDesc<DiskCommand>; 13] = spc_opcodes::<DiskCommand>();
static DISK_PR: [OpDesc<DiskCommand>; 2] = pr_opcodes::<DiskCommand>();
static DISK_REMOVAL: [OpDesc<DiskCommand>; 1] = removal_opcodes::<DiskCommand>();

/// SBC-3 commands and the third-party copy commands of the disk, one line
/// each so that the table reads as one.
#[rustfmt::skip]
pub(crate) static DISK_SBC: &[OpDesc<DiskCommand>] = {
    use Access::*;
    &[
        OpDesc { opcode: 0x08, service_action: None, name: "READ(6)", usage: &[0x08, 0x1F, 0xFF, 0xFF, 0xFF, 0], access: Read, parse: cdb::read6, feature: Feature::Base },
        OpDesc { opcode: 0x0A, service_action: None, name: "WRITE(6)", usage: &[0x0A, 0x1F, 0xFF, 0xFF, 0xFF, 0], access: Write, parse: cdb::write6, feature: Feature::Base },
        OpDesc { opcode: 0x1B, service_action: None, name: "START STOP UNIT", usage: &[0x1B, 0x01, 0, 0x0F, 0xF7, 0], access: Write, parse: cdb::start_stop_unit, feature: Feature::Base },
        OpDesc { opcode: 0x25, service_action: None, name: "READ CAPACITY(10)", usage: &[0x25, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0x01, 0], access: Unrestricted, parse: cdb::read_capacity10, feature: Feature::Base },
        OpDesc { opcode: 0x28, service_action: None, name: "READ(10)", usage: &[0x28, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0], access: Read, parse: cdb::read, feature: Feature::Base },
        OpDesc { opcode: 0x2A, service_action: None, name: "WRITE(10)", usage: &[0x2A, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0], access: Write, parse: cdb::write, feature: Feature::Base },
        OpDesc { opcode: 0x2E, service_action: None, name: "WRITE AND VERIFY(10)", usage: &[0x2E, 0x12, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0], access: Write, parse: cdb::write_and_verify, feature: Feature::Base },
        OpDesc { opcode: 0x2F, service_action: None, name: "VERIFY(10)", usage: &[0x2F, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0], access: Read, parse: cdb::verify, feature: Feature::Base },
        OpDesc { opcode: 0x34, service_action: None, name: "PRE-FETCH(10)", usage: &[0x34, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0], access: Read, parse: cdb::pre_fetch, feature: Feature::Base },
        OpDesc { opcode: 0x35, service_action: None, name: "SYNCHRONIZE CACHE(10)", usage: &[0x35, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0], access: Write, parse: cdb::synchronize_cache, feature: Feature::Base },
        OpDesc { opcode: 0x37, service_action: None, name: "READ DEFECT DATA(10)", usage: &[0x37, 0, 0x1F, 0, 0, 0, 0, 0xFF, 0xFF, 0], access: Write, parse: cdb::read_defect_data, feature: Feature::Base },
        OpDesc { opcode: 0x41, service_action: None, name: "WRITE SAME(10)", usage: &[0x41, 0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0], access: Write, parse: cdb::write_same, feature: Feature::Base },
        OpDesc { opcode: 0x42, service_action: None, name: "UNMAP", usage: &[0x42, 0, 0, 0, 0, 0, 0x1F, 0xFF, 0xFF, 0], access: Write, parse: cdb::unmap, feature: Feature::Base },
        OpDesc { opcode: 0x83, service_action: Some(0x00), name: "EXTENDED COPY(LID1)", usage: &[0x83, 0x1F, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0], access: Write, parse: cdb::extended_copy, feature: Feature::Base },
        OpDesc { opcode: 0x84, service_action: Some(0x00), name: "RECEIVE COPY STATUS(LID1)", usage: &[0x84, 0x1F, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0], access: Write, parse: cdb::receive_copy_results, feature: Feature::Base },
        OpDesc { opcode: 0x84, service_action: Some(0x03), name: "RECEIVE COPY OPERATING PARAMETERS", usage: &[0x84, 0x1F, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0], access: Write, parse: cdb::receive_copy_results, feature: Feature::Base },
        OpDesc { opcode: 0x88, service_action: None, name: "READ(16)", usage: &[0x88, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0], access: Read, parse: cdb::read, feature: Feature::Base },
        OpDesc { opcode: 0x89, service_action: None, name: "COMPARE AND WRITE", usage: &[0x89, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0xFF, 0x1F, 0], access: Write, parse: cdb::compare_and_write, feature: Feature::Base },
        OpDesc { opcode: 0x8A, service_action: None, name: "WRITE(16)", usage: &[0x8A, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0], access: Write, parse: cdb::write, feature: Feature::Base },
        OpDesc { opcode: 0x8B, service_action: None, name: "ORWRITE(16)", usage: &[0x8B, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0], access: Write, parse: cdb::orwrite16, feature: Feature::Base },
        OpDesc { opcode: 0x8E, service_action: None, name: "WRITE AND VERIFY(16)", usage: &[0x8E, 0x12, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0], access: Write, parse: cdb::write_and_verify, feature: Feature::Base },
        OpDesc { opcode: 0x8F, service_action: None, name: "VERIFY(16)", usage: &[0x8F, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0], access: Read, parse: cdb::verify, feature: Feature::Base },
        OpDesc { opcode: 0x90, service_action: None, name: "PRE-FETCH(16)", usage: &[0x90, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0], access: Read, parse: cdb::pre_fetch, feature: Feature::Base },
        OpDesc { opcode: 0x91, service_action: None, name: "SYNCHRONIZE CACHE(16)", usage: &[0x91, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0], access: Write, parse: cdb::synchronize_cache, feature: Feature::Base },
        OpDesc { opcode: 0x93, service_action: None, name: "WRITE SAME(16)", usage: &[0x93, 0x09, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0], access: Write, parse: cdb::write_same, feature: Feature::Base },
        OpDesc { opcode: 0x9C, service_action: None, name: "WRITE ATOMIC(16)", usage: &[0x9C, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0xFF, 0xFF, 0x1F, 0], access: Write, parse: cdb::write_atomic16, feature: Feature::AtomicWrite },
        OpDesc { opcode: 0x9E, service_action: Some(0x10), name: "READ CAPACITY(16)", usage: &[0x9E, 0x1F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0], access: Unrestricted, parse: cdb::read_capacity16, feature: Feature::Base },
        OpDesc { opcode: 0x9E, service_action: Some(0x12), name: "GET LBA STATUS", usage: &[0x9E, 0x1F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0], access: Read, parse: cdb::get_lba_status, feature: Feature::Base },
        OpDesc { opcode: 0xA8, service_action: None, name: "READ(12)", usage: &[0xA8, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0], access: Read, parse: cdb::read, feature: Feature::Base },
        OpDesc { opcode: 0xAA, service_action: None, name: "WRITE(12)", usage: &[0xAA, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0], access: Write, parse: cdb::write, feature: Feature::Base },
        OpDesc { opcode: 0xAE, service_action: None, name: "WRITE AND VERIFY(12)", usage: &[0xAE, 0x12, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0], access: Write, parse: cdb::write_and_verify, feature: Feature::Base },
        OpDesc { opcode: 0xAF, service_action: None, name: "VERIFY(12)", usage: &[0xAF, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0], access: Read, parse: cdb::verify, feature: Feature::Base },
        OpDesc { opcode: 0xB7, service_action: None, name: "READ DEFECT DATA(12)", usage: &[0xB7, 0x1F, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0], access: Write, parse: cdb::read_defect_data, feature: Feature::Base },
    ]
};

/// Every command a disk logical unit accepts.
pub static DISK_OPCODES: OpcodeTable<DiskCommand> = OpcodeTable { groups: &[&DISK_SPC, &DISK_PR, &DISK_REMOVAL, DISK_SBC] };

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_data_starts_with_opcode_and_names_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for d in DISK_OPCODES.entries(Features::ALL) {
            assert_eq!(d.usage.first(), Some(&d.opcode), "{}", d.name);
            assert!(matches!(d.usage.len(), 6 | 10 | 12 | 16), "{}", d.name);
            assert!(seen.insert((d.opcode, d.service_action)), "duplicate {}", d.name);
        }
    }

    #[test]
    fn report_all_and_one() {
        let f = Features::default();
        let all = DISK_OPCODES.report_supported(f, true, ReportingOptions::All, 0, 0).unwrap();
        let n = DISK_OPCODES.entries(f).count();
        assert!(DISK_OPCODES.entries(f).all(|d| d.opcode != 0x9C), "no WRITE ATOMIC without the feature");
        assert!(DISK_OPCODES.entries(f).all(|d| d.opcode != 0x1E), "no PREVENT ALLOW on a fixed disk");
        assert_eq!(all.len(), 4 + n * 20);
        let one = DISK_OPCODES.report_supported(f, false, ReportingOptions::Opcode, 0x28, 0).unwrap();
        assert_eq!(&one[..4], &[0, 3, 0, 10]);
        assert_eq!(one[4], 0x28);
        assert_eq!(one[5] & 0x18, 0x18);
        assert!(DISK_OPCODES.report_supported(f, false, ReportingOptions::Opcode, 0x9E, 0x10).is_err());
        assert!(DISK_OPCODES.report_supported(f, false, ReportingOptions::OpcodeAndServiceAction, 0x28, 0).is_err());
        let rc16 =
            DISK_OPCODES.report_supported(f, true, ReportingOptions::OpcodeAndServiceAction, 0x9E, 0x10).unwrap();
        assert_eq!(rc16[1], 0x83);
        assert_eq!(rc16.len(), 4 + 16 + 12);
        let absent = DISK_OPCODES.report_supported(f, false, ReportingOptions::Opcode, 0xC0, 0).unwrap();
        assert_eq!(&absent[..], &[0, 1, 0, 0]);
    }
}
