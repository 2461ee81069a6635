//! Garbage and truncated PDUs from hostile connections while another
//! session does verified I/O: the daemon survives, malformed PDUs get a
//! Reject or a clean close, and the other session never notices.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use rand::RngCore;
use sgw_tests::{have_tool, Gateway};

fn bhs(opcode: u8, flags: u8, data_len: u32) -> [u8; 48] {
    let mut b = [0u8; 48];
    b[0] = opcode;
    b[1] = flags;
    b[5..8].copy_from_slice(&data_len.to_be_bytes()[1..]);
    b
}

fn login_pdu(target: &str) -> Vec<u8> {
    let text = format!("InitiatorName=iqn.2026-11.test:garbage\0TargetName={target}\0SessionType=Normal\0");
    // Immediate Login Request, T=1, CSG=1 (operational), NSG=3 (full feature).
    let mut b = bhs(0x43, 0x87, text.len() as u32).to_vec();
    b[8..14].copy_from_slice(&[0x80, 0, 0, 0, 0, 7]);
    b[16..20].copy_from_slice(&1u32.to_be_bytes());
    b[24..28].copy_from_slice(&1u32.to_be_bytes());
    b.extend_from_slice(text.as_bytes());
    while b.len() % 4 != 0 {
        b.push(0);
    }
    b
}

fn connect(gw: &Gateway) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", gw.iscsi_port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Reads one PDU's BHS and skips its data; `None` on close or timeout.
fn read_bhs(s: &mut TcpStream) -> Option<[u8; 48]> {
    let mut b = [0u8; 48];
    s.read_exact(&mut b).ok()?;
    let dlen = u32::from_be_bytes([0, b[5], b[6], b[7]]) as usize;
    let mut rest = vec![0u8; (dlen + 3) & !3];
    s.read_exact(&mut rest).ok()?;
    Some(b)
}

fn logged_in(gw: &Gateway, iqn: &str) -> TcpStream {
    let mut s = connect(gw);
    s.write_all(&login_pdu(iqn)).unwrap();
    let r = read_bhs(&mut s).expect("login response");
    assert_eq!(r[0] & 0x3f, 0x23, "not a login response");
    assert_eq!((r[36], r[37]), (0, 0), "login refused");
    s
}

/// True when the peer closed the connection (EOF or reset) within the timeout.
fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Ok(0) | Err(_))
}

#[test]
fn garbage_does_not_disturb_other_sessions() {
    if !have_tool("qemu-io") {
        return;
    }
    let gw = Gateway::start();
    let iqn = gw.create_volume("victim", 64 << 20);
    // The bystander: sustained writes and verified reads on its own session.
    let mut args = Vec::new();
    for i in 0..400u64 {
        let off = (i % 60) << 20;
        let pat = i % 200 + 1;
        args.extend(["-c".to_string(), format!("write -P {pat} {off} 1m")]);
        args.extend(["-c".to_string(), format!("read -P {pat} {off} 1m")]);
    }
    let bystander = Command::new("qemu-io")
        .args(["-f", "raw"])
        .args(&args)
        .arg(gw.url(&iqn))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-io");

    let mut rng = rand::thread_rng();
    for round in 0..20 {
        // Random bytes instead of a login.
        let mut s = connect(&gw);
        let mut junk = vec![0u8; 4096];
        rng.fill_bytes(&mut junk);
        let _ = s.write_all(&junk);
        assert!(closed(&mut s), "round {round}: junk login not closed");

        // A truncated BHS, then the peer goes away.
        let mut s = connect(&gw);
        let _ = s.write_all(&login_pdu(&iqn)[..20]);
        drop(s);

        // An unknown opcode in full feature phase gets a Reject.
        let mut s = logged_in(&gw, &iqn);
        s.write_all(&bhs(0x1f, 0x80, 0)).unwrap();
        let r = read_bhs(&mut s).expect("reject");
        assert_eq!(r[0] & 0x3f, 0x3f, "expected a Reject");
        // A Data-Out for a transfer that does not exist gets a Reject too.
        let mut d = bhs(0x05, 0x80, 0);
        d[16..20].copy_from_slice(&0xdead_beefu32.to_be_bytes());
        d[20..24].copy_from_slice(&5u32.to_be_bytes());
        s.write_all(&d).unwrap();
        let r = read_bhs(&mut s).expect("reject");
        assert_eq!(r[0] & 0x3f, 0x3f, "expected a Reject");
        // A data segment far over MaxRecvDataSegmentLength: the connection closes.
        s.write_all(&bhs(0x01, 0x80, 0xff_ffff)).unwrap();
        assert!(closed(&mut s), "oversized PDU not closed");

        // Logged in, then a random stream.
        let mut s = logged_in(&gw, &iqn);
        rng.fill_bytes(&mut junk);
        let _ = s.write_all(&junk);
        drop(s);
    }

    let out = bystander.wait_with_output().expect("bystander");
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{log}");
    assert!(!log.contains("failed") && !log.contains("error"), "the bystander session noticed:\n{log}");
    assert_eq!(log.matches("read 1048576/1048576").count(), 400, "{log}");
    assert!(ureq::get(&format!("{}/api/v1/health", gw.api())).call().is_ok(), "daemon died");
}
