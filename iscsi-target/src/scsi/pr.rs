//! Persistent reservations (SPC-4 5.9, 6.15, 6.16): registrations, the
//! reservation, the access rules for other commands, and PERSISTENT RESERVE
//! IN/OUT.
//!
//! State lives in memory. A unit given a [`UnitStateStore`] persists it
//! through power loss (SPC-4 5.14.11): while the last REGISTER, REGISTER AND
//! IGNORE EXISTING KEY or REGISTER AND MOVE had APTPL set, every change is
//! saved before the command completes, and one with APTPL clear removes
//! the saved state. REPORT CAPABILITIES says PTPL_C=1 for such units and
//! PTPL_A is the current APTPL; a unit without a store refuses APTPL=1.
//!
//! [`UnitStateStore`]: super::lu::UnitStateStore
//!
//! Registrations belong to I_T nexuses named by initiator port (iSCSI name
//! plus ISID) and target port, so they survive the sessions that made them.

use bytes::{BufMut, Bytes, BytesMut};

use super::cdb::{PrInAction, PrOutAction};
use super::lu::ItNexus;
use super::opcodes::Access;
use super::sense::Sense;

/// iSCSI protocol identifier in TransportIDs and designators.
pub const ISCSI_PROTOCOL_ID: u8 = 0x5;

/// Persistent reservation types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrType {
    WriteExclusive = 1,
    ExclusiveAccess = 3,
    WriteExclusiveRegistrantsOnly = 5,
    ExclusiveAccessRegistrantsOnly = 6,
    WriteExclusiveAllRegistrants = 7,
    ExclusiveAccessAllRegistrants = 8,
}

impl PrType {
    /// From the TYPE code (SPC-4 table 169), as CDBs and saved state carry it.
    pub fn from_code(code: u8) -> Option<PrType> {
        Some(match code {
            1 => PrType::WriteExclusive,
            3 => PrType::ExclusiveAccess,
            5 => PrType::WriteExclusiveRegistrantsOnly,
            6 => PrType::ExclusiveAccessRegistrantsOnly,
            7 => PrType::WriteExclusiveAllRegistrants,
            8 => PrType::ExclusiveAccessAllRegistrants,
            _ => return None,
        })
    }

    /// From byte 2 of the PERSISTENT RESERVE OUT CDB (scope must be LU_SCOPE).
    fn from_scope_type(b: u8) -> Result<PrType, Sense> {
        if b >> 4 != 0 {
            return Err(Sense::invalid_cdb_field(2, Some(7)));
        }
        PrType::from_code(b & 0x0F).ok_or_else(|| Sense::invalid_cdb_field(2, Some(3)))
    }

    fn all_registrants(self) -> bool {
        matches!(self, PrType::WriteExclusiveAllRegistrants | PrType::ExclusiveAccessAllRegistrants)
    }

    fn registrants_only(self) -> bool {
        matches!(self, PrType::WriteExclusiveRegistrantsOnly | PrType::ExclusiveAccessRegistrantsOnly)
    }
}

/// An I_T nexus as registrations name it. `isid: None` (from a TransportID
/// without ISID) matches every initiator port of that iSCSI name;
/// `target_port: None` (ALL_TG_PT) matches every target port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortId {
    pub initiator_name: String,
    pub isid: Option<[u8; 6]>,
    pub target_port: Option<String>,
    pub relative_port: u16,
}

impl PortId {
    pub fn of(n: &ItNexus) -> PortId {
        PortId {
            initiator_name: n.initiator_name.to_ascii_lowercase(),
            isid: Some(n.isid),
            target_port: Some(n.target_port.clone()),
            relative_port: n.relative_port,
        }
    }

    pub fn matches(&self, n: &ItNexus) -> bool {
        self.initiator_name.eq_ignore_ascii_case(&n.initiator_name)
            && self.isid.is_none_or(|i| i == n.isid)
            && self.target_port.as_ref().is_none_or(|t| *t == n.target_port)
    }

    /// The iSCSI TransportID (SPC-4 7.6.4.6): format 01b with the ISID when
    /// known, else format 00b; null-terminated, padded to a multiple of 4.
    fn transport_id(&self) -> BytesMut {
        let name = match self.isid {
            Some(isid) => format!("{},i,0x{}", self.initiator_name, hex::encode(isid)),
            None => self.initiator_name.clone(),
        };
        let padded = (name.len() + 1).div_ceil(4) * 4;
        let padded = padded.max(if self.isid.is_some() { 4 } else { 16 });
        let mut b = BytesMut::with_capacity(4 + padded);
        b.put_u8(if self.isid.is_some() { 0x40 } else { 0 } | ISCSI_PROTOCOL_ID);
        b.put_u8(0);
        b.put_u16(padded as u16);
        b.put_slice(name.as_bytes());
        b.put_bytes(0, padded - name.len());
        b
    }
}

/// Parse one iSCSI TransportID at the start of `b`; returns it (without a
/// target port) and its length. `at` is its offset in the parameter list,
/// for the field pointer.
fn parse_transport_id(b: &[u8], at: usize) -> Result<(PortId, usize), Sense> {
    let bad = |off: usize| Sense::invalid_param_field((at + off) as u16, None);
    let head = b.get(..4).ok_or_else(|| bad(0))?;
    let (format, proto) = (head[0] >> 6, head[0] & 0x0F);
    if proto != ISCSI_PROTOCOL_ID || format > 1 {
        return Err(bad(0));
    }
    let len = u16::from_be_bytes([head[2], head[3]]) as usize;
    let body = b.get(4..4 + len).ok_or_else(|| bad(2))?;
    let text = body.split(|&c| c == 0).next().unwrap_or(&[]);
    let text = std::str::from_utf8(text).map_err(|_| bad(4))?;
    let (name, isid) = if format == 1 {
        let (name, isid_hex) = text.split_once(",i,0x").ok_or_else(|| bad(4))?;
        let mut isid = [0u8; 6];
        hex::decode_to_slice(isid_hex, &mut isid).map_err(|_| bad(4))?;
        (name, Some(isid))
    } else {
        (text, None)
    };
    if name.is_empty() {
        return Err(bad(4));
    }
    Ok((PortId { initiator_name: name.to_ascii_lowercase(), isid, target_port: None, relative_port: 0 }, 4 + len))
}

/// A reservation key registered for an I_T nexus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub key: u64,
    pub port: PortId,
}

/// The persistent reservation of a logical unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The registration that holds it; for all-registrants types every
    /// registrant holds it and this is the one that reserved.
    pub holder: PortId,
    pub kind: PrType,
}

/// What a unit saves while APTPL is in force, and restores at open: the
/// registrations with their I_T nexuses, and the reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedReservations {
    pub generation: u32,
    pub registrations: Vec<Registration>,
    pub reservation: Option<Reservation>,
}

/// Why a PERSISTENT RESERVE OUT failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrError {
    Conflict,
    Check(Sense),
}

impl From<Sense> for PrError {
    fn from(s: Sense) -> Self {
        PrError::Check(s)
    }
}

/// A unit attention PERSISTENT RESERVE OUT establishes for the nexuses a
/// registration names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrUnitAttention {
    pub to: PortId,
    pub sense: Sense,
}

/// Persistent reservation state of one logical unit.
#[derive(Debug, Default, Clone)]
pub struct PersistentReservations {
    generation: u32,
    registrations: Vec<Registration>,
    reservation: Option<Reservation>,
    /// The unit can persist this state (PTPL_C).
    ptpl_capable: bool,
    /// The last PERSISTENT RESERVE OUT that had a valid APTPL bit set it.
    aptpl: bool,
}

/// The PERSISTENT RESERVE OUT parameter list (basic form, SPC-4 6.16.3).
struct OutParams<'a> {
    key: u64,
    sa_key: u64,
    spec_i_pt: bool,
    all_tg_pt: bool,
    aptpl: bool,
    rest: &'a [u8],
}

fn be64(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).and_then(|s| s.try_into().ok()).map(u64::from_be_bytes).unwrap_or(0)
}

fn be32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4).and_then(|s| s.try_into().ok()).map(u32::from_be_bytes).unwrap_or(0)
}

impl PersistentReservations {
    /// The state of a unit that can persist it: empty, or what it saved
    /// (which was saved under APTPL, so APTPL is in force again).
    pub fn persistable(saved: Option<SavedReservations>) -> PersistentReservations {
        match saved {
            Some(s) => PersistentReservations {
                generation: s.generation,
                registrations: s.registrations,
                reservation: s.reservation,
                ptpl_capable: true,
                aptpl: true,
            },
            None => PersistentReservations { ptpl_capable: true, ..Default::default() },
        }
    }

    /// Whether this state must survive power loss (APTPL in force).
    pub fn persists(&self) -> bool {
        self.aptpl
    }

    /// The state to save.
    pub fn saved(&self) -> SavedReservations {
        SavedReservations {
            generation: self.generation,
            registrations: self.registrations.clone(),
            reservation: self.reservation.clone(),
        }
    }

    fn registration(&self, n: &ItNexus) -> Option<&Registration> {
        self.registrations.iter().find(|r| r.port.matches(n))
    }

    pub fn is_registered(&self, n: &ItNexus) -> bool {
        self.registration(n).is_some()
    }

    pub fn has_reservation(&self) -> bool {
        self.reservation.is_some()
    }

    pub fn has_registrations(&self) -> bool {
        !self.registrations.is_empty()
    }

    fn is_holder(&self, n: &ItNexus) -> bool {
        match &self.reservation {
            Some(r) if r.kind.all_registrants() => self.is_registered(n),
            Some(r) => r.holder.matches(n),
            None => false,
        }
    }

    /// Whether a command of class `access` from `n` conflicts with the
    /// reservation (SPC-4 table 66, SBC-3 table 13).
    pub fn conflicts(&self, n: &ItNexus, access: Access) -> bool {
        let Some(res) = &self.reservation else { return false };
        if matches!(access, Access::Unrestricted | Access::SelfChecked) || self.is_holder(n) {
            return false;
        }
        let registered = self.is_registered(n);
        match res.kind {
            PrType::WriteExclusive => access == Access::Write,
            PrType::ExclusiveAccess => true,
            PrType::WriteExclusiveRegistrantsOnly | PrType::WriteExclusiveAllRegistrants => {
                access == Access::Write && !registered
            }
            PrType::ExclusiveAccessRegistrantsOnly | PrType::ExclusiveAccessAllRegistrants => !registered,
        }
    }

    /// PERSISTENT RESERVE IN parameter data.
    pub fn read(&self, action: PrInAction) -> Bytes {
        let mut b = BytesMut::new();
        match action {
            PrInAction::ReadKeys => {
                b.put_u32(self.generation);
                b.put_u32(self.registrations.len() as u32 * 8);
                for r in &self.registrations {
                    b.put_u64(r.key);
                }
            }
            PrInAction::ReadReservation => {
                b.put_u32(self.generation);
                match &self.reservation {
                    Some(res) => {
                        b.put_u32(16);
                        let key = if res.kind.all_registrants() { 0 } else { self.key_of(&res.holder) };
                        b.put_u64(key);
                        b.put_u32(0);
                        b.put_u8(0);
                        b.put_u8(res.kind as u8);
                        b.put_u16(0);
                    }
                    None => b.put_u32(0),
                }
            }
            PrInAction::ReportCapabilities => {
                b.put_u16(8);
                // CRH: RESERVE/RELEASE coexist per 5.9.3; SIP_C, ATP_C,
                // PTPL_C when the unit can persist.
                b.put_u8(0x10 | 0x08 | 0x04 | self.ptpl_capable as u8);
                // TMV, ALLOW COMMANDS 001b (SPC-4 table 166), PTPL_A.
                b.put_u8(0x80 | 0x10 | self.aptpl as u8);
                b.put_u8(0x80 | 0x40 | 0x20 | 0x08 | 0x02);
                b.put_u8(0x01);
                b.put_u16(0);
            }
            PrInAction::ReadFullStatus => {
                let mut descs = BytesMut::new();
                for r in &self.registrations {
                    let holder =
                        self.reservation.as_ref().is_some_and(|res| res.kind.all_registrants() || res.holder == r.port);
                    let tid = r.port.transport_id();
                    descs.put_u64(r.key);
                    descs.put_u32(0);
                    descs.put_u8((r.port.target_port.is_none() as u8) << 1 | holder as u8);
                    descs.put_u8(if holder { self.reservation.as_ref().map_or(0, |res| res.kind as u8) } else { 0 });
                    descs.put_u32(0);
                    descs.put_u16(r.port.relative_port);
                    descs.put_u32(tid.len() as u32);
                    descs.put_slice(&tid);
                }
                b.put_u32(self.generation);
                b.put_u32(descs.len() as u32);
                b.put_slice(&descs);
            }
        }
        b.freeze()
    }

    fn key_of(&self, port: &PortId) -> u64 {
        self.registrations.iter().find(|r| r.port == *port).map_or(0, |r| r.key)
    }

    /// Run a PERSISTENT RESERVE OUT; returns the unit attentions to deliver.
    pub fn out(
        &mut self,
        n: &ItNexus,
        action: PrOutAction,
        scope_type: u8,
        param_len: u32,
        data: &[u8],
    ) -> Result<Vec<PrUnitAttention>, PrError> {
        let data = data.get(..param_len as usize).ok_or(Sense::PARAMETER_LIST_LENGTH_ERROR)?;
        if action == PrOutAction::RegisterAndMove {
            // Its own parameter list; SCOPE and TYPE are ignored.
            return self.register_and_move(n, data);
        }
        let p = parse_out_params(data)?;
        // APTPL counts only for the registering actions (SPC-4 6.16.3).
        let registering = matches!(action, PrOutAction::Register | PrOutAction::RegisterAndIgnoreExistingKey);
        if registering && p.aptpl && !self.ptpl_capable {
            return Err(Sense::invalid_param_field(20, Some(0)).into());
        }
        if p.spec_i_pt && action != PrOutAction::Register {
            return Err(Sense::invalid_param_field(20, Some(3)).into());
        }
        if p.all_tg_pt && !matches!(action, PrOutAction::Register | PrOutAction::RegisterAndIgnoreExistingKey) {
            return Err(Sense::invalid_param_field(20, Some(2)).into());
        }
        let uas = match action {
            PrOutAction::Register => self.register(n, &p, false),
            PrOutAction::RegisterAndIgnoreExistingKey => self.register(n, &p, true),
            PrOutAction::Reserve => self.reserve(n, &p, scope_type).map(|()| Vec::new()),
            PrOutAction::Release => self.release(n, &p, scope_type),
            PrOutAction::Clear => self.clear(n, &p),
            PrOutAction::Preempt | PrOutAction::PreemptAndAbort => self.preempt(n, &p, scope_type),
            PrOutAction::RegisterAndMove => self.register_and_move(n, data),
        }?;
        if registering {
            self.aptpl = p.aptpl;
        }
        Ok(uas)
    }

    /// The caller's registration, whose key must equal RESERVATION KEY.
    fn check_key(&self, n: &ItNexus, key: u64) -> Result<PortId, PrError> {
        match self.registration(n) {
            Some(r) if r.key == key => Ok(r.port.clone()),
            _ => Err(PrError::Conflict),
        }
    }

    fn register(&mut self, n: &ItNexus, p: &OutParams<'_>, ignore_key: bool) -> Result<Vec<PrUnitAttention>, PrError> {
        let mut uas = Vec::new();
        match self.registration(n).map(|r| r.key) {
            None => {
                if !ignore_key && p.key != 0 {
                    return Err(PrError::Conflict);
                }
                if p.sa_key == 0 {
                    if p.spec_i_pt {
                        return Err(Sense::invalid_param_field(8, None).into());
                    }
                    return Ok(uas);
                }
                let mut ports = vec![self.port_for(n, p.all_tg_pt)];
                if p.spec_i_pt {
                    ports.extend(parse_spec_i_pt(p.rest, n, p.all_tg_pt)?);
                }
                for port in ports {
                    self.registrations.retain(|r| r.port != port);
                    self.registrations.push(Registration { key: p.sa_key, port });
                }
            }
            Some(existing) => {
                if !ignore_key && existing != p.key {
                    return Err(PrError::Conflict);
                }
                if p.spec_i_pt {
                    return Err(Sense::invalid_param_field(20, Some(3)).into());
                }
                if p.sa_key == 0 {
                    uas = self.unregister(n);
                } else if let Some(r) = self.registrations.iter_mut().find(|r| r.port.matches(n)) {
                    r.key = p.sa_key;
                }
            }
        }
        self.generation = self.generation.wrapping_add(1);
        Ok(uas)
    }

    fn port_for(&self, n: &ItNexus, all_tg_pt: bool) -> PortId {
        let mut port = PortId::of(n);
        if all_tg_pt {
            port.target_port = None;
        }
        port
    }

    /// Remove the caller's registration; releases the reservation when the
    /// holder goes (for all-registrants types, when the last one goes).
    fn unregister(&mut self, n: &ItNexus) -> Vec<PrUnitAttention> {
        let Some(idx) = self.registrations.iter().position(|r| r.port.matches(n)) else { return Vec::new() };
        let gone = self.registrations.remove(idx);
        let released = match &self.reservation {
            Some(res) if res.kind.all_registrants() => self.registrations.is_empty(),
            Some(res) => res.holder == gone.port,
            None => false,
        };
        if !released {
            return Vec::new();
        }
        let kind = self.reservation.take().map(|r| r.kind);
        // Releasing a registrants-only reservation tells the other registrants.
        if kind.is_some_and(PrType::registrants_only) {
            return self.uas_to_registrants(Sense::RESERVATIONS_RELEASED);
        }
        Vec::new()
    }

    fn uas_to_registrants(&self, sense: Sense) -> Vec<PrUnitAttention> {
        self.registrations.iter().map(|r| PrUnitAttention { to: r.port.clone(), sense: sense.clone() }).collect()
    }

    fn reserve(&mut self, n: &ItNexus, p: &OutParams<'_>, scope_type: u8) -> Result<(), PrError> {
        let kind = PrType::from_scope_type(scope_type)?;
        let port = self.check_key(n, p.key)?;
        match &self.reservation {
            Some(res) if self.is_holder(n) && res.kind == kind => Ok(()),
            Some(_) => Err(PrError::Conflict),
            None => {
                self.reservation = Some(Reservation { holder: port, kind });
                Ok(())
            }
        }
    }

    fn release(&mut self, n: &ItNexus, p: &OutParams<'_>, scope_type: u8) -> Result<Vec<PrUnitAttention>, PrError> {
        self.check_key(n, p.key)?;
        let Some(res) = &self.reservation else { return Ok(Vec::new()) };
        if !self.is_holder(n) {
            return Ok(Vec::new());
        }
        if scope_type != res.kind as u8 {
            return Err(Sense::INVALID_RELEASE_OF_PERSISTENT_RESERVATION.into());
        }
        let kind = res.kind;
        self.reservation = None;
        if kind == PrType::WriteExclusive || kind == PrType::ExclusiveAccess {
            return Ok(Vec::new());
        }
        Ok(self.uas_to_registrants(Sense::RESERVATIONS_RELEASED).into_iter().filter(|ua| !ua.to.matches(n)).collect())
    }

    fn clear(&mut self, n: &ItNexus, p: &OutParams<'_>) -> Result<Vec<PrUnitAttention>, PrError> {
        self.check_key(n, p.key)?;
        let uas =
            self.uas_to_registrants(Sense::RESERVATIONS_PREEMPTED).into_iter().filter(|ua| !ua.to.matches(n)).collect();
        self.registrations.clear();
        self.reservation = None;
        self.generation = self.generation.wrapping_add(1);
        Ok(uas)
    }

    fn preempt(&mut self, n: &ItNexus, p: &OutParams<'_>, scope_type: u8) -> Result<Vec<PrUnitAttention>, PrError> {
        let me = self.check_key(n, p.key)?;
        let removed: Vec<Registration>;
        match self.reservation.clone() {
            Some(res) if res.kind.all_registrants() && p.sa_key == 0 => {
                // Preempting an all-registrants reservation with key 0: every
                // other registration goes, and the caller reserves anew.
                let kind = PrType::from_scope_type(scope_type)?;
                removed = self.remove_where(|r| r.port != me);
                self.reservation = Some(Reservation { holder: me, kind });
            }
            Some(res) if !res.kind.all_registrants() && p.sa_key == self.key_of(&res.holder) => {
                let kind = PrType::from_scope_type(scope_type)?;
                removed = self.remove_where(|r| r.key == p.sa_key && r.port != me);
                self.reservation = Some(Reservation { holder: me, kind });
            }
            _ => {
                if p.sa_key == 0 {
                    return Err(Sense::invalid_param_field(8, None).into());
                }
                removed = self.remove_where(|r| r.key == p.sa_key);
                if removed.is_empty() {
                    return Err(PrError::Conflict);
                }
                // A holder preempted by key loses its reservation.
                if self
                    .reservation
                    .as_ref()
                    .is_some_and(|res| !res.kind.all_registrants() && removed.iter().any(|r| r.port == res.holder))
                {
                    self.reservation = None;
                }
            }
        }
        self.generation = self.generation.wrapping_add(1);
        Ok(removed.into_iter().map(|r| PrUnitAttention { to: r.port, sense: Sense::REGISTRATIONS_PREEMPTED }).collect())
    }

    fn remove_where(&mut self, f: impl Fn(&Registration) -> bool) -> Vec<Registration> {
        let (gone, kept) = std::mem::take(&mut self.registrations).into_iter().partition(|r| f(r));
        self.registrations = kept;
        gone
    }

    /// REGISTER AND MOVE (SPC-4 5.9.10 / 6.16.4).
    fn register_and_move(&mut self, n: &ItNexus, data: &[u8]) -> Result<Vec<PrUnitAttention>, PrError> {
        if data.len() < 24 {
            return Err(Sense::PARAMETER_LIST_LENGTH_ERROR.into());
        }
        let (key, sa_key) = (be64(data, 0), be64(data, 8));
        let flags = data.get(17).copied().unwrap_or(0);
        let unreg = flags & 0x02 != 0;
        let aptpl = flags & 0x01 != 0;
        if aptpl && !self.ptpl_capable {
            return Err(Sense::invalid_param_field(17, Some(0)).into());
        }
        let rel_port = u16::from_be_bytes([data.get(18).copied().unwrap_or(0), data.get(19).copied().unwrap_or(0)]);
        let tid_len = be32(data, 20) as usize;
        let me = match self.registration(n) {
            Some(r) if r.key == key => r.port.clone(),
            Some(_) => return Err(PrError::Conflict),
            // An unregistered nexus gets RESERVATION CONFLICT.
            None => return Err(PrError::Conflict),
        };
        let res = match &self.reservation {
            Some(res) if !res.kind.all_registrants() && res.holder == me => res.clone(),
            _ => return Err(PrError::Conflict),
        };
        if sa_key == 0 {
            return Err(Sense::invalid_param_field(8, None).into());
        }
        let tids = data.get(24..24 + tid_len).ok_or(Sense::PARAMETER_LIST_LENGTH_ERROR)?;
        let (mut dest, _) = parse_transport_id(tids, 24)?;
        if dest.isid.is_none() {
            return Err(Sense::invalid_param_field(24, None).into());
        }
        if rel_port != n.relative_port {
            // Only the port this nexus uses is known to the logical unit.
            return Err(Sense::invalid_param_field(18, None).into());
        }
        dest.target_port = Some(n.target_port.clone());
        dest.relative_port = rel_port;
        if dest.matches(n) {
            return Err(Sense::invalid_param_field(24, None).into());
        }
        self.registrations.retain(|r| r.port != dest);
        self.registrations.push(Registration { key: sa_key, port: dest.clone() });
        self.reservation = Some(Reservation { holder: dest, kind: res.kind });
        if unreg {
            self.registrations.retain(|r| r.port != me);
        }
        self.generation = self.generation.wrapping_add(1);
        self.aptpl = aptpl;
        Ok(Vec::new())
    }
}

fn parse_out_params(data: &[u8]) -> Result<OutParams<'_>, Sense> {
    if data.len() < 24 {
        return Err(Sense::PARAMETER_LIST_LENGTH_ERROR);
    }
    let flags = data.get(20).copied().unwrap_or(0);
    let spec_i_pt = flags & 0x08 != 0;
    // Without SPEC_I_PT the list is exactly 24 bytes (SPC-4 6.16.3).
    if !spec_i_pt && data.len() != 24 {
        return Err(Sense::PARAMETER_LIST_LENGTH_ERROR);
    }
    Ok(OutParams {
        key: be64(data, 0),
        sa_key: be64(data, 8),
        spec_i_pt,
        all_tg_pt: flags & 0x04 != 0,
        aptpl: flags & 0x01 != 0,
        rest: data.get(24..).unwrap_or(&[]),
    })
}

/// The TransportIDs of a SPEC_I_PT registration, as ports on the caller's
/// target port (or every port with ALL_TG_PT).
fn parse_spec_i_pt(rest: &[u8], n: &ItNexus, all_tg_pt: bool) -> Result<Vec<PortId>, Sense> {
    let len = be32(rest, 0) as usize;
    let mut list = rest.get(4..4 + len).ok_or(Sense::PARAMETER_LIST_LENGTH_ERROR)?;
    let mut at = 28;
    let mut ports = Vec::new();
    while !list.is_empty() {
        let (mut port, used) = parse_transport_id(list, at)?;
        port.target_port = if all_tg_pt { None } else { Some(n.target_port.clone()) };
        port.relative_port = n.relative_port;
        ports.push(port);
        list = list.get(used..).unwrap_or(&[]);
        at += used;
    }
    Ok(ports)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nexus(name: &str, isid: u8) -> ItNexus {
        ItNexus {
            id: isid as u64,
            initiator_port: format!("{name},i,0x00000000000{isid}"),
            initiator_name: name.into(),
            isid: [0, 0, 0, 0, 0, isid],
            target_port: "iqn.t,t,0x0001".into(),
            relative_port: 1,
        }
    }

    fn params(key: u64, sa_key: u64, flags: u8) -> Vec<u8> {
        let mut v = vec![0u8; 24];
        v[..8].copy_from_slice(&key.to_be_bytes());
        v[8..16].copy_from_slice(&sa_key.to_be_bytes());
        v[20] = flags;
        v
    }

    fn out(
        pr: &mut PersistentReservations,
        n: &ItNexus,
        a: PrOutAction,
        t: u8,
        d: &[u8],
    ) -> Result<Vec<PrUnitAttention>, PrError> {
        pr.out(n, a, t, d.len() as u32, d)
    }

    #[test]
    fn register_reserve_access_rules() {
        let (a, b) = (nexus("iqn.a", 1), nexus("iqn.b", 2));
        let mut pr = PersistentReservations::default();
        out(&mut pr, &a, PrOutAction::Register, 0, &params(0, 0xAA, 0)).unwrap();
        assert_eq!(out(&mut pr, &b, PrOutAction::Register, 0, &params(5, 0xBB, 0)), Err(PrError::Conflict));
        out(&mut pr, &b, PrOutAction::RegisterAndIgnoreExistingKey, 0, &params(0, 0xBB, 0)).unwrap();
        out(&mut pr, &a, PrOutAction::Reserve, 1, &params(0xAA, 0, 0)).unwrap();
        assert!(!pr.conflicts(&b, Access::Read));
        assert!(pr.conflicts(&b, Access::Write));
        assert!(!pr.conflicts(&a, Access::Write));
        // Reserving again with another type conflicts; the same type is fine.
        assert_eq!(out(&mut pr, &a, PrOutAction::Reserve, 3, &params(0xAA, 0, 0)), Err(PrError::Conflict));
        out(&mut pr, &a, PrOutAction::Reserve, 1, &params(0xAA, 0, 0)).unwrap();
        // Release with a wrong type.
        assert_eq!(
            out(&mut pr, &a, PrOutAction::Release, 3, &params(0xAA, 0, 0)),
            Err(PrError::Check(Sense::INVALID_RELEASE_OF_PERSISTENT_RESERVATION))
        );
        out(&mut pr, &a, PrOutAction::Release, 1, &params(0xAA, 0, 0)).unwrap();
        assert!(!pr.conflicts(&b, Access::Write));
    }

    #[test]
    fn read_keys_and_reservation() {
        let a = nexus("iqn.a", 1);
        let mut pr = PersistentReservations::default();
        out(&mut pr, &a, PrOutAction::Register, 0, &params(0, 7, 0)).unwrap();
        out(&mut pr, &a, PrOutAction::Reserve, 7, &params(7, 0, 0)).unwrap();
        let keys = pr.read(PrInAction::ReadKeys);
        assert_eq!(&keys[4..16], &[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 7]);
        let res = pr.read(PrInAction::ReadReservation);
        assert_eq!(&res[4..8], &[0, 0, 0, 16]);
        // All-registrants reservations report key 0.
        assert_eq!(&res[8..16], &[0; 8]);
        assert_eq!(res[21], 7);
    }

    #[test]
    fn preempt_removes_holder_and_takes_over() {
        let (a, b) = (nexus("iqn.a", 1), nexus("iqn.b", 2));
        let mut pr = PersistentReservations::default();
        out(&mut pr, &a, PrOutAction::Register, 0, &params(0, 1, 0)).unwrap();
        out(&mut pr, &b, PrOutAction::Register, 0, &params(0, 2, 0)).unwrap();
        out(&mut pr, &a, PrOutAction::Reserve, 3, &params(1, 0, 0)).unwrap();
        let uas = out(&mut pr, &b, PrOutAction::Preempt, 3, &params(2, 1, 0)).unwrap();
        assert_eq!(uas.len(), 1);
        assert!(uas[0].to.matches(&a));
        assert!(!pr.is_registered(&a));
        assert!(pr.conflicts(&a, Access::Read));
        assert!(!pr.conflicts(&b, Access::Write));
    }

    #[test]
    fn spec_i_pt_registers_transport_ids() {
        let (a, b) = (nexus("iqn.a", 1), nexus("iqn.b", 2));
        let mut pr = PersistentReservations::default();
        let name = b"iqn.b,i,0x000000000002\0\0";
        let mut tid = vec![0x45, 0, 0, name.len() as u8];
        tid.extend_from_slice(name);
        let mut d = params(0, 9, 0x08);
        d.extend_from_slice(&(tid.len() as u32).to_be_bytes());
        d.extend_from_slice(&tid);
        out(&mut pr, &a, PrOutAction::Register, 0, &d).unwrap();
        assert!(pr.is_registered(&b));
        let full = pr.read(PrInAction::ReadFullStatus);
        assert_eq!(&full[4..8], &((full.len() - 8) as u32).to_be_bytes());
    }

    #[test]
    fn short_parameter_list() {
        let a = nexus("iqn.a", 1);
        let mut pr = PersistentReservations::default();
        assert_eq!(
            out(&mut pr, &a, PrOutAction::Register, 0, &[0; 20]),
            Err(PrError::Check(Sense::PARAMETER_LIST_LENGTH_ERROR))
        );
    }
}
