//! Which tape is in which element of the library, and the pure rules for
//! changing that: moves and exchanges (SMC-3 MOVE MEDIUM, EXCHANGE MEDIUM),
//! and the gateway putting new tapes into, and taking exported tapes out
//! of, the import/export slots.
//!
//! Nothing here performs I/O: the changer ([`crate::smc`]) applies an
//! operation to a copy, does what the drives and the tape store need, and
//! only then keeps the copy.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::layout::{ElementType, Layout};

/// A volume tag (barcode) holds at most 32 characters.
pub const MAX_BARCODE_LEN: usize = 32;

/// A tape in an element.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cartridge {
    pub barcode: String,
    /// The last storage or import/export element the tape was moved from:
    /// READ ELEMENT STATUS reports it (SVALID), and `mtx unload` without a
    /// slot returns the tape there. Moving out of a drive keeps it, so a
    /// tape that went slot → drive → slot still remembers its home slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<u16>,
    /// Set exactly when the tape sits in an import/export element.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail: Option<MailSlotState>,
}

/// How a tape came to be in an import/export element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MailSlotState {
    /// The gateway put it there (a new or retrieved tape): the application
    /// may import it. READ ELEMENT STATUS sets ImpExp.
    Imported,
    /// The application moved it there: the gateway is taking it out of the
    /// library (archiving it). The medium transport can no longer reach it.
    Exported,
}

/// Which field of a command named an element, for sense field pointers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Transport,
    Source,
    Destination,
    /// EXCHANGE MEDIUM's second destination.
    SecondDestination,
}

/// Why an operation on the element map was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElementError {
    /// No such element, or one this operation cannot use (the medium
    /// transport never holds a tape; EXCHANGE does not involve drives).
    #[error("element address {address} is not valid as the {role:?}")]
    InvalidAddress { address: u16, role: Role },
    #[error("source element {0} is empty")]
    SourceEmpty(u16),
    #[error("destination element {0} is full")]
    DestinationFull(u16),
    /// The tape in this import/export element is being exported: the
    /// gateway, not the medium transport, takes it from here.
    #[error("import/export element {0} holds a tape that is being exported")]
    ExportInProgress(u16),
    #[error("no import/export element is free")]
    NoFreeImportExport,
    #[error("a tape with barcode {0:?} is already in the library")]
    DuplicateBarcode(String),
    #[error("{0:?} is not a barcode: 1 to 32 printable ASCII characters without spaces")]
    InvalidBarcode(String),
    #[error("tape {0:?} is not in the library")]
    NotFound(String),
    #[error("tape {barcode:?} is in element {address}, not in an import/export element")]
    NotInImportExport { barcode: String, address: u16 },
    /// A persisted map names an element the library no longer has (its
    /// counts or personality changed).
    #[error("the element map puts tape {barcode:?} at {address}, which this library has no use for")]
    UnknownElement { barcode: String, address: u16 },
    #[error("tape {barcode:?} at {address}: import/export state does not match the element")]
    MailStateMismatch { barcode: String, address: u16 },
}

/// One tape changing element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Movement {
    pub barcode: String,
    pub from: u16,
    pub to: u16,
}

/// Which barcode is in which element; persisted by the gateway as JSON.
/// Empty elements are absent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElementMap {
    occupied: BTreeMap<u16, Cartridge>,
}

fn valid_barcode(barcode: &str) -> bool {
    (1..=MAX_BARCODE_LEN).contains(&barcode.len()) && barcode.bytes().all(|b| b.is_ascii_graphic())
}

/// Elements that can hold a tape: everything but the medium transport.
fn holds_tapes(layout: &Layout, address: u16) -> Option<ElementType> {
    layout.element_type(address).filter(|t| *t != ElementType::MediumTransport)
}

impl ElementMap {
    pub fn new() -> ElementMap {
        ElementMap::default()
    }

    pub fn get(&self, address: u16) -> Option<&Cartridge> {
        self.occupied.get(&address)
    }

    /// Occupied elements in address order.
    pub fn iter(&self) -> impl Iterator<Item = (u16, &Cartridge)> {
        self.occupied.iter().map(|(a, c)| (*a, c))
    }

    /// Where the tape with this barcode is.
    pub fn locate(&self, barcode: &str) -> Option<u16> {
        self.iter().find(|(_, c)| c.barcode == barcode).map(|(a, _)| a)
    }

    /// Tapes the application exported that the gateway has not taken out
    /// yet (after a restart, the exports to finish).
    pub fn awaiting_removal(&self) -> impl Iterator<Item = (u16, &str)> {
        self.iter().filter(|(_, c)| c.mail == Some(MailSlotState::Exported)).map(|(a, c)| (a, c.barcode.as_str()))
    }

    /// Checks a map (one read back from disk) against the library: every
    /// tape in an element that holds tapes, barcodes valid and unique,
    /// import/export state exactly on import/export elements.
    pub fn validate(&self, layout: &Layout) -> Result<(), ElementError> {
        let mut seen = std::collections::HashSet::new();
        for (address, c) in self.iter() {
            let ty = holds_tapes(layout, address)
                .ok_or_else(|| ElementError::UnknownElement { barcode: c.barcode.clone(), address })?;
            if !valid_barcode(&c.barcode) {
                return Err(ElementError::InvalidBarcode(c.barcode.clone()));
            }
            if !seen.insert(c.barcode.as_str()) {
                return Err(ElementError::DuplicateBarcode(c.barcode.clone()));
            }
            if (ty == ElementType::ImportExport) != c.mail.is_some() {
                return Err(ElementError::MailStateMismatch { barcode: c.barcode.clone(), address });
            }
        }
        Ok(())
    }

    /// A full element the medium transport may take a tape from.
    fn take_from(&self, layout: &Layout, address: u16, role: Role) -> Result<(ElementType, &Cartridge), ElementError> {
        let ty = holds_tapes(layout, address).ok_or(ElementError::InvalidAddress { address, role })?;
        let c = self.occupied.get(&address).ok_or(ElementError::SourceEmpty(address))?;
        if c.mail == Some(MailSlotState::Exported) {
            return Err(ElementError::ExportInProgress(address));
        }
        Ok((ty, c))
    }

    /// Puts `c`, coming from `from` (of type `from_ty`), into `to`.
    fn place(&mut self, layout: &Layout, mut c: Cartridge, from: u16, from_ty: ElementType, to: u16) {
        if from_ty != ElementType::DataTransfer {
            c.source = Some(from);
        }
        c.mail = (layout.element_type(to) == Some(ElementType::ImportExport)).then_some(MailSlotState::Exported);
        self.occupied.insert(to, c);
    }

    /// MOVE MEDIUM: the tape in `source` goes to `destination`. Moving a
    /// tape onto its own element changes nothing. A tape moved into an
    /// import/export element is exported.
    pub fn move_medium(&mut self, layout: &Layout, source: u16, destination: u16) -> Result<Movement, ElementError> {
        let (from_ty, c) = self.take_from(layout, source, Role::Source)?;
        let barcode = c.barcode.clone();
        holds_tapes(layout, destination)
            .ok_or(ElementError::InvalidAddress { address: destination, role: Role::Destination })?;
        if source == destination {
            return Ok(Movement { barcode, from: source, to: destination });
        }
        if self.occupied.contains_key(&destination) {
            return Err(ElementError::DestinationFull(destination));
        }
        let c = self.occupied.remove(&source).ok_or(ElementError::SourceEmpty(source))?;
        self.place(layout, c, source, from_ty, destination);
        Ok(Movement { barcode, from: source, to: destination })
    }

    /// EXCHANGE MEDIUM: the tape in `source` goes to `first`, and the tape
    /// that was in `first` goes to `second` (which may be `source`: a swap).
    /// Only storage and import/export elements take part: a drive would
    /// need a load and an unload that could fail halfway, leaving a tape in
    /// neither place (the device capabilities page says so).
    pub fn exchange_medium(
        &mut self,
        layout: &Layout,
        source: u16,
        first: u16,
        second: u16,
    ) -> Result<[Movement; 2], ElementError> {
        let exchangeable = |address: u16, role: Role| match layout.element_type(address) {
            Some(ElementType::Storage | ElementType::ImportExport) => Ok(()),
            _ => Err(ElementError::InvalidAddress { address, role }),
        };
        exchangeable(source, Role::Source)?;
        exchangeable(first, Role::Destination)?;
        exchangeable(second, Role::SecondDestination)?;
        if source == first {
            return Err(ElementError::InvalidAddress { address: first, role: Role::Destination });
        }
        let (source_ty, _) = self.take_from(layout, source, Role::Source)?;
        let (first_ty, _) = self.take_from(layout, first, Role::Destination)?;
        if second != source && self.occupied.contains_key(&second) {
            return Err(ElementError::DestinationFull(second));
        }
        let moving = self.occupied.remove(&source).ok_or(ElementError::SourceEmpty(source))?;
        let displaced = self.occupied.remove(&first).ok_or(ElementError::SourceEmpty(first))?;
        let movements = [
            Movement { barcode: moving.barcode.clone(), from: source, to: first },
            Movement { barcode: displaced.barcode.clone(), from: first, to: second },
        ];
        self.place(layout, moving, source, source_ty, first);
        self.place(layout, displaced, first, first_ty, second);
        Ok(movements)
    }

    /// The gateway puts a new (or retrieved) tape into the free
    /// import/export element with the lowest address.
    pub fn insert_import(&mut self, layout: &Layout, barcode: &str) -> Result<u16, ElementError> {
        if !valid_barcode(barcode) {
            return Err(ElementError::InvalidBarcode(barcode.into()));
        }
        if self.locate(barcode).is_some() {
            return Err(ElementError::DuplicateBarcode(barcode.into()));
        }
        let free = layout
            .range(ElementType::ImportExport)
            .addresses()
            .find(|a| !self.occupied.contains_key(a))
            .ok_or(ElementError::NoFreeImportExport)?;
        let c = Cartridge { barcode: barcode.into(), source: None, mail: Some(MailSlotState::Imported) };
        self.occupied.insert(free, c);
        Ok(free)
    }

    /// The gateway takes a tape out of its import/export element: an
    /// exported tape once it has it, or a new tape the application never
    /// imported (the tape is being deleted). Returns the freed element.
    pub fn remove_from_import_export(&mut self, layout: &Layout, barcode: &str) -> Result<u16, ElementError> {
        let address = self.locate(barcode).ok_or_else(|| ElementError::NotFound(barcode.into()))?;
        if layout.element_type(address) != Some(ElementType::ImportExport) {
            return Err(ElementError::NotInImportExport { barcode: barcode.into(), address });
        }
        self.occupied.remove(&address);
        Ok(address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::ElementCounts;
    use crate::personality::Personality;

    /// STK plan, small: transport 1, I/E 10-11, drives 500-501, slots
    /// 1000-1003.
    fn layout() -> Layout {
        Layout::new(Personality::StkL700, ElementCounts { drives: 2, storage: 4, import_export: 2 }).unwrap()
    }

    /// A1 in slot 1000, B2 in slot 1001.
    fn two_tapes() -> ElementMap {
        let l = layout();
        let mut m = ElementMap::new();
        for (barcode, slot) in [("A1", 1000), ("B2", 1001)] {
            let at = m.insert_import(&l, barcode).unwrap();
            m.move_medium(&l, at, slot).unwrap();
        }
        m
    }

    fn cart(barcode: &str, source: Option<u16>, mail: Option<MailSlotState>) -> Cartridge {
        Cartridge { barcode: barcode.into(), source, mail }
    }

    #[test]
    fn import_takes_the_lowest_free_mail_slot_until_none_is_left() {
        let l = layout();
        let mut m = ElementMap::new();
        assert_eq!(m.insert_import(&l, "T1"), Ok(10));
        assert_eq!(m.insert_import(&l, "T2"), Ok(11));
        assert_eq!(m.insert_import(&l, "T3"), Err(ElementError::NoFreeImportExport));
        assert_eq!(m.get(10), Some(&cart("T1", None, Some(MailSlotState::Imported))));
        assert_eq!(m.remove_from_import_export(&l, "T1"), Ok(10));
        assert_eq!(m.insert_import(&l, "T3"), Ok(10));
    }

    #[test]
    fn import_refuses_bad_and_duplicate_barcodes() {
        let l = layout();
        let mut m = two_tapes();
        assert_eq!(m.insert_import(&l, "A1"), Err(ElementError::DuplicateBarcode("A1".into())));
        for bad in ["", "HAS SPACE", "ÄÖ", &"X".repeat(33)] {
            assert_eq!(m.insert_import(&l, bad), Err(ElementError::InvalidBarcode(bad.into())));
        }
        assert_eq!(m.insert_import(&l, &"X".repeat(32)), Ok(10));
    }

    #[test]
    fn move_follows_the_smc_rules() {
        let l = layout();
        let mut m = two_tapes();
        let before = m.clone();
        assert_eq!(m.move_medium(&l, 1002, 500), Err(ElementError::SourceEmpty(1002)));
        assert_eq!(m.move_medium(&l, 1000, 1001), Err(ElementError::DestinationFull(1001)));
        assert_eq!(m.move_medium(&l, 999, 500), Err(ElementError::InvalidAddress { address: 999, role: Role::Source }));
        assert_eq!(
            m.move_medium(&l, 1000, 502),
            Err(ElementError::InvalidAddress { address: 502, role: Role::Destination })
        );
        // The transport never holds a tape.
        assert_eq!(
            m.move_medium(&l, 1000, 1),
            Err(ElementError::InvalidAddress { address: 1, role: Role::Destination })
        );
        assert_eq!(m.move_medium(&l, 1, 1000), Err(ElementError::InvalidAddress { address: 1, role: Role::Source }));
        assert_eq!(m, before, "refused moves change nothing");
        assert_eq!(m.move_medium(&l, 1000, 1000), Ok(Movement { barcode: "A1".into(), from: 1000, to: 1000 }));
        assert_eq!(m, before);
    }

    #[test]
    fn source_is_the_last_storage_element_and_survives_drives() {
        let l = layout();
        let mut m = two_tapes();
        assert_eq!(m.get(1000), Some(&cart("A1", Some(10), None)));
        m.move_medium(&l, 1000, 500).unwrap();
        assert_eq!(m.get(500), Some(&cart("A1", Some(1000), None)));
        m.move_medium(&l, 500, 501).unwrap();
        assert_eq!(m.get(501).and_then(|c| c.source), Some(1000), "drive to drive keeps the home slot");
        m.move_medium(&l, 501, 1003).unwrap();
        assert_eq!(m.get(1003), Some(&cart("A1", Some(1000), None)));
        assert_eq!(m.locate("A1"), Some(1003));
        assert_eq!(m.locate("ZZ"), None);
    }

    #[test]
    fn a_move_into_a_mail_slot_exports_and_freezes_the_tape() {
        let l = layout();
        let mut m = two_tapes();
        m.move_medium(&l, 1000, 11).unwrap();
        assert_eq!(m.get(11), Some(&cart("A1", Some(1000), Some(MailSlotState::Exported))));
        assert_eq!(m.awaiting_removal().collect::<Vec<_>>(), vec![(11, "A1")]);
        assert_eq!(m.move_medium(&l, 11, 1000), Err(ElementError::ExportInProgress(11)));
        assert_eq!(m.exchange_medium(&l, 1001, 11, 1001), Err(ElementError::ExportInProgress(11)));
        assert_eq!(m.remove_from_import_export(&l, "A1"), Ok(11));
        assert_eq!(m.locate("A1"), None);
        assert_eq!(
            m.remove_from_import_export(&l, "B2"),
            Err(ElementError::NotInImportExport { barcode: "B2".into(), address: 1001 })
        );
        assert_eq!(m.remove_from_import_export(&l, "A1"), Err(ElementError::NotFound("A1".into())));
    }

    #[test]
    fn importing_into_the_library_clears_the_mail_state() {
        let l = layout();
        let mut m = ElementMap::new();
        m.insert_import(&l, "N1").unwrap();
        m.move_medium(&l, 10, 500).unwrap();
        assert_eq!(m.get(500), Some(&cart("N1", Some(10), None)));
    }

    #[test]
    fn exchange_swaps_or_rotates_between_slots() {
        let l = layout();
        let mut m = two_tapes();
        let swapped = m.exchange_medium(&l, 1000, 1001, 1000).unwrap();
        assert_eq!(swapped[0], Movement { barcode: "A1".into(), from: 1000, to: 1001 });
        assert_eq!(swapped[1], Movement { barcode: "B2".into(), from: 1001, to: 1000 });
        assert_eq!(m.get(1000), Some(&cart("B2", Some(1001), None)));
        assert_eq!(m.get(1001), Some(&cart("A1", Some(1000), None)));
        // Rotate: 1000 -> 1001 -> 1002.
        m.exchange_medium(&l, 1000, 1001, 1002).unwrap();
        assert_eq!(m.locate("B2"), Some(1001));
        assert_eq!(m.locate("A1"), Some(1002));
        assert_eq!(m.get(1000), None);
    }

    #[test]
    fn exchange_refuses_what_it_cannot_do() {
        let l = layout();
        let mut m = two_tapes();
        m.move_medium(&l, 1001, 500).unwrap();
        let before = m.clone();
        let invalid = |address, role| Err(ElementError::InvalidAddress { address, role });
        assert_eq!(m.exchange_medium(&l, 1000, 500, 1000), invalid(500, Role::Destination));
        assert_eq!(m.exchange_medium(&l, 500, 1000, 500), invalid(500, Role::Source));
        assert_eq!(m.exchange_medium(&l, 1000, 1000, 1002), invalid(1000, Role::Destination));
        assert_eq!(m.exchange_medium(&l, 1000, 1002, 1003), Err(ElementError::SourceEmpty(1002)));
        assert_eq!(m.exchange_medium(&l, 1002, 1000, 1003), Err(ElementError::SourceEmpty(1002)));
        m.insert_import(&l, "C3").unwrap();
        assert_eq!(m.exchange_medium(&l, 1000, 10, 10), Err(ElementError::DestinationFull(10)));
        m.move_medium(&l, 10, 1003).unwrap();
        assert_eq!(m.exchange_medium(&l, 1000, 1003, 1003), Err(ElementError::DestinationFull(1003)));
        assert_eq!(m.exchange_medium(&l, 1000, 1003, 2), invalid(2, Role::SecondDestination));
        let exported = m.exchange_medium(&l, 1000, 1003, 11).unwrap();
        assert_eq!(exported[1].to, 11);
        assert_eq!(m.get(11).and_then(|c| c.mail), Some(MailSlotState::Exported));
        assert_ne!(m, before);
    }

    #[test]
    fn json_round_trip_and_validation() {
        let l = layout();
        let mut m = two_tapes();
        m.move_medium(&l, 1000, 500).unwrap();
        m.insert_import(&l, "NEW").unwrap();
        m.move_medium(&l, 1001, 11).unwrap();
        let json = serde_json::to_string(&m).unwrap();
        let back: ElementMap = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.validate(&l), Ok(()));
        assert!(json.contains("\"exported\"") && json.contains("\"imported\""), "{json}");

        // Fewer slots than the map uses: the library refuses it.
        let smaller =
            Layout::new(Personality::StkL700, ElementCounts { drives: 0, storage: 4, import_export: 2 }).unwrap();
        assert_eq!(back.validate(&smaller), Err(ElementError::UnknownElement { barcode: "A1".into(), address: 500 }));
        let edited = json.replace("\"B2\"", "\"A1\"");
        let dup: ElementMap = serde_json::from_str(&edited).unwrap();
        assert_eq!(dup.validate(&l), Err(ElementError::DuplicateBarcode("A1".into())));
        let no_mail = r#"{"occupied":{"10":{"barcode":"X"}}}"#;
        let m: ElementMap = serde_json::from_str(no_mail).unwrap();
        assert_eq!(m.validate(&l), Err(ElementError::MailStateMismatch { barcode: "X".into(), address: 10 }));
        assert!(serde_json::from_str::<ElementMap>(r#"{"occupied":{"70000":{"barcode":"X"}}}"#).is_err());
    }
}
