//! Command and status numbering (RFC 7143 §4.2.2): the CmdSN window the
//! target advertises and the StatSN it stamps on responses.

use std::sync::Mutex;

use crate::pdu::{Pdu, RESERVED_TAG};

/// Where an incoming command's CmdSN falls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmdSnCheck {
    /// In order: run it.
    Accept,
    /// Outside the window: ignore it silently (RFC 7143 §4.2.2.1).
    Ignore,
}

#[derive(Debug)]
struct Window {
    exp_cmd_sn: u32,
    /// Non-immediate commands received and not yet answered.
    in_flight: u32,
}

/// The session's command window.
#[derive(Debug)]
pub struct CmdWindow {
    depth: u32,
    w: Mutex<Window>,
}

impl CmdWindow {
    pub fn new(first_cmd_sn: u32, depth: u32) -> Self {
        CmdWindow { depth: depth.max(1), w: Mutex::new(Window { exp_cmd_sn: first_cmd_sn, in_flight: 0 }) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.w.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks a command's CmdSN. Immediate commands do not advance the
    /// window; in-order ones do.
    pub fn check(&self, cmd_sn: u32, immediate: bool) -> CmdSnCheck {
        let mut w = self.lock();
        if immediate {
            return CmdSnCheck::Accept;
        }
        if cmd_sn == w.exp_cmd_sn && w.in_flight < self.depth {
            w.exp_cmd_sn = w.exp_cmd_sn.wrapping_add(1);
            w.in_flight += 1;
            CmdSnCheck::Accept
        } else {
            CmdSnCheck::Ignore
        }
    }

    /// A non-immediate command was answered: its slot frees up.
    pub fn complete(&self) {
        let mut w = self.lock();
        w.in_flight = w.in_flight.saturating_sub(1);
    }

    /// (ExpCmdSN, MaxCmdSN) to advertise now.
    pub fn advertise(&self) -> (u32, u32) {
        let w = self.lock();
        let free = self.depth - w.in_flight.min(self.depth);
        // MaxCmdSN = ExpCmdSN - 1 closes the window entirely.
        (w.exp_cmd_sn, w.exp_cmd_sn.wrapping_add(free).wrapping_sub(1))
    }
}

/// Stamps StatSN, ExpCmdSN and MaxCmdSN on an outgoing PDU, advancing
/// StatSN for PDUs that carry a status.
pub fn stamp(pdu: &mut Pdu, stat_sn: &mut u32, exp: u32, max: u32) {
    let mut take = |advance: bool| {
        let s = *stat_sn;
        if advance {
            *stat_sn = stat_sn.wrapping_add(1);
        }
        s
    };
    match pdu {
        Pdu::NopIn(p) => {
            p.stat_sn = take(p.itt != RESERVED_TAG);
            p.exp_cmd_sn = exp;
            p.max_cmd_sn = max;
        }
        Pdu::ScsiResponse(p) => {
            p.stat_sn = take(true);
            p.exp_cmd_sn = exp;
            p.max_cmd_sn = max;
        }
        Pdu::TaskMgmtResponse(p) => {
            p.stat_sn = take(true);
            p.exp_cmd_sn = exp;
            p.max_cmd_sn = max;
        }
        Pdu::TextResponse(p) => {
            p.stat_sn = take(true);
            p.exp_cmd_sn = exp;
            p.max_cmd_sn = max;
        }
        Pdu::LogoutResponse(p) => {
            p.stat_sn = take(true);
            p.exp_cmd_sn = exp;
            p.max_cmd_sn = max;
        }
        Pdu::Reject(p) => {
            p.stat_sn = take(true);
            p.exp_cmd_sn = exp;
            p.max_cmd_sn = max;
        }
        Pdu::LoginResponse(p) => {
            p.stat_sn = take(true);
            p.exp_cmd_sn = exp;
            p.max_cmd_sn = max;
        }
        Pdu::DataIn(p) => {
            p.stat_sn = if p.status.is_some() { take(true) } else { 0 };
            p.exp_cmd_sn = exp;
            p.max_cmd_sn = max;
        }
        Pdu::R2t(p) => {
            p.stat_sn = take(false);
            p.exp_cmd_sn = exp;
            p.max_cmd_sn = max;
        }
        Pdu::AsyncMessage(p) => {
            p.stat_sn = take(false);
            p.exp_cmd_sn = exp;
            p.max_cmd_sn = max;
        }
        // Initiator PDUs are never sent by the target.
        Pdu::NopOut(_)
        | Pdu::ScsiCommand(_)
        | Pdu::TaskMgmtRequest(_)
        | Pdu::LoginRequest(_)
        | Pdu::TextRequest(_)
        | Pdu::DataOut(_)
        | Pdu::LogoutRequest(_)
        | Pdu::Snack(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_accepts_in_order_and_ignores_outside() {
        let w = CmdWindow::new(10, 4);
        assert_eq!(w.advertise(), (10, 13));
        assert_eq!(w.check(10, false), CmdSnCheck::Accept);
        assert_eq!(w.check(12, false), CmdSnCheck::Ignore);
        assert_eq!(w.check(9, false), CmdSnCheck::Ignore);
        assert_eq!(w.check(11, true), CmdSnCheck::Accept);
        assert_eq!(w.advertise(), (11, 13));
        w.complete();
        assert_eq!(w.advertise(), (11, 14));
    }

    #[test]
    fn full_window_closes() {
        let w = CmdWindow::new(u32::MAX, 1);
        assert_eq!(w.check(u32::MAX, false), CmdSnCheck::Accept);
        assert_eq!(w.advertise(), (0, u32::MAX));
        assert_eq!(w.check(0, false), CmdSnCheck::Ignore);
    }
}
