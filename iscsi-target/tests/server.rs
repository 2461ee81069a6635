//! The iSCSI server end to end over loopback, with a client built on our own
//! PDU codec: login and negotiation, digests, NOP-In/Out both ways, R2T and
//! Data-In segmentation, task management, logout with I/O in flight,
//! session reinstatement and discovery.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use iscsi_target::login::text;
use iscsi_target::pdu::*;
use iscsi_target::scsi::block::FileBlockDevice;
use iscsi_target::scsi::sbc::DiskUnit;
use iscsi_target::scsi::spc::DeviceIdentity;
use iscsi_target::scsi::LogicalUnit;
use iscsi_target::server::{Server, ServerConfig};
use iscsi_target::target::{AccessPolicy, StaticCatalog, Target};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

const IQN: &str = "iqn.2026-11.test:disk";

struct Harness {
    port: u16,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn start(config: ServerConfig) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let dev = Arc::new(FileBlockDevice::open(&dir.path().join("lun.img"), 16 << 20, 512).unwrap());
    let identity = DeviceIdentity {
        vendor: "SGW".into(),
        product: "Test".into(),
        revision: "0001".into(),
        serial: "1".into(),
        naa_id: 1,
        write_protected: false,
        removable: false,
    };
    let lu: Arc<dyn LogicalUnit> = Arc::new(DiskUnit::new(dev, identity));
    let target =
        Target { name: IQN.into(), alias: None, chap: None, initiators: Vec::new(), luns: BTreeMap::from([(0, lu)]) };
    // These tests are about the transport, not access control: any
    // initiator name they use may log in.
    let mut config = config;
    config.login.access = AccessPolicy::Open;
    let server = Server::new(Arc::new(StaticCatalog { targets: vec![Arc::new(target)] }), config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = CancellationToken::new();
    tokio::spawn(server.run(listener, stop.clone()));
    Harness { port, stop, _dir: dir }
}

struct Client {
    s: TcpStream,
    d: Digests,
    itt: u32,
    cmd_sn: u32,
    exp_stat_sn: u32,
}

impl Client {
    async fn connect(port: u16) -> Client {
        let s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        Client { s, d: Digests::default(), itt: 0, cmd_sn: 1, exp_stat_sn: 0 }
    }

    async fn send(&mut self, p: Pdu) {
        self.s.write_all(&p.encode(self.d).to_bytes()).await.unwrap();
    }

    /// The next PDU, or None when the target closed the connection.
    async fn recv(&mut self) -> Option<Pdu> {
        let mut bhs = [0u8; BHS_LEN];
        let read = tokio::time::timeout(Duration::from_secs(10), self.s.read_exact(&mut bhs)).await;
        read.expect("timed out waiting for a PDU").ok()?;
        let f = Bhs::parse(&bhs).unwrap();
        let mut head = bhs.to_vec();
        head.resize(BHS_LEN + f.header_rest_len(self.d), 0);
        self.s.read_exact(&mut head[BHS_LEN..]).await.ok()?;
        let mut data = vec![0u8; f.data_wire_len(self.d)];
        self.s.read_exact(&mut data).await.ok()?;
        let p = Pdu::decode(&head, Bytes::from(data), self.d).unwrap();
        if let Pdu::ScsiResponse(r) = &p {
            self.exp_stat_sn = r.stat_sn.wrapping_add(1);
        }
        Some(p)
    }

    fn next_itt(&mut self) -> u32 {
        self.itt += 1;
        self.itt
    }

    async fn login(&mut self, isid: [u8; 6], keys: &[(&str, &str)]) -> LoginResponse {
        let mut all = vec![("InitiatorName", "iqn.2026-11.test:client"), ("TargetName", IQN)];
        all.extend_from_slice(keys);
        let itt = self.next_itt();
        self.send(Pdu::LoginRequest(LoginRequest {
            transit: true,
            cont: false,
            csg: 1,
            nsg: 3,
            version_max: 0,
            version_min: 0,
            isid,
            tsih: 0,
            itt,
            cid: 1,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: 0,
            data: Bytes::from(text::encode(&all)),
        }))
        .await;
        let Some(Pdu::LoginResponse(r)) = self.recv().await else { panic!("no login response") };
        assert_eq!((r.status_class, r.status_detail), (0, 0), "login refused");
        self.exp_stat_sn = r.stat_sn.wrapping_add(1);
        let keys = text::parse(&r.data).unwrap();
        let on = |k: &str| keys.iter().any(|(key, v)| key == k && v == "CRC32C");
        self.d = Digests { header: on("HeaderDigest"), data: on("DataDigest") };
        r
    }

    /// TEST UNIT READY until it passes: the first command of a new nexus
    /// meets the POWER ON RESET unit attention.
    async fn clear_unit_attention(&mut self) {
        for _ in 0..3 {
            let cmd = self.command(&[0u8; 6], false, false, 0, Bytes::new());
            self.send(Pdu::ScsiCommand(cmd)).await;
            let Some(Pdu::ScsiResponse(r)) = self.recv().await else { panic!("no TEST UNIT READY response") };
            if r.status == 0 {
                return;
            }
        }
        panic!("unit attention did not clear");
    }

    fn command(&mut self, cdb: &[u8], read: bool, write: bool, len: u32, data: Bytes) -> ScsiCommand {
        let itt = self.next_itt();
        let c = ScsiCommand {
            immediate: false,
            final_: true,
            read,
            write,
            attr: 1,
            lun: 0,
            itt,
            expected_data_len: len,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            cdb: Bytes::copy_from_slice(cdb),
            bidi_read_len: None,
            data,
        };
        self.cmd_sn += 1;
        c
    }
}

fn read10(lba: u32, blocks: u16) -> [u8; 10] {
    let mut c = [0u8; 10];
    c[0] = 0x28;
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[7..9].copy_from_slice(&blocks.to_be_bytes());
    c
}

fn write10(lba: u32, blocks: u16) -> [u8; 10] {
    let mut c = read10(lba, blocks);
    c[0] = 0x2a;
    c
}

fn quick() -> ServerConfig {
    ServerConfig { nop_interval: Duration::from_secs(3600), ..ServerConfig::default() }
}

#[tokio::test]
async fn digests_negotiated_and_data_in_cut_to_the_initiators_segment_length() {
    let h = start(quick()).await;
    let mut c = Client::connect(h.port).await;
    let r = c
        .login(
            [0x80, 0, 0, 0, 0, 1],
            &[("HeaderDigest", "CRC32C,None"), ("DataDigest", "CRC32C"), ("MaxRecvDataSegmentLength", "4096")],
        )
        .await;
    assert!(c.d.header && c.d.data, "digests not negotiated: {:?}", text::parse(&r.data));
    c.clear_unit_attention().await;
    let cmd = c.command(&read10(0, 128), true, false, 65536, Bytes::new());
    c.send(Pdu::ScsiCommand(cmd)).await;
    let mut got = 0;
    let mut sn = 0;
    loop {
        match c.recv().await {
            Some(Pdu::DataIn(d)) => {
                assert!(d.data.len() <= 4096);
                assert_eq!((d.data_sn, d.buffer_offset), (sn, got as u32));
                sn += 1;
                got += d.data.len();
                if let Some(status) = d.status {
                    assert_eq!(status, 0);
                    break;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, 65536);
}

#[tokio::test]
async fn r2t_solicits_the_data_within_burst_limits() {
    let h = start(quick()).await;
    let mut c = Client::connect(h.port).await;
    c.login(
        [0x80, 0, 0, 0, 0, 2],
        &[("InitialR2T", "Yes"), ("ImmediateData", "No"), ("MaxBurstLength", "65536"), ("MaxOutstandingR2T", "2")],
    )
    .await;
    c.clear_unit_attention().await;
    let total = 256 * 1024u32;
    let cmd = c.command(&write10(8, 512), false, true, total, Bytes::new());
    let itt = cmd.itt;
    c.send(Pdu::ScsiCommand(cmd)).await;
    let mut done = 0u32;
    let mut outstanding = 0;
    loop {
        match c.recv().await {
            Some(Pdu::R2t(r)) => {
                outstanding += 1;
                assert!(outstanding <= 2, "more R2Ts outstanding than negotiated");
                assert!(r.desired_len <= 65536);
                // Answer the R2T in 8 KiB Data-Out PDUs.
                let mut off = 0;
                let mut data_sn = 0;
                while off < r.desired_len {
                    let n = (r.desired_len - off).min(8192);
                    c.send(Pdu::DataOut(DataOut {
                        final_: off + n == r.desired_len,
                        lun: 0,
                        itt,
                        ttt: r.ttt,
                        exp_stat_sn: c.exp_stat_sn,
                        data_sn,
                        buffer_offset: r.buffer_offset + off,
                        data: Bytes::from(vec![0xab; n as usize]),
                    }))
                    .await;
                    off += n;
                    data_sn += 1;
                }
                outstanding -= 1;
                done += r.desired_len;
            }
            Some(Pdu::ScsiResponse(r)) => {
                assert_eq!(r.status, 0);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(done, total);
}

#[tokio::test]
async fn nop_out_is_echoed_and_target_pings_when_idle() {
    let config = ServerConfig {
        nop_interval: Duration::from_millis(200),
        nop_timeout: Duration::from_millis(600),
        ..ServerConfig::default()
    };
    let h = start(config).await;
    let mut c = Client::connect(h.port).await;
    c.login([0x80, 0, 0, 0, 0, 3], &[]).await;
    c.send(Pdu::NopOut(NopOut {
        immediate: true,
        lun: 0,
        itt: 99,
        ttt: RESERVED_TAG,
        cmd_sn: c.cmd_sn,
        exp_stat_sn: c.exp_stat_sn,
        data: Bytes::from_static(b"ping"),
    }))
    .await;
    let Some(Pdu::NopIn(echo)) = c.recv().await else { panic!("no NOP-In echo") };
    assert_eq!((echo.itt, echo.ttt, &echo.data[..]), (99, RESERVED_TAG, &b"ping"[..]));
    // Idle: the target pings; we answer, and the session stays up.
    let Some(Pdu::NopIn(ping)) = c.recv().await else { panic!("no target ping") };
    assert_eq!(ping.itt, RESERVED_TAG);
    assert_ne!(ping.ttt, RESERVED_TAG);
    c.send(Pdu::NopOut(NopOut {
        immediate: true,
        lun: 0,
        itt: RESERVED_TAG,
        ttt: ping.ttt,
        cmd_sn: c.cmd_sn,
        exp_stat_sn: c.exp_stat_sn,
        data: Bytes::new(),
    }))
    .await;
    let Some(Pdu::NopIn(again)) = c.recv().await else { panic!("no second ping") };
    // Now stay silent: the target drops the connection.
    let _ = again;
    let mut closed = false;
    for _ in 0..10 {
        match c.recv().await {
            None => {
                closed = true;
                break;
            }
            Some(Pdu::NopIn(_)) => continue,
            Some(other) => panic!("unexpected {other:?}"),
        }
    }
    assert!(closed, "unanswered pings did not end the connection");
}

#[tokio::test]
async fn logout_waits_for_commands_in_flight() {
    let h = start(quick()).await;
    let mut c = Client::connect(h.port).await;
    c.login([0x80, 0, 0, 0, 0, 4], &[]).await;
    c.clear_unit_attention().await;
    let cmd = c.command(&write10(0, 16), false, true, 8192, Bytes::from(vec![0x5a; 8192]));
    let write_itt = cmd.itt;
    c.send(Pdu::ScsiCommand(cmd)).await;
    let itt = c.next_itt();
    c.send(Pdu::LogoutRequest(LogoutRequest {
        immediate: true,
        reason: 0,
        itt,
        cid: 1,
        cmd_sn: c.cmd_sn,
        exp_stat_sn: c.exp_stat_sn,
    }))
    .await;
    let Some(Pdu::ScsiResponse(r)) = c.recv().await else { panic!("write not answered before logout") };
    assert_eq!((r.itt, r.status), (write_itt, 0));
    let Some(Pdu::LogoutResponse(l)) = c.recv().await else { panic!("no logout response") };
    assert_eq!((l.itt, l.response), (itt, 0));
    assert!(c.recv().await.is_none(), "connection not closed after logout");
}

#[tokio::test]
async fn reusing_an_isid_reinstates_the_session() {
    let h = start(quick()).await;
    let isid = [0x80, 0, 0, 0, 0, 5];
    let mut first = Client::connect(h.port).await;
    first.login(isid, &[]).await;
    let mut second = Client::connect(h.port).await;
    second.login(isid, &[]).await;
    assert!(first.recv().await.is_none(), "the old session survived reinstatement");
    let cmd = second.command(&read10(0, 1), true, false, 512, Bytes::new());
    second.send(Pdu::ScsiCommand(cmd)).await;
    // A unit attention may come first on the new nexus; either way it answers.
    assert!(matches!(second.recv().await, Some(Pdu::DataIn(_)) | Some(Pdu::ScsiResponse(_))));
}

#[tokio::test]
async fn task_management_answers() {
    let h = start(quick()).await;
    let mut c = Client::connect(h.port).await;
    c.login([0x80, 0, 0, 0, 0, 6], &[]).await;
    let tmf = |function: u8, lun: u64, rtt: u32, itt: u32, cmd_sn: u32| {
        Pdu::TaskMgmtRequest(TaskMgmtRequest {
            immediate: true,
            function,
            lun,
            itt,
            referenced_tag: rtt,
            cmd_sn,
            exp_stat_sn: 0,
            ref_cmd_sn: cmd_sn,
            exp_data_sn: 0,
        })
    };
    let cases = [(1u8, 0u64, 0x1234u32, 1u8), (5, 0, RESERVED_TAG, 0), (5, 7 << 48, RESERVED_TAG, 2), (8, 0, 1, 4), (99, 0, 1, 255)];
    for (k, (function, lun, rtt, want)) in cases.into_iter().enumerate() {
        let p = tmf(function, lun, rtt, 1000 + k as u32, c.cmd_sn);
        c.send(p).await;
        let Some(Pdu::TaskMgmtResponse(r)) = c.recv().await else { panic!("no TMF response") };
        assert_eq!((r.itt, r.response), (1000 + k as u32, want), "function {function}");
    }
}

#[tokio::test]
async fn discovery_lists_targets() {
    let h = start(quick()).await;
    let mut c = Client::connect(h.port).await;
    let keys = [("InitiatorName", "iqn.2026-11.test:client"), ("SessionType", "Discovery")];
    c.send(Pdu::LoginRequest(LoginRequest {
        transit: true,
        cont: false,
        csg: 1,
        nsg: 3,
        version_max: 0,
        version_min: 0,
        isid: [0x80, 0, 0, 0, 0, 7],
        tsih: 0,
        itt: 1,
        cid: 0,
        cmd_sn: 1,
        exp_stat_sn: 0,
        data: Bytes::from(text::encode(&keys)),
    }))
    .await;
    let Some(Pdu::LoginResponse(r)) = c.recv().await else { panic!() };
    assert_eq!(r.status_class, 0);
    c.send(Pdu::TextRequest(TextRequest {
        immediate: true,
        final_: true,
        cont: false,
        lun: 0,
        itt: 2,
        ttt: RESERVED_TAG,
        cmd_sn: 1,
        exp_stat_sn: r.stat_sn + 1,
        data: Bytes::from(text::encode(&[("SendTargets", "All")])),
    }))
    .await;
    let Some(Pdu::TextResponse(t)) = c.recv().await else { panic!("no text response") };
    let keys = text::parse(&t.data).unwrap();
    assert_eq!(keys[0], ("TargetName".to_string(), IQN.to_string()));
    assert!(keys[1].1.starts_with("127.0.0.1:") && keys[1].1.ends_with(",1"), "{keys:?}");
}
