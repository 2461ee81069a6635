use bytes::Bytes;
use proptest::prelude::*;

use super::*;

fn all_digests() -> [Digests; 4] {
    [
        Digests { header: false, data: false },
        Digests { header: true, data: false },
        Digests { header: false, data: true },
        Digests { header: true, data: true },
    ]
}

fn samples() -> Vec<Pdu> {
    vec![
        Pdu::ScsiCommand(ScsiCommand {
            immediate: false,
            final_: true,
            read: false,
            write: true,
            attr: 1,
            lun: 0x0001_0000_0000_0000,
            itt: 7,
            expected_data_len: 4096,
            cmd_sn: 9,
            exp_stat_sn: 3,
            cdb: Bytes::from(vec![0x2a, 0, 0, 0, 0, 1, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0xaa, 0xbb]),
            bidi_read_len: Some(512),
            data: Bytes::from_static(b"hello"),
        }),
        Pdu::LoginRequest(LoginRequest {
            transit: true,
            cont: false,
            csg: 1,
            nsg: 3,
            version_max: 0,
            version_min: 0,
            isid: [0x80, 1, 2, 3, 4, 5],
            tsih: 0,
            itt: 1,
            cid: 2,
            cmd_sn: 1,
            exp_stat_sn: 0,
            data: Bytes::from_static(b"InitiatorName=iqn.x\0"),
        }),
        Pdu::DataIn(DataIn {
            final_: true,
            ack: false,
            residual: Residual { overflow: false, underflow: true, count: 5 },
            status: Some(0),
            lun: 0,
            itt: 3,
            ttt: RESERVED_TAG,
            stat_sn: 4,
            exp_cmd_sn: 5,
            max_cmd_sn: 6,
            data_sn: 0,
            buffer_offset: 0,
            data: Bytes::from(vec![1u8; 1001]),
        }),
        Pdu::R2t(R2t {
            lun: 0,
            itt: 3,
            ttt: 77,
            stat_sn: 1,
            exp_cmd_sn: 2,
            max_cmd_sn: 3,
            r2t_sn: 0,
            buffer_offset: 8192,
            desired_len: 65536,
        }),
        Pdu::LoginResponse(LoginResponse {
            transit: true,
            cont: false,
            csg: 1,
            nsg: 3,
            version_max: 0,
            version_active: 0,
            isid: [0x80, 1, 2, 3, 4, 5],
            tsih: 9,
            itt: 1,
            stat_sn: 0,
            exp_cmd_sn: 1,
            max_cmd_sn: 128,
            status_class: 2,
            status_detail: 1,
            data: Bytes::new(),
        }),
        Pdu::TaskMgmtRequest(TaskMgmtRequest {
            immediate: true,
            function: 5,
            lun: 0,
            itt: 4,
            referenced_tag: RESERVED_TAG,
            cmd_sn: 5,
            exp_stat_sn: 6,
            ref_cmd_sn: 0,
            exp_data_sn: 0,
        }),
        Pdu::AsyncMessage(AsyncMessage {
            lun: 0,
            stat_sn: 1,
            exp_cmd_sn: 2,
            max_cmd_sn: 3,
            event: 1,
            vendor_code: 0,
            params: [1, 2, 3],
            data: Bytes::new(),
        }),
        Pdu::LogoutResponse(LogoutResponse {
            response: 0,
            itt: 8,
            stat_sn: 1,
            exp_cmd_sn: 2,
            max_cmd_sn: 3,
            time2wait: 2,
            time2retain: 20,
        }),
    ]
}

#[test]
fn typed_pdus_round_trip_with_every_digest_setting() {
    for d in all_digests() {
        for p in samples() {
            let wire = p.encode(d).to_bytes();
            assert_eq!(wire.len() % 4, 0);
            let (back, used) = Pdu::decode_frame(&wire, d).unwrap();
            assert_eq!(used, wire.len());
            assert_eq!(back, p);
        }
    }
}

#[test]
fn corrupted_digests_are_detected() {
    let d = Digests { header: true, data: true };
    let wire = samples()[0].encode(d).to_bytes().to_vec();
    let mut h = wire.clone();
    h[20] ^= 1;
    assert_eq!(Pdu::decode_frame(&h, d).unwrap_err(), DecodeError::HeaderDigest);
    let mut dd = wire.clone();
    let n = dd.len();
    dd[n - 6] ^= 1;
    assert_eq!(Pdu::decode_frame(&dd, d).unwrap_err(), DecodeError::DataDigest);
}

#[test]
fn truncation_and_unknown_opcodes() {
    let wire = samples()[1].encode(Digests::default()).to_bytes();
    for cut in [0, 10, 47, 48, wire.len() - 1] {
        assert_eq!(Pdu::decode_frame(&wire[..cut], Digests::default()).unwrap_err(), DecodeError::Truncated);
    }
    let mut bad = wire.to_vec();
    bad[0] = 0x1f;
    assert_eq!(Pdu::decode_frame(&bad, Digests::default()).unwrap_err(), DecodeError::UnknownOpcode(0x1f));
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600), h in any::<bool>(), dd in any::<bool>()) {
        let _ = Pdu::decode_frame(&bytes, Digests { header: h, data: dd });
    }

    #[test]
    fn decoded_frames_reencode_identically(bytes in proptest::collection::vec(any::<u8>(), 48..300)) {
        let d = Digests::default();
        if let Ok((pdu, used)) = Pdu::decode_frame(&bytes, d) {
            // Re-encoding is canonical; decoding that again gives the same PDU.
            let again = pdu.encode(d).to_bytes();
            let (back, _) = Pdu::decode_frame(&again, d).unwrap();
            prop_assert_eq!(back, pdu);
            prop_assert!(used <= bytes.len());
        }
    }
}
