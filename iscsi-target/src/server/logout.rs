//! Target-requested logout (RFC 7143 §11.9.1, AsyncEvent 1): when a
//! target goes away (a volume deleted with sessions logged in), each of
//! its sessions is asked to log out, so the initiator finishes its
//! commands and logs out cleanly instead of finding its connection cut;
//! one that has not logged out within the grace is ended.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::pdu::{AsyncMessage, Pdu};

/// Seconds an initiator has to log out once asked (Parameter3).
pub(super) const GRACE_SECS: u16 = 3;

/// AsyncEvent 1: "the target requests logout".
const TARGET_REQUESTS_LOGOUT: u8 = 1;

/// Runs beside a session: once `requested` is cancelled, sends the
/// logout request and ends the session (`stop`) if it is still running
/// after the grace.
pub(super) async fn on_request(requested: CancellationToken, tx: mpsc::Sender<Pdu>, stop: CancellationToken) {
    tokio::select! {
        _ = requested.cancelled() => {}
        _ = stop.cancelled() => return,
    }
    info!(grace_secs = GRACE_SECS, "asking the initiator to log out");
    let ask = AsyncMessage {
        lun: 0,
        stat_sn: 0,
        exp_cmd_sn: 0,
        max_cmd_sn: 0,
        event: TARGET_REQUESTS_LOGOUT,
        vendor_code: 0,
        params: [0, 0, GRACE_SECS],
        data: Bytes::new(),
    };
    if tx.send(Pdu::AsyncMessage(ask)).await.is_err() {
        return;
    }
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(GRACE_SECS.into())) => {
            info!("the initiator did not log out in time; ending the session");
            stop.cancel();
        }
        _ = stop.cancelled() => {}
    }
}
