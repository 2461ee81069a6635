//! Which real library the changer presents itself as: the INQUIRY identity,
//! where each element type's addresses start, and how many elements of each
//! type a library of that kind has by default.
//!
//! Backup software keys its device support on the INQUIRY vendor and
//! product, and some of it also assumes the element address plan of the
//! product it recognised, so the two always come together.

use iscsi_target::scsi::DeviceIdentity;
use serde::{Deserialize, Serialize};

use crate::layout::ElementCounts;

/// The library models the changer can impersonate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Personality {
    /// AWS Storage Gateway's tape gateway: INQUIRY "AWS" / "Gateway-VTL".
    AwsGatewayVtl,
    /// StorageTek L700: INQUIRY "STK" / "L700".
    StkL700,
}

/// The first element address of each element type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressPlan {
    pub transport: u16,
    pub drives: u16,
    pub storage: u16,
    pub import_export: u16,
}

impl Personality {
    /// T10 vendor identification.
    pub fn vendor(self) -> &'static str {
        match self {
            Personality::AwsGatewayVtl => "AWS",
            Personality::StkL700 => "STK",
        }
    }

    /// Product identification.
    pub fn product(self) -> &'static str {
        match self {
            Personality::AwsGatewayVtl => "Gateway-VTL",
            Personality::StkL700 => "L700",
        }
    }

    /// Where each element type starts.
    ///
    /// - AWS-Gateway-VTL: our own plan (AWS does not document its
    ///   addresses): transport 1, drives from 0x100, storage from 0x1000,
    ///   import/export from 0x4000, so each type has room to grow.
    /// - STK L700: the L700e/L180 SCSI reference manual's plan: transport 1,
    ///   CAP (import/export) cells from 10, drives from 500, storage from
    ///   1000.
    pub fn address_plan(self) -> AddressPlan {
        match self {
            Personality::AwsGatewayVtl => {
                AddressPlan { transport: 0x0001, drives: 0x0100, storage: 0x1000, import_export: 0x4000 }
            }
            Personality::StkL700 => AddressPlan { transport: 1, drives: 500, storage: 1000, import_export: 10 },
        }
    }

    /// Element counts of the real product.
    ///
    /// - AWS-Gateway-VTL: 10 drives, 1,600 storage slots and 1,600
    ///   import/export slots (mtx reports "10 Drives, 3200 Slots ( 1600
    ///   Import/Export )" for AWS's tape gateway).
    /// - STK L700: 10 drives, 678 storage cells, a 20-cell CAP.
    pub fn default_counts(self) -> ElementCounts {
        match self {
            Personality::AwsGatewayVtl => ElementCounts { drives: 10, storage: 1600, import_export: 1600 },
            Personality::StkL700 => ElementCounts { drives: 10, storage: 678, import_export: 20 },
        }
    }

    /// The changer's INQUIRY identity: this personality's vendor and
    /// product with the caller's serial number, NAA identifier and revision.
    pub fn identity(self, serial: String, naa_id: u64, revision: String) -> DeviceIdentity {
        DeviceIdentity {
            vendor: self.vendor().into(),
            product: self.product().into(),
            revision,
            serial,
            naa_id,
            write_protected: false,
            removable: false,
        }
    }
}
