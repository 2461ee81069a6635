//! Fixed-format sense data (SPC-4 4.5.3) and the named sense conditions the
//! devices report.

use bytes::{BufMut, Bytes, BytesMut};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SenseKey {
    NoSense = 0x0,
    RecoveredError = 0x1,
    NotReady = 0x2,
    MediumError = 0x3,
    HardwareError = 0x4,
    IllegalRequest = 0x5,
    UnitAttention = 0x6,
    DataProtect = 0x7,
    BlankCheck = 0x8,
    CopyAborted = 0xA,
    AbortedCommand = 0xB,
    VolumeOverflow = 0xD,
    Miscompare = 0xE,
}

/// Sense data for one CHECK CONDITION.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sense {
    pub key: SenseKey,
    pub asc: u8,
    pub ascq: u8,
    /// INFORMATION field (VALID bit set when present).
    pub info: Option<u64>,
    /// Sense-key specific field: (SKSV, field pointer / progress). For
    /// ILLEGAL REQUEST: `Some(FieldPointer{..})`.
    pub field: Option<FieldPointer>,
    /// Tape flags: FILEMARK, EOM, ILI (byte 2 bits 7, 6, 5).
    pub filemark: bool,
    pub eom: bool,
    pub ili: bool,
}

/// Points at the offending byte (and bit) of the CDB or parameter list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldPointer {
    /// true: the error is in the CDB; false: in the parameter data.
    pub in_cdb: bool,
    pub byte: u16,
    pub bit: Option<u8>,
}

macro_rules! sense_consts {
    ($($name:ident = $key:ident, $asc:expr, $ascq:expr;)*) => {
        impl Sense {
            $(pub const $name: Sense = Sense::new(SenseKey::$key, $asc, $ascq);)*
        }
    };
}

sense_consts! {
    NO_SENSE = NoSense, 0x00, 0x00;
    INVALID_OPCODE = IllegalRequest, 0x20, 0x00;
    LBA_OUT_OF_RANGE = IllegalRequest, 0x21, 0x00;
    INVALID_FIELD_IN_CDB = IllegalRequest, 0x24, 0x00;
    LUN_NOT_SUPPORTED = IllegalRequest, 0x25, 0x00;
    INVALID_FIELD_IN_PARAMETER_LIST = IllegalRequest, 0x26, 0x00;
    PARAMETER_NOT_SUPPORTED = IllegalRequest, 0x26, 0x01;
    PARAMETER_VALUE_INVALID = IllegalRequest, 0x26, 0x02;
    TOO_MANY_TARGET_DESCRIPTORS = IllegalRequest, 0x26, 0x06;
    UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE = IllegalRequest, 0x26, 0x07;
    TOO_MANY_SEGMENT_DESCRIPTORS = IllegalRequest, 0x26, 0x08;
    UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE = IllegalRequest, 0x26, 0x09;
    OPERATION_IN_PROGRESS = IllegalRequest, 0x00, 0x16;
    INVALID_FIELD_IN_INFORMATION_UNIT = IllegalRequest, 0x0E, 0x03;
    MEDIUM_REMOVAL_PREVENTED = IllegalRequest, 0x53, 0x02;
    COPY_TARGET_DEVICE_NOT_REACHABLE = CopyAborted, 0x0D, 0x02;
    LOGICAL_UNIT_NOT_READY_INITIALIZING_COMMAND_REQUIRED = NotReady, 0x04, 0x02;
    LOGICAL_UNIT_NOT_READY_SANITIZE_IN_PROGRESS = NotReady, 0x04, 0x1B;
    PARAMETER_LIST_LENGTH_ERROR = IllegalRequest, 0x1A, 0x00;
    INVALID_RELEASE_OF_PERSISTENT_RESERVATION = IllegalRequest, 0x26, 0x04;
    SAVING_PARAMETERS_NOT_SUPPORTED = IllegalRequest, 0x39, 0x00;
    INSUFFICIENT_REGISTRATION_RESOURCES = IllegalRequest, 0x55, 0x04;
    WRITE_PROTECTED = DataProtect, 0x27, 0x00;
    SPACE_ALLOCATION_FAILED_WRITE_PROTECT = DataProtect, 0x27, 0x07;
    MISCOMPARE_DURING_VERIFY = Miscompare, 0x1D, 0x00;
    POWER_ON_RESET = UnitAttention, 0x29, 0x00;
    BUS_DEVICE_RESET = UnitAttention, 0x29, 0x03;
    I_T_NEXUS_LOSS = UnitAttention, 0x29, 0x07;
    MODE_PARAMETERS_CHANGED = UnitAttention, 0x2A, 0x01;
    RESERVATIONS_PREEMPTED = UnitAttention, 0x2A, 0x03;
    RESERVATIONS_RELEASED = UnitAttention, 0x2A, 0x04;
    REGISTRATIONS_PREEMPTED = UnitAttention, 0x2A, 0x05;
    CAPACITY_DATA_CHANGED = UnitAttention, 0x2A, 0x09;
    COMMANDS_CLEARED_BY_ANOTHER_INITIATOR = UnitAttention, 0x2F, 0x00;
    REPORTED_LUNS_DATA_CHANGED = UnitAttention, 0x3F, 0x0E;
    MEDIUM_NOT_PRESENT = NotReady, 0x3A, 0x00;
    LOGICAL_UNIT_NOT_READY_MANUAL_INTERVENTION = NotReady, 0x04, 0x03;
    UNRECOVERED_READ_ERROR = MediumError, 0x11, 0x00;
    WRITE_ERROR = MediumError, 0x0C, 0x00;
    INTERNAL_TARGET_FAILURE = HardwareError, 0x44, 0x00;
    INVALID_MESSAGE_ERROR = AbortedCommand, 0x49, 0x00;
    LOGICAL_UNIT_COMMUNICATION_FAILURE = AbortedCommand, 0x08, 0x00;
    DATA_PHASE_ERROR = AbortedCommand, 0x4B, 0x00;
}

impl Sense {
    pub const fn new(key: SenseKey, asc: u8, ascq: u8) -> Sense {
        Sense { key, asc, ascq, info: None, field: None, filemark: false, eom: false, ili: false }
    }

    /// ILLEGAL REQUEST INVALID FIELD IN CDB pointing at `byte` (and `bit`).
    pub fn invalid_cdb_field(byte: u16, bit: Option<u8>) -> Sense {
        Sense { field: Some(FieldPointer { in_cdb: true, byte, bit }), ..Sense::INVALID_FIELD_IN_CDB }
    }

    /// ILLEGAL REQUEST INVALID FIELD IN PARAMETER LIST pointing at `byte`.
    pub fn invalid_param_field(byte: u16, bit: Option<u8>) -> Sense {
        Sense { field: Some(FieldPointer { in_cdb: false, byte, bit }), ..Sense::INVALID_FIELD_IN_PARAMETER_LIST }
    }

    /// MISCOMPARE DURING VERIFY OPERATION at byte `offset` of the compared data.
    pub fn miscompare_at(offset: u64) -> Sense {
        Sense::MISCOMPARE_DURING_VERIFY.with_info(offset)
    }

    pub fn with_info(mut self, info: u64) -> Sense {
        self.info = Some(info);
        self
    }

    /// Encode as fixed-format sense data (response code 0x70), 18 bytes.
    pub fn to_fixed(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(18);
        let valid = if self.info.is_some() { 0x80 } else { 0 };
        b.put_u8(valid | 0x70);
        b.put_u8(0);
        let flags = (self.filemark as u8) << 7 | (self.eom as u8) << 6 | (self.ili as u8) << 5;
        b.put_u8(flags | self.key as u8);
        // INFORMATION is 4 bytes in fixed format; larger values saturate.
        b.put_u32(self.info.map(|i| i.min(u32::MAX as u64) as u32).unwrap_or(0));
        b.put_u8(10); // additional sense length
        b.put_u32(0); // command-specific information
        b.put_u8(self.asc);
        b.put_u8(self.ascq);
        b.put_u8(0); // FRU code
        b.put_slice(&self.field.map(|f| f.sense_key_specific()).unwrap_or([0; 3]));
        b.freeze()
    }

    /// Encode as descriptor-format sense data (response code 0x72): an
    /// information descriptor when INFORMATION is set, a sense-key specific
    /// descriptor when a field pointer is set, and a stream commands
    /// descriptor for the tape flags.
    pub fn to_descriptor(&self) -> Bytes {
        let mut descriptors = BytesMut::new();
        if let Some(info) = self.info {
            descriptors.put_slice(&[0x00, 0x0A, 0x80, 0x00]);
            descriptors.put_u64(info);
        }
        if let Some(f) = self.field {
            descriptors.put_slice(&[0x02, 0x06, 0x00, 0x00]);
            descriptors.put_slice(&f.sense_key_specific());
            descriptors.put_u8(0);
        }
        if self.filemark || self.eom || self.ili {
            let flags = (self.filemark as u8) << 7 | (self.eom as u8) << 6 | (self.ili as u8) << 5;
            descriptors.put_slice(&[0x04, 0x02, 0x00, flags]);
        }
        let mut b = BytesMut::with_capacity(8 + descriptors.len());
        b.put_u8(0x72);
        b.put_u8(self.key as u8);
        b.put_u8(self.asc);
        b.put_u8(self.ascq);
        b.put_slice(&[0, 0, 0]);
        // At most three short descriptors: always fits the one-byte length.
        b.put_u8(descriptors.len() as u8);
        b.put_slice(&descriptors);
        b.freeze()
    }

    /// Encode in the format the initiator asked for.
    pub fn encode(&self, descriptor_format: bool) -> Bytes {
        if descriptor_format {
            self.to_descriptor()
        } else {
            self.to_fixed()
        }
    }
}

impl FieldPointer {
    /// The three SENSE KEY SPECIFIC bytes: SKSV, C/D, BPV, bit and byte.
    fn sense_key_specific(&self) -> [u8; 3] {
        let bpv = if self.bit.is_some() { 0x08 } else { 0 };
        let first = 0x80 | if self.in_cdb { 0x40 } else { 0 } | bpv | self.bit.unwrap_or(0) & 7;
        let [hi, lo] = self.byte.to_be_bytes();
        [first, hi, lo]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_format_layout() {
        let s = Sense::invalid_cdb_field(2, Some(1)).with_info(7);
        let b = s.to_fixed();
        assert_eq!(b.len(), 18);
        assert_eq!(b[0], 0xF0);
        assert_eq!(b[2], 0x05);
        assert_eq!(&b[3..7], &[0, 0, 0, 7]);
        assert_eq!(b[7], 10);
        assert_eq!((b[12], b[13]), (0x24, 0x00));
        assert_eq!(b[15], 0x80 | 0x40 | 0x08 | 1);
        assert_eq!(&b[16..18], &[0, 2]);
    }

    #[test]
    fn descriptor_format_layout() {
        let s = Sense::invalid_cdb_field(2, Some(1)).with_info(7);
        let b = s.to_descriptor();
        assert_eq!(&b[..4], &[0x72, 0x05, 0x24, 0x00]);
        assert_eq!(b[7] as usize, b.len() - 8);
        assert_eq!(&b[8..12], &[0x00, 0x0A, 0x80, 0x00]);
        assert_eq!(&b[12..20], &7u64.to_be_bytes());
        assert_eq!(&b[20..27], &[0x02, 0x06, 0, 0, 0x80 | 0x40 | 0x08 | 1, 0, 2]);
    }
}
