//! The library's elements and their addresses: one medium transport, the
//! data transfer elements (drives), storage slots and import/export slots,
//! each type a contiguous address range (SMC-3 3.1, element address
//! assignment page).

use serde::{Deserialize, Serialize};

use crate::personality::Personality;

/// SMC-3 element type codes, as READ ELEMENT STATUS reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ElementType {
    MediumTransport = 1,
    Storage = 2,
    ImportExport = 3,
    DataTransfer = 4,
}

impl ElementType {
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// How many elements of each type the library has (the medium transport is
/// always one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElementCounts {
    pub drives: u16,
    pub storage: u16,
    pub import_export: u16,
}

/// A run of consecutive element addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElementRange {
    pub first: u16,
    pub count: u16,
}

impl ElementRange {
    pub fn contains(&self, address: u16) -> bool {
        address >= self.first && u32::from(address) < self.end()
    }

    /// One past the last address (can be 0x10000).
    fn end(&self) -> u32 {
        u32::from(self.first) + u32::from(self.count)
    }

    pub fn addresses(&self) -> impl Iterator<Item = u16> {
        // Layout::new guarantees end() <= 0x10000, so every value fits.
        (u32::from(self.first)..self.end()).map(|a| a as u16)
    }

    fn overlaps(&self, other: &ElementRange) -> bool {
        self.count > 0 && other.count > 0 && u32::from(self.first) < other.end() && u32::from(other.first) < self.end()
    }
}

/// Why a layout cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("{0:?} elements run past address 0xFFFF")]
    AddressOverflow(ElementType),
    #[error("{0:?} and {1:?} element addresses overlap")]
    Overlap(ElementType, ElementType),
}

/// Every element of one library, by type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    personality: Personality,
    /// Ranges in ascending address order, so that walking them walks the
    /// library in address order.
    ranges: Vec<(ElementType, ElementRange)>,
}

impl Layout {
    /// The personality's address plan with these counts.
    pub fn new(personality: Personality, counts: ElementCounts) -> Result<Layout, LayoutError> {
        let plan = personality.address_plan();
        let mut ranges = vec![
            (ElementType::MediumTransport, ElementRange { first: plan.transport, count: 1 }),
            (ElementType::Storage, ElementRange { first: plan.storage, count: counts.storage }),
            (ElementType::ImportExport, ElementRange { first: plan.import_export, count: counts.import_export }),
            (ElementType::DataTransfer, ElementRange { first: plan.drives, count: counts.drives }),
        ];
        for (ty, r) in &ranges {
            if r.end() > 0x1_0000 {
                return Err(LayoutError::AddressOverflow(*ty));
            }
        }
        for (i, (a, ra)) in ranges.iter().enumerate() {
            if let Some((b, _)) = ranges[i + 1..].iter().find(|(_, rb)| ra.overlaps(rb)) {
                return Err(LayoutError::Overlap(*a, *b));
            }
        }
        ranges.sort_by_key(|(_, r)| r.first);
        Ok(Layout { personality, ranges })
    }

    pub fn personality(&self) -> Personality {
        self.personality
    }

    pub fn range(&self, ty: ElementType) -> ElementRange {
        self.ranges.iter().find(|(t, _)| *t == ty).map(|(_, r)| *r).unwrap_or(ElementRange { first: 0, count: 0 })
    }

    pub fn counts(&self) -> ElementCounts {
        ElementCounts {
            drives: self.range(ElementType::DataTransfer).count,
            storage: self.range(ElementType::Storage).count,
            import_export: self.range(ElementType::ImportExport).count,
        }
    }

    /// The medium transport's address.
    pub fn transport(&self) -> u16 {
        self.range(ElementType::MediumTransport).first
    }

    /// The type of the element at `address`, if there is one.
    pub fn element_type(&self, address: u16) -> Option<ElementType> {
        self.ranges.iter().find(|(_, r)| r.contains(address)).map(|(t, _)| *t)
    }

    /// Which drive (0-based, in data transfer element order) `address` is.
    pub fn drive_index(&self, address: u16) -> Option<usize> {
        let drives = self.range(ElementType::DataTransfer);
        drives.contains(address).then(|| usize::from(address - drives.first))
    }

    /// Every element at or above `start`, in ascending address order, of
    /// type `only` if given.
    pub fn elements_from(
        &self,
        start: u16,
        only: Option<ElementType>,
    ) -> impl Iterator<Item = (u16, ElementType)> + '_ {
        self.ranges
            .iter()
            .filter(move |(t, _)| only.is_none_or(|o| o == *t))
            .flat_map(|(t, r)| r.addresses().map(move |a| (a, *t)))
            .filter(move |(a, _)| *a >= start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_layout_follows_the_plan() {
        let l = Layout::new(Personality::AwsGatewayVtl, Personality::AwsGatewayVtl.default_counts()).unwrap();
        assert_eq!(l.transport(), 1);
        assert_eq!(l.range(ElementType::DataTransfer), ElementRange { first: 0x100, count: 10 });
        assert_eq!(l.range(ElementType::Storage), ElementRange { first: 0x1000, count: 1600 });
        assert_eq!(l.range(ElementType::ImportExport), ElementRange { first: 0x4000, count: 1600 });
        assert_eq!(l.element_type(0x1000 + 1599), Some(ElementType::Storage));
        assert_eq!(l.element_type(0x1000 + 1600), None);
        assert_eq!(l.element_type(0), None);
        assert_eq!(l.drive_index(0x109), Some(9));
        assert_eq!(l.drive_index(0x10A), None);
    }

    #[test]
    fn stk_layout_and_address_order() {
        let counts = ElementCounts { drives: 2, storage: 3, import_export: 2 };
        let l = Layout::new(Personality::StkL700, counts).unwrap();
        let all: Vec<(u16, ElementType)> = l.elements_from(0, None).collect();
        use ElementType::*;
        assert_eq!(
            all,
            vec![
                (1, MediumTransport),
                (10, ImportExport),
                (11, ImportExport),
                (500, DataTransfer),
                (501, DataTransfer),
                (1000, Storage),
                (1001, Storage),
                (1002, Storage),
            ]
        );
        let from: Vec<u16> = l.elements_from(501, Some(Storage)).map(|(a, _)| a).collect();
        assert_eq!(from, vec![1000, 1001, 1002]);
        assert_eq!(l.counts(), counts);
    }

    #[test]
    fn overlapping_or_overflowing_counts_are_refused() {
        // STK import/export cells start at 10 and drives at 500.
        let too_many_cells = ElementCounts { drives: 1, storage: 1, import_export: 491 };
        assert_eq!(
            Layout::new(Personality::StkL700, too_many_cells),
            Err(LayoutError::Overlap(ElementType::ImportExport, ElementType::DataTransfer))
        );
        let past_end = ElementCounts { drives: 1, storage: 1, import_export: 0xC001 };
        assert_eq!(
            Layout::new(Personality::AwsGatewayVtl, past_end),
            Err(LayoutError::AddressOverflow(ElementType::ImportExport))
        );
        let empty_types = ElementCounts { drives: 0, storage: 0, import_export: 0 };
        assert!(Layout::new(Personality::StkL700, empty_types).is_ok());
    }
}
