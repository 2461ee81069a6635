//! One connection: the login phase, then the full feature phase with a
//! reader loop (this task), a writer task that owns StatSN, a keepalive task,
//! and one task per running command.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::dataout::{Collected, TransferLimits, WriteCollector};
use super::hangup::HangupProbe;
use super::registry::{RunningTask, SessionShared};
use super::response::{self, CommandShape, DataInLimits};
use super::seq::{stamp, CmdSnCheck, CmdWindow};
use super::target_scsi;
use super::wire::{read_pdu, read_pdu_buffered, write_pdus, ReadError};
use super::{LoginFailure, Server};
use crate::login::params::SessionParams;
use crate::login::{text, LoginMachine, LoginResult, LoginStatus, LoginStep, OsChallenges};
use crate::pdu::*;
use crate::scsi::{ItNexus, LogicalUnit, ResetKind, ScsiRequest, Sense};
use crate::target::{AccessPolicy, Target};

/// The largest login PDU data segment we take (RFC 7143 §6.1: 8192 bytes
/// per PDU during login; we allow slack for initiators that send more).
const MAX_LOGIN_DATA: usize = 64 * 1024;

/// Receive buffer of a full-feature-phase connection: several 4 KiB
/// writes, and at most this much of a large Data-Out is copied twice.
const RECV_BUFFER: usize = 32 * 1024;

/// Task management function codes and responses (RFC 7143 §11.5, §11.6).
mod tmf {
    pub const ABORT_TASK: u8 = 1;
    pub const ABORT_TASK_SET: u8 = 2;
    pub const CLEAR_ACA: u8 = 3;
    pub const CLEAR_TASK_SET: u8 = 4;
    pub const LUN_RESET: u8 = 5;
    pub const TARGET_WARM_RESET: u8 = 6;
    pub const TARGET_COLD_RESET: u8 = 7;
    pub const TASK_REASSIGN: u8 = 8;

    pub const COMPLETE: u8 = 0;
    pub const TASK_DOES_NOT_EXIST: u8 = 1;
    pub const LUN_DOES_NOT_EXIST: u8 = 2;
    pub const REASSIGN_NOT_SUPPORTED: u8 = 4;
    pub const NOT_SUPPORTED: u8 = 5;
    pub const REJECTED: u8 = 255;
}

struct Established {
    result: LoginResult,
    isid: [u8; 6],
    tsih: u16,
    cid: u16,
    cmd_sn: u32,
    stat_sn: u32,
    /// Held for as long as the session lives (the server's session limit).
    _session_slot: OwnedSemaphorePermit,
}

pub(super) async fn serve(server: Arc<Server>, sock: TcpStream, peer: SocketAddr, stop: CancellationToken) {
    let local = match sock.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    let (mut rd, mut wr) = sock.into_split();
    let login = tokio::time::timeout(server.config.login_timeout, login_phase(&server, &mut rd, &mut wr, peer)).await;
    let est = match login {
        Ok(Some(est)) => est,
        Ok(None) => {
            let _ = wr.shutdown().await;
            return;
        }
        Err(_) => {
            debug!(%peer, "login timed out");
            return;
        }
    };
    match est.result.target.clone() {
        None => discovery_session(&server, rd, wr, est, local, stop).await,
        Some(target) => normal_session(server, rd, wr, est, target, peer, local, stop).await,
    }
}

fn login_response(req: &LoginRequest, tsih: u16, stat_sn: u32, max_cmd_sn: u32, reply_status: LoginStatus) -> LoginResponse {
    LoginResponse {
        transit: false,
        cont: false,
        csg: req.csg,
        nsg: 0,
        version_max: 0,
        version_active: 0,
        isid: req.isid,
        tsih,
        itt: req.itt,
        stat_sn,
        exp_cmd_sn: req.cmd_sn,
        max_cmd_sn,
        status_class: reply_status.0,
        status_detail: reply_status.1,
        data: Bytes::new(),
    }
}

async fn send_login(wr: &mut OwnedWriteHalf, resp: LoginResponse) -> std::io::Result<()> {
    write_pdus(wr, &[Pdu::LoginResponse(resp).encode(Digests::default())]).await
}

/// Logs and counts a login refused for authentication or authorization,
/// and holds its answer back as the address's failures in a row say.
async fn refused(server: &Server, initiator: &str, target: &str, peer: SocketAddr, status: LoginStatus) {
    let failure = match status {
        LoginStatus::AUTHENTICATION_FAILED => LoginFailure::Authentication,
        LoginStatus::AUTHORIZATION_FAILED => LoginFailure::Authorization,
        _ => {
            debug!(%peer, ?status, "login refused");
            return;
        }
    };
    let delay = server.failures.failed(peer.ip(), Instant::now());
    match failure {
        LoginFailure::Authorization if server.config.login.access == AccessPolicy::AclRequired => warn!(
            initiator, %peer, target, delay_ms = delay.as_millis() as u64,
            "iSCSI login refused: the initiator is not on the target's initiator list \
             (iscsi_access = acl-required: a target without a list admits nobody)"
        ),
        LoginFailure::Authorization => warn!(
            initiator, %peer, target, delay_ms = delay.as_millis() as u64,
            "iSCSI login refused: the initiator is not on the target's initiator list"
        ),
        _ => warn!(
            initiator, %peer, target, delay_ms = delay.as_millis() as u64,
            "iSCSI login refused: CHAP authentication failed"
        ),
    }
    server.observe(failure);
    tokio::time::sleep(delay).await;
}

async fn login_phase(
    server: &Server,
    rd: &mut OwnedReadHalf,
    wr: &mut OwnedWriteHalf,
    peer: SocketAddr,
) -> Option<Established> {
    let mut machine = LoginMachine::new(
        server.catalog.clone(),
        server.config.limits.clone(),
        server.config.login.clone(),
        Box::new(OsChallenges),
    );
    let none = Digests::default();
    let mut stat_sn: Option<u32> = None;
    let mut first: Option<LoginRequest> = None;
    let mut session_slot: Option<OwnedSemaphorePermit> = None;
    loop {
        let req = match read_pdu(rd, none, MAX_LOGIN_DATA).await {
            Ok(Pdu::LoginRequest(r)) => r,
            Ok(_) | Err(_) => return None,
        };
        let sn = *stat_sn.get_or_insert(req.exp_stat_sn);
        let max_cmd_sn = req.cmd_sn.wrapping_add(server.config.queue_depth - 1);
        if let Some(f) = &first {
            if f.isid != req.isid || f.tsih != req.tsih || f.cid != req.cid {
                let resp = login_response(&req, 0, sn, max_cmd_sn, LoginStatus::INITIATOR_ERROR);
                let _ = send_login(wr, resp).await;
                return None;
            }
        } else {
            first = Some(req.clone());
            if req.tsih != 0 {
                // We run one connection per session: a second connection
                // cannot join, and an unknown TSIH names no session.
                let status = if server.registry.find_tsih(req.tsih) {
                    LoginStatus::TOO_MANY_CONNECTIONS
                } else {
                    LoginStatus::SESSION_DOES_NOT_EXIST
                };
                let _ = send_login(wr, login_response(&req, req.tsih, sn, max_cmd_sn, status)).await;
                return None;
            }
            session_slot = server.take_session_slot(peer);
            if session_slot.is_none() {
                let status = LoginStatus::OUT_OF_RESOURCES;
                let _ = send_login(wr, login_response(&req, 0, sn, max_cmd_sn, status)).await;
                return None;
            }
        }
        let step = machine.step(&req);
        let (reply, done) = match step {
            LoginStep::Continue(r) => (r, None),
            LoginStep::Complete(r, result) => (r, Some(result)),
            LoginStep::Failed(r) => {
                let initiator = machine.initiator_name().unwrap_or("-").to_owned();
                let target = machine.target_name().unwrap_or("(discovery)").to_owned();
                refused(server, &initiator, &target, peer, r.status).await;
                let _ = send_login(wr, login_response(&req, 0, sn, max_cmd_sn, r.status)).await;
                return None;
            }
        };
        let tsih = if done.is_some() { server.registry.new_tsih() } else { 0 };
        let mut resp = login_response(&req, tsih, sn, max_cmd_sn, reply.status);
        resp.transit = reply.transit;
        resp.csg = reply.csg;
        resp.nsg = reply.nsg;
        resp.data = Bytes::from(text::encode(&reply.keys));
        stat_sn = Some(sn.wrapping_add(1));
        if send_login(wr, resp).await.is_err() {
            return None;
        }
        if let Some(result) = done {
            server.failures.succeeded(peer.ip());
            return Some(Established {
                result: *result,
                isid: req.isid,
                tsih,
                cid: req.cid,
                cmd_sn: req.cmd_sn,
                stat_sn: sn.wrapping_add(1),
                _session_slot: session_slot?,
            });
        }
    }
}

/// Sends what the writer channel carries, stamping sequence numbers.
async fn writer(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Pdu>,
    window: Arc<CmdWindowRef>,
    digests: Digests,
    mut stat_sn: u32,
    stop: CancellationToken,
) {
    let mut batch = Vec::with_capacity(64);
    loop {
        let first = tokio::select! {
            p = rx.recv() => p,
            _ = stop.cancelled() => None,
        };
        let Some(first) = first else { break };
        let (exp, max) = window.advertise();
        let mut push = |mut p: Pdu, batch: &mut Vec<EncodedPdu>| {
            stamp(&mut p, &mut stat_sn, exp, max);
            batch.push(p.encode(digests));
        };
        push(first, &mut batch);
        // Take what is queued; then let the command tasks that are ready
        // run once, so that their responses share this system call
        // instead of one writev each (at queue depth 1 there are none, and
        // this costs one pass of the scheduler).
        for pass in 0..2 {
            while batch.len() < 64 {
                match rx.try_recv() {
                    Ok(p) => push(p, &mut batch),
                    Err(_) => break,
                }
            }
            if pass == 0 && batch.len() < 64 {
                tokio::task::yield_now().await;
            }
        }
        if let Err(e) = write_pdus(&mut wr, &batch).await {
            debug!(error = %e, "write failed");
            stop.cancel();
            break;
        }
        batch.clear();
    }
    let _ = wr.shutdown().await;
}

/// The writer needs the window of either kind of session.
enum CmdWindowRef {
    Session(Arc<SessionShared>),
    Discovery(CmdWindow),
}

impl CmdWindowRef {
    fn advertise(&self) -> (u32, u32) {
        match self {
            CmdWindowRef::Session(s) => s.window.advertise(),
            CmdWindowRef::Discovery(w) => w.advertise(),
        }
    }

    fn window(&self) -> &CmdWindow {
        match self {
            CmdWindowRef::Session(s) => &s.window,
            CmdWindowRef::Discovery(w) => w,
        }
    }
}

fn digests_of(p: &SessionParams) -> Digests {
    Digests { header: p.header_digest, data: p.data_digest }
}

fn reject(reason: u8, bhs: &[u8]) -> Pdu {
    Pdu::Reject(Reject {
        reason,
        stat_sn: 0,
        exp_cmd_sn: 0,
        max_cmd_sn: 0,
        data_sn: 0,
        data: Bytes::copy_from_slice(&bhs[..bhs.len().min(BHS_LEN)]),
    })
}

fn reject_pdu(reason: u8, pdu: &Pdu) -> Pdu {
    let enc = pdu.encode(Digests::default());
    reject(reason, &enc.head)
}

/// A text exchange whose response did not fit one PDU.
struct PendingText {
    ttt: u32,
    rest: Bytes,
}

/// Answers a Text Request (SendTargets), continuing long answers.
fn text_reply(
    req: &TextRequest,
    pending: &mut Option<PendingText>,
    next_ttt: &mut u32,
    targets: &[Arc<Target>],
    portal: SocketAddr,
    max_pdu: usize,
) -> Pdu {
    let mut body = match pending.take() {
        Some(p) if req.ttt == p.ttt => p.rest,
        _ => {
            let keys = text::parse(&req.data).unwrap_or_default();
            let mut out: Vec<(String, String)> = Vec::new();
            for (k, v) in &keys {
                if k == "SendTargets" {
                    for t in targets.iter().filter(|t| v == "All" || v.is_empty() || *v == t.name) {
                        out.push(("TargetName".into(), t.name.clone()));
                        out.push(("TargetAddress".into(), format!("{},1", portal_text(portal))));
                    }
                } else {
                    out.push((k.clone(), "NotUnderstood".into()));
                }
            }
            Bytes::from(text::encode(&out))
        }
    };
    let more = body.len() > max_pdu;
    let rest = if more { body.split_off(max_pdu) } else { Bytes::new() };
    let ttt = if more {
        *next_ttt = next_ttt.wrapping_add(1) & 0x7fff_ffff;
        *pending = Some(PendingText { ttt: *next_ttt, rest });
        *next_ttt
    } else {
        RESERVED_TAG
    };
    Pdu::TextResponse(TextResponse {
        final_: !more,
        cont: more,
        lun: 0,
        itt: req.itt,
        ttt,
        stat_sn: 0,
        exp_cmd_sn: 0,
        max_cmd_sn: 0,
        data: body,
    })
}

fn portal_text(a: SocketAddr) -> String {
    match a {
        SocketAddr::V4(v4) => format!("{}:{}", v4.ip(), v4.port()),
        SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
    }
}

fn logout_response(req: &LogoutRequest, cid: u16) -> Pdu {
    // Reason 2 (remove for recovery) needs ErrorRecoveryLevel 2.
    let response = match req.reason {
        0 => 0,
        1 if req.cid == cid => 0,
        1 => 1,
        _ => 2,
    };
    Pdu::LogoutResponse(LogoutResponse {
        response,
        itt: req.itt,
        stat_sn: 0,
        exp_cmd_sn: 0,
        max_cmd_sn: 0,
        time2wait: 0,
        time2retain: 0,
    })
}

fn nop_in_reply(n: &NopOut, max: usize) -> Pdu {
    let mut data = n.data.clone();
    data.truncate(max);
    Pdu::NopIn(NopIn { lun: n.lun, itt: n.itt, ttt: RESERVED_TAG, stat_sn: 0, exp_cmd_sn: 0, max_cmd_sn: 0, data })
}

async fn discovery_session(
    server: &Server,
    mut rd: OwnedReadHalf,
    wr: OwnedWriteHalf,
    est: Established,
    local: SocketAddr,
    stop: CancellationToken,
) {
    let params = est.result.params.clone();
    let digests = digests_of(&params);
    let window = Arc::new(CmdWindowRef::Discovery(CmdWindow::new(est.cmd_sn, server.config.queue_depth)));
    let (tx, rx) = mpsc::channel(16);
    let writer_task = tokio::spawn(writer(wr, rx, window.clone(), digests, est.stat_sn, stop.clone()));
    let max_pdu = params.initiator_max_recv_data_segment_length as usize;
    let mut pending = None;
    let mut next_ttt = 0u32;
    loop {
        let pdu = tokio::select! {
            p = read_pdu(&mut rd, digests, params.target_max_recv_data_segment_length as usize) => p,
            _ = stop.cancelled() => break,
        };
        let out = match pdu {
            Ok(Pdu::TextRequest(req)) => {
                if window.window().check(req.cmd_sn, req.immediate) == CmdSnCheck::Ignore {
                    continue;
                }
                // Only what this initiator may log in to (see
                // `Target::listed_in_discovery`).
                let initiator = &est.result.initiator_name;
                let targets: Vec<Arc<Target>> = server
                    .catalog
                    .list()
                    .into_iter()
                    .filter(|t| {
                        t.listed_in_discovery(initiator, server.config.login.access, est.result.chap_authenticated)
                    })
                    .collect();
                let r = text_reply(&req, &mut pending, &mut next_ttt, &targets, local, max_pdu);
                if !req.immediate {
                    window.window().complete();
                }
                r
            }
            Ok(Pdu::NopOut(n)) if n.itt != RESERVED_TAG => nop_in_reply(&n, max_pdu),
            Ok(Pdu::NopOut(_)) => continue,
            Ok(Pdu::LogoutRequest(req)) => {
                let _ = tx.send(logout_response(&req, est.cid)).await;
                break;
            }
            Ok(other) => reject_pdu(reject_reason::PROTOCOL_ERROR, &other),
            Err(ReadError::Bad { bhs, .. }) => reject(reject_reason::PROTOCOL_ERROR, &bhs),
            Err(_) => break,
        };
        if tx.send(out).await.is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer_task.await;
}

/// Tracks the target's own NOP-In pings.
#[derive(Default)]
struct Liveness {
    last_heard: Option<Instant>,
    awaiting: Option<(u32, Instant)>,
}

async fn keepalive(
    live: Arc<Mutex<Liveness>>,
    tx: mpsc::Sender<Pdu>,
    interval: Duration,
    timeout: Duration,
    stop: CancellationToken,
) {
    let mut ttt = 0x8000_0000u32;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval.min(timeout) / 2) => {}
            _ = stop.cancelled() => return,
        }
        let now = Instant::now();
        let ping = {
            let mut l = live.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((_, since)) = l.awaiting {
                if now.duration_since(since) > timeout {
                    warn!("initiator did not answer NOP-In; dropping the connection");
                    stop.cancel();
                    return;
                }
                None
            } else if l.last_heard.is_none_or(|t| now.duration_since(t) >= interval) {
                ttt = ttt.wrapping_add(1) | 0x8000_0000;
                l.awaiting = Some((ttt, now));
                Some(ttt)
            } else {
                None
            }
        };
        if let Some(ttt) = ping {
            let nop = Pdu::NopIn(NopIn {
                lun: 0,
                itt: RESERVED_TAG,
                ttt,
                stat_sn: 0,
                exp_cmd_sn: 0,
                max_cmd_sn: 0,
                data: Bytes::new(),
            });
            if tx.send(nop).await.is_err() {
                return;
            }
        }
    }
}

/// A write command waiting for its data-out.
struct PendingWrite {
    cmd: ScsiCommand,
    collector: WriteCollector,
    /// The command was answered with a data phase error; data still in
    /// flight for it is dropped.
    failed: bool,
}

struct Session {
    server: Arc<Server>,
    shared: Arc<SessionShared>,
    target: Arc<Target>,
    params: SessionParams,
    tx: mpsc::Sender<Pdu>,
    writes: HashMap<u32, PendingWrite>,
    next_ttt: u32,
    cid: u16,
}

enum Flow {
    Continue,
    Close,
}

impl Session {
    fn lun_list(&self) -> Vec<u64> {
        self.target.luns.keys().copied().collect()
    }

    fn transfer_limits(&self) -> TransferLimits {
        TransferLimits {
            initial_r2t: self.params.initial_r2t,
            first_burst_length: self.params.first_burst_length,
            max_burst_length: self.params.max_burst_length,
            max_outstanding_r2t: self.params.max_outstanding_r2t,
            max_recv_data_segment_length: self.params.target_max_recv_data_segment_length,
        }
    }

    async fn send(&self, p: Pdu) -> Flow {
        match self.tx.send(p).await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Close,
        }
    }

    async fn on_command(&mut self, cmd: ScsiCommand) -> Flow {
        if self.shared.window.check(cmd.cmd_sn, cmd.immediate) == CmdSnCheck::Ignore {
            debug!(cmd_sn = cmd.cmd_sn, "command outside the CmdSN window ignored");
            return Flow::Continue;
        }
        // An ITT may be reused once its command was answered, even if data
        // for a failed write is still trickling in.
        self.writes.retain(|itt, w| !(w.failed && *itt == cmd.itt));
        if self.writes.contains_key(&cmd.itt) || self.shared.tasks().contains_key(&cmd.itt) {
            if !cmd.immediate {
                self.shared.window.complete();
            }
            return self.send(reject_pdu(reject_reason::TASK_IN_PROGRESS, &Pdu::ScsiCommand(cmd))).await;
        }
        if cmd.write && cmd.expected_data_len > 0 {
            if !cmd.data.is_empty() && !self.params.immediate_data || cmd.expected_data_len > self.server.config.max_transfer
            {
                if !cmd.immediate {
                    self.shared.window.complete();
                }
                return self.send(reject_pdu(reject_reason::PROTOCOL_ERROR, &Pdu::ScsiCommand(cmd))).await;
            }
            let granule = self.lu(cmd.lun).and_then(|(_, lu)| lu.data_out_checksum_granule(&cmd.cdb));
            let mut collector =
                match WriteCollector::new(self.transfer_limits(), cmd.expected_data_len, cmd.data.clone(), granule) {
                    Ok(c) => c,
                    Err(e) => {
                        debug!(error = %e, "bad immediate data");
                        if !cmd.immediate {
                            self.shared.window.complete();
                        }
                        return self.send(reject_pdu(reject_reason::PROTOCOL_ERROR, &Pdu::ScsiCommand(cmd))).await;
                    }
                };
            if collector.is_complete() {
                self.dispatch(cmd, collector.into_data());
                return Flow::Continue;
            }
            let r2ts = self.r2ts(&mut collector, &cmd);
            self.writes.insert(cmd.itt, PendingWrite { cmd, collector, failed: false });
            for r in r2ts {
                if let Flow::Close = self.send(r).await {
                    return Flow::Close;
                }
            }
            return Flow::Continue;
        }
        self.dispatch(cmd, Collected { data: Bytes::new(), checksums: None });
        Flow::Continue
    }

    fn r2ts(&mut self, c: &mut WriteCollector, cmd: &ScsiCommand) -> Vec<Pdu> {
        let next = &mut self.next_ttt;
        c.r2ts(|| {
            *next = next.wrapping_add(1) & 0x7fff_ffff;
            *next
        })
        .into_iter()
        .map(|r| {
            Pdu::R2t(R2t {
                lun: cmd.lun,
                itt: cmd.itt,
                ttt: r.ttt,
                stat_sn: 0,
                exp_cmd_sn: 0,
                max_cmd_sn: 0,
                r2t_sn: r.r2t_sn,
                buffer_offset: r.buffer_offset,
                desired_len: r.desired_len,
            })
        })
        .collect()
    }

    async fn on_data_out(&mut self, d: DataOut) -> Flow {
        let Some(mut pending) = self.writes.remove(&d.itt) else {
            // Data for a command that was aborted or already answered.
            if d.ttt == RESERVED_TAG {
                return Flow::Continue;
            }
            return self.send(reject_pdu(reject_reason::PROTOCOL_ERROR, &Pdu::DataOut(d))).await;
        };
        if pending.failed {
            // The command already ended with a data phase error: the rest of
            // its data-out is discarded.
            self.writes.insert(d.itt, pending);
            return Flow::Continue;
        }
        if let Err(e) = pending.collector.on_data_out(&d) {
            // A broken data sequence fails the command (ABORTED COMMAND,
            // DATA PHASE ERROR); the connection and other commands go on.
            warn!(error = %e, itt = d.itt, "invalid Data-Out; failing the command");
            if !pending.cmd.immediate {
                self.shared.window.complete();
            }
            let shape = CommandShape {
                itt: pending.cmd.itt,
                lun: pending.cmd.lun,
                read: false,
                write: true,
                expected_len: pending.cmd.expected_data_len,
            };
            let limits = DataInLimits { max_pdu: 0, max_burst: 0 };
            let resp = crate::scsi::ScsiResponse::check(Sense::DATA_PHASE_ERROR);
            pending.failed = true;
            self.writes.insert(d.itt, pending);
            for pdu in response::build(shape, resp, limits) {
                if let Flow::Close = self.send(pdu).await {
                    return Flow::Close;
                }
            }
            return Flow::Continue;
        }
        if pending.collector.is_complete() {
            let PendingWrite { cmd, collector, .. } = pending;
            self.dispatch(cmd, collector.into_data());
            return Flow::Continue;
        }
        let r2ts = self.r2ts(&mut pending.collector, &pending.cmd);
        self.writes.insert(d.itt, pending);
        for r in r2ts {
            if let Flow::Close = self.send(r).await {
                return Flow::Close;
            }
        }
        Flow::Continue
    }

    /// Runs a command on its logical unit in a task of its own.
    fn dispatch(&self, cmd: ScsiCommand, data_out: Collected) {
        let shape = CommandShape {
            itt: cmd.itt,
            lun: cmd.lun,
            read: cmd.read,
            write: cmd.write,
            expected_len: if cmd.read && cmd.write {
                cmd.bidi_read_len.unwrap_or(0)
            } else {
                cmd.expected_data_len
            },
        };
        let limits = DataInLimits {
            max_pdu: self.params.initiator_max_recv_data_segment_length,
            max_burst: self.params.max_burst_length,
        };
        let lu = target_scsi::decode_lun(cmd.lun).and_then(|l| self.target.luns.get(&l).cloned());
        let luns = self.lun_list();
        let req = ScsiRequest {
            nexus: self.shared.nexus.clone(),
            lun: target_scsi::decode_lun(cmd.lun).unwrap_or(u64::MAX),
            cdb: cmd.cdb.clone(),
            data_out: data_out.data,
            data_out_checksums: data_out.checksums.map(Arc::new),
        };
        let shared = self.shared.clone();
        let tx = self.tx.clone();
        let itt = cmd.itt;
        let immediate = cmd.immediate;
        let mut tasks = self.shared.tasks();
        let handle = tokio::spawn(async move {
            let resp = match (lu, req.cdb.first()) {
                (_, Some(0xA0)) => target_scsi::report_luns(&req.cdb, &luns),
                (Some(lu), _) => lu.execute(req).await,
                (None, _) => target_scsi::absent_lun(&req.cdb, &luns),
            };
            // Whoever removes the task first owns its ending: an abort that
            // got here first means the response must not be sent.
            if shared.tasks().remove(&itt).is_none() {
                return;
            }
            if !immediate {
                shared.window.complete();
            }
            for pdu in response::build(shape, resp, limits) {
                if tx.send(pdu).await.is_err() {
                    return;
                }
            }
        });
        tasks.insert(itt, RunningTask { lun: cmd.lun, immediate, abort: Some(handle.abort_handle()) });
    }

    fn lu(&self, raw_lun: u64) -> Option<(u64, Arc<dyn LogicalUnit>)> {
        let l = target_scsi::decode_lun(raw_lun)?;
        self.target.luns.get(&l).map(|lu| (l, lu.clone()))
    }

    /// Aborts tasks of every session of this target that `pick` selects,
    /// including writes still collecting data in this session.
    fn abort_everywhere(&mut self, raw_lun: Option<u64>) {
        if let Some(l) = raw_lun {
            self.writes.retain(|_, w| w.cmd.lun != l);
        } else {
            self.writes.clear();
        }
        for s in self.server.registry.of_target(&self.target.name) {
            s.abort_tasks(|_, t| raw_lun.is_none_or(|l| t.lun == l));
        }
    }

    async fn on_task_mgmt(&mut self, t: TaskMgmtRequest) -> Flow {
        if !t.immediate && self.shared.window.check(t.cmd_sn, false) == CmdSnCheck::Ignore {
            return Flow::Continue;
        }
        let response = match t.function {
            tmf::ABORT_TASK => {
                let pending = self.writes.remove(&t.referenced_tag).is_some();
                let n = self.shared.abort_tasks(|itt, _| itt == t.referenced_tag);
                if pending || n > 0 {
                    tmf::COMPLETE
                } else {
                    tmf::TASK_DOES_NOT_EXIST
                }
            }
            tmf::ABORT_TASK_SET | tmf::CLEAR_TASK_SET => match self.lu(t.lun) {
                None => tmf::LUN_DOES_NOT_EXIST,
                Some((_, lu)) => {
                    let clear = t.function == tmf::CLEAR_TASK_SET;
                    if clear {
                        self.abort_everywhere(Some(t.lun));
                    } else {
                        self.writes.retain(|_, w| w.cmd.lun != t.lun);
                        self.shared.abort_tasks(|_, task| task.lun == t.lun);
                    }
                    lu.tasks_aborted(&self.shared.nexus, clear);
                    tmf::COMPLETE
                }
            },
            tmf::LUN_RESET => match self.lu(t.lun) {
                None => tmf::LUN_DOES_NOT_EXIST,
                Some((_, lu)) => {
                    self.abort_everywhere(Some(t.lun));
                    lu.reset(ResetKind::LogicalUnit, &self.shared.nexus);
                    tmf::COMPLETE
                }
            },
            tmf::TARGET_WARM_RESET | tmf::TARGET_COLD_RESET => {
                self.abort_everywhere(None);
                for lu in self.target.luns.values() {
                    lu.reset(ResetKind::Target, &self.shared.nexus);
                }
                tmf::COMPLETE
            }
            tmf::CLEAR_ACA => tmf::NOT_SUPPORTED,
            tmf::TASK_REASSIGN => tmf::REASSIGN_NOT_SUPPORTED,
            _ => tmf::REJECTED,
        };
        if !t.immediate {
            self.shared.window.complete();
        }
        let flow = self
            .send(Pdu::TaskMgmtResponse(TaskMgmtResponse {
                response,
                itt: t.itt,
                stat_sn: 0,
                exp_cmd_sn: 0,
                max_cmd_sn: 0,
            }))
            .await;
        if t.function == tmf::TARGET_COLD_RESET && response == tmf::COMPLETE {
            // A cold reset ends every session of the target, this one too,
            // after the response is out (RFC 7143 §11.5.1).
            tokio::time::sleep(Duration::from_millis(50)).await;
            self.server.registry.end_target(&self.target.name);
            return Flow::Close;
        }
        flow
    }

    /// Waits (bounded) for this session's running tasks to finish.
    async fn drain(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.shared.tasks().is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

async fn normal_session(
    server: Arc<Server>,
    rd: OwnedReadHalf,
    wr: OwnedWriteHalf,
    est: Established,
    target: Arc<Target>,
    peer: SocketAddr,
    local: SocketAddr,
    stop: CancellationToken,
) {
    let params = est.result.params.clone();
    let digests = digests_of(&params);
    // Commands arrive back to back at queue depth: one read system call
    // takes several PDUs instead of two calls (header, data) per PDU.
    let mut rd = tokio::io::BufReader::with_capacity(RECV_BUFFER, rd);
    let initiator = est.result.initiator_name.clone();
    let nexus = Arc::new(ItNexus {
        id: server.new_nexus_id(),
        initiator_port: format!("{},i,0x{}", initiator, hex::encode(est.isid)),
        initiator_name: initiator.clone(),
        isid: est.isid,
        target_port: format!("{},t,0x0001", target.name),
        relative_port: 1,
    });
    let shared = Arc::new(SessionShared {
        nexus: nexus.clone(),
        target: target.name.clone(),
        tsih: est.tsih,
        stop: stop.clone(),
        logout: CancellationToken::new(),
        window: CmdWindow::new(est.cmd_sn, server.config.queue_depth),
        tasks: Mutex::new(HashMap::new()),
        hangup: HangupProbe::new(rd.get_ref().as_ref()).ok(),
    });
    // Sessions whose initiator has gone but whose task has not run yet
    // end here, before this session's first command can meet their
    // PREVENT or RESERVE (see `hangup`). Their tasks still clean up on
    // their own; ending a nexus twice is harmless.
    for gone in server.registry.take_hung_up(&target.name) {
        info!(initiator = %gone.nexus.initiator_port, "ending a session whose initiator has gone");
        gone.stop.cancel();
        for lu in target.luns.values() {
            lu.nexus_lost(&gone.nexus);
        }
    }
    if let Some(old) = server.registry.insert(&initiator, est.isid, shared.clone()) {
        // Session reinstatement: the old session ends before this one runs.
        info!(initiator = %nexus.initiator_port, "reinstating session");
        old.abort_tasks(|_, _| true);
    }
    info!(%peer, initiator = %nexus.initiator_port, target = %target.name, "session started");
    let (tx, rx) = mpsc::channel(1024);
    let writer_task = tokio::spawn(writer(
        wr,
        rx,
        Arc::new(CmdWindowRef::Session(shared.clone())),
        digests,
        est.stat_sn,
        stop.clone(),
    ));
    let live = Arc::new(Mutex::new(Liveness::default()));
    let keepalive_task = tokio::spawn(keepalive(
        live.clone(),
        tx.clone(),
        server.config.nop_interval,
        server.config.nop_timeout,
        stop.clone(),
    ));
    let logout_task = tokio::spawn(super::logout::on_request(shared.logout.clone(), tx.clone(), stop.clone()));
    let max_pdu = params.initiator_max_recv_data_segment_length as usize;
    let mut s = Session {
        server: server.clone(),
        shared: shared.clone(),
        target: target.clone(),
        params: params.clone(),
        tx,
        writes: HashMap::new(),
        next_ttt: 0,
        cid: est.cid,
    };
    loop {
        let pdu = tokio::select! {
            p = read_pdu_buffered(&mut rd, digests, params.target_max_recv_data_segment_length as usize) => p,
            _ = stop.cancelled() => break,
        };
        if let Ok(mut l) = live.lock() {
            l.last_heard = Some(Instant::now());
        }
        let flow = match pdu {
            Ok(Pdu::ScsiCommand(cmd)) => s.on_command(cmd).await,
            Ok(Pdu::DataOut(d)) => s.on_data_out(d).await,
            Ok(Pdu::NopOut(n)) => {
                if n.ttt != RESERVED_TAG {
                    if let Ok(mut l) = live.lock() {
                        if l.awaiting.is_some_and(|(ttt, _)| ttt == n.ttt) {
                            l.awaiting = None;
                        }
                    }
                }
                if n.itt == RESERVED_TAG {
                    Flow::Continue
                } else {
                    if !n.immediate {
                        s.shared.window.check(n.cmd_sn, false);
                        s.shared.window.complete();
                    }
                    s.send(nop_in_reply(&n, max_pdu)).await
                }
            }
            Ok(Pdu::TaskMgmtRequest(t)) => s.on_task_mgmt(t).await,
            Ok(Pdu::TextRequest(req)) => {
                if s.shared.window.check(req.cmd_sn, req.immediate) == CmdSnCheck::Ignore {
                    Flow::Continue
                } else {
                    if !req.immediate {
                        s.shared.window.complete();
                    }
                    let mut pending = None;
                    let mut ttt = 0;
                    let own = [target.clone()];
                    s.send(text_reply(&req, &mut pending, &mut ttt, &own, local, max_pdu)).await
                }
            }
            Ok(Pdu::LogoutRequest(req)) => {
                // Logout with commands in flight: let them finish first so
                // every acknowledged write is complete (RFC 7143 §11.14).
                s.drain(Duration::from_secs(30)).await;
                let _ = s.send(logout_response(&req, s.cid)).await;
                Flow::Close
            }
            Ok(Pdu::Snack(sn)) => s.send(reject_pdu(reject_reason::SNACK_REJECT, &Pdu::Snack(sn))).await,
            Ok(other) => {
                // Target-only opcodes and login PDUs in full feature phase.
                s.send(reject_pdu(reject_reason::PROTOCOL_ERROR, &other)).await
            }
            Err(ReadError::Bad { error: DecodeError::DataDigest, bhs }) => {
                s.send(reject(reject_reason::DATA_DIGEST_ERROR, &bhs)).await
            }
            Err(ReadError::Bad { error: DecodeError::HeaderDigest, .. }) => {
                warn!("header digest error; closing the connection");
                Flow::Close
            }
            Err(ReadError::Bad { error: DecodeError::UnknownOpcode(_), bhs }) => {
                s.send(reject(reject_reason::COMMAND_NOT_SUPPORTED, &bhs)).await
            }
            Err(ReadError::Bad { error, bhs }) => {
                debug!(%error, "malformed PDU rejected");
                s.send(reject(reject_reason::INVALID_PDU_FIELD, &bhs)).await
            }
            Err(ReadError::TooLong(n)) => {
                warn!(len = n, "data segment over MaxRecvDataSegmentLength; closing the connection");
                Flow::Close
            }
            Err(ReadError::Io(_)) => Flow::Close,
        };
        if let Flow::Close = flow {
            break;
        }
    }
    // Flush what is queued (a logout response), then end the helpers.
    drop(s.tx);
    keepalive_task.abort();
    logout_task.abort();
    let _ = tokio::time::timeout(Duration::from_secs(5), writer_task).await;
    stop.cancel();
    server.registry.remove(&initiator, est.isid, &shared);
    for lu in target.luns.values() {
        lu.nexus_lost(&nexus);
    }
    info!(initiator = %nexus.initiator_port, target = %target.name, "session ended");
}
